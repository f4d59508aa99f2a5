"""Which local files a files source may read: those inside its declaration's folder or a ``TIDEMARK_FILES_ROOTS`` folder.

A declaration is data, and the worker reads files with its own rights: left
unchecked, ``url: file:///etc/shadow`` or ``../../../etc/passwd`` would be
opened, and what they hold would reach the logs through an error message.
So a local path (or ``file://`` URL) must resolve, symlinks included
(``os.path.realpath``), inside an allowed folder: checked when the source is
declared for the part of the path that is fixed, and again for every file a
glob or placeholder expands to when it is read (a symlink inside the folder
pointing outside is refused then). The file opened is the resolved path that
was checked. Remote URLs (``s3://``, ``gs://``, …) are not local files and are
not restricted here; URLs that wrap another file system (``simplecache::``,
``zip://``, chained ``::``) are refused, as they could reach local files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from tidemark import config
from tidemark.model.origin import shown
from tidemark.sources.registry import KeyRefused

__all__ = ["allowed_folders", "check", "local_path", "static_folder"]

_LOCAL_SCHEMES = frozenset({"file", "local"})
# fsspec protocols that open another file system's files (a local one too), whatever the URL's own path.
_WRAPPING = frozenset({"simplecache", "filecache", "blockcache", "cached", "dir", "reference", "zip", "tar",
                       "libarchive", "jlab", "jupyter"})
_DYNAMIC = "{*?["


def local_path(url: str) -> str | None:
    """The local path ``url`` names (placeholders and globs kept), None for a remote URL; KeyRefused if neither."""
    if "::" in url:
        raise KeyRefused("url", f"{url!r}: chained URLs (::) are not allowed; give the file system's own URL")
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    scheme = scheme.lower()
    if scheme in _LOCAL_SCHEMES:
        if not rest.startswith("/"):
            raise KeyRefused("url", f"{url!r}: a {scheme}:// URL needs an absolute path ({scheme}:///data/…); "
                             "a relative one would be read from each worker's working directory")
        return rest
    if scheme in _WRAPPING:
        raise KeyRefused("url", f"{url!r}: {scheme}:// wraps another file system and is not allowed")
    return None


def allowed_folders(base_dir: str | Path | None) -> list[str]:
    """The resolved folders local files may lie in: the declaration's own, then ``TIDEMARK_FILES_ROOTS``."""
    folders = [base_dir] if base_dir is not None else []
    folders.extend(config.files_roots())
    return [os.path.realpath(f) for f in folders]


def _inside(real: str, folders: Sequence[str]) -> bool:
    return any(real == f or real.startswith(f.rstrip(os.sep) + os.sep) for f in folders)


def static_folder(path: str) -> str:
    """The part of a local path fixed before its first placeholder or glob: the whole path, or the folder above it."""
    cut = min((i for i in (path.find(c) for c in _DYNAMIC) if i >= 0), default=-1)
    if cut < 0:
        return path
    return os.path.dirname(path[:cut]) or os.sep


def check(url: str, path: str, folders: Sequence[str], *, what: str = "") -> str:
    """``path`` resolved (symlinks followed), or KeyRefused naming ``url`` if that lies outside ``folders``."""
    real = os.path.realpath(path)
    if not _inside(real, folders):
        allowed = ", ".join(folders) if folders else "none: no declaration folder, and TIDEMARK_FILES_ROOTS is unset"
        raise KeyRefused("url", f"{what or shown(url)} resolves to {real}, outside the declaration's folder and "
                                f"TIDEMARK_FILES_ROOTS ({allowed})")
    return real
