"""Schemathesis against a live `roster-api serve` (uvicorn) on SQLite and PostgreSQL: every operation of
the OpenAPI document, valid and invalid inputs, with an admin key. Zero 5xx and every response as the
document says. Bounded and repeatable: a fixed number of examples per operation, derandomized."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err, Ok
from schemathesis.errors import InvalidSchema
from schemathesis.specs.openapi.checks import response_schema_conformance

from . import live

EXAMPLES = {GenerationMode.POSITIVE: 3, GenerationMode.NEGATIVE: 2}
CHECKS = [not_a_server_error, response_schema_conformance]


def _run_operation(operation: Any, mode: GenerationMode, url: str, session: requests.Session) -> list[str]:
    failures: list[str] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES[mode],
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        response = case.call(base_url=url, session=session)
        try:
            case.validate_response(response, checks=CHECKS)
        except AssertionError as exc:  # schemathesis' failures are AssertionErrors with a report
            failures.append(f"{operation.label} [{mode.value}]: {str(exc).splitlines()[0][:300]}")

    try:
        run()
    except Unsatisfiable:  # nothing to make invalid (an operation without parameters or body)
        assert mode is GenerationMode.NEGATIVE, operation.label
    return failures


T = TypeVar("T")


def _ok(result: Ok[T] | Err[InvalidSchema]) -> T:
    if isinstance(result, Err):
        raise result.err()
    return result.ok()


@pytest.mark.slow
def test_openapi_fuzz_finds_no_5xx_and_no_schema_violation(
    database_url: str, make_key: Callable[..., str], tmp_path: Path
) -> None:
    admin = make_key("admin", name="fuzz-admin")
    env = live.env_for(database_url, tmp_path / "data", ROSTER_RUN_WORKER="false")
    with live.serving(env, [tmp_path / "serve.log"]) as (server,):
        headers = {"Authorization": f"Bearer {admin}"}
        created = httpx.post(server.url + "/v1/districts", json={"id": "d1", "name": "D1"}, headers=headers)
        assert created.status_code == 201, created.text
        schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
        session = requests.Session()
        session.headers.update(headers)
        failures: list[str] = []
        operations = [_ok(result) for result in schema.get_all_operations()]
        assert len(operations) > 30
        for operation in operations:
            for mode in EXAMPLES:
                failures += _run_operation(operation, mode, server.url, session)
        session.close()
        log = server.log
    assert failures == []
    assert '"status": 500' not in log.read_text()
