"""The whole app (with the fake Chatwoot) in a thread of its own, for synchronous clients:
schemathesis' calls and a browser."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import uvicorn

from agentbot.app import create_app
from agentbot.config import Secret, Settings
from tests.conftest import free_port
from tests.fakes import FakeChatwoot, FakeChatwootServer
from tests.harness import FAST, WEBHOOK_TOKEN

API = "api-token"


@contextmanager
def threaded_app(dsn: str, flows: Path) -> Iterator[tuple[str, FakeChatwoot]]:
    """The app's base URL and the fake Chatwoot behind it."""
    fake = FakeChatwoot()
    with FakeChatwootServer(fake) as chatwoot:
        settings = Settings(
            chatwoot_url=chatwoot.url,
            chatwoot_api_token=Secret(fake.bot_token),
            webhook_token=Secret(WEBHOOK_TOKEN),
            api_token=Secret(API),
            flows_dir=flows,
        )
        app = create_app(
            settings, dsn=dsn, policy=FAST, poll_interval=0.05, clock=lambda: datetime.now(UTC)
        )
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        )
        thread = threading.Thread(target=server.run, name="agentbot-served", daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the app did not start")
            time.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{port}", fake
        finally:
            server.should_exit = True
            thread.join(timeout=30)
