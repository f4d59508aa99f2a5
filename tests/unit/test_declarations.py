"""Column types, YAML dataset files and the catalogue: what users write, and how it is refused."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tidemark.declare import catalog
from tidemark.model.column_types import parse_type
from tidemark.declare.yaml_files import DeclarationError, load_file
from tidemark.errors import InvalidInput
from tidemark.sources import FilesSource, PythonSource, SqlSource

GOOD = """\
name: flights
description: NYC departures 2013
tables:
  - name: flights
    schema: public
    time_column: time_hour
    chunk_interval: 7 days
    segmentby: [origin]
    orderby: [time_hour]
    columns:
      - {name: time_hour, type: timestamptz}
      - {name: origin, type: text}
      - {name: carrier, type: text}
      - {name: dep_delay, type: double precision, nullable: true}
    source:
      kind: sql
      conn_id: flights_source
      query: SELECT time_hour, carrier, dep_delay FROM flights WHERE time_hour >= %(start)s AND time_hour < %(end)s
"""


@pytest.mark.parametrize(
    ("text", "sql"),
    [
        ("smallint", "smallint"), ("int", "integer"), ("INT8", "bigint"), ("float4", "real"),
        ("double precision", "double precision"), ("numeric(12, 3)", "numeric(12,3)"), ("decimal", "numeric"),
        ("varchar(20)", "character varying(20)"), ("character varying(20)", "character varying(20)"),
        ("text", "text"), ("bool", "boolean"), ("date", "date"), ("timestamp", "timestamp without time zone"),
        ("timestamptz", "timestamp with time zone"), ("timestamp(3) with time zone", "timestamp(3) with time zone"),
        ("interval", "interval"), ("uuid", "uuid"), ("json", "json"), ("jsonb", "jsonb"), ("bytea", "bytea"),
        ("text[]", "text[]"), ("integer ARRAY", "integer[]"), ("timestamp with time zone[]", "timestamp with time zone[]"),
    ],
)
def test_types_users_have_parse_to_canonical_sql(text: str, sql: str) -> None:
    assert parse_type(text).sql == sql
    assert parse_type(parse_type(text).sql).sql == sql  # format_type's spelling parses back the same


@pytest.mark.parametrize("text", ["text); DROP TABLE x; --", "geometry", "int(3)", "varchar(0)", "numeric(3,5)",
                                  "text[][]", "timestamp(9)", "", "integer'"])
def test_anything_else_is_refused_with_the_supported_list(text: str) -> None:
    with pytest.raises(InvalidInput, match="column type|varchar|numeric|precision|modifier"):
        parse_type(text)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def test_the_contract_example_loads(tmp_path: Path) -> None:
    ds = load_file(write(tmp_path, "flights.yaml", GOOD))
    t = ds.table("flights")
    assert ds.name == "flights" and ds.description == "NYC departures 2013"
    assert t.time_column == "time_hour" and t.segmentby == ("origin",) and t.chunk_interval.days == 7
    assert [c.type for c in t.cols] == ["timestamp with time zone", "text", "text", "double precision"]
    assert isinstance(t.source, SqlSource) and t.source.conn_id == "flights_source"


@pytest.mark.parametrize(("value", "mode"), [("auto", None), ("true", True), ("false", False), ("on", True)])
def test_direct_compress_is_chosen_per_dataset(tmp_path: Path, value: str, mode: bool | None) -> None:
    ds = load_file(write(tmp_path, "d.yaml", GOOD.replace("description:", f"direct_compress: {value}\ndescription:")))
    assert ds.direct_compress is mode
    assert load_file(write(tmp_path, "e.yaml", GOOD)).direct_compress is None


def test_segmentby_and_orderby_take_one_name_or_a_list(tmp_path: Path) -> None:
    t = load_file(write(tmp_path, "one.yaml", GOOD.replace("segmentby: [origin]", "segmentby: origin"))).table("flights")
    assert t.segmentby == ("origin",) and t.orderby == ("time_hour",)


def test_a_dataset_source_only_refined_by_the_tables_is_not_built_alone(tmp_path: Path) -> None:
    ds = load_file(write(tmp_path, "own.yaml", """\
        name: own
        source: {conn_id: warehouse}
        tables:
          - {name: a, time_column: t, source: {kind: sql, conn_id: other}}
        """))
    assert ds.source is None and isinstance(ds.tables[0].source, SqlSource) and ds.tables[0].source.conn_id == "other"


def test_each_kind_and_a_dataset_level_default(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    ds = load_file(write(tmp_path, "mixed.yaml", """\
        name: mixed
        source: {kind: sql, conn_id: warehouse}
        tables:
          - name: a
            time_column: t
            source: {query: "SELECT * FROM a WHERE t >= %(start)s AND t < %(end)s"}
          - name: b
            time_column: t
          - name: c
            time_column: t
            source: {kind: files, url: "data/{start:%Y/%m/%d}/*.parquet", format: parquet}
          - name: d
            time_column: t
            source: {kind: python, callable: "tests.unit.test_declarations:fetch"}
        """))
    a, b, c, d = ds.tables
    assert isinstance(a.source, SqlSource) and a.source.conn_id == "warehouse" and a.source.query
    assert b.source is None and isinstance(ds.source, SqlSource) and ds.source.query is None
    assert isinstance(c.source, FilesSource) and c.source.url.startswith(str(tmp_path / "data"))
    assert isinstance(d.source, PythonSource) and d.source.function.__name__ == "fetch"
    assert [x.columns for x in ds.tables] == [None] * 4  # read from the database at run time


def fetch(start: object, end: object) -> list[dict[str, object]]:
    return []


BAD = [
    ("unknown top-level key", "name: x\ntables: []\nowner: me\n", "key owner: unknown key"),
    ("unknown table key", GOOD.replace("    schema: public\n", "    shema: public\n"), "key tables[0].shema"),
    ("unknown source key", GOOD.replace("      conn_id:", "      conn:"), "key tables[0].source.conn"),
    ("bad type", GOOD.replace("type: double precision", "type: money"), "key tables[0].columns[3].type"),
    ("hostile column", GOOD.replace("{name: carrier,", '{name: "car\\"rier; DROP TABLE x",'),
     "key tables[0].columns[2].name"),
    ("hostile table", GOOD.replace("  - name: flights", "  - name: \"fl;ights\""), "key tables[0].name"),
    ("long identifier", GOOD.replace("{name: origin,", "{name: " + "o" * 64 + ","), "longer than 63 bytes"),
    ("non-timestamptz time column", GOOD.replace("{name: time_hour, type: timestamptz}",
                                                 "{name: time_hour, type: timestamp}"), "key tables[0].time_column"),
    ("missing time column", GOOD.replace("    time_column: time_hour\n", ""), "key tables[0].time_column: is required"),
    ("time column not a column", GOOD.replace("time_column: time_hour", "time_column: when"),
     "key tables[0].time_column"),
    ("bad dataset name", GOOD.replace("name: flights\n", "name: Flights!\n", 1), "key name"),
    ("query without window", GOOD.replace(" WHERE time_hour >= %(start)s AND time_hour < %(end)s", ""),
     "key tables[0].source"),
    ("bad interval", GOOD.replace("7 days", "a week or so"), "key tables[0].chunk_interval"),
    ("unknown kind", GOOD.replace("kind: sql", "kind: kafka"), "key tables[0].source.kind"),
    ("bad direct_compress", GOOD.replace("description:", "direct_compress: sometimes\ndescription:"),
     "key direct_compress"),
    ("not yaml", "name: [unclosed\n", "not valid YAML"),
    ("python callable missing", GOOD.replace("kind: sql", "kind: python").replace(
        "      conn_id: flights_source\n", "").replace("      query:", "      callable: nowhere.module:fn\n      x:"),
     "key tables[0].source.x"),
    ("python callable unimportable", GOOD.split("    source:")[0] + "    source: {kind: python, callable: 'no_such_mod:f'}\n",
     "cannot import"),
    # Strict types: a value of the wrong type is refused at its key, never coerced.
    ("string for an integer", GOOD.replace("      conn_id: flights_source\n", "      conn_id: flights_source\n      fetch_size: '100'\n"),
     "key tables[0].source.fetch_size: must be an integer, got '100'"),
    ("string for a boolean", GOOD.replace("nullable: true", 'nullable: "yes"'),
     "key tables[0].columns[3].nullable: must be true or false, got 'yes'"),
    ("number for segmentby", GOOD.replace("segmentby: [origin]", "segmentby: 5"),
     "key tables[0].segmentby: must be a column name or a list of column names, got 5"),
    ("mapping for orderby", GOOD.replace("orderby: [time_hour]", "orderby: {t: 1}"),
     "key tables[0].orderby: must be a column name or a list of column names, got a mapping"),
    ("number in segmentby", GOOD.replace("segmentby: [origin]", "segmentby: [origin, 5]"),
     "key tables[0].segmentby[1]: must be a column name, got 5"),
    ("union-typed source key", GOOD.split("    source:")[0]
     + "    source: {kind: python, callable: 'tests.unit.test_declarations:fetch', count: 5}\n",
     "key tables[0].source.count: must be a string, a Python callable or null, got 5"),
    ("empty file", "", "key (top level): must be a mapping, got None"),
    # Checks that need several keys still point at one of them.
    ("orderby names no column", GOOD.replace("orderby: [time_hour]", "orderby: [carrier, nope]"),
     "key tables[0].orderby[1]: table 'flights': orderby 'nope' is not one of its columns"),
    ("repeated column", GOOD.replace("{name: carrier, type: text}", "{name: origin, type: text}"),
     "key tables[0].columns[2].name: column 'origin' is declared twice (also columns[1])"),
    ("repeated table", "name: x\nsource: {kind: sql, conn_id: w}\ntables:\n  - {name: a, time_column: t}\n"
     "  - {name: a, time_column: t}\n", "key tables[1].name: table 'public.a' is declared twice (also tables[0])"),
    ("no source anywhere", "name: x\ntables:\n  - {name: a, time_column: t}\n",
     "key tables[0].source: is required: neither this table nor the dataset declares a source"),
    ("missing source key", GOOD.replace("      conn_id: flights_source\n", ""), "key tables[0].source.conn_id: is required"),
    ("refined dataset source", "name: x\nsource: {kind: sql, conn_id: w, fetch_size: '3'}\ntables:\n"
     "  - {name: a, time_column: t, source: {query: 'SELECT 1 WHERE %(start)s < %(end)s'}}\n",
     "key tables[0].source.fetch_size: must be an integer, got '3'"),
    ("shared dataset source", "name: x\nsource: {kind: sql, conn_id: w, fetch_size: '3'}\ntables:\n  - {name: a, time_column: t}\n",
     "key source.fetch_size: must be an integer, got '3'"),
]


@pytest.mark.parametrize(("case", "text", "message"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_file_is_refused_naming_the_file_and_the_key(tmp_path: Path, case: str, text: str, message: str) -> None:
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(DeclarationError) as caught:
        load_file(path)
    assert str(path) in str(caught.value)
    assert message in str(caught.value), str(caught.value)


@pytest.fixture
def datasets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("TIDEMARK_DATASETS_DIR", str(tmp_path))
    yield tmp_path


def test_a_bad_file_leaves_the_others_offered_and_running_it_fails_with_its_error(datasets_dir: Path) -> None:
    write(datasets_dir, "flights.yaml", GOOD)
    write(datasets_dir, "broken.yaml", GOOD.replace("name: flights\n", "name: broken\n", 1).replace(
        "type: double precision", "type: money"))
    write(datasets_dir, "twin.yaml", GOOD)  # the same name again
    assert "flights" in catalog.names() and "ledgers" in catalog.names() and "broken" not in catalog.names()
    messages = [e.message for e in catalog.errors()]
    assert any("broken.yaml" in m and "columns[3].type" in m for m in messages)
    assert any("twin.yaml" in m and "already declared" in m and "flights.yaml" in m for m in messages)
    with pytest.raises(InvalidInput, match=r"broken.*refused.*money"):
        catalog.get("broken")


def test_new_and_changed_files_are_seen_without_a_restart(datasets_dir: Path) -> None:
    assert "flights" not in catalog.names()
    path = write(datasets_dir, "flights.yaml", GOOD)
    assert "flights" in catalog.names()
    path.write_text(GOOD.replace("name: flights\n", "name: flights_v2\n", 1) + "# changed\n")
    assert "flights_v2" in catalog.names() and "flights" not in catalog.names()


def test_python_modules_declare_datasets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "my_datasets.py").write_text(textwrap.dedent("""\
        from tidemark import Column, Dataset, Hypertable, PythonSource

        def readings(start, end):
            return []

        TIDEMARK_DATASETS = [Dataset("my_readings", (Hypertable("readings", "t", (Column("t", "timestamptz"),),
                                     source=PythonSource(readings)),))]
        """))
    (tmp_path / "broken_datasets.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("TIDEMARK_DATASET_MODULES", "my_datasets, broken_datasets")
    assert "my_readings" in catalog.names()
    assert any("broken_datasets" in e.message and "boom" in e.message for e in catalog.errors())


def test_a_hypertable_has_one_owner_the_first_file_by_path(datasets_dir: Path) -> None:
    write(datasets_dir, "a_flights.yaml", GOOD)
    write(datasets_dir, "b_copy.yaml", GOOD.replace("name: flights\n", "name: copy\n", 1))  # public.flights again
    write(datasets_dir, "c_archive.yaml", GOOD.replace("name: flights\n", "name: archive\n", 1).replace(
        "schema: public", "schema: archive"))  # the same table name in another schema is another table
    assert {"flights", "archive"} <= set(catalog.names()) and "copy" not in catalog.names()
    mine = [e.message for e in catalog.errors() if "b_copy.yaml" in e.message]
    assert mine == [f"dataset file {datasets_dir / 'b_copy.yaml'}: key tables[0].name: table 'public.flights' is already "
                    f"declared by dataset 'flights' (dataset file {datasets_dir / 'a_flights.yaml'}); a hypertable has "
                    "one owner, so rename one of them (or its schema)"]
    with pytest.raises(InvalidInput, match=r"'copy' was refused: .*public\.flights"):
        catalog.get("copy")
    (datasets_dir / "0_copy.yaml").write_text((datasets_dir / "b_copy.yaml").read_text())
    (datasets_dir / "b_copy.yaml").unlink()
    assert "copy" in catalog.names() and "flights" not in catalog.names()  # path order decides, nothing else


def test_files_come_before_python_modules_and_code_before_files(datasets_dir: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    write(datasets_dir, "flights.yaml", GOOD)
    (tmp_path / "flights_too.py").write_text(textwrap.dedent("""\
        from tidemark import Column, Dataset, Hypertable, SqlSource

        TIDEMARK_DATASETS = Dataset("flights_too", (Hypertable("flights", "time_hour", (Column("time_hour", "timestamptz"),),
                                    source=SqlSource("w")),))
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("TIDEMARK_DATASET_MODULES", "flights_too")
    assert "flights" in catalog.names() and "flights_too" not in catalog.names()
    assert any(e.message.startswith("dataset module flights_too: key tables[0].name: table 'public.flights'")
               and "flights.yaml" in e.message for e in catalog.errors())
    catalog.register(load_file(write(tmp_path, "coded.yaml", GOOD.replace("name: flights\n", "name: coded\n", 1))))
    try:
        assert "coded" in catalog.names() and "flights" not in catalog.names()
        assert any("flights.yaml: key tables[0].name" in e.message and "registered in code" in e.message
                   for e in catalog.errors())
    finally:
        catalog.unregister("coded")


def test_the_demo_owns_its_tables_where_it_is_on(datasets_dir: Path) -> None:
    write(datasets_dir, "mine.yaml", "name: mine\nsource: {kind: sql, conn_id: w}\n"
                                     "tables: [{name: transactions, time_column: close_time}]\n")
    assert "ledgers" in catalog.names() and "mine" not in catalog.names()
    assert any("mine.yaml: key tables[0].name: table 'public.transactions' is already declared by dataset 'ledgers'"
               " (built in)" in e.message for e in catalog.errors())
