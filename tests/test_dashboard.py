"""The dashboard: sign-in cookie, CSRF, the pages and their numbers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.test_stats import AUTH, scripted

pytestmark = pytest.mark.anyio


async def test_sign_in_and_pages(db_dsn: str, tmp_path: Path) -> None:
    """Pages need the cookie the sign-in sets (HttpOnly, SameSite=Strict); the flow page
    shows the funnel; the conversation page its timeline; sign-out needs the CSRF token."""
    async with scripted(db_dsn, tmp_path) as h:
        r = await h.http.get("/")
        assert (r.status_code, r.headers["location"]) == (303, "/login")
        assert (await h.http.get("/login")).status_code == 200
        r = await h.http.post("/login", data={"token": "wrong"})
        assert r.status_code == 401
        assert "not the API token" in r.text
        r = await h.http.post(
            "/login", data={"token": "api-token"}, headers={"origin": "https://evil.example"}
        )
        assert r.status_code == 403
        r = await h.http.post("/login", data={"token": "api-token"})
        assert (r.status_code, r.headers["location"]) == (303, "/")
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        page = await h.http.get("/")
        assert page.status_code == 200
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert 'href="/flows/vendas"' in page.text
        assert not re.search(r"(src|href)=\"https?://", page.text)  # nothing from another host
        flow = await h.http.get("/flows/vendas")
        assert flow.status_code == 200
        row = re.search(r'<tr data-block="boas_vindas">(.*?)</tr>', flow.text, re.S)
        assert row is not None
        cells = dict(re.findall(r'data-field="(\w+)">(\d+)<', row.group(1)))
        assert cells == {"entered": "4", "answered": "3", "input_failures": "3", "left_here": "1"}
        assert "<svg" in flow.text
        assert (await h.http.get("/flows/vendas?days=x")).status_code == 422
        assert (await h.http.get("/flows/nada")).status_code == 404
        timeline = await h.http.get("/conversations/101")
        assert timeline.status_code == 200
        assert "Plano Pro" in timeline.text
        assert (await h.http.get("/conversations/101?before=x")).status_code == 422
        docs = await h.http.get("/docs")
        assert "GET /api/stats" in docs.text
        # Sign-out: refused without the CSRF token, done with it.
        assert (await h.http.post("/logout", data={})).status_code == 403
        csrf = re.search(r'name="csrf" value="(\w+)"', page.text)
        assert csrf is not None
        r = await h.http.post("/logout", data={"csrf": csrf.group(1)})
        assert r.status_code == 303
        h.http.cookies.clear()
        assert (await h.http.get("/")).status_code == 303
        # The API still takes the bearer token, not the cookie.
        assert (await h.http.get("/api/stats", headers=AUTH)).status_code == 200
