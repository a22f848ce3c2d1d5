"""Schemathesis over the service's OpenAPI spec, in-process (ASGI): for every operation of the default-model routes,
generated requests (valid and invalid) must never get a 5xx, and every response must be valid against the schema
the spec declares for its status code. Run once per model family (svd, bpr, pop, CTR lr, hybrid_csa as the default
model), a bounded number of examples each (``MAX_EXAMPLES``), so the file stays well under a minute.

Left out: ``/admin/reload`` (each call reloads every bundle, seconds; the hot-reload test covers it). The
``/models/{name}/...`` routes are called with the model under test as ``name``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

MISSING = [
    m
    for m in ("fastapi", "httpx", "prometheus_client", "schemathesis")
    if importlib.util.find_spec(m) is None
]
pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f"missing {MISSING}: pip install 'attnrec[serve,dev]' (schemathesis is in dev)"
)

#: examples per operation and model (hypothesis; derandomised so a run is repeatable)
MAX_EXAMPLES = 10
MODELS = ["svd", "bpr", "pop", "lr", "hybrid"]


@pytest.fixture(scope="module", params=MODELS)
def api(request: pytest.FixtureRequest, serve_bundles: dict[str, Path]) -> tuple[str, Any]:
    """(default model name, the app's schema without the admin routes)."""
    import schemathesis

    from attnrec.serving.app import create_app

    app = create_app({name: serve_bundles[name] for name in MODELS}, default=request.param, warmup=False)
    return request.param, schemathesis.openapi.from_asgi("/openapi.json", app).exclude(path_regex="^/admin")


def test_api_conforms(api: tuple[str, Any]) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

    name, schema = api
    checks = [not_a_server_error, response_schema_conformance, status_code_conformance]
    failures: list[str] = []
    calls = 0
    for result in schema.get_all_operations():
        op = result.ok()
        # /models/{name}/...: the model under test, so the handlers run (a generated name is just a 404)
        fixed = {"name": name} if "{name}" in op.path else None
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=op.as_strategy(mode, path_parameters=fixed))
            @settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            def run(case: Any) -> None:
                nonlocal calls
                calls += 1
                case.call_and_validate(checks=checks)

            try:
                run()
            except Unsatisfiable:
                # an operation without parameters or body (GET /health) has no invalid request to generate
                assert mode is GenerationMode.NEGATIVE, f"{op.method.upper()} {op.path}: no valid request"
            except (Exception, BaseExceptionGroup) as exc:  # every failing operation is reported together
                failures.append(f"{op.method.upper()} {op.path} ({mode.value}): {type(exc).__name__}: {exc}")
    assert not failures, "\n\n".join(failures)
    assert calls >= 10 * MAX_EXAMPLES  # the operations were really exercised
