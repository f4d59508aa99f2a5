"""Opening database connections the way every Tidemark component needs them.

One place decides the connection options because the embedded engine is a
single shared PostgreSQL session: psycopg 3's automatic server-side prepares
would collide between clients (``prepare_threshold=None`` turns them off), and
a client that cannot reach the database must say which connection it tried
without ever printing the password.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import psycopg

from tidemark.errors import TidemarkError

ConnectionFactory = Callable[[], psycopg.Connection]


class DatabaseUnreachable(TidemarkError):
    """The database could not be reached; the message names the connection, never its password."""


_PASSWORD_IN_URI = re.compile(r"(://[^:/@]+:)([^@]*)(@)")
_PASSWORD_IN_KV = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact(dsn: str) -> str:
    """Hide passwords in a DSN or in any text that may quote one (error messages do)."""
    return _PASSWORD_IN_KV.sub(r"\1***", _PASSWORD_IN_URI.sub(r"\1***\3", dsn))


def connect(dsn: str, *, label: str | None = None, autocommit: bool = True, connect_timeout: int = 10) -> psycopg.Connection:
    """Connect with the options the embedded engine requires (harmless on a real server).

    Autocommit by default: Tidemark code opens explicit ``conn.transaction()``
    blocks, so a connection never sits idle inside an implicit transaction,
    which on the embedded engine would block every other client.
    """
    try:
        return psycopg.connect(
            dsn,
            autocommit=autocommit,
            prepare_threshold=None,
            connect_timeout=connect_timeout,
            application_name="tidemark",
        )
    except psycopg.OperationalError as exc:
        where = label or redact(dsn)
        first_line = redact(str(exc)).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnreachable(f"cannot connect to the database ({where}): {first_line}") from None


def factory(dsn: str, *, label: str | None = None) -> ConnectionFactory:
    """A zero-argument opener, so retrying code can reconnect after the engine restarts."""
    return lambda: connect(dsn, label=label)


def one(cursor: psycopg.Cursor[Any]) -> tuple[Any, ...]:
    """The single row a query always returns (an aggregate, ``SELECT fn()``): typed, never None."""
    row: tuple[Any, ...] | None = cursor.fetchone()
    if row is None:
        raise TidemarkError("a query that always returns one row returned none")
    return row
