"""Input that fails at once, at the key to fix: files outside the allowed folders, invisible characters in
names, chunks finer than a minute, a dry_run that is not a boolean. No database: all of it is refused before one.
"""

from __future__ import annotations

import os
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tidemark import config
from tidemark.declare.yaml_files import DeclarationError, load_file
from tidemark.errors import InvalidInput
from tidemark.flows.request import BackfillRequest
from tidemark.model.dataset import Column, Dataset, Hypertable
from tidemark.sources import FilesSource


def files_declaration(folder: Path, url: str, extra: str = "") -> Path:
    path = folder / "readings.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: readings
        tables:
          - name: readings
            time_column: t
            columns: [{{name: t, type: timestamptz}}, {{name: v, type: text}}]
            source: {{kind: files, url: "{url}", format: csv{extra}}}
        """))
    return path


@pytest.mark.parametrize("url", ["file:///etc/passwd", "../../../../../../../../etc/passwd", "../../etc/passwd",
                                 "/etc/passwd", "file:///etc/{start:%Y}/*.csv", "file://etc/passwd",
                                 "simplecache::file:///etc/passwd", "zip://passwd"])
def test_a_files_url_outside_the_declarations_folder_is_refused_at_its_key(tmp_path: Path, url: str) -> None:
    folder = tmp_path / "a" / "b"
    folder.mkdir(parents=True)
    with pytest.raises(DeclarationError) as caught:
        load_file(files_declaration(folder, url))
    assert "key tables[0].source.url: " in str(caught.value), caught.value


def test_a_relative_path_and_a_glob_below_the_folder_are_fine(tmp_path: Path) -> None:
    ds = load_file(files_declaration(tmp_path, "data/{start:%Y/%m/%d}/*.csv"))
    source = ds.tables[0].source
    assert isinstance(source, FilesSource) and source.url == f"{tmp_path}/data/{{start:%Y/%m/%d}}/*.csv"
    load_file(files_declaration(tmp_path, f"file://{tmp_path}/x.csv"))
    load_file(files_declaration(tmp_path, "s3://aws_default@bucket/{start:%Y}/*.csv"))  # remote: not restricted here


def test_a_symlinked_folder_pointing_outside_is_refused_at_declaration(tmp_path: Path) -> None:
    (tmp_path / "etc").symlink_to("/etc")
    with pytest.raises(DeclarationError, match=r"key tables\[0\].source.url: 'etc/passwd' resolves to /etc/passwd, outside"):
        load_file(files_declaration(tmp_path, "etc/passwd"))


def test_tidemark_files_roots_allows_an_outside_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lake, decl = tmp_path / "lake", tmp_path / "declarations"
    lake.mkdir()
    decl.mkdir()
    with pytest.raises(DeclarationError, match="TIDEMARK_FILES_ROOTS"):
        load_file(files_declaration(decl, f"{lake}/*.csv"))
    monkeypatch.setenv("TIDEMARK_FILES_ROOTS", os.pathsep.join(["/nowhere", str(lake)]))
    assert load_file(files_declaration(decl, f"{lake}/*.csv")).tables[0].source is not None
    assert load_file(files_declaration(decl, f"file://{lake}/*.csv")).tables[0].source is not None
    with pytest.raises(DeclarationError, match="key tables.0..source.url"):
        load_file(files_declaration(decl, f"{lake}/../*.csv"))


@pytest.mark.parametrize("value", ["relative/lake", f"/abs{os.pathsep}relative"])
def test_tidemark_files_roots_takes_absolute_folders_only(value: str) -> None:
    with pytest.raises(config.InvalidSetting, match="TIDEMARK_FILES_ROOTS=.*absolute folders"):
        config.files_roots({"TIDEMARK_FILES_ROOTS": value})
    with pytest.raises(config.InvalidSetting, match="TIDEMARK_FILES_ROOTS"):
        config.load({"TIDEMARK_FILES_ROOTS": value})
    assert config.files_roots({}) == () and config.files_roots({"TIDEMARK_FILES_ROOTS": "/a"}) == (Path("/a"),)


def test_a_python_files_source_needs_base_dir_for_a_relative_path_or_a_root_for_an_absolute_one(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="url: 'data/x.csv': a relative path needs the declaration's folder"):
        FilesSource("data/x.csv", "csv")
    with pytest.raises(InvalidInput, match="url: .*TIDEMARK_FILES_ROOTS is unset"):
        FilesSource(f"{tmp_path}/x.csv", "csv")
    assert FilesSource("data/x.csv", "csv", base_dir=tmp_path).url == f"{tmp_path}/data/x.csv"
    assert FilesSource("gs://bucket/x.csv", "csv").url == "gs://bucket/x.csv"


TABLE = """\
    name: x
    source: {{kind: sql, conn_id: w, query: "SELECT 1 WHERE %(start)s < %(end)s"}}
    tables:
      - name: {name}
        time_column: t
        chunk_interval: {chunk}
        segmentby: {segmentby}
        columns: [{{name: t, type: timestamptz}}, {{name: site, type: text}}]
    """


def declared(tmp_path: Path, name: str = "readings", chunk: str = "1 day", segmentby: str = "[site]") -> Dataset:
    path = tmp_path / "x.yaml"
    path.write_text(textwrap.dedent(TABLE).format(name=name, chunk=chunk, segmentby=segmentby))
    return load_file(path)


@pytest.mark.parametrize("name", ['"read\\u202eings"', '"read\\u200bings"', '"read\\u2028ings"', '"read\\ue000ings"',
                                  '"read\\x85ings"'])
def test_a_table_name_with_an_invisible_or_control_character_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(DeclarationError, match=r"key tables\[0\]\.name: .*invisible or control character U\+"):
        declared(tmp_path, name=name)
    with pytest.raises(InvalidInput, match=r"U\+202E \(RIGHT-TO-LEFT OVERRIDE\)"):
        Hypertable("read\u202egnidaer", "t")
    with pytest.raises(InvalidInput, match=r"U\+200F"):
        Column("site\u200f", "text")
    assert declared(tmp_path, name='"relevés"').tables[0].name == "relevés"  # letters of any script are names


@pytest.mark.parametrize("chunk", ["1 microsecond", "59 seconds", "0.5 minutes"])
def test_a_chunk_interval_under_a_minute_is_refused_at_its_key(tmp_path: Path, chunk: str) -> None:
    with pytest.raises(DeclarationError, match=r"key tables\[0\]: table 'readings': chunk_interval must be at least 1 minute"):
        declared(tmp_path, chunk=chunk)
    with pytest.raises(InvalidInput, match="chunk_interval must be at least 1 minute"):
        Hypertable("readings", "t", chunk_interval=chunk)
    assert declared(tmp_path, chunk="1 minute").tables[0].chunk_interval == timedelta(minutes=1)


@pytest.mark.parametrize(("segmentby", "message"), [("{site: 1}", "got a mapping"), ("5", "got 5"),
                                                    ("[[site]]", "must be a column name, got a list")])
def test_segmentby_takes_only_column_names(tmp_path: Path, segmentby: str, message: str) -> None:
    with pytest.raises(DeclarationError, match=r"key tables\[0\]\.segmentby.*" + message):
        declared(tmp_path, segmentby=segmentby)
    with pytest.raises(InvalidInput, match="a column name or a list of column names, got dict"):
        Hypertable("readings", "t", segmentby={"site": 1})  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["yes", "false", 1, None])
def test_dry_run_must_be_a_boolean(registered_dataset: Dataset, value: object) -> None:
    params = {"dataset": registered_dataset.name, "start": datetime(2024, 1, 1, tzinfo=UTC).isoformat(),
              "end": datetime(2024, 1, 2, tzinfo=UTC).isoformat(), "batch_interval": "6 hours"}
    with pytest.raises(InvalidInput, match="dry_run must be true or false"):
        BackfillRequest.from_params({**params, "dry_run": value})
    assert BackfillRequest.from_params({**params, "dry_run": True}).dry_run is True
    assert BackfillRequest.from_params(params).dry_run is False
