"""The short hardening run: schemathesis against the app in-process, over /ogc/api.

A few hundred generated requests, valid and invalid, to every operation of the OGC API and the
downloads; each answer must not be a server error and must conform to the document (status
code, content type, response schema; a request that fits the document is accepted, one that
does not is refused). `make hardening` runs the long one (thousands of requests, stateful
links followed, and the slow-client probe).
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

import benchmarks.schemathesis_hooks  # noqa: F401  (registers the hooks)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
    positive_data_acceptance,
]


# Examples per operation and mode: 25 operations x 2 modes x 6 is about 300 requests.
EXAMPLES = 6


@pytest.fixture(scope="module")
def api_schema(app):
    return schemathesis.openapi.from_wsgi("/ogc/api", app)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_conforms_to_its_document(api_schema, mode):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def check(case):
            # The in-process client does not decompress: ask for none.
            # The downloads' own `servers` entry (the site's root, not /ogc) is not followed
            # in-process: give it.
            base = "http://localhost" if case.path.startswith("/download/") else None
            case.call_and_validate(
                base_url=base, headers={"Accept-Encoding": "identity"}, checks=CHECKS
            )

        check()
