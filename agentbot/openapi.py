"""The OpenAPI 3.1 document of every route agentbot serves (GET /openapi.json, GET /docs).

One entry per operation in OPERATIONS, keyed by (method, path template); a route added to
the app needs its entry here (tests/test_openapi.py checks that both tables agree).
"""

from __future__ import annotations

from typing import Any

JSON = "application/json"
HTML = "text/html"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _html(description: str) -> dict[str, Any]:
    return {"description": description, "content": {HTML: {"schema": {"type": "string"}}}}


INT = {"type": "integer"}
ID = {"type": "integer", "minimum": 0}  # the routes match digits only
STR = {"type": "string"}
COUNT = {"type": "integer", "minimum": 0}
NULLABLE_STR = {"type": ["string", "null"]}
COUNTS = {"type": "object", "additionalProperties": COUNT}
UNAUTHORIZED = _error("no or a wrong `Authorization: Bearer <WORKFLOWS_API_TOKEN>`")
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
SIGNED_IN: list[dict[str, list[str]]] = [{"dashboard": []}]


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _path(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "message"],
        "properties": {"error": STR, "message": STR},
    },
    "Block": {
        "type": "object",
        "required": ["block", "entered", "answered", "left_here", "input_failures", "choices"],
        "properties": {
            "block": STR,
            "entered": COUNT,
            "answered": COUNT,
            "left_here": COUNT,
            "input_failures": COUNT,
            "choices": COUNTS,
        },
    },
    "FlowStats": {
        "type": "object",
        "required": [
            "name",
            "started",
            "completed",
            "handed_off",
            "abandoned",
            "active",
            "completion_rate",
            "median_seconds_to_complete",
            "blocks",
            "labels",
        ],
        "properties": {
            "name": STR,
            "started": COUNT,
            "completed": COUNT,
            "handed_off": COUNT,
            "abandoned": COUNT,
            "active": COUNT,
            "closed": COUNT,
            "completion_rate": {"type": "number", "minimum": 0, "maximum": 1},
            "median_seconds_to_complete": {"type": ["number", "null"]},
            "blocks": {"type": "array", "items": _ref("Block")},
            "labels": COUNTS,
        },
    },
    "Stats": {
        "type": "object",
        "required": ["since", "until", "sessions", "flows"],
        "properties": {
            "since": NULLABLE_STR,
            "until": NULLABLE_STR,
            "sessions": {
                "type": "object",
                "required": ["active", "completed", "handed_off", "abandoned", "closed"],
                "properties": {
                    k: COUNT for k in ("active", "completed", "handed_off", "abandoned", "closed")
                },
            },
            "flows": {"type": "array", "items": _ref("FlowStats")},
        },
    },
    "Interaction": {
        "type": "object",
        "required": ["id", "session_id", "direction", "kind", "created_at"],
        "properties": {
            "id": INT,
            "session_id": {"type": ["integer", "null"]},
            "direction": {"enum": ["in", "out"]},
            "kind": STR,
            "block": NULLABLE_STR,
            "content": NULLABLE_STR,
            "choice": NULLABLE_STR,
            "labels": {"type": ["array", "null"], "items": STR},
            "message_id": {"type": ["integer", "null"]},
            "error": NULLABLE_STR,
            "created_at": STR,
        },
    },
    "Conversation": {
        "type": "object",
        "required": ["conversation_id", "session", "next_before", "interactions"],
        "properties": {
            "conversation_id": INT,
            "account_id": INT,
            "next_before": {
                "type": ["integer", "null"],
                "description": "pass as ?before= for the older page; null on the oldest",
            },
            "session": {
                "type": ["object", "null"],
                "properties": {
                    "id": INT,
                    "flow": STR,
                    "version": STR,
                    "block": STR,
                    "status": STR,
                    "variables": {"type": "object"},
                },
            },
            "interactions": {"type": "array", "items": _ref("Interaction")},
        },
    },
    "ContactSessions": {
        "type": "object",
        "required": ["contact_id", "sessions"],
        "properties": {
            "contact_id": INT,
            "sessions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["session_id", "conversation_id", "flow", "status"],
                    "properties": {
                        "session_id": INT,
                        "account_id": INT,
                        "conversation_id": INT,
                        "inbox_id": {"type": ["integer", "null"]},
                        "flow": STR,
                        "version": STR,
                        "block": STR,
                        "status": STR,
                        "created_at": STR,
                        "ended_at": NULLABLE_STR,
                    },
                },
            },
        },
    },
    "FlowSummary": {
        "type": "object",
        "required": ["name", "version", "title", "source", "updated_at"],
        "properties": {
            "name": STR,
            "version": STR,
            "title": STR,
            "source": {"enum": ["file", "api"]},
            "updated_at": STR,
        },
    },
    "StartRequest": {
        "type": "object",
        "required": ["workflowName"],
        "properties": {
            "workflowName": STR,
            "conversationId": INT,
            "accountId": INT,
            "initialData": {"type": "object"},
        },
    },
}

FLOW_NAME = _path("name", STR)
OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/webhooks/chatwoot"): {
        "summary": "Chatwoot's Agent Bot webhook",
        "description": "Authenticated by X-Chatwoot-Signature (CHATWOOT_WEBHOOK_SECRET) or "
        "?token= (WEBHOOK_TOKEN). At most 1 MiB.",
        "parameters": [_query("token", STR, "WEBHOOK_TOKEN, when no signature is configured")],
        "requestBody": {"content": {JSON: {"schema": {"type": "object"}}}},
        "responses": {
            "200": _json(
                {"type": "object", "required": ["status"], "properties": {"status": STR}},
                "what became of the event",
            ),
            "400": _error("the body is not JSON"),
            "401": _error("the signature or token is missing or wrong"),
            "413": _error("the body is over 1 MiB"),
            "500": _error("the database is away: Chatwoot retries"),
        },
    },
    ("get", "/health"): {
        "summary": "Liveness and the database",
        "responses": {
            "200": _json({"type": "object"}, "up"),
            "503": _json({"type": "object"}, "the database is unreachable"),
        },
    },
    ("get", "/metrics"): {
        "summary": "Prometheus metrics (text exposition format)",
        "security": [{"metrics": []}],
        "responses": {
            "200": {
                "description": "the metrics",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            "401": _error("no or a wrong `Authorization: Bearer <METRICS_TOKEN>`"),
            "404": _error("METRICS_TOKEN is not set: metrics are off"),
        },
    },
    ("post", "/api/workflow/start"): {
        "summary": "Start a flow in a conversation",
        "security": BEARER,
        "requestBody": {"required": True, "content": {JSON: {"schema": _ref("StartRequest")}}},
        "responses": {
            "201": _json({"type": "object"}, "started"),
            "400": _error("the body is not JSON"),
            "401": UNAUTHORIZED,
            "404": _error("no such flow, or Chatwoot has no such conversation or contact"),
            "409": _error("the conversation has a running session"),
            "422": _error("a field is missing or wrong"),
            "502": _error("Chatwoot refused agentbot (its tokens or version)"),
            "503": _error("Chatwoot is not configured or did not answer"),
        },
    },
    ("get", "/api/conversation/{conversation_id}"): {
        "summary": "A conversation's latest session and its history, newest page first",
        "security": BEARER,
        "parameters": [
            _path("conversation_id", ID),
            _query("accountId", INT, "needed when the id was seen in several accounts"),
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "default 200"),
            _query("before", INT, "interactions with a smaller id (next_before of a page)"),
        ],
        "responses": {
            "200": _json(_ref("Conversation"), "the session and a page of interactions"),
            "401": UNAUTHORIZED,
            "404": _error("not a conversation id"),
            "422": _error("a parameter is wrong"),
        },
    },
    ("get", "/api/contacts/{contact_id}/conversations"): {
        "summary": "A contact's sessions, newest first",
        "security": BEARER,
        "parameters": [_path("contact_id", ID)],
        "responses": {
            "200": _json(_ref("ContactSessions"), "the sessions"),
            "401": UNAUTHORIZED,
            "404": _error("not a contact id"),
        },
    },
    ("get", "/api/workflows"): {
        "summary": "The current flows",
        "security": BEARER,
        "responses": {
            "200": _json(
                {
                    "type": "object",
                    "required": ["workflows"],
                    "properties": {"workflows": {"type": "array", "items": _ref("FlowSummary")}},
                },
                "the flows",
            ),
            "401": UNAUTHORIZED,
        },
    },
    ("post", "/api/workflows"): {
        "summary": "Create or replace a flow",
        "description": 'JSON `{"name", "config"}` (config.name different from name is the '
        "title, as the old system sent it) or the YAML text as application/yaml.",
        "security": BEARER,
        "requestBody": {
            "required": True,
            "content": {
                JSON: {
                    "schema": {
                        "type": "object",
                        "properties": {"name": STR, "config": {"type": "object"}},
                    }
                },
                "application/yaml": {"schema": STR},
            },
        },
        "responses": {
            "200": _json({"type": "object"}, "unchanged"),
            "201": _json({"type": "object"}, "stored as a new version"),
            "400": _error("the body is not JSON"),
            "401": UNAUTHORIZED,
            "413": _error("over 1 MiB"),
            "422": _error("the flow is invalid: every problem is listed"),
        },
    },
    ("get", "/api/workflows/{name}"): {
        "summary": "A flow's current version",
        "security": BEARER,
        "parameters": [FLOW_NAME],
        "responses": {
            "200": _json({"type": "object"}, "the flow"),
            "401": UNAUTHORIZED,
            "404": _error("no such flow"),
        },
    },
    ("delete", "/api/workflows/{name}"): {
        "summary": "Retire a flow: no new session starts on it",
        "security": BEARER,
        "parameters": [FLOW_NAME],
        "responses": {
            "200": _json({"type": "object"}, "retired"),
            "401": UNAUTHORIZED,
            "404": _error("no current flow of that name"),
        },
    },
    ("get", "/api/stats"): {
        "summary": "Sessions and each flow's funnel",
        "description": "Sessions filtered by their start: since inclusive, until exclusive "
        "(ISO 8601; UTC when no offset is given). docs/operators.md defines every number.",
        "security": BEARER,
        "parameters": [
            _query("flow", STR, "one flow"),
            _query("since", {"type": "string", "format": "date-time"}, "start of the window"),
            _query("until", {"type": "string", "format": "date-time"}, "end of the window"),
        ],
        "responses": {
            "200": _json(_ref("Stats"), "the numbers"),
            "401": UNAUTHORIZED,
            "422": _error("since or until is not an ISO 8601 instant, or flow not a flow's name"),
        },
    },
    ("get", "/openapi.json"): {
        "summary": "This document",
        "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
    },
    ("get", "/docs"): {
        "summary": "This document as a page",
        "responses": {"200": _html("the API's routes")},
    },
    ("get", "/"): {
        "summary": "Dashboard: the overview",
        "security": SIGNED_IN,
        "responses": {"200": _html("the overview"), "303": {"description": "sign in first"}},
    },
    ("get", "/login"): {
        "summary": "Dashboard: the sign-in form",
        "responses": {"200": _html("the form")},
    },
    ("post", "/login"): {
        "summary": "Dashboard: sign in with the API token",
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {"type": "object", "properties": {"token": STR}}
                }
            },
        },
        "responses": {
            "303": {"description": "signed in: to the overview"},
            "401": _html("wrong token: the form again"),
            "403": _html("the request came from another site"),
        },
    },
    ("post", "/logout"): {
        "summary": "Dashboard: sign out",
        "requestBody": {
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {"type": "object", "properties": {"csrf": STR}}
                }
            },
        },
        "responses": {
            "303": {"description": "signed out: to the sign-in form"},
            "403": _html("no valid CSRF token"),
        },
    },
    ("get", "/flows/{name}"): {
        "summary": "Dashboard: a flow's funnel and diagram",
        "security": SIGNED_IN,
        "parameters": [
            FLOW_NAME,
            _query("days", {"type": "integer", "minimum": 1, "maximum": 36600}, "window"),
        ],
        "responses": {
            "200": _html("the flow"),
            "303": {"description": "sign in first"},
            "404": _html("no such flow"),
            "422": _html("days is not a number from 1 to 36600"),
        },
    },
    ("get", "/conversations/{conversation_id}"): {
        "summary": "Dashboard: a conversation's timeline",
        "security": SIGNED_IN,
        "parameters": [
            _path("conversation_id", ID),
            _query("before", INT, "older interactions"),
            _query("accountId", INT, "the account"),
        ],
        "responses": {
            "200": _html("the timeline"),
            "303": {"description": "sign in first"},
            "404": _html("not a conversation id"),
            "422": _html("a parameter is wrong"),
        },
    },
}


def document(operations: dict[tuple[str, str], dict[str, Any]] = OPERATIONS) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), operation in operations.items():
        paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "agentbot",
            "version": "1",
            "description": "A Chatwoot Agent Bot running YAML conversation flows. /api/* "
            "takes `Authorization: Bearer <WORKFLOWS_API_TOKEN>`; errors are JSON "
            '`{"error": code, "message": ...}`.',
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "metrics": {"type": "http", "scheme": "bearer", "description": "METRICS_TOKEN"},
                "dashboard": {"type": "apiKey", "in": "cookie", "name": "agentbot_session"},
            },
        },
    }
