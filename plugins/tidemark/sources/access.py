"""How sources reach what lies outside Tidemark: database connections and file systems, by name.

Sources name an Airflow connection (``conn_id``) or a URL and never hold a
secret. Inside Airflow the adapter installs openers that go through
Airflow's own machinery (``PostgresHook``, ``ObjectStoragePath``), so every
connection backend, extra and credential scheme works as it does for any
other task. Without Airflow (tests, scripts) a connection is read from its
``AIRFLOW_CONN_<ID>`` variable, as Airflow itself would, and a URL goes
straight to fsspec.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from tidemark.connection import ConnectionFactory, DatabaseUnreachable, factory

ConnectionOpener = Callable[[str], ConnectionFactory]
FilesystemOpener = Callable[[str], tuple[Any, str]]


def _from_environment(conn_id: str) -> ConnectionFactory:
    raw = os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")
    if not raw:
        raise DatabaseUnreachable(
            f"connection {conn_id!r} is not defined: create it in Airflow (or set AIRFLOW_CONN_{conn_id.upper()})"
        )
    if raw.lstrip().startswith("{"):
        c = json.loads(raw)
        raw = "postgresql://{}:{}@{}:{}/{}".format(
            quote(str(c.get("login") or "postgres"), safe=""), quote(str(c.get("password") or ""), safe=""),
            c.get("host") or "127.0.0.1", c.get("port") or 5432, c.get("schema") or "postgres",
        )
    host = raw.split("@")[-1].split("?")[0]
    return factory(raw, label=f"connection {conn_id!r} -> {host}")


def _fsspec(url: str) -> tuple[Any, str]:
    from fsspec.core import url_to_fs

    fs, path = url_to_fs(url)
    return fs, path


_connections: ConnectionOpener = _from_environment
_filesystems: FilesystemOpener = _fsspec


def set_openers(connections: ConnectionOpener | None = None, filesystems: FilesystemOpener | None = None) -> None:
    global _connections, _filesystems
    if connections is not None:
        _connections = connections
    if filesystems is not None:
        _filesystems = filesystems


def connection(conn_id: str) -> ConnectionFactory:
    return _connections(conn_id)


def filesystem(url: str) -> tuple[Any, str]:
    """(fsspec file system, path within it) for a URL or local path."""
    return _filesystems(url)
