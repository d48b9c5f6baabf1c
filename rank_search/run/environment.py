"""What a run ran with beyond its settings: threads, device, Python, package versions, git commit.

Written into every run record (``schema.ENVIRONMENT_KEY``) and ignored when the record is read
back as a config: a re-run applies the settings (``train.threads`` among them) and compares
the rest with its own environment.
"""
from __future__ import annotations

import functools
import os
import platform
import subprocess
from importlib import metadata
from typing import Any

#: The distributions whose versions change results or the files written.
PACKAGES = ("rank-search", "torch", "torchvision", "numpy", "tensorly", "ray", "optuna")


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str | None]:
    """``{distribution: version}`` of :data:`PACKAGES` (None where it is not installed)."""
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


@functools.lru_cache(maxsize=1)
def git_state() -> dict[str, Any]:
    """``{"git_commit": sha, "git_dirty": bool}`` of the checkout rank_search is imported from,
    or Nones where it is not a git checkout (an installed wheel) or git is missing."""
    # rank_search/run/environment.py -> the checkout's root
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        # Only the checkout holding this package: not a repository that merely encloses site-packages.
        if os.path.realpath(git("rev-parse", "--show-toplevel")) != os.path.realpath(root):
            raise OSError("not the package's checkout")
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": commit, "git_dirty": dirty}


def environment(trainer) -> dict[str, Any]:
    """The environment of ``trainer``'s run, as plain YAML-safe data."""
    return {
        "torch_threads": int(trainer.threads),
        "device": str(trainer.device),
        "python": platform.python_version(),
        "packages": dict(package_versions()),
        **git_state(),
    }


def differences(recorded: Any, current: dict[str, Any]) -> list[str]:
    """``key: recorded -> current`` for every package version, the commit and the device that
    differ between a recorded environment and this one (what can change a re-run's results)."""
    if not isinstance(recorded, dict):
        return []
    out = []
    old_pkgs, new_pkgs = recorded.get("packages") or {}, current.get("packages") or {}
    for name in PACKAGES:
        if name in old_pkgs and old_pkgs.get(name) != new_pkgs.get(name):
            out.append(f"{name} {old_pkgs.get(name)} -> {new_pkgs.get(name)}")
    for key in ("git_commit", "device"):
        if recorded.get(key) is not None and recorded.get(key) != current.get(key):
            out.append(f"{key} {recorded.get(key)} -> {current.get(key)}")
    return out
