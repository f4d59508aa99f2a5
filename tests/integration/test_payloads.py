"""The XCom payloads a real run produces have exactly the keys (and JSON types) of tidemark.model.payloads' TypedDicts."""

from __future__ import annotations

import json
import types
import typing
from datetime import datetime, timedelta, timezone
from typing import Any, NotRequired, Required, get_args, get_origin, get_type_hints

import pytest

from tests.conftest import registered
from tidemark.flows import backfill, progressive
from tidemark.flows.request import BackfillRequest
from tidemark.model import payloads
from tidemark.model.batch import Batch
from tidemark.model.run_plan import PayloadMismatch, RunPlan
from tidemark.connection import factory
from tidemark.model.dataset import Dataset

UTC = timezone.utc
START = datetime(2024, 7, 1, tzinfo=UTC)


def conforms(value: Any, hint: Any, where: str) -> list[str]:
    """Problems of ``value`` (decoded JSON) against the type ``hint``; empty when it conforms."""
    origin = get_origin(hint)
    if origin in (NotRequired, Required):
        return conforms(value, get_args(hint)[0], where)
    if origin in (typing.Union, types.UnionType):
        options = [conforms(value, h, where) for h in get_args(hint)]
        return [] if any(not o for o in options) else min(options, key=len)
    if hint is type(None):
        return [] if value is None else [f"{where}: {value!r} is not null"]
    if typing.is_typeddict(hint):
        if not isinstance(value, dict):
            return [f"{where}: not an object"]
        fields = get_type_hints(hint, include_extras=True)
        problems = [f"{where}: unexpected key {k!r}" for k in value if k not in fields]
        problems += [f"{where}: missing key {k!r}" for k in hint.__required_keys__ if k not in value]
        for k, h in fields.items():
            if k in value:
                problems += conforms(value[k], h, f"{where}.{k}")
        return problems
    if origin is list:
        return [p for i, v in enumerate(value) for p in conforms(v, get_args(hint)[0], f"{where}[{i}]")] \
            if isinstance(value, list) else [f"{where}: not a list"]
    if origin is dict:
        return [p for k, v in value.items() for p in conforms(v, get_args(hint)[1], f"{where}[{k!r}]")] \
            if isinstance(value, dict) else [f"{where}: not an object"]
    if hint is float:
        return [] if isinstance(value, (int, float)) and not isinstance(value, bool) else [f"{where}: {value!r} not a number"]
    if hint in (int, str, bool):
        ok = isinstance(value, hint) and (hint is bool or not isinstance(value, bool))
        return [] if ok else [f"{where}: {value!r} is not {hint.__name__}"]
    raise AssertionError(f"{where}: no check for {hint!r}")


def via_xcom(value: Any) -> Any:
    """What the other side of XCom gets: JSON, round-tripped."""
    return json.loads(json.dumps(value))


@pytest.fixture
def ds(dataset: Dataset) -> Any:
    with registered(dataset) as d:
        yield d


def test_a_real_runs_payloads_match_their_types(dsn: str, ds: Dataset) -> None:
    connect = factory(dsn)
    req = BackfillRequest.from_params({"dataset": ds.name, "start": START.isoformat(),
                                       "end": (START + timedelta(hours=6)).isoformat(), "batch_interval": "3 hours"})
    planned = via_xcom(backfill.plan_run(connect, req, "payload-types"))
    assert conforms(planned, payloads.Planned, "planned") == []
    plan = RunPlan.of(planned["plan"])
    assert plan.to_payload() == planned["plan"], "the plan reads back from XCom to the same plan"
    results = {b["index"]: via_xcom(backfill.insert_batch(connect, plan, plan.batch_of(b))) for b in planned["batches"]}
    for i, r in results.items():
        assert conforms(r, payloads.BatchResultPayload, f"result {i}") == []
    states = {i: "success" for i in results}
    progressive.poke(connect, plan, states)
    report = via_xcom(backfill.finalize(connect, plan, states, results))
    assert conforms(report, payloads.Report, "report") == []

    dry = BackfillRequest.from_params({"dataset": ds.name, "start": START.isoformat(),
                                       "end": (START + timedelta(hours=6)).isoformat(), "dry_run": True})
    dry_planned = via_xcom(backfill.plan_run(connect, dry, "payload-dry"))
    assert conforms(dry_planned["plan"], payloads.PlanPayload, "dry plan") == []
    assert dry_planned["plan"]["dry_run"] is True and dry_planned["batches"] == [], "a dry run maps no batch"
    # The windows were loaded just above: the dry run's plan says so (skipped), and would load nothing.
    assert dry_planned["plan"]["skipped_windows"] == dry_planned["plan"]["total_windows"] >= 1


def test_a_payload_of_the_wrong_shape_is_named_at_the_boundary() -> None:
    with pytest.raises(PayloadMismatch, match="the plan lacks batch_interval, batches, dataset"):
        RunPlan.of({"run_id": "x", "start": "s", "end": "e", "total_windows": 1, "skipped_windows": 0,
                    "planned_batches": 1, "dry_run": False})
    with pytest.raises(PayloadMismatch, match="the plan is a list"):
        RunPlan.of([0, "2024-01-01", "2024-01-02"])  # type: ignore[arg-type]
    plan = RunPlan("r", "d", START, START + timedelta(hours=2), timedelta(hours=1),
                   (Batch(0, START, START + timedelta(hours=1)), Batch(1, START + timedelta(hours=1), START + timedelta(hours=2))))
    with pytest.raises(PayloadMismatch, match="is not batch 1 of the run's plan"):
        plan.batch_of({"index": 1, "start": START.isoformat(), "end": (START + timedelta(hours=1)).isoformat()})
