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


BIG = "9" * 30  # digits no bigint holds
# Parameters a client may send that no flow, conversation or number can be: each has its answer
# (never a 5xx, never the database's "unstorable" for a URL).
ODD_REQUESTS = [
    ("GET", "/api/stats?flow=%00vendas", 422),
    ("GET", "/api/stats?flow=Vendas%20Online", 422),
    ("GET", "/api/stats?flow=nada", 200),
    ("DELETE", "/api/workflows/%00", 404),
    ("DELETE", "/api/workflows/Vendas%20Online", 404),
    ("GET", "/api/conversation/101?limit=%C2%B2", 422),  # "²": a digit to str.isdigit
    ("GET", f"/api/conversation/101?limit={BIG}", 422),
    ("GET", "/api/conversation/101?before=%C2%B9", 422),
    ("GET", f"/api/conversation/101?before={BIG}", 422),
    ("GET", f"/api/conversation/{BIG}", 404),
    ("GET", f"/api/contacts/{BIG}/conversations", 404),
    ("GET", "/flows/%00", 404),
    ("GET", "/flows/vendas?days=%C2%B2", 422),
    ("GET", f"/flows/vendas?days={BIG}", 422),
    ("GET", "/conversations/101?before=%C2%B9", 422),
    ("GET", f"/conversations/101?before={BIG}", 422),
    ("GET", "/conversations/101?accountId=%C2%B2", 422),
    ("GET", f"/conversations/101?accountId={BIG}", 422),
    ("GET", f"/conversations/{BIG}", 404),
]


async def test_odd_parameters(db_dsn: str, tmp_path: Path) -> None:
    """Path and query values that cannot name anything get a 404 or a 422 naming the rule."""
    async with scripted(db_dsn, tmp_path) as h:
        r = await h.http.post("/login", data={"token": "api-token"})
        assert r.status_code == 303
        answers = []
        for method, url, _ in ODD_REQUESTS:
            r = await h.http.request(method, url, headers=AUTH)
            answers.append((method, url, r.status_code))
        assert [answer for answer in answers if answer not in ODD_REQUESTS] == []
