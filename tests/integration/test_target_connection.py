"""The target connection is PostgresHook's: extras behave as for any other Postgres task.

The embedded engine ignores startup parameters and declines SSL, so this runs
against a real PostgreSQL 15 with SSL on (a self-signed certificate that the
connection's ``sslrootcert`` extra must be used to verify).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import free_port
from tidemark.airflow import hooks
from tidemark.connection import DatabaseUnreachable

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SECRET = "S3cret-Hook-pw-77"


class RealPostgres:
    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.data = root / "data"
        self.ca = root / "server.crt"

    def _run(self, *cmd: str) -> None:
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            cmd = ("runuser", "-u", "postgres", "--", *cmd)
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{cmd} failed:\n{done.stdout}\n{done.stderr}")

    def start(self) -> None:
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=md5",
                  f"--pwfile={self.root / 'pw'}", "-E", "UTF8")
        key = self.data / "server.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(self.ca)],
                       check=True, capture_output=True, timeout=60)
        key.chmod(0o600)
        if os.geteuid() == 0:
            pg = pwd.getpwnam("postgres")
            os.chown(key, pg.pw_uid, pg.pw_gid)
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.root}'\n"
                    f"ssl = on\nssl_cert_file = '{self.ca}'\nssl_key_file = '{key}'\nfsync = off\n")
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-w", "start")

    def stop(self) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")


@pytest.fixture(scope="module")
def real_pg() -> Iterator[RealPostgres]:
    root = Path(tempfile.mkdtemp(prefix="tidemark-pg15-"))
    root.chmod(0o755)
    (root / "pw").write_text(SECRET + "\n")
    if os.geteuid() == 0:
        pg = pwd.getpwnam("postgres")
        os.chown(root, pg.pw_uid, pg.pw_gid)
        os.chown(root / "pw", pg.pw_uid, pg.pw_gid)
    server = RealPostgres(root, free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def airflow_connection(monkeypatch: pytest.MonkeyPatch, pg: RealPostgres, **extra: Any) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_TIDEMARK_TIMESCALE", json.dumps({
        "conn_type": "postgres", "host": "localhost", "port": pg.port, "login": "postgres",
        "password": SECRET, "schema": "postgres", "extra": extra,
    }))


def test_extras_reach_the_connection_as_for_any_postgres_task(real_pg: RealPostgres, monkeypatch: pytest.MonkeyPatch) -> None:
    airflow_connection(monkeypatch, real_pg, sslmode="verify-full", sslrootcert=str(real_pg.ca),
                       client_encoding="LATIN1", options="-c lock_timeout=7s", application_name="tidemark-hook-test")
    with hooks.connection_factory()() as conn:
        assert isinstance(conn, psycopg.Connection)
        assert conn.autocommit and conn.prepare_threshold is None  # what the embedded engine needs
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0] is True
        assert conn.execute("SHOW client_encoding").fetchone()[0] == "LATIN1"
        assert conn.execute("SHOW lock_timeout").fetchone()[0] == "7s"
        assert conn.execute("SHOW application_name").fetchone()[0] == "tidemark-hook-test"


def test_defaults_when_the_extras_say_nothing(real_pg: RealPostgres, monkeypatch: pytest.MonkeyPatch) -> None:
    airflow_connection(monkeypatch, real_pg)
    with hooks.connection_factory("tidemark_timescale")() as conn:
        assert conn.execute("SHOW application_name").fetchone()[0] == "tidemark"
        assert conn.autocommit and conn.prepare_threshold is None


def test_a_certificate_that_does_not_verify_fails_naming_the_connection(
    real_pg: RealPostgres, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    other_ca = tmp_path / "other.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=other",
                    "-keyout", str(tmp_path / "other.key"), "-out", str(other_ca)], check=True, capture_output=True)
    airflow_connection(monkeypatch, real_pg, sslmode="verify-full", sslrootcert=str(other_ca))
    with pytest.raises(DatabaseUnreachable) as err:
        hooks.connection_factory()()
    message = str(err.value)
    assert message.startswith(f"cannot connect to the database (Airflow connection 'tidemark_timescale' -> localhost:{real_pg.port}/postgres)")
    assert "certificate verify failed" in message and SECRET not in message


def test_iam_extras_take_the_hooks_iam_path(real_pg: RealPostgres, monkeypatch: pytest.MonkeyPatch) -> None:
    """`"iam": true` asks for an RDS token instead of the stored password; without the amazon provider, say so."""
    airflow_connection(monkeypatch, real_pg, iam=True, aws_conn_id="aws_default")
    with pytest.raises(DatabaseUnreachable, match="IAM authentication.*apache-airflow-providers-amazon") as err:
        hooks.connection_factory()()
    assert SECRET not in str(err.value)


def test_a_missing_connection_says_how_to_define_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_TIDEMARK_NOWHERE", raising=False)
    with pytest.raises(DatabaseUnreachable, match="Airflow connection 'tidemark_nowhere' is not defined.*AIRFLOW_CONN_TIDEMARK_NOWHERE"):
        hooks.connection_factory("tidemark_nowhere")()
