"""Which mapped batches count as failed when a cleared run plans again (issue 14: a
`--reprocess-behavior failed` rerun was failed by the map indexes its smaller plan left `removed`)."""

from __future__ import annotations

from tidemark.flows.progressive import failed_batches


def test_surplus_map_indexes_removed_by_a_smaller_replan_are_not_failures() -> None:
    # The earlier try planned two batches; the rerun plans one (batch 1's window is loaded).
    assert failed_batches({0: "success", 1: "removed"}, planned=1) == []


def test_failed_states_within_the_plan_count() -> None:
    states = {0: "failed", 1: "upstream_failed", 2: "removed", 3: "success", 4: "running"}
    assert failed_batches(states, planned=5) == [0, 1, 2]
