"""Schema-driven fuzzing: schemathesis generates requests for every operation of the running
demo server's `/openapi.json` (valid and invalid bodies) and checks each answer against the
same document: no 5xx, only documented status codes, content types, headers and bodies.
Afterwards the server is healthy, idle, logged no panic, and still answers a valid request.

Generation is derandomized (the same cases every run, so CI cannot flake) and `max_tokens`,
`n` and friends are clamped so that a generated request costs a few decode steps on the CPU.
The document's loose parts (messages are "objects"; sampling ranges are only in the field
descriptions; refused fields are only neutral when null or empty) are tightened here to what the descriptions say, so that valid ("positive")
cases reach generation instead of stopping at validation, and invalid ("negative") cases
probe the ranges.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from server_fixture import API_KEY, Server

# Examples per operation; parameterless GETs stop after their few distinct cases, the four
# POST operations carry the bulk (>= 1,000 requests in all, asserted at the end).
EXAMPLES = 150
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Fields that make a generation long: clamped to small values (non-integers and values <= 0
# are kept as generated, so validation of bad values is still fuzzed).
CLAMPS = {"max_tokens": 4, "max_completion_tokens": 4, "min_tokens": 4, "n": 2, "best_of": 2}
SENT: Counter[str] = Counter()
STATUSES: Counter[int] = Counter()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    assert srv.stop() == 0, srv.log()


MESSAGE = {
    "type": "object",
    "required": ["role", "content"],
    "properties": {
        "role": {"enum": ["system", "developer", "user", "assistant"]},
        "content": {"type": "string", "maxLength": 200},
    },
}
# (field, minimum, maximum) as the descriptions state them.
RANGES = [
    ("temperature", 0, 2), ("top_p", 0.01, 1), ("min_p", 0, 1), ("presence_penalty", -2, 2),
    ("frequency_penalty", -2, 2), ("repetition_penalty", 0.01, 2), ("n", 1, 16),
    ("top_logprobs", 0, 20), ("logprobs", 0, 20), ("top_k", -1, 1000),
]  # fmt: skip


def _tighten(doc: dict[str, Any]) -> dict[str, Any]:
    """The served document with what its descriptions say made part of the schema."""
    schemas = doc["components"]["schemas"]
    for name in ("ChatCompletionRequest", "TokenizeRequest"):
        schema = schemas[name]
        for part in [schema, *schema.get("allOf", [])]:
            messages = part.get("properties", {}).get("messages")
            if messages is not None:
                messages["items"] = MESSAGE
                messages["minItems"] = 1
    # Refused unless neutral (see UnsupportedFields): valid cases send null, invalid ones probe.
    for prop in schemas["UnsupportedFields"]["properties"].values():
        prop["type"] = "null"
    for schema in schemas.values():
        for part in [schema, *schema.get("allOf", [])]:
            props = part.get("properties", {})
            for field, lo, hi in RANGES:
                if field in props and "type" in props[field]:
                    props[field]["minimum"] = lo
                    props[field]["maximum"] = hi
    return doc


def _clamp(path: str, body: Any) -> None:
    if not isinstance(body, dict):
        return
    for key, most in CLAMPS.items():
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > most:
            body[key] = most
    # Without a limit a generation runs to the context length: give it one.
    if path.startswith("/v1/") and body.get("max_tokens") is None:
        if body.get("max_completion_tokens") is None:
            body["max_tokens"] = CLAMPS["max_tokens"]


def _fuzz(operation: Any, mode: Any, base_url: str) -> None:
    """Sends EXAMPLES generated cases of one operation; raises on the first bad answer."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        _clamp(case.path, case.body)
        response = case.call(
            base_url=base_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60
        )
        SENT[f"{case.method} {case.path} {mode.value}"] += 1
        STATUSES[response.status_code] += 1
        case.validate_response(response, checks=CHECKS)

    run()


def test_every_response_matches_the_schema(server: Server) -> None:
    # (The schemathesis pytest plugin does not work with this pytest: drive hypothesis here.)
    status, doc, _ = server.request("GET", "/openapi.json")  # behind the API key too
    assert status == 200, doc
    api = schemathesis.openapi.from_dict(_tighten(doc))
    failures = []
    for result in api.get_all_operations():
        operation = result.ok()
        for mode in GenerationMode:
            try:
                _fuzz(operation, mode, server.base)
            except Unsatisfiable:
                # Hypothesis proved there is no invalid input (an operation without
                # parameters or body has no negative cases).
                assert mode is GenerationMode.NEGATIVE and operation.method.upper() == "GET"
            except (Exception, BaseExceptionGroup) as e:  # fuzz all, report every failure
                found = getattr(e, "exceptions", [e])
                failures.append(f"{operation.label} [{mode.value}]: {e} {found}")
    assert not failures, "\n\n".join(failures)


def test_enough_requests_and_the_server_is_healthy_afterwards(server: Server) -> None:
    # Runs after the fuzzing above (same module, definition order).
    total = sum(SENT.values())
    print(f"schemathesis requests: {total} {dict(SENT)} statuses {dict(sorted(STATUSES.items()))}")
    assert total >= 1000, SENT
    assert not [s for s in STATUSES if s >= 500], STATUSES
    assert server.request("GET", "/health", key=None)[:2] == (200, {"status": "ok"})
    m = server.wait_idle()
    assert m["tokenspeed_kv_pages_used"] == 0 and m["tokenspeed_state_slots_used"] == 0
    assert m["tokenspeed_num_requests_running"] == m["tokenspeed_num_requests_waiting"] == 0
    status, out, _ = server.request(
        "POST", "/v1/completions", {"prompt": "still alive", "max_tokens": 3}
    )
    assert status == 200 and out["usage"]["completion_tokens"] == 3, out
    assert server.panics() == []
