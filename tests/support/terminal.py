"""A command run in a pseudo-terminal, as a user at a terminal runs it: what it shows there, and
Ctrl-C as the terminal sends it (SIGINT to the command's whole process group)."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import signal
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


class Terminal:
    """``command`` started in a new session on a 40x120 pseudo-terminal; a thread keeps reading
    what it writes, so the command never blocks on a full terminal."""

    def __init__(self, command: Sequence[str], env: dict[str, str]) -> None:
        leader, follower = pty.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.process = subprocess.Popen(
            command,
            stdin=follower,
            stdout=follower,
            stderr=follower,
            env={**env, "TERM": "xterm-256color"},
            start_new_session=True,
        )
        os.close(follower)
        self.leader, self.chunks = leader, [b""]
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.leader, 65536)
            except OSError:  # EIO: the command and all its children closed the terminal
                return
            if not data:
                return
            self.chunks.append(data)

    @property
    def text(self) -> str:
        """All shown so far, without colours and cursor moves: one frame after another."""
        return _ESCAPES.sub("", b"".join(self.chunks).decode("utf-8", errors="replace"))

    def ctrl_c(self) -> None:
        os.killpg(self.process.pid, signal.SIGINT)

    def wait_until(self, condition: Callable[[], bool], timeout: float = 600) -> None:
        """Poll ``condition`` until it holds; a command that ends first fails the test."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"never happened; the terminal shows:\n{self.text}")
            time.sleep(0.02)

    def survivors(self) -> list[int]:
        """Processes of the command's group still running (a zombie has ended)."""
        alive = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                state, _, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(group) == self.process.pid and state != "Z":
                alive.append(int(stat.parent.name))
        return alive

    def finish(self, timeout: float = 600) -> int:
        status = self.process.wait(timeout)
        self.reader.join(timeout)
        os.close(self.leader)
        return status
