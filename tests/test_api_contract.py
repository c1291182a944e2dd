"""The API keeps the contract of its OpenAPI schema: schemathesis against a real node, every check.

The schema is read from a running node's ``/api/schema/``, and every operation is fuzzed with
schemathesis's examples, coverage and fuzzing phases and all of its checks (no 5xx, every status,
header and body documented, schema-valid requests accepted, schema-invalid ones refused, auth not
ignored, ...), plus one of ours: every error is in the API's JSON error shape. The public API runs
as a regular user with a token, ``/internal/`` with the service token. Path parameters are real
identifiers (a stream, a published comment, a saga), so requests reach the code behind the lookup;
unknown identifiers are covered by ``tests/test_authorization_matrix.py``.

Deterministic and bounded: hypothesis is derandomized, schemathesis seeded, examples capped.
A failure prints a ``curl`` command that reproduces it.
"""

import uuid
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token

from tests.conftest import SERVICE_TOKEN
from tests.factories import StreamFactory, UserFactory
from tests.support.api import post_comment, wait_published
from tests.support.processes import AsgiNode

pytestmark = pytest.mark.django_db(transaction=True)

MAX_EXAMPLES = 40
SEED = 20261205
ERROR_FIELDS = {"code", "detail", "fields"}
# schemathesis's defaults
POSITIVE_STATUSES = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
MISSING_HEADER_STATUSES = ["400", "401", "403", "406", "415", "422"]


def _config(*, auth: dict[str, str], parameters: dict[str, str]) -> schemathesis.Config:
    """``auth`` gives a security scheme of the schema its credentials, so schemathesis knows they are
    real: its ``ignored_auth`` check then also sends each request without them, and with bad ones."""
    return schemathesis.Config.from_dict(
        {
            "auth": {"openapi": {scheme: {"api_key": value} for scheme, value in auth.items()}},
            "seed": SEED,
            "checks": {
                "enabled": True,
                # A well-formed request may still meet a state it cannot change: a stale If-Match
                # (412) or an Idempotency-Key already used for another request (422). Both are
                # documented; they are not "valid data rejected".
                "positive_data_acceptance": {"expected-statuses": [*POSITIVE_STATUSES, "412", "422"]},
                # A PATCH without its required If-Match is 428 Precondition Required (RFC 6585).
                "missing_required_header": {"expected-statuses": [*MISSING_HEADER_STATUSES, "428"]},
            },
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
            "parameters": parameters,
        }
    )


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32's lazy schemas rename the test node through ``_nodeid``, gone in pytest 9."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


@pytest.fixture
def public_schema(live: Any, service_node: AsgiNode) -> schemathesis.BaseSchema:
    """The public operations, as a regular user, over a stream with a published comment and a saga."""
    user = UserFactory.create()
    token = Token.objects.create(user=user).key
    headers = {"Authorization": f"Token {token}"}
    stream = StreamFactory.create(slug=f"contract-{uuid.uuid4().hex[:8]}")
    with httpx.Client(timeout=15) as http:
        posted = post_comment(http, service_node.http, stream.slug, headers, "a comment to fuzz")
        assert posted.status_code == 202, posted.text
        saga = http.post(
            f"{service_node.http}/api/v1/streams/{stream.slug}/comment-and-react",
            json={"body": "and a saga", "kind": "heart"},
            headers=headers,
        )
        assert saga.status_code == 202, saga.text
    wait_published([posted.json()["id"]])
    parameters = {"slug": stream.slug, "comment_id": posted.json()["id"], "saga_id": saga.json()["id"]}
    config = _config(auth={"tokenAuth": f"Token {token}"}, parameters=parameters)
    return schemathesis.openapi.from_url(f"{service_node.http}/api/schema/", config=config)


@pytest.fixture
def internal_schema(live: Any, service_node: AsgiNode) -> schemathesis.BaseSchema:
    """The ``/internal/`` operations, with the service token, over a stream of their own."""
    stream = StreamFactory.create(slug=f"contract-internal-{uuid.uuid4().hex[:8]}")
    config = _config(auth={"serviceToken": f"Service {SERVICE_TOKEN}"}, parameters={"slug": stream.slug})
    return schemathesis.openapi.from_url(f"{service_node.http}/api/schema/", config=config)


@schemathesis.check
def errors_in_the_api_shape(ctx: schemathesis.CheckContext, response: schemathesis.Response, case: Any) -> bool:
    """Every 4xx/5xx is JSON ``{"code", "detail", "fields"?}`` (``project/api_errors.py``), whatever the schema says."""
    if response.status_code < 400 or case.method.upper() == "HEAD":
        return True
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), f"{response.status_code} answered as {content_type!r}"
    body = response.json()
    assert isinstance(body, dict), f"error body is not an object: {body!r}"
    assert set(body) <= ERROR_FIELDS and {"code", "detail"} <= set(body), f"error body out of shape: {body!r}"
    assert isinstance(body["code"], str) and body["code"], body
    assert isinstance(body["detail"], str) and body["detail"], body
    return True


CONTRACT_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)

public = schemathesis.pytest.from_fixture("public_schema").exclude(path_regex="^/internal/")
internal = schemathesis.pytest.from_fixture("internal_schema").include(path_regex="^/internal/")


@public.parametrize()
@CONTRACT_SETTINGS
def test_the_public_api_keeps_its_schema(case: schemathesis.Case) -> None:
    """Every public operation, fuzzed as a regular user, answers as its schema says: never a 5xx."""
    case.call_and_validate(additional_checks=[errors_in_the_api_shape])


@internal.parametrize()
@CONTRACT_SETTINGS
def test_the_internal_api_keeps_its_schema(case: schemathesis.Case) -> None:
    """Every ``/internal/`` operation, fuzzed with the service token, answers as its schema says."""
    case.call_and_validate(additional_checks=[errors_in_the_api_shape])
