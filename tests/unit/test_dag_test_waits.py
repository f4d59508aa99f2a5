"""The sensor's wait under ``dags test``: due at once only while every batch left runs in the next pass."""

from __future__ import annotations

from tidemark.airflow.sensors import DAG_TEST_POKE_SECONDS, dag_test_poke_seconds


def test_due_at_once_while_the_batches_left_are_about_to_run() -> None:
    assert dag_test_poke_seconds({0: "success", 1: "scheduled", 2: None}, 4) == 0.0  # 3: not even a state yet
    assert dag_test_poke_seconds({0: "queued", 1: "failed"}, 2) == 0.0


def test_a_second_while_a_batch_waits_out_a_delay_or_nothing_is_left_to_run() -> None:
    for delayed in ("up_for_reschedule", "up_for_retry", "running", "deferred"):
        assert dag_test_poke_seconds({0: "scheduled", 1: delayed}, 2) == DAG_TEST_POKE_SECONDS, delayed
    assert dag_test_poke_seconds({0: "success", 1: "success"}, 2) == DAG_TEST_POKE_SECONDS  # settled, watermark short
