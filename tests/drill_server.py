"""The service in a process of its own for the fault drills (tests/test_drills.py).

What `agentbot serve` runs, from the same environment variables, with a short outbox lease,
quick polls and retries short enough for a drill to last seconds. The database must be migrated.

    DATABASE_URL=... CHATWOOT_URL=... python -m tests.drill_server
"""

from __future__ import annotations

import os

import uvicorn

from agentbot import logs
from agentbot.app import create_app
from agentbot.config import Settings
from agentbot.outbox import RetryPolicy

LEASE = 2.0  # seconds before an attempt cut short (the process killed) is taken again
POLICY = RetryPolicy(
    in_process_attempts=2,
    in_process_seconds=0.5,
    in_process_wait_max=0.05,
    first_delay=0.2,
    max_delay=2.0,
    give_up_after=3600,
)


def main() -> None:
    settings = Settings.from_environ(os.environ)
    logs.configure(json=True, level=settings.log_level)
    assert settings.database_url is not None, "set DATABASE_URL"
    app = create_app(
        settings,
        dsn=settings.database_url,
        policy=POLICY,
        poll_interval=0.1,
        outbox_lease=LEASE,
    )
    uvicorn.run(app, host="127.0.0.1", port=settings.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
