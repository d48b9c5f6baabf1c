"""Uniform file access for local paths and URIs (s3://, gs://, file://, ...) through pyarrow
filesystems: what the search writes its sweep record with and what analysis, ``status``,
``export`` and ``resume`` read experiments through. No torch, no ray.
"""
from __future__ import annotations

import os
import posixpath

from .schema import is_uri


class Location:
    """A folder, local or remote, with the few file operations experiments need."""

    def __init__(self, path: str) -> None:
        self.uri = is_uri(path)
        if self.uri:
            import pyarrow.fs as pafs

            self.fs, self.root = pafs.FileSystem.from_uri(path)
        else:
            self.fs, self.root = None, os.path.abspath(path)
        self.path = path

    def join(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts) if self.uri else os.path.join(self.root, *parts)

    def is_dir(self, rel: str = "") -> bool:
        if not self.uri:
            return os.path.isdir(self.join(rel) if rel else self.root)
        import pyarrow.fs as pafs

        return self.fs.get_file_info(self.join(rel) if rel else self.root).type == pafs.FileType.Directory

    def exists(self, rel: str = "") -> bool:
        target = self.join(rel) if rel else self.root
        if not self.uri:
            return os.path.exists(target)
        import pyarrow.fs as pafs

        return self.fs.get_file_info(target).type != pafs.FileType.NotFound

    def listdir(self, rel: str = "") -> list[str]:
        if not self.uri:
            return sorted(os.listdir(self.join(rel) if rel else self.root))
        import pyarrow.fs as pafs

        infos = self.fs.get_file_info(pafs.FileSelector(self.join(rel) if rel else self.root))
        return sorted(posixpath.basename(i.path) for i in infos)

    def read_text(self, rel: str) -> str:
        if not self.uri:
            with open(self.join(rel), encoding="utf-8") as fh:
                return fh.read()
        with self.fs.open_input_stream(self.join(rel)) as fh:
            return fh.read().decode("utf-8")

    def read_bytes(self, rel: str) -> bytes:
        if not self.uri:
            with open(self.join(rel), "rb") as fh:
                return fh.read()
        with self.fs.open_input_stream(self.join(rel)) as fh:
            return fh.read()

    def read_mapping(self, rel: str) -> dict:
        """The YAML mapping in ``rel`` (``yaml.safe_load``); ``{}`` when the file is missing,
        unreadable or not a mapping: for record files a reader can do without."""
        import yaml

        from . import safe_yaml

        try:
            if not self.is_file(rel):
                return {}
            data = safe_yaml.load(self.read_text(rel), what=rel)
        except (OSError, yaml.YAMLError, UnicodeDecodeError, safe_yaml.YAMLLimitError):
            return {}
        return data if isinstance(data, dict) else {}

    def is_file(self, rel: str) -> bool:
        if not self.uri:
            return os.path.isfile(self.join(rel))
        import pyarrow.fs as pafs

        return self.fs.get_file_info(self.join(rel)).type == pafs.FileType.File

    def makedirs(self) -> None:
        """Create the folder (and its parents) if it does not exist."""
        if self.uri:
            self.fs.create_dir(self.root, recursive=True)
        else:
            os.makedirs(self.root, exist_ok=True)

    def write_text(self, rel: str, text: str) -> None:
        """Write ``rel`` whole: a temporary sibling renamed into place locally, one stream on a URI."""
        self.write_bytes(rel, text.encode("utf-8"))

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write ``rel`` whole (see ``write_text``)."""
        if self.uri:
            with self.fs.open_output_stream(self.join(rel)) as fh:
                fh.write(data)
            return
        target = self.join(rel)
        # a unique sibling (two threads may write at once), synced before the rename: a full disk
        # or a kill leaves the old file whole, never a short one
        import tempfile

        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.partial-", dir=os.path.dirname(target))
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o666 & ~_UMASK)
            os.replace(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def address(self, rel: str) -> str:
        """Where another process opens ``rel``: its local path, or its URI."""
        return f"{self.path.rstrip('/')}/{rel}" if self.uri else self.join(rel)

    def local_path(self, rel: str = "") -> str | None:
        """``rel``'s path on this machine's file system; None on a URI (read it through this class)."""
        if self.uri:
            return None
        return self.join(rel) if rel else self.root

    def delete(self, rel: str) -> None:
        """Remove the file ``rel`` (OSError when it cannot be)."""
        if self.uri:
            self.fs.delete_file(self.join(rel))
        else:
            os.unlink(self.join(rel))

    def move_dir(self, rel: str, dest: str) -> None:
        """Move the folder ``rel`` to ``dest`` (both inside this one; ``dest``'s parents are made).
        Local: one rename. URI: a copy, then the source is removed (object stores have no rename)."""
        if self.uri:
            import pyarrow.fs as pafs

            pafs.copy_files(self.join(rel), self.join(dest), source_filesystem=self.fs, destination_filesystem=self.fs)
            self.fs.delete_dir(self.join(rel))
        else:
            os.makedirs(os.path.dirname(self.join(dest)), exist_ok=True)
            os.replace(self.join(rel), self.join(dest))

    def delete_tree(self) -> None:
        """Remove the folder and everything in it (OSError when it cannot be)."""
        if self.uri:
            self.fs.delete_dir(self.root)
        else:
            import shutil

            shutil.rmtree(self.root)


def split_path(path: str) -> tuple[str, str]:
    """(parent, name) of a folder given as a local path or a URI: an experiment's storage and name."""
    if "://" in path:
        scheme, rest = path.split("://", 1)
        head, name = posixpath.split(rest.rstrip("/"))
        return f"{scheme}://{head}", name
    head, name = posixpath.split(path.rstrip("/"))
    return head, name


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# read once at import: os.umask is process-wide, and setting it to read it races other threads
_UMASK = _umask()
