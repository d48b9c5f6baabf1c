"""Shared output of the benchmark scripts: print the markdown, optionally append it to a file."""
from __future__ import annotations


def emit(text: str, out: str | None) -> None:
    print(text)
    if out:
        with open(out, "a", encoding="utf-8") as fh:
            fh.write(text + "\n")


def cached_json(path: str, compute):
    """``compute()``'s JSON result, read from ``path`` when a run before wrote it there (a rerun
    skips what is done), else computed and written."""
    import json
    import os

    if os.path.isfile(path):
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    out = compute()
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(out, fh)
    return out
