"""One interval grammar: the trigger forms' JSON-schema pattern and ``parse_interval`` agree on every case.

Each case goes to three judges: the parser, ``jsonschema`` with the very
Param schemas the DAGs build (what Airflow checks at trigger time), and
node's ECMA-262 ``RegExp`` (what the browser form checks).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import jsonschema
import pytest

from tidemark.airflow import params
from tidemark.errors import InvalidInput
from tidemark.model.timeparse import INTERVAL_PATTERN, parse_interval

# ok: both accept. syntax: both refuse. value: well-formed, so the form lets it
# through, and the parser refuses it with a message saying what to change.
CASES: dict[str, str] = {
    # the spellings the old form pattern refused although the parser took them
    "1 day 06:00:00": "ok",
    ".5 hours": "ok",
    "1 day, 6 hours and 30 minutes": "ok",
    "06:00:00": "ok",
    "5.": "syntax",
    "5. hours": "ok",
    "+6 hours": "ok",
    "1 day -06:00:00": "ok",
    "1 day,06:00:00": "ok",
    "6h30m": "ok",
    "6H": "ok",
    "1 WEEK": "ok",
    "90s": "ok",
    "250 ms": "ok",
    "1 Day And 2 Hours": "ok",
    " 3 hours ": "ok",
    "3 hours,": "ok",
    ", 3 hours": "ok",
    "PT6H": "ok",
    "pt6h": "ok",
    "P1D": "ok",
    "P1DT12H": "ok",
    "P1W": "ok",
    "PT1.5H": "ok",
    "PT0,5H": "ok",
    "1 day 6 hours": "ok",
    "3 hours": "ok",
    # refused by both
    "soon": "syntax",
    "": "syntax",
    "6": "syntax",
    "6 parsecs": "syntax",
    "5 hoursx": "syntax",
    "6 hours and": "ok",
    "and": "syntax",
    "1 month": "syntax",
    "2 years": "syntax",
    "P1M": "syntax",
    "P1Y": "syntax",
    "P": "syntax",
    "PT": "syntax",
    "P1DT": "syntax",
    "06:00": "syntax",
    "1 day 06:00:00 2 hours": "syntax",
    "06:00:00 1 day": "syntax",
    "1 day 06:00:00,": "syntax",
    "\u0665 hours": "syntax",  # an Arabic-Indic digit: not a digit to a browser's regex
    "6 hours; 2 minutes": "syntax",
    "6 hoursand 2 minutes": "syntax",
    "6h and2m": "syntax",
    "1.5.5 hours": "syntax",
    "6 hé": "syntax",
    # well-formed, refused by the parser for its value
    "0 hours": "value",
    "-3 hours": "value",
    "1 hour -1 hour": "value",
    "PT0S": "value",
    "1:75:00": "value",
    "99999999999 days": "value",
}


def parser_accepts(text: str) -> bool:
    try:
        parse_interval(text)
    except InvalidInput:
        return False
    return True


def schemas() -> dict[str, dict[str, Any]]:
    """The interval params' schemas as the DAGs build them (range_params and the live DAG's)."""
    out = {"range_params.batch_interval": params.range_params(empty_range_means=None, default_interval="1 hour")[
        "batch_interval"].schema}
    from airflow.sdk import Param

    out["live.unit"] = Param("5 minutes", type="string", pattern=params.INTERVAL_PATTERN).schema
    return out


def schema_accepts(schema: dict[str, Any], text: str) -> bool:
    try:
        jsonschema.validate(text, schema)
    except jsonschema.ValidationError:
        return False
    return True


@pytest.mark.parametrize("text", list(CASES))
def test_form_and_parser_agree(text: str) -> None:
    kind = CASES[text]
    assert parser_accepts(text) is (kind == "ok"), f"parser on {text!r}"
    for where, schema in schemas().items():
        assert schema_accepts(schema, text) is (kind in ("ok", "value")), f"{where} on {text!r}"


def test_the_dags_use_the_parser_pattern() -> None:
    assert params.INTERVAL_PATTERN == INTERVAL_PATTERN
    assert all(s["pattern"] == INTERVAL_PATTERN for s in schemas().values())


def test_the_browser_regex_engine_agrees() -> None:
    """The form validates in the browser too: node's RegExp (ECMA-262) must read the pattern the same way."""
    node = shutil.which("node")
    assert node, "node is required (it runs the embedded engine too)"
    script = (
        "const [p, cases] = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "const re = new RegExp(p, 'u');"
        "process.stdout.write(JSON.stringify(cases.map(c => re.test(c))));"
    )
    done = subprocess.run([node, "-e", script], input=json.dumps([INTERVAL_PATTERN, list(CASES)]),
                          capture_output=True, text=True, timeout=60, check=True)
    verdicts = dict(zip(CASES, json.loads(done.stdout)))
    wrong = {t: v for t, v in verdicts.items() if v is not (CASES[t] in ("ok", "value"))}
    assert not wrong, wrong
