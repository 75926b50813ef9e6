"""Files on disk, content-addressed: each stored once under its SHA-256, never rewritten.

``files/ab/abcdef…`` holds the bytes; a study's folder (``studies/<id>/``) holds hard links to
its instances' files, named by hash, so ``dicom.read_study`` reads the whole study from one
folder however many uploads it came in. A file is written to a temporary name and renamed, so a
reader never sees half of one, and storing the same bytes twice costs nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from dicom.bundle import write_atomically


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_path(files_dir: Path, sha256: str) -> Path:
    if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
        raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
    return files_dir / sha256[:2] / sha256


def put(files_dir: Path, data: bytes) -> tuple[str, bool]:
    """Store ``data``; returns its SHA-256 and whether this call created the file."""
    sha256 = sha256_of(data)
    path = file_path(files_dir, sha256)
    if path.is_file():
        return sha256, False
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, data)
    return sha256, True


def read(files_dir: Path, sha256: str) -> bytes:
    return file_path(files_dir, sha256).read_bytes()


def study_folder(studies_dir: Path, study_id: str) -> Path:
    return studies_dir / study_id


def link_into(folder: Path, files_dir: Path, sha256: str) -> bool:
    """A hard link to a stored file in ``folder``; returns whether it was new. Falls back to a
    copy where the two folders lie on different file systems."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{sha256}.dcm"
    if target.exists():
        return False
    source = file_path(files_dir, sha256)
    try:
        os.link(source, target)
    except FileExistsError:
        return False
    except OSError:
        write_atomically(target, source.read_bytes())
    return True


def remove_quietly(paths: list[Path]) -> None:
    """Undo what a failed ingestion created; what cannot be removed is left for an admin."""
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()
