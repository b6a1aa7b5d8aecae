"""The site in headless Chromium, served over http: no console error, each tab shows its script and hides
the others, the download links resolve, every image loads. Screenshots of each tab go to
docs/_build/html/_screenshots/.

Without Chromium (Debian's /usr/bin/chromium) or Playwright the test is skipped, unless
REQUIRE_BROWSER=1 (as in CI), where it fails."""

import os
import urllib.parse
from pathlib import Path

import pytest
from docs_support import VARIANTS, built_site, script_path, serve

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",  # a container's small /dev/shm crashes pages; /tmp is used instead
]
PAGES = [
    "index.html",
    "byol.html",
    "how_byol_works.html",
    "own_data.html",
    "results.html",
    "troubleshooting.html",
]


def browser_or_skip():
    """Playwright's sync API, or a skip (a failure under REQUIRE_BROWSER=1) that says what is missing."""
    problem = None
    if not CHROMIUM.exists():
        problem = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    else:
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            problem = "Playwright is not installed (pip install playwright; no browser download needed)"
    if problem:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1 but {problem}")
        pytest.skip(f"browser test skipped: {problem}")
    return sync_playwright


@pytest.fixture(scope="module")
def browser_page():
    sync_playwright = browser_or_skip()
    site = built_site()
    with serve(site) as base_url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems: list[str] = []
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on(
            "requestfailed",
            lambda request: problems.append(f"request failed: {request.url} ({request.failure})"),
        )
        page.on(
            "response",
            lambda response: (
                problems.append(f"HTTP {response.status}: {response.url}") if response.status >= 400 else None
            ),
        )
        yield page, base_url, site, problems
        browser.close()


def test_pages_load_without_errors(browser_page):
    page, base_url, _, problems = browser_page
    for name in PAGES:
        problems.clear()
        page.goto(base_url + name, wait_until="networkidle")
        broken_images = page.evaluate(
            "Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"
        )
        assert not broken_images, f"{name}: {broken_images}"
        assert not problems, f"{name}: {problems}"


def test_each_tab_shows_its_script_and_hides_the_others(browser_page):
    page, base_url, site, problems = browser_page
    problems.clear()
    page.goto(base_url + "byol.html", wait_until="networkidle")
    tabs = page.locator(".sphinx-tabs-tab")
    labels = [label.strip() for label in tabs.all_inner_texts()]
    assert labels == list(VARIANTS.values())
    screenshots = site / "_screenshots"
    screenshots.mkdir(exist_ok=True)
    for index, (variant, label) in enumerate(VARIANTS.items()):
        tab = tabs.nth(index)
        tab.click()
        assert tab.get_attribute("aria-selected") == "true"
        panels = page.locator(".sphinx-tabs-panel")
        for other in range(panels.count()):
            assert panels.nth(other).is_visible() == (other == index), (label, other)
        panel = panels.nth(index)
        if script_path(variant).exists():
            shown = panel.locator("div.highlight pre").evaluate_all(
                "(blocks) => blocks.map(b => b.textContent)"
            )
            script = script_path(variant).read_text().rstrip("\n")
            assert script in [text.rstrip("\n") for text in shown], label
            assert panel.locator("div.highlight pre").last.is_visible()
        else:
            assert "is not written yet" in panel.inner_text()
        tab.evaluate("(element) => element.scrollIntoView({block: 'start', behavior: 'instant'})")
        page.screenshot(path=str(screenshots / f"byol-tab-{variant}.png"))
        assert (screenshots / f"byol-tab-{variant}.png").stat().st_size > 10_000
    assert not problems, problems


def test_download_links_resolve_to_files_in_the_build(browser_page):
    page, base_url, site, problems = browser_page
    page.goto(base_url + "byol.html", wait_until="networkidle")
    links = page.locator(".sphinx-tabs-panel a.download")
    hrefs = links.evaluate_all("(links) => links.map(a => a.href)")
    present = [variant for variant in VARIANTS if script_path(variant).exists()]
    assert len(hrefs) == 2 * len(present)
    for href in hrefs:
        assert href.startswith(base_url), href
        response = page.request.get(href)
        assert response.status == 200, href
        local = site / urllib.parse.unquote(href.removeprefix(base_url))
        assert local.is_file() and response.body() == local.read_bytes(), href
    for variant in present:
        scripts = [h for h in hrefs if h.endswith("/byol.py")]
        assert any(page.request.get(h).text() == script_path(variant).read_text() for h in scripts), variant
    assert not problems, problems
