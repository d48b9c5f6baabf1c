"""Progress lines of the CLI's long commands on a terminal."""
from __future__ import annotations

import sys


class Progress:
    """Per-batch progress on a terminal (one rewritten line); nothing when stderr is not a tty."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()

    def __call__(self, message: str) -> None:
        if self.live:
            self.stream.write("\r" + message[:100].ljust(100))
            self.stream.flush()

    def line(self, message: str) -> None:
        if self.live:
            self.stream.write("\r" + " " * 100 + "\r")
        print(message, file=self.stream, flush=True)
