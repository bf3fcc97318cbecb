"""/openapi.json describes every route; schemathesis finds no 5xx and no response off-schema."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, cast

import httpx
from hypothesis import HealthCheck, given, settings
from starlette.routing import Route

from agentbot import openapi
from agentbot.app import create_app
from agentbot.config import Settings
from tests.harness import incoming, write_flow
from tests.served import API, threaded_app

AUTH = {"authorization": f"Bearer {API}"}


def test_every_route_is_described() -> None:
    """The app's routes and the document's operations are the same set."""
    app = create_app(Settings(), dsn="postgresql://unused")
    served = {
        (method.lower(), route.path.replace(":int", ""))
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    assert served == set(openapi.OPERATIONS)


def test_schemathesis(db_dsn: str, tmp_path: Path) -> None:
    """Generated requests to every operation: never a 5xx, every response as documented."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import schemathesis
        from schemathesis.checks import (
            content_type_conformance,
            not_a_server_error,
            response_schema_conformance,
            status_code_conformance,
        )
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    with threaded_app(db_dsn, write_flow(tmp_path / "flows")) as (url, _):
        # Some history, so that the stats and the conversation have something to show.
        for i, text in enumerate(["Oi", "Sim", "Plano Pro"], start=1):
            r = httpx.post(
                f"{url}/webhooks/chatwoot",
                params={"token": "hook-token"},
                json=incoming(1287, i, text),
            )
            assert r.status_code == 200
        document = httpx.get(f"{url}/openapi.json").json()
        schema = schemathesis.openapi.from_dict(document)
        tested = 0
        for result in schema.get_all_operations():
            operation = cast(Any, result).ok()  # raises on an invalid operation
            # Sign-in and the webhook refuse what is generated without the secret: still
            # checked for their status codes and content types.

            @settings(
                max_examples=25,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
            )
            @given(case=operation.as_strategy())
            def check(case: Any) -> None:
                headers = {**AUTH} if case.path.startswith("/api/") else {}
                response = case.call(base_url=url, headers=headers, allow_redirects=False)
                case.validate_response(response, checks=checks)

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                check()
            tested += 1
        assert tested == len(openapi.OPERATIONS)
