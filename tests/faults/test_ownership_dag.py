"""A run whose dataset does not own its tables, under real Airflow (dag.test()): failed at once, never retried."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.conftest import load_through_library, rows_in
from tests.dags.test_backfill_dag import conf, load_dag
from tests.integration.test_ownership import intruder
from tidemark.connection import connect
from tidemark.flows import backfill
from tidemark.model.dataset import Dataset

UTC = timezone.utc
START = datetime(2024, 11, 1, tzinfo=UTC)


def test_a_dataset_on_another_datasets_table_fails_its_plan_once_and_writes_nothing(
    registered_dataset: Dataset, airflow_conn: str, dsn: str, capfd: pytest.CaptureFixture[str]
) -> None:
    load_through_library(dsn, backfill.BackfillRequest.from_params(conf(registered_dataset, START, 12)), "owner-run")
    with connect(dsn) as conn:
        before = rows_in(conn, registered_dataset, START, START + timedelta(hours=12))
    with intruder(registered_dataset) as other:
        run = load_dag().test(run_conf=conf(other, START + timedelta(hours=6), 6))
        out = capfd.readouterr()
        with connect(dsn) as conn:
            assert rows_in(conn, registered_dataset, START, START + timedelta(hours=12)) == before
            assert conn.execute("SELECT count(*) FROM tidemark.batch_ledger WHERE dataset = %s",
                                (other.name,)).fetchone()[0] == 0
    assert run.state == "failed"
    tis = {ti.task_id: ti for ti in run.get_task_instances() if ti.map_index in (-1, 0)}
    assert tis["plan"].state == "failed" and tis["plan"].try_number == 1, "an input error is not retried"
    assert tis["plan"].max_tries >= 1, "the plan task does have retries, which this failure must not use"
    assert "insert_batch" not in tis or tis["insert_batch"].state != "success"
    assert f"owned by dataset {registered_dataset.name!r}" in out.out + out.err
