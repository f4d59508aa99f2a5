"""One dataset file, however broken or hostile, is refused alone: quickly, in little memory, with a short message.

Every case puts the bad file next to a good declaration in one datasets
folder and asserts what breaks when isolation does: the good dataset is still
offered (its name in ``catalog.names()``), the bad one is not, its refusal
names the file (and the key where there is one) and stays short, and reading
the folder took under 5 s and 100 MiB (tracemalloc's peak while the catalogue
reads it). Each case prints what it cost (``pytest -rP`` shows it).
"""

from __future__ import annotations

import os
import signal
import sys
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from tidemark.declare import catalog, yaml_files
from tidemark.declare.yaml_files import DeclarationError

GOOD = """\
name: good
source: {kind: sql, conn_id: warehouse}
tables:
  - name: good
    time_column: t
    columns: [{name: t, type: timestamptz}, {name: v, type: double precision}]
"""
SECONDS = 5.0
MIB = 100
LONGEST_MESSAGE = 600  # the file's path, the key and at most 300 characters of detail


def declaration(name: str, table_extra: str = "", top_extra: str = "") -> str:
    return (f"name: {name}\nsource: {{kind: sql, conn_id: warehouse}}\n{top_extra}tables:\n"
            f"  - name: {name}\n    time_column: t\n{table_extra}")


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    datasets = tmp_path / "datasets"
    datasets.mkdir()
    monkeypatch.setenv("TIDEMARK_DATASETS_DIR", str(datasets))
    (datasets / "good.yaml").write_text(GOOD)
    assert "good" in catalog.names()  # imports done and the good file cached: the time measured is the bad file's
    yield datasets


def read_folder(case: str) -> tuple[list[str], list[str]]:
    """The catalogue's names and refusals, asserting the time and memory reading the folder took.

    Timed without tracemalloc (which slows Python several times over), then
    read again, from scratch, under it for the peak of what was allocated.
    """
    started = time.perf_counter()
    names = catalog.names()
    messages = [r.message for r in catalog.errors()]
    seconds = time.perf_counter() - started
    catalog._yaml_cache.clear()
    catalog._python_cache = None
    tracemalloc.start()
    try:
        assert catalog.names() == names
        peak = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    print(f"{case}: refused in {seconds * 1000:.1f} ms, peak {peak:.2f} MiB (tracemalloc)")
    assert seconds < SECONDS, f"{case}: {seconds:.1f} s"
    assert peak < MIB, f"{case}: {peak:.0f} MiB"
    return names, messages


def assert_isolated(folder: Path, bad: str, case: str, *expected: str) -> str:
    names, messages = read_folder(case)
    assert "good" in names, names
    assert bad.split(".")[0] not in names
    mine = [m for m in messages if f"{folder / bad}" in m]
    assert len(mine) == 1, messages
    for text in expected:
        assert text in mine[0], mine[0]
    assert len(mine[0]) < LONGEST_MESSAGE, len(mine[0])
    return mine[0]


# An alias bomb: nine levels of nine aliases each, under 500 bytes that expand to 9**9 strings (GBs once printed).
_LEVELS = "abcdefghi"
BOMB_NAME = "[" + ", ".join(
    ["&a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"&{x} [{', '.join(['*' + prev] * 9)}]" for prev, x in zip(_LEVELS, _LEVELS[1:])]) + "]"

CASES: list[tuple[str, str, tuple[str, ...]]] = [
    ("segmentby a number", declaration("bad", "    segmentby: 5\n"),
     ("key tables[0].segmentby: must be a column name or a list of column names, got 5",)),
    ("tables a number", "name: bad\ntables: 5\n", ("key tables: must be a list, got 5",)),
    ("name a list", "name: [bad]\ntables: []\n", ("key name:",)),
    ("nullable a string", declaration("bad", "    columns: [{name: t, type: timestamptz, nullable: 'no'}]\n"),
     ("key tables[0].columns[0].nullable: must be true or false, got 'no'",)),
    ("unhashable source kind", "name: bad\nsource: {kind: [sql]}\ntables: [{name: bad, time_column: t}]\n",
     ("key source.kind: must be one of", "got ['sql']")),
    ("unhashable table source kind", "name: bad\ntables: [{name: bad, time_column: t, source: {kind: [sql]}}]\n",
     ("key tables[0].source.kind: must be one of",)),
    ("50,000 nested [", "name: bad\ntables: " + "[" * 50_000 + "]" * 50_000 + "\n", ("not valid YAML", "nesting depth")),
    ("deep block nesting", "name: bad\ntables:\n" + "".join(" " * i + "- \n" for i in range(1, 40)) + " " * 40 + "- x\n",
     ("nested deeper than 32 levels",)),
    ("duplicate source key", declaration("bad", top_extra="source: {kind: sql, conn_id: other}\n"),
     ("key source: is given twice (lines 2 and 3)",)),
    ("duplicate table key", declaration("bad", "    time_column: u\n"), ("key tables[0].time_column: is given twice",)),
    ("alias bomb as a table name", "name: bad\nsource: {kind: sql, conn_id: w}\ntables:\n  - time_column: t\n"
     f"    name: {BOMB_NAME}\n", ("key tables[0].name[0]: anchor &a", "no anchors or aliases")),
    ("an alias alone", "name: bad\ntables: *nowhere\n", ("key tables: alias *nowhere",)),
    ("merge key", declaration("bad", "    <<: {schema: x}\n"), ("key tables[0]: merge key <<",)),
    ("two documents", GOOD.replace("good", "bad") + "---\nname: other\n", ("another starts at line 7",)),
    ("python tag", declaration("bad", "    chunk_interval: !!python/object/apply:os.system [echo]\n"),
     ("tables[0].chunk_interval: tag tag:yaml.org,2002:python/object/apply:os.system",)),
    ("50,000 list items", "name: bad\ntables: [" + "1," * 60_000 + "]\n", ("holds more than 50,000 values",)),
    ("5,000-digit integer", "name: bad\ntables: " + "9" * 5000 + "\n", ("not valid YAML", "4300 digits")),
    ("long value echoed", "name: " + "N" * 100_000 + "\ntables: []\n", ("key name: dataset name 'NNNN", "(100,000 characters)")),
    ("long key echoed", "name: bad\n" + "k" * 1000 + ": 1\ntables: []\n", ("(1,000 characters)",)),
]


@pytest.mark.parametrize(("case", "text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_a_bad_file_is_refused_alone(folder: Path, case: str, text: str, expected: tuple[str, ...]) -> None:
    (folder / "bad.yaml").write_text(text)
    message = assert_isolated(folder, "bad.yaml", case, *expected)
    assert "N" * 61 not in message and "k" * 61 not in message and "lol, lol, lol" not in message


def test_non_utf8_bytes_are_refused(folder: Path) -> None:
    (folder / "latin1.yaml").write_bytes(declaration("latin1").encode() + b"    # caf\xe9\n")
    assert_isolated(folder, "latin1.yaml", "non-UTF-8", "is not UTF-8: byte 0xe9 at line 6")


def test_a_file_over_the_limit_is_refused_from_its_size_unread(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with (folder / "huge.yaml").open("wb") as f:
        f.truncate(60 * 2**20)  # 60 MB, sparse: reading it would cost the memory the test bounds
    opened: list[str] = []
    real_open = os.open

    def spy(path: str | os.PathLike[str], *args: int, **kwargs: int) -> int:
        opened.append(os.fspath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    assert_isolated(folder, "huge.yaml", "60 MB file", "62,914,560 bytes, over the 1,048,576-byte limit",
                    "TIDEMARK_DATASET_FILE_MAX_BYTES")
    assert str(folder / "huge.yaml") not in opened


def test_the_size_limit_is_a_setting(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (folder / "padded.yaml").write_text(declaration("padded") + "#" * 3000 + "\n")
    assert "padded" in catalog.names()
    monkeypatch.setenv("TIDEMARK_DATASET_FILE_MAX_BYTES", "2000")
    assert_isolated(folder, "padded.yaml", "over a lowered limit", "over the 2,000-byte limit")
    monkeypatch.setenv("TIDEMARK_DATASET_FILE_MAX_BYTES", "2k")
    assert not {"good", "padded"} & set(catalog.names())
    assert any("TIDEMARK_DATASET_FILE_MAX_BYTES='2k' is not valid" in e.message for e in catalog.errors())


@pytest.fixture
def alarm() -> Iterator[None]:
    """Fail, rather than hang the run, if anything blocks: a FIFO opened without O_NONBLOCK would."""
    def fail(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError("blocked reading a dataset file")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(10)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("kind", ["fifo", "symlink to a fifo", "symlink to a device", "directory", "dangling symlink"])
def test_anything_but_a_regular_file_is_refused_without_blocking(folder: Path, tmp_path: Path, kind: str,
                                                                  alarm: None) -> None:
    path = folder / "odd.yaml"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink to a fifo":
        os.mkfifo(tmp_path / "pipe")
        path.symlink_to(tmp_path / "pipe")
    elif kind == "symlink to a device":
        path.symlink_to("/dev/zero")
    elif kind == "directory":
        path.mkdir()
    else:
        path.symlink_to(tmp_path / "missing.yaml")
    expected = {"fifo": "is a named pipe (FIFO), not a regular file", "symlink to a fifo": "(through a symlink)",
                "symlink to a device": "is a device (through a symlink)", "directory": "is a directory",
                "dangling symlink": "cannot read: No such file or directory"}[kind]
    assert_isolated(folder, "odd.yaml", kind, expected)


def test_a_fifo_swapped_in_after_the_stat_is_caught_by_fstat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              alarm: None) -> None:
    pipe, regular = tmp_path / "swapped.yaml", tmp_path / "regular.yaml"
    os.mkfifo(pipe)
    regular.write_text(GOOD)
    real_stat = os.stat
    # The path checked is a regular file; by the time it is opened, a FIFO: the open must not block.
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: real_stat(regular if Path(p) == pipe else p, *a, **k))
    with pytest.raises(DeclarationError, match=r"swapped.yaml: is a named pipe \(FIFO\), not a regular file"):
        yaml_files.read_text(pipe, 2**20)


def test_any_other_failure_reading_one_file_refuses_it_alone(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (folder / "buggy.yaml").write_text(declaration("buggy"))
    real = catalog.load_file

    def load_file(path: Path, max_bytes: int | None = None) -> object:
        if path.name == "buggy.yaml":
            raise ZeroDivisionError("y" * 100_000)  # a bug of ours, met by one file
        return real(path, max_bytes)

    monkeypatch.setattr(catalog, "load_file", load_file)
    message = assert_isolated(folder, "buggy.yaml", "any other exception", "cannot be read: ZeroDivisionError: yyy")
    assert "y" * 301 not in message


def _module(tmp_path: Path, body: str) -> str:
    name = f"decl_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(body)
    return name


MODULE_FAILURES = [
    ("raises", "raise RuntimeError('boom ' + 'z' * 1_000_000)", "RuntimeError: boom zzz"),
    ("exits", "import sys\nsys.exit('leaving ' + 'z' * 1_000_000)", "SystemExit: leaving zzz"),
    ("unprintable", "class Odd(Exception):\n    def __str__(self):\n        raise ValueError('no')\nraise Odd()",
     "Odd: (its message cannot be shown)"),
    ("no datasets", "X = 1", "InvalidInput: it defines no TIDEMARK_DATASETS"),
    ("not datasets", "TIDEMARK_DATASETS = ['z' * 1_000_000]", "gave str, not a tidemark Dataset"),
]


@pytest.mark.parametrize(("case", "body", "expected"), MODULE_FAILURES, ids=[m[0] for m in MODULE_FAILURES])
def test_a_python_module_that_fails_is_refused_alone(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     case: str, body: str, expected: str) -> None:
    good = _module(tmp_path, "from tidemark import Column, Dataset, Hypertable, SqlSource\nTIDEMARK_DATASETS = "
                             "Dataset('from_module', (Hypertable('from_module', 't', (Column('t', 'timestamptz'),),"
                             " source=SqlSource('w')),))\n")
    bad = _module(tmp_path, body)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("TIDEMARK_DATASET_MODULES", f"{bad},{good}")
    names, messages = read_folder(f"module that {case}")
    assert {"good", "from_module"} <= set(names)
    mine = [m for m in messages if f"dataset module {bad}:" in m]
    assert len(mine) == 1 and expected in mine[0] and len(mine[0]) < LONGEST_MESSAGE, messages
    sys.modules.pop(bad, None)


def test_ctrl_c_while_importing_a_module_still_stops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = _module(tmp_path, "raise KeyboardInterrupt")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("TIDEMARK_DATASET_MODULES", name)
    with pytest.raises(KeyboardInterrupt):
        catalog.names()


def test_every_echoed_value_is_cut_short(tmp_path: Path) -> None:
    long = "q" * 5000
    for text in (declaration("x", f"    columns: [{{name: t, type: timestamptz}}, {{name: {long}, type: text}}]\n"),
                 declaration("x", f"    chunk_interval: {long}\n"),
                 f"name: x\nsource: {{kind: sql, conn_id: w, fetch_size: '{long}'}}\ntables: [{{name: a, time_column: t}}]\n",
                 f"name: x\nsource: {{kind: {long}}}\ntables: [{{name: a, time_column: t}}]\n",
                 declaration("x", f"    segmentby: [{long}]\n")):
        path = tmp_path / "long.yaml"
        path.write_text(text)
        with pytest.raises(DeclarationError) as caught:
            yaml_files.load_file(path)
        assert "q" * 61 not in str(caught.value) and len(str(caught.value)) < LONGEST_MESSAGE, str(caught.value)
