"""The REST API fuzzed from its own OpenAPI description (schemathesis), as an admin against the
real server and broker: no request, valid or not, may get a server error or a response that
breaks the description."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks

from tests.server_helpers import Api, start_api
from workbench.broker import LocalBroker
from workbench.server.openapi import openapi

pytestmark = pytest.mark.kafka
SCHEMA = schemathesis.openapi.from_dict(openapi())
OPERATIONS = {op.ok().label: op.ok() for op in SCHEMA.get_all_operations()}
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzzed(broker: LocalBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    api = start_api(broker, tmp_path_factory.mktemp("fuzz"))
    yield api
    api.running.stop()


def test_the_server_serves_the_description_that_is_fuzzed(fuzzed: Api) -> None:
    status, served = fuzzed.http("GET", "/api/openapi.json")
    assert status == 200 and served == openapi()
    assert len(OPERATIONS) == 15


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_rest_api_survives_fuzzing_from_its_openapi_description(
    fuzzed: Api, label: str, mode: GenerationMode
) -> None:
    headers = {"Authorization": f"Bearer {fuzzed.tokens['admin']}"}

    @given(OPERATIONS[label].as_strategy(mode))
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    def fuzz(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=fuzzed.server.url, headers=headers, checks=CHECKS)

    fuzz()
