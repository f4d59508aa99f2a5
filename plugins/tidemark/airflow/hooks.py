"""Tidemark's database connections inside Airflow: the provider's PostgresHook, and object storage for files.

Everything here runs inside a task at run time (never at DAG parse time), so
a DAG file can be imported without a database or an Airflow connection.
"""

from __future__ import annotations

from typing import Any

import psycopg

from tidemark.connection import ConnectionFactory, DatabaseUnreachable, redact


CONN_ID = "tidemark_timescale"


# What the embedded engine needs and Tidemark's code assumes, whatever the connection's extras say:
# no server-side prepares (one shared session), autocommit (explicit transaction blocks only).
_FORCED: dict[str, Any] = {"prepare_threshold": None, "autocommit": True}


# Defaults the connection's extras may override.
_DEFAULTS: dict[str, Any] = {"connect_timeout": 10, "application_name": "tidemark"}


def connection_factory(conn_id: str = CONN_ID) -> ConnectionFactory:
    """Open psycopg 3 connections for the Airflow connection ``conn_id`` the way every Postgres task does.

    The provider's ``PostgresHook`` builds them, so a ``postgres`` connection
    behaves as users expect from any other Postgres task: ``sslmode`` and the
    certificate extras, ``options``, ``client_encoding``, IAM authentication
    for RDS/Aurora/Redshift (``"iam": true`` extras), and any other libpq
    parameter in the extras. Tidemark adds only what it needs on top (see
    ``_FORCED``). The Airflow connection is looked up once per factory; every
    call opens a new connection (IAM tokens are generated per connection).
    """
    hook: Any = None

    def open_connection() -> psycopg.Connection:
        from airflow.sdk.exceptions import AirflowOptionalProviderFeatureException

        nonlocal hook
        if hook is None:
            hook = _hook(conn_id)
        c = hook.connection
        label = f"Airflow connection {conn_id!r} -> {c.host}:{c.port}/{hook.database or c.schema}"
        try:
            conn = hook.get_conn()
        except psycopg.OperationalError as exc:
            text = redact(str(exc)).strip()
            first_line = text.splitlines()[0] if text else type(exc).__name__
            raise DatabaseUnreachable(f"cannot connect to the database ({label}): {first_line}") from None
        except (ImportError, AirflowOptionalProviderFeatureException) as exc:  # IAM extras need another provider
            raise DatabaseUnreachable(
                f"cannot connect to the database ({label}): its extras ask for IAM authentication, which needs an "
                f"Airflow provider that is not installed: {exc}; install apache-airflow-providers-amazon (RDS, Aurora, "
                "Redshift) or apache-airflow-providers-microsoft-azure"
            ) from None
        if not isinstance(conn, psycopg.Connection):
            conn.close()
            raise DatabaseUnreachable(
                f"PostgresHook handed out a {type(conn).__module__} connection for {label}; Tidemark needs psycopg 3 "
                "(install psycopg and SQLAlchemy 2, as requirements.txt pins them)"
            )
        conn.autocommit = True
        conn.prepare_threshold = None
        return conn

    return open_connection


def _hook(conn_id: str) -> Any:
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    class TidemarkPostgresHook(PostgresHook):
        """PostgresHook with Tidemark's connection options added to whatever the connection's extras say."""

        def _create_connection(self, conn_args: dict[str, Any]) -> Any:
            return super()._create_connection({**_DEFAULTS, **conn_args, **_FORCED})

    hook = TidemarkPostgresHook(postgres_conn_id=conn_id)
    try:
        hook.connection  # noqa: B018 - fetch it now: a missing connection must say so, not fail later
    except Exception as exc:  # noqa: BLE001 - Airflow raises several types for a missing connection
        raise DatabaseUnreachable(
            f"Airflow connection {conn_id!r} is not defined ({type(exc).__name__}); set "
            f"AIRFLOW_CONN_{conn_id.upper()} or create it in the Airflow UI"
        ) from None
    return hook


def object_storage(url: str) -> tuple[Any, str]:
    """(file system, path) through Airflow's ObjectStoragePath, so ``s3://conn_id@bucket/...`` uses that connection."""
    if "://" not in url:
        from fsspec.implementations.local import LocalFileSystem

        return LocalFileSystem(), url
    from airflow.sdk import ObjectStoragePath

    p = ObjectStoragePath(url)
    return p.fs, p.path
