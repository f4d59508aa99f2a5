"""Input that fails at once, at the key to fix: invisible characters in names, chunks finer than a minute,
a dry_run that is not a boolean. No database: all of it is refused before one.
"""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tidemark.declare.yaml_files import DeclarationError, load_file
from tidemark.errors import InvalidInput
from tidemark.flows.request import BackfillRequest
from tidemark.model.dataset import Column, Dataset, Hypertable


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
