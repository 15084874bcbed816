"""The read-only portal through HTTP: sign-in, cookies, CSRF, tenant isolation, roles, every page."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Mount

from tests.support.client import PASSWORD, Actor, add_member, cursor, new_org, register, seed_library

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def browser(app, *, https: bool = False) -> TestClient:
    """A fresh cookie jar (not the shared API client), like another person's browser."""
    return TestClient(app, base_url="https://testserver" if https else "http://testserver")


def csrf_of(page_html: str) -> str:
    match = CSRF.search(page_html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def sign_in(web: TestClient, actor: Actor, *, next_url: str = "") -> object:
    token = csrf_of(web.get("/portal/login").text)
    return web.post(
        "/portal/login",
        data={"email": actor.email, "password": PASSWORD, "csrf": token, "next": next_url},
        follow_redirects=False,
    )


@pytest.fixture(scope="module")
def library(client):
    org = new_org(client, name="Portal Co")
    ids = seed_library(org)
    r = org.owner.patch(
        f"{org.base}/prompts/{ids['prompt']}", json={"body": "act as a terminal\nshow only output"}
    )
    assert r.status_code == 200
    return org, ids


def test_sign_in_sets_a_locked_down_session_cookie(app, library):
    org, _ = library
    for https in (False, True):
        web = browser(app, https=https)
        login_page = web.get("/portal/login")
        assert login_page.status_code == 200
        assert "HttpOnly" in login_page.headers["set-cookie"]  # the CSRF cookie
        r = sign_in(web, org.owner)
        assert r.status_code == 303 and r.headers["location"] == "/portal/orgs"
        cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("oh_portal="))
        flags = [part.strip().lower() for part in cookie.split(";")]
        assert "httponly" in flags and "samesite=lax" in flags and "path=/portal" in flags
        assert ("secure" in flags) is https
        assert web.get("/portal/orgs").status_code == 200


def test_wrong_password_is_401_without_a_session(app, library):
    org, _ = library
    web = browser(app)
    token = csrf_of(web.get("/portal/login").text)
    r = web.post(
        "/portal/login", data={"email": org.owner.email, "password": "wrong password", "csrf": token}
    )
    assert r.status_code == 401 and "Wrong email or password" in r.text
    assert "oh_portal" not in web.cookies
    assert web.get("/portal/orgs", follow_redirects=False).status_code == 303


def test_login_and_logout_need_the_csrf_token(app, library):
    org, _ = library
    web = browser(app)
    token = csrf_of(web.get("/portal/login").text)
    form = {"email": org.owner.email, "password": PASSWORD}
    assert web.post("/portal/login", data=form).status_code == 403
    assert web.post("/portal/login", data={**form, "csrf": "x" * 43}).status_code == 403
    foreign = web.post(
        "/portal/login", data={**form, "csrf": token}, headers={"Origin": "https://evil.example"}
    )
    assert foreign.status_code == 403
    # a form posted from another site carries no CSRF cookie (SameSite=Strict): refused too
    bare = browser(app)
    assert bare.post("/portal/login", data={**form, "csrf": token}).status_code == 403
    assert sign_in(web, org.owner).status_code == 303
    assert web.post("/portal/logout", data={}).status_code == 403
    assert web.get("/portal/orgs").status_code == 200  # still signed in


def test_logout_revokes_the_session_for_good(app, library):
    org, _ = library
    web = browser(app)
    sign_in(web, org.owner)
    stolen = web.cookies.get("oh_portal")
    page = web.get("/portal/orgs")
    r = web.post("/portal/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/portal/login"
    replay = browser(app)
    replay.cookies.set("oh_portal", stolen, path="/portal")
    r = replay.get("/portal/orgs", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/portal/login")


def test_session_cookie_is_not_an_api_token(app, client, library):
    org, _ = library
    web = browser(app)
    sign_in(web, org.owner)
    cookie = web.cookies.get("oh_portal")
    assert client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {cookie}"}).status_code == 401
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": cookie}).status_code == 401
    forged = browser(app)
    forged.cookies.set("oh_portal", cookie[:-4] + "0000", path="/portal")
    assert forged.get("/portal/orgs", follow_redirects=False).status_code == 303


def test_pages_redirect_to_sign_in_and_back(app, library):
    org, ids = library
    web = browser(app)
    target = f"/portal/orgs/{org.id}/prompts/{ids['prompt']}"
    r = web.get(target, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/portal/login?next=")
    r = sign_in(web, org.owner, next_url=target)
    assert r.headers["location"] == target  # the shared link opens after sign-in
    # no open redirect
    r = sign_in(browser(app), org.owner, next_url="https://evil.example/")
    assert r.headers["location"] == "/portal/orgs"
    r = sign_in(browser(app), org.owner, next_url="//evil.example/portal/")
    assert r.headers["location"] == "/portal/orgs"


@pytest.mark.parametrize(
    "next_url",
    [
        "/portal/../api/v1/orgs",  # a browser resolves it to /api/v1/orgs (found by QA)
        "/portal/%2e%2e/api/v1/orgs",
        "/portal/.%2E/api/v1/orgs",
        "/portal/orgs/../../api/v1/orgs",
        "/portal/./orgs/..",
        "/portal/.\t./api/v1/orgs",  # a browser drops the tab
        "/portal/..\n/api",
        "/portal/\\evil.example",
    ],
)
def test_sign_in_goes_back_only_to_a_normalized_portal_path(app, library, next_url):
    org, _ = library
    r = sign_in(browser(app), org.owner, next_url=next_url)
    assert r.status_code == 303 and r.headers["location"] == "/portal/orgs", next_url
    web = browser(app)
    r = web.get("/portal/login", params={"next": next_url})
    assert f'value="{next_url}"' not in r.text


def test_sign_in_keeps_a_portal_link_with_its_query(app, library):
    org, _ = library
    target = f"/portal/orgs/{org.id}/prompts?q=linux%20terminal&sort=title#top"
    assert sign_in(browser(app), org.owner, next_url=target).headers["location"] == target


def test_a_viewer_browses_every_page(app, library):
    org, ids = library
    viewer = add_member(org, "viewer")
    web = browser(app)
    sign_in(web, viewer)
    base = f"/portal/orgs/{org.id}"
    orgs_page = web.get("/portal/orgs")
    assert "Portal Co" in orgs_page.text and "viewer" in orgs_page.text
    assert web.get(base, follow_redirects=False).headers["location"] == f"{base}/prompts"

    prompts = web.get(f"{base}/prompts")
    assert prompts.status_code == 200 and "Linux Terminal" in prompts.text
    assert prompts.headers["content-security-policy"].startswith("default-src 'self'")
    assert '<main id="main"' in prompts.text and 'aria-label="Sections"' in prompts.text
    assert 'aria-current="page">Prompts' in prompts.text
    assert "Linux Terminal" not in web.get(f"{base}/prompts", params={"q": "nothing-like-this"}).text
    assert "Linux Terminal" in web.get(f"{base}/prompts", params={"q": "TERMINAL"}).text
    assert (
        "Linux Terminal"
        in web.get(f"{base}/prompts", params={"tag_id": ids["tag"], "development_stage_id": ""}).text
    )

    prompt = web.get(f"{base}/prompts/{ids['prompt']}")
    assert prompt.status_code == 200
    assert 'class="diff-line ins"' in prompt.text and "show only output" in prompt.text
    older = web.get(f"{base}/prompts/{ids['prompt']}", params={"from": 1, "to": 1})
    assert "The text is the same in both versions." in older.text
    missing = web.get(f"{base}/prompts/{ids['prompt']}", params={"from": 1, "to": 9})
    assert missing.status_code == 200 and "no such version" in missing.text

    outputs = web.get(f"{base}/outputs", params={"custom_gpt_id": ids["custom_gpt"]})
    assert outputs.status_code == 200 and "/home/user" in outputs.text and "Coder" in outputs.text
    output = web.get(f"{base}/outputs/{ids['output']}")
    assert output.status_code == 200
    for shown in ("Accurate", "Coder", "GPT-4o", "Code", "python", "Linux Terminal"):
        assert shown in output.text, shown

    gpts = web.get(f"{base}/custom-gpts")
    assert gpts.status_code == 200 and "Coder" in gpts.text and "General" in gpts.text

    analytics = web.get(f"{base}/analytics", params={"by": "agent_group", "bucket": "day"})
    assert analytics.status_code == 200
    assert (
        analytics.text.count('role="img"') == 6
        and "<title id=" in analytics.text
        and "<desc id=" in analytics.text
    )
    assert "Accuracy by agent group" in analytics.text and "<table>" in analytics.text
    csv = web.get(f"{base}/analytics/accuracy.csv", params={"by": "custom_gpt"})
    assert csv.status_code == 200 and csv.text.splitlines()[1].startswith("Coder,")
    assert web.get(f"{base}/analytics/secrets.csv").status_code == 404

    # viewers may read but the portal offers no way to write
    assert '<form method="post"' not in prompt.text.replace('action="/portal/logout"', "")


def test_non_members_get_404_on_every_org_page(app, client, library):
    org, ids = library
    stranger = register(client, name="stranger")
    new_org(client, owner=stranger, name="Elsewhere")
    web = browser(app)
    sign_in(web, stranger)
    base = f"/portal/orgs/{org.id}"
    for path in (
        base,
        f"{base}/prompts",
        f"{base}/prompts/{ids['prompt']}",
        f"{base}/outputs",
        f"{base}/outputs/{ids['output']}",
        f"{base}/custom-gpts",
        f"{base}/analytics",
        f"{base}/analytics/tags.csv",
    ):
        r = web.get(path, follow_redirects=False)
        assert r.status_code == 404, path
        assert "Linux Terminal" not in r.text and "Portal Co" not in r.text
    assert "Portal Co" not in web.get("/portal/orgs").text
    # the org's own prompt, looked up under the stranger's org: 404 as well
    mine = web.get("/portal/orgs").text
    own_org = re.search(r"/portal/orgs/([0-9a-f-]{36})/prompts", mine).group(1)
    assert web.get(f"/portal/orgs/{own_org}/prompts/{ids['prompt']}").status_code == 404


def test_bad_parameters_are_a_422_page(app, library):
    org, ids = library
    web = browser(app)
    sign_in(web, org.owner)
    base = f"/portal/orgs/{org.id}"
    for path, params in (
        ("prompts", {"tag_id": "not-an-id"}),
        ("prompts", {"sort": "colour"}),
        ("prompts", {"cursor": "garbage"}),
        # well-formed cursors with values of the wrong type (a raw JSON 500 on outputs and custom GPTs; QA)
        ("prompts", {"cursor": cursor({"s": "updated_at", "d": True, "v": "x", "i": ids["prompt"]})}),
        ("outputs", {"cursor": cursor({"s": "created_at", "d": True, "v": [], "i": ids["output"]})}),
        ("outputs", {"cursor": cursor({"s": "created_at", "d": True, "v": {"t": None}, "i": ids["output"]})}),
        ("custom-gpts", {"cursor": cursor({"s": "name", "d": False, "v": None, "i": ids["custom_gpt"]})}),
        ("custom-gpts", {"cursor": cursor({"s": "name", "d": False, "v": "a", "i": 1})}),
        ("analytics", {"by": "colour"}),
        ("analytics", {"from": "yesterday"}),
        ("analytics", {"from": "2026-02-01", "to": "2026-01-01"}),
    ):
        r = web.get(f"{base}/{path}", params=params)
        assert r.status_code == 422, (path, params, r.text[:300])
        assert r.headers["content-type"].startswith("text/html")


def test_portal_errors_are_html_pages(app, library):
    """No such page, a page a method does not take, a number past the database's: HTML with the 4xx, as
    every other portal error (found by QA: JSON problem documents)."""
    org, ids = library
    web = browser(app)
    for path in ("/portal/nonexistent", "/portal/orgs/x/y/z", "/portal/static/nothing.css"):
        r = web.get(path)
        assert r.status_code == 404, (path, r.text[:200])
        assert r.headers["content-type"].startswith("text/html"), path
        assert "<h1" in r.text and "Not found" in r.text
    sign_in(web, org.owner)
    base = f"/portal/orgs/{org.id}"
    for path, params in (
        ("/portal/nonexistent", {}),
        (f"{base}/nothing-here", {}),
        (f"{base}/prompts/{ids['prompt']}", {"from": "99999999999999999999", "to": "1"}),
        (f"{base}/prompts/{ids['prompt']}", {"from": "1", "to": str(2**63)}),
    ):
        r = web.get(path, params=params)
        assert r.status_code in (404, 422), (path, params, r.status_code)
        assert r.headers["content-type"].startswith("text/html"), (path, params, r.text[:200])
    assert (
        web.get(f"{base}/prompts/{ids['prompt']}", params={"from": "99999999999999999999"}).status_code == 422
    )
    r = web.post(f"{base}/prompts")
    assert r.status_code == 405 and r.headers["content-type"].startswith("text/html")
    assert "GET" in r.headers["allow"]
    # the API keeps its problem documents
    r = web.get("/api/v1/nonexistent")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    r = web.get("/portalx")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"


def _routes(routes) -> list:
    """Every route, looking inside included routers (newer FastAPI wraps them in ``_IncludedRouter``)."""
    out = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        out += _routes(inner.routes) if inner is not None else [route]
    return out


def test_no_write_routes_except_login_and_logout(app, library):
    org, ids = library
    writes, reads = set(), set()
    for route in _routes(app.routes):
        path = getattr(route, "path", "")
        if not path.startswith("/portal"):
            continue
        if isinstance(route, Mount):
            assert path == "/portal/static"
            continue
        assert isinstance(route, APIRoute)
        for method in route.methods or ():
            (reads if method in ("GET", "HEAD") else writes).add((method, path))
    assert writes == {("POST", "/portal/login"), ("POST", "/portal/logout")}
    assert len(reads) >= 10
    # and over HTTP: every page refuses every writing method
    web = browser(app)
    sign_in(web, org.owner)
    values = {"org_id": org.id, "prompt_id": ids["prompt"], "output_id": ids["output"], "name": "tags"}
    for _, path in reads:
        url = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            if (method, path) not in writes:
                assert web.request(method, url).status_code == 405, (method, url)


def test_stylesheet_is_served(app):
    r = browser(app).get("/portal/static/portal.css")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/css")
    assert ":focus-visible" in r.text and "min-height: 44px" in r.text


@pytest.mark.parametrize(
    "params",
    [
        {"to": "9999-12-31"},
        {"from": "0001-01-01", "to": "9999-12-31"},
        {"to": "9999-12-31", "bucket": "month"},
        {"from": "9999-12-31", "to": "9999-12-31"},
        {"from": "9999-12-31"},
        {"to": "0001-01-01"},
        {"from": "0001-01-01", "to": "0001-01-01"},
        {"from": "0001-01-01"},
    ],
)
def test_the_date_pickers_extreme_dates_never_fail(app, library, params):
    """The calendar's first and last days (found by QA: `to=9999-12-31` was a 500, an OverflowError)."""
    org, _ = library
    web = browser(app)
    sign_in(web, org.owner)
    base = f"/portal/orgs/{org.id}"
    page = web.get(f"{base}/analytics", params=params)
    # from 0001-01-01 the knowledge chart would need more weekly buckets than allowed: a clear 422 page
    assert page.status_code in (200, 422), page.text
    assert page.status_code == 200 or "choose a wider bucket" in page.text
    if params.get("to") == "9999-12-31" and "from" not in params:
        assert page.status_code == 200 and "Linux Terminal" in page.text  # 9999-12-31 includes everything
    # a download needs its own chart only: another chart's refusal does not refuse it
    for name in ("overview", "accuracy", "stage-funnel", "tags", "best-prompts", "worst-prompts"):
        csv = web.get(f"{base}/analytics/{name}.csv", params=params)
        assert csv.status_code == 200, (name, csv.text)
    knowledge = web.get(f"{base}/analytics/knowledge-types.csv", params=params)
    assert knowledge.status_code == page.status_code
