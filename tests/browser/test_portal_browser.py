"""The portal in a real browser: Playwright driving Debian's Chromium against a live server (uvicorn).

Signs in, browses, searches, opens a diff and the charts, at 375x812 (phone) and 1440x900 (desktop), and on
the phone asserts that no page scrolls sideways and that the controls are at least 44 px tall.
Needs ``/usr/bin/chromium`` (``apt-get install chromium``; packaging/dev.sh installs it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from bench.portal_screenshots import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PASSWORD,
    VIEWPORTS,
    Demo,
    LiveServer,
    live_server,
    seed_demo,
    sign_in,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("portal-browser")) as running:
        yield running


@pytest.fixture(scope="module")
def demo(server: LiveServer) -> Demo:
    return seed_demo(server, prompts=12, weeks=4, per_week=15)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "install Debian's chromium: apt-get install -y chromium"
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(params=sorted(VIEWPORTS), ids=lambda w: f"{w}px")
def page(request: pytest.FixtureRequest, browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORTS[request.param])
    yield context.new_page()
    context.close()


def is_phone(page: Page) -> bool:
    return page.viewport_size is not None and page.viewport_size["width"] < 600


def check_layout(page: Page) -> None:
    """No sideways scrolling on the phone; every control a comfortable tap target."""
    if not is_phone(page):
        return
    overflow = page.evaluate("document.documentElement.scrollWidth - innerWidth")
    assert overflow <= 0, f"{page.url} scrolls sideways by {overflow}px"
    small = page.evaluate(
        """() => [...document.querySelectorAll('.tabs a, .btn, input:not([type=hidden]), select, summary')]
            .filter(e => e.offsetParent !== null)
            .map(e => [e.textContent.trim() || e.name || e.id, e.getBoundingClientRect().height])
            .filter(([, h]) => h < 44)"""
    )
    assert small == [], f"tap targets under 44px on {page.url}: {small}"
    # links in lists of records (a prompt's latest outputs were 32 px; QA)
    short = page.evaluate(
        """() => [...document.querySelectorAll('main li a')]
            .filter(e => e.offsetParent !== null && e.getBoundingClientRect().height < 44)
            .map(e => [e.textContent.trim().slice(0, 40), e.getBoundingClientRect().height])"""
    )
    assert short == [], f"links under 44px on {page.url}: {short}"
    # a chart's "CSV" on one line, and no bar label running into its figures (a 200-character tag did; QA)
    broken = page.evaluate(
        """() => [...document.querySelectorAll('.chart-head .btn')]
            .filter(e => e.offsetParent !== null && e.getBoundingClientRect().height > 50)
            .map(e => e.textContent.trim())"""
    )
    assert broken == [], f"chart buttons wrapped on {page.url}: {broken}"
    overlapping = page.evaluate(
        """() => [...document.querySelectorAll('svg text.label')]
            .filter(t => t.nextElementSibling && t.nextElementSibling.matches('text.value'))
            .filter(t => t.getBoundingClientRect().right
                         > t.nextElementSibling.getBoundingClientRect().left - 4)
            .map(t => t.textContent.slice(0, 40))"""
    )
    assert overlapping == [], f"bar labels run into their figures on {page.url}: {overlapping}"
    font = page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)")
    assert font >= 16


def test_sign_in_browse_search_diff_and_charts(page: Page, server: LiveServer, demo: Demo) -> None:
    page.goto(f"{server.url}/portal/orgs/{demo.org_id}/analytics")
    expect(page).to_have_url(f"{server.url}/portal/login?next=%2Fportal%2Forgs%2F{demo.org_id}%2Fanalytics")
    check_layout(page)
    page.get_by_label("Email").fill(demo.email)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong email or password.")
    sign_in(page, server, demo)

    # the organization picker, then the prompt library
    check_layout(page)
    page.get_by_role("link", name="Northwind Labs").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Prompts")
    check_layout(page)
    expect(
        page.get_by_role("navigation", name="Sections").get_by_role("link", name="Prompts")
    ).to_have_attribute("aria-current", "page")

    # search
    page.get_by_role("searchbox", name="Search").fill("ethereum")
    page.get_by_role("button", name="Search", exact=True).click()
    results = page.get_by_role("list", name="Prompts").get_by_role("listitem")
    expect(results).to_have_count(1)
    expect(results.first).to_contain_text("Ethereum Developer")
    check_layout(page)

    # the prompt, its versions and a diff between two versions
    page.get_by_role("link", name="Ethereum Developer").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Ethereum Developer")
    expect(page.locator(".diff-line.ins").first).to_be_visible()
    expect(page.locator(".diff")).to_contain_text("Never invent facts")
    page.get_by_label("From", exact=True).select_option("2")
    page.get_by_label("To", exact=True).select_option("2")
    page.get_by_role("button", name="Show changes").click()
    expect(page.locator(".diff")).to_contain_text("The text is the same in both versions.")
    page.get_by_label("From", exact=True).select_option("1")
    page.get_by_role("button", name="Show changes").click()
    expect(page.locator(".diff-line.del").first).to_be_visible()
    check_layout(page)

    # outputs with their taxonomy, filtered by custom GPT
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Custom GPTs").click()
    check_layout(page)
    page.get_by_role("link", name="Outputs by Tutor").click()
    first = page.get_by_role("list", name="Outputs").get_by_role("listitem").first
    expect(first).to_contain_text("Tutor")
    expect(first).to_contain_text("o3")
    check_layout(page)
    first.get_by_role("heading").get_by_role("link").click()
    expect(page.get_by_role("heading", name="Taxonomy")).to_be_visible()
    check_layout(page)

    # analytics: six SVG charts with titles and descriptions, switchable, with a table fallback
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Analytics").click()
    charts = page.locator("svg.chart[role=img]")
    expect(charts).to_have_count(6)
    for index in range(6):
        chart = charts.nth(index)
        assert chart.locator(":scope > title").text_content()
        assert chart.locator(":scope > desc").text_content()
        box = chart.bounding_box()
        assert box and box["width"] > 250 and box["height"] > 20
    check_layout(page)
    page.get_by_role("navigation", name="Group accuracy by").get_by_role("link", name="Custom GPT").click()
    expect(page.get_by_role("heading", name="Accuracy by custom GPT")).to_be_visible()
    assert "by=custom_gpt" in page.url  # a shareable link
    page.get_by_text("Show the figures as a table").first.click()
    expect(page.get_by_role("table").first).to_contain_text("Tutor")
    check_layout(page)
    page.get_by_role("link", name="Per month").click()
    page.wait_for_url(re.compile(r"bucket=month"))
    page.wait_for_load_state()  # a Tab pressed while the next page loads lands nowhere (a busy machine)
    check_layout(page)

    # keyboard: the first Tab reaches the skip link
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"

    # sign out: the pages need a sign-in again
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{server.url}/portal/login")
    page.goto(f"{server.url}/portal/orgs/{demo.org_id}/prompts")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_a_shared_link_opens_after_sign_in(page: Page, server: LiveServer, demo: Demo) -> None:
    shared = f"/portal/orgs/{demo.org_id}/analytics?by=agent_group&bucket=day"
    page.goto(server.url + shared)
    page.get_by_label("Email").fill(demo.email)
    page.get_by_label("Password").fill("portal demo horse battery")
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(server.url + shared)
    expect(page.get_by_role("heading", name="Accuracy by agent group")).to_be_visible()
    check_layout(page)


def test_sign_in_never_leaves_the_portal(page: Page, server: LiveServer, demo: Demo) -> None:
    """``next=/portal/../api/v1/orgs`` passed the prefix check; the browser resolved the redirect to
    /api/v1/orgs (found by QA). It lands on the organization list now."""
    page.goto(f"{server.url}/portal/login?next=/portal/%2e%2e/api/v1/orgs")
    page.get_by_label("Email").fill(demo.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{server.url}/portal/orgs")
    page.goto(f"{server.url}/portal/login?next=/portal/../api/v1/orgs")  # signed in: straight through
    expect(page).to_have_url(f"{server.url}/portal/orgs")


def test_no_such_page_is_an_html_page(page: Page, server: LiveServer, demo: Demo) -> None:
    response = page.goto(f"{server.url}/portal/nonexistent")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
    expect(page.get_by_role("link", name="Back to your organizations")).to_be_visible()
    check_layout(page)
    sign_in(page, server, demo)
    response = page.goto(
        f"{server.url}/portal/orgs/{demo.org_id}/prompts/{demo.prompt_ids[0]}?from=99999999999999999999&to=1"
    )
    assert response is not None and response.status == 422
    expect(page.get_by_role("heading", level=1)).to_have_text("That address is not quite right")


LONG_TAG = "customer-onboarding-email-sequence-" + "-".join(f"q{n}-2026-v2" for n in range(1, 18))[:165]
LONG_STAGE = "Stage" + "x" * 195  # one unbroken 200-character word: the worst case
LONG_GPT = "Quarterly Financial Report Writer"


@pytest.fixture(scope="module")
def long_names(server: LiveServer) -> Demo:
    """An organization of its own (the demo's pages stay as they are) with long names: a custom GPT
    "Quarterly Financial Report Writer", a 200-character tag and stage, a realistic long tag."""
    email = "long-names@northwind.example"
    with httpx.Client(base_url=server.url, timeout=60) as http:
        assert http.post(
            "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "display_name": "Lee Long"}
        ).is_success
        token = http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}).json()
        http.headers["Authorization"] = f"Bearer {token['access_token']}"
        org = http.post("/api/v1/orgs", json={"name": "Long Names Ltd"}).json()
        base = f"/api/v1/orgs/{org['id']}"

        def create(path: str, body: dict[str, object]) -> str:
            r = http.post(f"{base}/{path}", json=body)
            assert r.is_success, r.text
            return str(r.json()["id"])

        assert len(LONG_TAG) == 200 and len(LONG_STAGE) == 200
        realistic = "customer-onboarding-email-sequence-q3-2026-v2"
        tags = [create("tags", {"name": n}) for n in (LONG_TAG, realistic)]
        stage = create("development-stages", {"name": LONG_STAGE})
        gpt = create("custom-gpts", {"name": LONG_GPT, "description": "Writes the quarterly report."})
        create("custom-gpts", {"name": "G" * 200})
        prompt = create(
            "prompts",
            {"title": "Report", "body": "Write it.", "development_stage_id": stage, "tag_ids": tags},
        )
        output = create(
            "outputs", {"prompt_id": prompt, "content": "The report.", "custom_gpt_id": gpt, "tag_ids": tags}
        )
    demo = Demo(email=email, org_id=org["id"])
    demo.prompt_ids.append(prompt)
    demo.output_ids.append(output)
    return demo


def test_long_names_wrap_instead_of_scrolling_sideways(
    page: Page, server: LiveServer, long_names: Demo
) -> None:
    """Found by QA: chips, badges and buttons never wrapped (`white-space: nowrap`), so a long custom GPT,
    tag or stage name made a page 475 px wide at 375 px, and a 200-character name ~1900 px at any width."""
    sign_in(page, server, long_names)
    org = f"{server.url}/portal/orgs/{long_names.org_id}"
    for path, shown in (
        ("/custom-gpts", f"Outputs by {LONG_GPT}"),
        (f"/prompts/{long_names.prompt_ids[0]}", LONG_STAGE),
        ("/prompts", LONG_TAG),
        (f"/outputs/{long_names.output_ids[0]}", LONG_TAG),
        ("/outputs", LONG_GPT),
        ("/analytics", "Tag usage"),
    ):
        page.goto(org + path)
        expect(page.locator("main")).to_contain_text(shown)
        width = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
        assert width[0] <= width[1], f"{path} is {width[0]}px wide in a {width[1]}px window"
        check_layout(page)
    # the long name is shown in full (wrapped), not cut off
    page.goto(f"{org}/prompts/{long_names.prompt_ids[0]}")
    stage = page.locator(".badge", has_text=LONG_STAGE).first
    expect(stage).to_be_visible()
    assert stage.evaluate("e => e.scrollWidth <= e.clientWidth + 1")
