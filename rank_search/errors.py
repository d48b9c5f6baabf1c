"""User-facing errors: the CLI turns these into one clear line and exit code 2."""
from __future__ import annotations


class RankSearchError(ValueError):
    """An expected error caused by user input (config, rank, path, checkpoint, ...)."""
