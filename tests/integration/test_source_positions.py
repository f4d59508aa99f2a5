"""Files sources that cannot do harm, and refusals that point at the line to fix, against the embedded engine.

A files source reads only inside its declaration's folder or TIDEMARK_FILES_ROOTS, symlinks resolved, and what a
file holds never reaches a message or a log beyond the one value refused, cut short. A refused value is named by
its file and the file's own line (CSV, the header counted, blank lines and quoted line breaks too), its row group
and row (Parquet), or its time (Python rows), whether Tidemark refuses it or the server does.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tidemark.connection import factory
from tidemark.declare.yaml_files import DeclarationError, load_file
from tidemark.errors import BadRow, InvalidInput, TidemarkError
from tidemark.load.loader import ValueRefused, load_batch
from tidemark.model.batch import Batch
from tidemark.model.dataset import Column, Dataset, Hypertable
from tidemark.sources import FilesSource, PythonSource
from tidemark.timescale.schema import ensure_schema

UTC = timezone.utc
T0 = datetime(2024, 3, 1, tzinfo=UTC)
DAY = Batch(0, T0, T0 + timedelta(days=1))
SECRET = "S3cretPgPass!"
PGPASS = f"127.0.0.1:5432:*:postgres:{SECRET}\n"
COLUMNS = (Column("t", "timestamptz"), Column("site", "text"), Column("humidity", "smallint", True),
           Column("code", "varchar(4)", True), Column("note", "text", True))
STEP = timedelta(seconds=2)  # 43,200 rows a day: a CSV of several of pyarrow's 1 MiB blocks


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def declare(folder: Path, url: str, fmt: str = "csv", *, level: bool = False, **keys: object) -> Dataset:
    """The readings table over ``url`` (YAML written as JSON); with ``level``, a numeric column: COPY's CSV format."""
    name = unique("pos")
    columns = [{"name": c.name, "type": c.type, "nullable": c.nullable} for c in COLUMNS]
    columns += [{"name": "level", "type": "numeric(5,1)", "nullable": True}] if level else []
    source = {"kind": "files", "url": url, "format": fmt, **keys}
    table = {"name": "readings", "schema": name, "time_column": "t", "chunk_interval": "1 day", "columns": columns,
             "source": source}
    path = folder / f"{name}.yaml"
    path.write_text(json.dumps({"name": name, "tables": [table]}, indent=1))
    return load_file(path)


def refusal(dsn: str, conn: psycopg.Connection, ds: Dataset, caplog: pytest.LogCaptureFixture,
            kind: type[Exception] = TidemarkError) -> str:
    """Load the day; it must fail with ``kind``, write nothing, and log nothing of the file: the message."""
    ensure_schema(conn, ds)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(kind) as caught:
        load_batch(factory(dsn), ds, DAY, "positions")
    text = str(caught.value)
    assert ds.name in text and T0.isoformat() in text, text
    table = ds.tables[0]
    assert conn.execute(f'SELECT count(*) FROM "{table.schema}"."{table.name}"').fetchone()[0] == 0
    return text


def csv_day(path: Path, bad: dict[int, dict[str, str]] | None = None, *, note: str = "ok") -> None:
    """A day of readings as CSV; record 5 has a line break inside a quoted note and a blank line follows record 10,
    so record k (from 0) starts on line k + 4 for k > 10 (the header is line 1)."""
    lines = ["t,site,humidity,code,note,level"]
    for k in range(int(timedelta(days=1) / STEP)):
        row = {"t": (T0 + k * STEP).isoformat(), "site": f"s{k % 7}", "humidity": str(k % 100), "code": "ab",
               "note": '"two\nlines"' if k == 5 else note, "level": "1.5", **(bad or {}).get(k, {})}
        lines.append(",".join(row.values()))
        if k == 10:
            lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def time_of(record: int) -> str:
    return (T0 + record * STEP).isoformat()


# --------------------------------------------------------------------------- where files may be read from


def test_a_symlink_inside_the_folder_pointing_at_etc_passwd_is_refused_at_read(
    dsn: str, conn: psycopg.Connection, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    csv_day(tmp_path / "data" / "a.csv")
    (tmp_path / "data" / "b.csv").symlink_to("/etc/passwd")
    ds = declare(tmp_path, "data/*.csv", count=True)  # the folder is inside: refused when b.csv is listed
    text = refusal(dsn, conn, ds, caplog, InvalidInput)
    assert f"url: file {tmp_path}/data/b.csv (from 'data/*.csv') resolves to /etc/passwd, outside" in text, text
    assert "root:" not in text and "root:" not in caplog.text
    source = ds.tables[0].source
    assert isinstance(source, FilesSource)
    with pytest.raises(InvalidInput, match="resolves to /etc/passwd"):
        source.tip(ds.tables)
    with pytest.raises(InvalidInput, match="resolves to /etc/passwd"):
        source.expected_counts(ds.tables, DAY.start, DAY.end)


def test_a_pgpass_like_file_never_reaches_a_message_or_a_log(
    dsn: str, conn: psycopg.Connection, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secrets, decl = tmp_path / "home", tmp_path / "declarations"
    secrets.mkdir()
    (secrets / ".pgpass").write_text(PGPASS)
    decl.mkdir()
    caplog.set_level(logging.DEBUG)
    for url in ("../home/.pgpass", f"file://{secrets}/.pgpass", f"{secrets}/*"):
        with pytest.raises(DeclarationError) as caught:
            declare(decl, url, delimiter=":")
        assert "key tables[0].source.url" in str(caught.value) and SECRET not in str(caught.value)
    (decl / "data").mkdir()
    (decl / "data" / "hosts.csv").symlink_to(secrets / ".pgpass")  # inside the folder, pointing out of it
    ds = declare(decl, "data/*.csv", delimiter=":")
    text = refusal(dsn, conn, ds, caplog, InvalidInput)
    assert "resolves to" in text and "key" not in text
    assert SECRET not in text and SECRET not in caplog.text and "postgres" not in caplog.text


def test_tidemark_files_roots_lets_a_declaration_read_an_outside_folder(
    dsn: str, conn: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake, decl = tmp_path / "lake", tmp_path / "declarations"
    csv_day(lake / "day.csv")
    decl.mkdir()
    monkeypatch.setenv("TIDEMARK_FILES_ROOTS", str(lake))
    ds = declare(decl, f"file://{lake}/*.csv")
    ensure_schema(conn, ds)
    assert load_batch(factory(dsn), ds, DAY, "roots").rows == {"readings": 43_200}
    monkeypatch.delenv("TIDEMARK_FILES_ROOTS")  # a worker without the setting refuses the same files at read
    with pytest.raises(InvalidInput, match="outside the declaration's folder and TIDEMARK_FILES_ROOTS"):
        load_batch(factory(dsn), ds, DAY, "roots")


# --------------------------------------------------------------------------- a refused value, at its line


@pytest.mark.parametrize(
    ("record", "bad", "message"),
    [
        (6998, {"humidity": "n/a"}, "column 'humidity' (smallint) cannot take 'n/a' (not a valid smallint)"),
        (6998, {"humidity": "70000"}, "column 'humidity' (smallint) cannot take '70000' (out of range)"),
        (31333, {"site": ""}, "has NULL in NOT NULL column 'site'"),
    ],
)
def test_a_bad_csv_value_is_named_by_the_files_own_line_and_the_rows_time(
    dsn: str, conn: psycopg.Connection, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    record: int, bad: dict[str, str], message: str
) -> None:
    csv_day(tmp_path / "data" / "day.csv", {record: bad})
    text = refusal(dsn, conn, declare(tmp_path, "data/*.csv"), caplog, BadRow)
    line = record + 4
    assert f"file {tmp_path}/data/day.csv line {line} (t={time_of(record)}): {message}" in text, text
    assert line in (7002, 31337)


@pytest.mark.parametrize(
    ("bad", "level", "message"),
    [
        ({"code": "far too long for four"}, False, "column code: value too long for type character varying(4)"),
        ({"code": "far too long for four"}, True, "column code: "),  # COPY's CSV: the quoted line break counts
        ({"level": "12345.6"}, True, "column level: \"12345.6\": numeric field overflow"),
    ],
)
def test_a_value_the_server_refuses_is_named_by_its_file_and_line_too(
    dsn: str, conn: psycopg.Connection, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    bad: dict[str, str], level: bool, message: str
) -> None:
    csv_day(tmp_path / "data" / "1.csv")  # a whole file of good rows in the same COPY first
    csv_day(tmp_path / "data" / "2.csv", {6998: bad})
    ds = declare(tmp_path, "data/*.csv", level=level)
    text = refusal(dsn, conn, ds, caplog, ValueRefused)
    assert f"file {tmp_path}/data/2.csv line 7002: the database refused {message}" in text, text


def test_no_message_holds_a_whole_row_or_a_long_value(
    dsn: str, conn: psycopg.Connection, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    long = "n/a, measured by the sensor whose calibration lapsed in January " * 3
    note = "private-note-" + "z" * 30
    csv_day(tmp_path / "data" / "day.csv", {20: {"humidity": f'"{long}"'}}, note=note)
    text = refusal(dsn, conn, declare(tmp_path, "data/*.csv"), caplog, BadRow)
    assert f"line 24 (t={time_of(20)}): column 'humidity' (smallint) cannot take {long[:40]!r}… (not a valid" in text
    assert long[:41] not in text and note not in text and "s6" not in text and note not in caplog.text


def test_a_line_that_is_not_csv_is_named_without_its_text(
    dsn: str, conn: psycopg.Connection, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    csv_day(tmp_path / "data" / "day.csv", {100: {"note": f"a,{SECRET}"}})
    text = refusal(dsn, conn, declare(tmp_path, "data/*.csv"), caplog, BadRow)
    assert f"file {tmp_path}/data/day.csv line 104: has 7 fields where the header has 6" in text, text
    assert SECRET not in text and SECRET not in caplog.text


def test_a_bad_time_in_a_csv_is_named_by_its_line(
    dsn: str, conn: psycopg.Connection, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    csv_day(tmp_path / "data" / "day.csv", {6998: {"t": "yesterday at noon"}})
    text = refusal(dsn, conn, declare(tmp_path, "data/*.csv"), caplog, BadRow)
    assert "line 7002: t 'yesterday at noon' is not a time" in text, text
    csv_day(tmp_path / "data" / "day.csv", {6998: {"t": ""}})
    text = refusal(dsn, conn, declare(tmp_path, "data/*.csv"), caplog, BadRow)
    assert "line 7002: has no t (every row needs its time)" in text, text


def test_a_bad_parquet_value_is_named_by_row_group_and_row(
    dsn: str, conn: psycopg.Connection, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    n = 10_000
    humidity = [str(k % 100) for k in range(n)]
    humidity[3017] = "n/a"
    (tmp_path / "data").mkdir()
    pq.write_table(pa.table({
        "t": pa.array([T0 + k * timedelta(seconds=5) for k in range(n)], pa.timestamp("us", "UTC")),
        "site": ["s"] * n, "humidity": humidity, "code": ["ab"] * n, "note": [None] * n,
    }), tmp_path / "data" / "day.parquet", row_group_size=1000)
    text = refusal(dsn, conn, declare(tmp_path, "data/*.parquet", "parquet"), caplog, BadRow)
    t = (T0 + 3017 * timedelta(seconds=5)).isoformat()
    assert f"file {tmp_path}/data/day.parquet row group 3, row 17 (t={t}): column 'humidity'" in text, text


def test_a_bad_python_row_is_named_by_its_time_never_by_its_whole_row(
    dsn: str, conn: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    def rows(start: datetime, end: datetime) -> Any:
        for k in range(5000):
            yield {"t": start + timedelta(seconds=k), "site": None if k == 4321 else "s", "humidity": 1, "code": "ab",
                   "note": f"private-{k}"}

    table = Hypertable("readings", "t", COLUMNS, timedelta(days=1), schema=unique("pyrows"))
    ds = Dataset(unique("pyrows"), (table,), source=PythonSource(rows))
    text = refusal(dsn, conn, ds, caplog, BadRow)
    t = (T0 + timedelta(seconds=4321)).isoformat()
    assert "row 4322 of the window from python source" in text and f"(t={t}): has NULL in NOT NULL column 'site'" in text
    assert "private-4321" not in text
