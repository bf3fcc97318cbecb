"""The pure core stays pure: no I/O library, no clock, no files, and a docstring that says so."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PURE = (
    "flows",
    "validation",
    "loader",
    "flowchecks",
    "matching",
    "events",
    "engine",
    "expressions",
    "templates",
    "answers",
    "channels",
    "sandbox",
    "flowtests",
    "graph",
    "hours",
    "splits",
    "jsonsafe",
)
SHELL = {"starlette", "httpx", "psycopg", "psycopg_pool", "asyncio", "structlog", "uvicorn"}
SHELL |= {"os", "pathlib", "subprocess", "socket", "time", "random", "uuid", "secrets"}
SHELL |= {"agentbot.store", "agentbot.service", "agentbot.outbox", "agentbot.app"}
FORBIDDEN_CALLS = {"now", "utcnow", "today", "open", "print", "input", "uuid4", "sleep"}


def imports(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "pathlib" and all(a.name.startswith("Pure") for a in node.names):
                continue  # pure paths only compute names: no file is touched
            names.add(node.module)
    return names | {name.split(".")[0] for name in names}


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_do_no_io(module: str) -> None:
    """A core module imports no I/O library nor the shell, and calls no clock, file or sleep."""
    source = (ROOT / "agentbot" / f"{module}.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    assert not imports(tree) & SHELL
    calls = {
        node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
    }
    assert not calls & FORBIDDEN_CALLS
    assert not any(isinstance(node, ast.AsyncFunctionDef) for node in ast.walk(tree))


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_say_so(module: str) -> None:
    """Each core module's docstring states the rule, as h11's and gidgethub's do."""
    docstring = ast.get_docstring(ast.parse((ROOT / "agentbot" / f"{module}.py").read_text()))
    assert docstring is not None
    assert "no I/O" in docstring
