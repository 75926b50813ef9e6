"""Directories written whole or not at all: a per-process temp directory, then one rename.

Checkpoints and render caches are read by other processes, so a reader must never see one
half-written. Each writer fills ``<name>.partial-<pid>`` and renames it into place at the end;
the pid keeps two processes writing the same directory at once (two training runs started
together) out of each other's files, and lets the next writer delete what a killed one left.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def new_partial_directory(directory: Path) -> Path:
    """An empty temp directory of this process beside ``directory``, to be renamed into it.

    Temp directories of writers that no longer run (interrupted, killed) are deleted first.
    """
    directory.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_partials(directory)
    partial = directory.with_name(f"{directory.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    return partial


def remove_abandoned_partials(directory: Path) -> None:
    """Delete the temp directories of writers whose process no longer runs."""
    for partial in directory.parent.glob(f"{directory.name}.partial-*"):
        pid = partial.name.rpartition("-")[2]
        if pid.isdigit() and not process_runs(int(pid)):
            shutil.rmtree(partial, ignore_errors=True)


def process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it runs
        pass
    return True
