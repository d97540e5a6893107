"""Property-based fuzzing of every operation in the app's own OpenAPI (schemathesis).

Cases are generated from the schema (valid ones, and invalid ones the app must refuse), sent
in process to the session's app as a verified administrator, and each response must be: not
a 5xx, a documented status code with its documented content type, and a body matching the
documented schema. `make fuzz` runs the same test with FUZZ_EXAMPLES=500 and random seeds.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

import httpx
import hypothesis
import hypothesis.errors
import pytest
import schemathesis
from fastapi import FastAPI
from httpx import AsyncClient
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.main import create_app
from tests.reliability.conftest import bearer, login

DEFAULT_EXAMPLES = 2
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", DEFAULT_EXAMPLES))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def _httpx_kwargs(transport: dict[str, Any]) -> dict[str, Any]:
    """requests-style keyword arguments (what schemathesis serialises) for httpx."""
    kwargs: dict[str, Any] = {
        "method": transport["method"],
        "url": transport["url"],
        "headers": transport.get("headers") or {},
        "params": transport.get("params") or None,
        "cookies": transport.get("cookies") or None,
    }
    if "json" in transport:
        kwargs["json"] = transport["json"]
    data = transport.get("data")
    if isinstance(data, bytes | str):
        kwargs["content"] = data
    elif data is not None:
        kwargs["data"] = data
    if transport.get("files"):
        kwargs["files"] = transport["files"]
    return kwargs


def _run(
    operation: Any,
    mode: GenerationMode,
    send: Callable[[Any], httpx.Response],
    failures: list[str],
) -> None:
    checks = [*CHECKS, negative_data_rejection] if mode is GenerationMode.NEGATIVE else CHECKS

    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=EXAMPLES <= DEFAULT_EXAMPLES,  # CI: the same cases every run
        suppress_health_check=list(HealthCheck),
        # `make test` reports a failing case as found; `make fuzz` also shrinks it.
        phases=[Phase.explicit, Phase.generate]
        + ([Phase.shrink] if EXAMPLES > DEFAULT_EXAMPLES else []),
        print_blob=False,
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        case.validate_response(send(case), checks=checks)

    try:
        check()
    except hypothesis.errors.Unsatisfiable:
        # Nothing to make invalid: the operation takes no parameters and no body.
        assert mode is GenerationMode.NEGATIVE, operation.label
    except (Exception, BaseExceptionGroup) as error:
        failures.append(f"{mode.value} {operation.label}:\n{str(error)[:1500]}")


# Not measured by coverage: it repeats paths the functional tests cover, many times over.
@pytest.mark.no_cover
async def test_every_operation_conforms_to_its_schema(
    app: FastAPI, client: AsyncClient, make_user: Any
) -> None:
    # The app's own OpenAPI, as built from the settings; the session's app may carry routes
    # other tests added.
    schema = schemathesis.openapi.from_dict(create_app(app.state.settings).openapi())
    operations = [result.ok() for result in schema.get_all_operations()]
    # Destructive operations last, each operation with a fresh verified administrator.
    operations.sort(key=lambda op: (op.method.upper() == "DELETE", "logout" in op.path, op.label))
    loop = asyncio.get_running_loop()
    headers: dict[str, str] = {}

    async def call(case: Any) -> httpx.Response:
        kwargs = _httpx_kwargs(case.as_transport_kwargs(base_url="http://test", headers=headers))
        request = client.build_request(**kwargs)
        request.read()  # a multipart body is a stream: the checks read the request again
        return await client.send(request)

    def send(case: Any) -> httpx.Response:
        return asyncio.run_coroutine_threadsafe(call(case), loop).result(timeout=60)

    failures: list[str] = []
    count = 0
    for index, operation in enumerate(operations):
        await app.state.redis.flushdb()  # rate limits start afresh for each operation
        admin = await make_user(username=f"fuzzadmin{index}", email=f"fuzz{index}@example.com",
                                role="admin")  # fmt: skip
        headers.clear()
        headers.update(bearer((await login(client, admin.username))["access_token"]))
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            # Hypothesis drives a blocking test; it runs in a thread, requests on this loop.
            await asyncio.to_thread(_run, operation, mode, send, failures)
            count += 1
    assert count >= 2 * 15
    assert not failures, "\n\n".join(failures)
