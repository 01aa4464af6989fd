"""The HTTP API fuzzed from its own OpenAPI schema (Schemathesis) against the real uvicorn server.

The property: no generated request, valid or not, gets a 5xx, and every documented response
conforms to the schema (body and content type). Bounded examples per route keep it well under
a minute; derandomised, so a failure reproduces.
"""

from __future__ import annotations

import itertools

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("schemathesis")

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance

from recotorch.models import MatrixFactorization
from tests.helpers.server import ServerProcess
from tests.helpers.synthetic import toy_catalogue

TOKEN = "fuzz-token"


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    root = tmp_path_factory.mktemp("schemathesis")
    MatrixFactorization(dim=4, epochs=2).fit(toy_catalogue(30, 40, 8)).save(root / "m")
    with ServerProcess(root / "m", "--store", f"sqlite:///{root / 'fb.db'}", "--models-root", str(root),
                       env={"RECOTORCH_ADMIN_TOKEN": TOKEN}) as server:
        yield schemathesis.openapi.from_url(server.url + "/openapi.json")


MODES = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]  # valid and invalid requests
CHECKS = [not_a_server_error, content_type_conformance, response_schema_conformance]


@pytest.mark.slow
def test_no_generated_request_gets_a_5xx(api_schema):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10, [op.label for op in operations]
    tried: list[str] = []
    for operation, mode in itertools.product(operations, MODES):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=25, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def property_holds(case) -> None:
            response = case.call(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
            case.validate_response(response, checks=CHECKS)

        try:
            property_holds()
        except Unsatisfiable:  # nothing to make invalid (a route without parameters or body)
            assert mode is schemathesis.GenerationMode.NEGATIVE, operation.label
            continue
        tried.append(f"{operation.label} ({mode.value})")
    assert "POST /feedback (negative)" in tried and "GET /users/{user_id}/recommendations (positive)" in tried
