"""Shared output of the benchmark scripts: print the markdown, optionally append it to a file."""
from __future__ import annotations


def emit(text: str, out: str | None) -> None:
    print(text)
    if out:
        with open(out, "a", encoding="utf-8") as fh:
            fh.write(text + "\n")
