"""How a failed compress_chunk is taken: done by another session, a lost lock race to look at, or a failure."""

from __future__ import annotations

import psycopg
import pytest

from tidemark import faults
from tidemark.timescale import compressor


@pytest.mark.parametrize(("exc", "outcome"), [
    (psycopg.errors.DuplicateObject('chunk "_hyper_1_2_chunk" is already compressed'), compressor.DONE),
    (psycopg.errors.DuplicateObject('relation "x" already exists'), compressor.FAIL),
    (psycopg.errors.LockNotAvailable("canceling statement due to lock timeout"), compressor.LOOK),
    (psycopg.errors.DeadlockDetected("deadlock detected"), compressor.LOOK),
    (psycopg.errors.SerializationFailure("could not serialize access"), compressor.LOOK),
    (psycopg.errors.CheckViolation("check"), compressor.FAIL),
    (psycopg.errors.DiskFull("disk full"), compressor.FAIL),
    (faults.InjectedFault("injected"), compressor.FAIL),
], ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v))
def test_race_outcome(exc: BaseException, outcome: str) -> None:
    assert compressor.race_outcome(exc) == outcome


def test_a_fault_can_raise_a_named_psycopg_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDEMARK_FAULTS", "compress.error:LockNotAvailable@*")
    with pytest.raises(psycopg.errors.LockNotAvailable, match="injected fault compress.error"):
        faults.check("compress.error")
    monkeypatch.setenv("TIDEMARK_FAULTS", "compress.error:DuplicateObject@*")
    with pytest.raises(psycopg.errors.DuplicateObject) as caught:
        faults.check("compress.error", None, 'chunk "c" is already compressed')
    assert compressor.already_compressed(caught.value) and caught.value.sqlstate == "42710"
    monkeypatch.setenv("TIDEMARK_FAULTS", "compress.error:NoSuchError@*")
    with pytest.raises(faults.InjectedFault, match="not a psycopg.errors class"):
        faults.check("compress.error")
    monkeypatch.setenv("TIDEMARK_FAULTS", "compress.error@*")
    with pytest.raises(faults.InjectedFault):
        faults.check("compress.error")
