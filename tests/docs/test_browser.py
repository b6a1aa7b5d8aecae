"""The site in headless Chromium, served over http: no console error, each tab shows its script and hides
the others, no code line of the BYOL page wraps, the download links resolve, every image loads.
Screenshots of each tab go to docs/_build/screenshots/ (beside the site, not published).

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
VIEWPORT = {"width": 1400, "height": 900}  # a laptop
# A listing's code as a reader copies it: without the line numbers.
CODE_WITHOUT_LINE_NUMBERS = """(pre) => {
    const copy = pre.cloneNode(true);
    copy.querySelectorAll(".linenos").forEach((number) => number.remove());
    return copy.textContent;
}"""
INTERNAL_PATHS = ["shared/data", "../shared", "/work/", "/tmp/", "/root/", "/home/"]
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
        page = browser.new_page(viewport=VIEWPORT)
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
        # no listing makes the reader scroll sideways, on any tab: the BYOL page's column holds the
        # scripts' lines (see the test below), the other pages wrap long lines
        page.evaluate(
            "document.querySelectorAll('[role=tabpanel]').forEach((p) => p.removeAttribute('hidden'))"
        )
        too_wide = page.evaluate(
            "Array.from(document.querySelectorAll('pre')).filter(p => p.scrollWidth > p.clientWidth + 1)"
            ".map(p => p.textContent.slice(0, 60))"
        )
        assert not too_wide, f"{name}: {too_wide}"
        # what the reader sees names no path of the machine that built the site
        text = page.locator("body").inner_text()
        assert not [path for path in INTERNAL_PATHS if path in text], name
        # and no link leads to an address that is not set (built_site builds without BYOL_REPOSITORY_URL)
        hrefs = page.evaluate(
            "Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'))"
        )
        unset = [h for h in hrefs if not h or "None" in h or "//blob" in h or "colab" in h]
        assert not unset, f"{name}: {unset}"


# Each listing's lines as shown: how many lines of text it holds, how many lines high it is drawn (a
# wrapped line makes it higher), and how far its code reaches past its right edge.
LISTINGS_AS_SHOWN = """() => Array.from(document.querySelectorAll("div.highlight pre")).map((pre) => {
    const style = getComputedStyle(pre);
    const height = pre.clientHeight - parseFloat(style.paddingTop) - parseFloat(style.paddingBottom);
    return {
        start: pre.textContent.slice(0, 60),
        lines: pre.textContent.replace(/\\n$/, "").split("\\n").length,
        drawn: height / parseFloat(style.lineHeight),
        overflow: pre.scrollWidth - pre.clientWidth,
        pastTheWindow: pre.getBoundingClientRect().right - document.documentElement.clientWidth,
        whiteSpace: style.whiteSpace,
        numberedLines: Array.from(pre.querySelectorAll("span.line")).filter(
            (line) => line.getBoundingClientRect().height > 1.5 * parseFloat(style.lineHeight)
        ).map((line) => line.textContent.slice(0, 60)),
    };
})"""


def test_no_code_line_of_the_byol_page_wraps(browser_page):
    """At 1400x900, every line of every listing of the BYOL page (the scripts are formatted at 110
    columns, shown with line numbers) is drawn on one line, with nothing hidden past the right edge."""
    page, base_url, _, problems = browser_page
    page.goto(base_url + "byol.html", wait_until="networkidle")
    page.evaluate("document.querySelectorAll('[role=tabpanel]').forEach((p) => p.removeAttribute('hidden'))")
    listings = page.evaluate(LISTINGS_AS_SHOWN)
    scripts = [variant for variant in VARIANTS if script_path(variant).exists()]
    longest = max(len(line) for v in scripts for line in script_path(v).read_text().splitlines())
    assert len(listings) >= 2 * len(scripts) and longest > 100  # the whole scripts, their long lines
    for listing in listings:
        assert listing["whiteSpace"] == "pre", listing  # no wrapping at all, rather than room to spare
        assert listing["overflow"] <= 1, listing  # and nothing to scroll to
        assert listing["pastTheWindow"] <= 0, listing  # nor cut off by the window's edge
        assert round(listing["drawn"]) == listing["lines"], listing  # one drawn line per line
        assert not listing["numberedLines"], listing
    # and the page itself is no wider than the window (Furo hides what would stick out)
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    assert not problems, problems


def test_each_tab_shows_its_script_and_hides_the_others(browser_page):
    page, base_url, site, problems = browser_page
    problems.clear()
    page.goto(base_url + "byol.html", wait_until="networkidle")
    tabs = page.locator(".sphinx-tabs-tab")
    labels = [label.strip() for label in tabs.all_inner_texts()]
    assert labels == list(VARIANTS.values())
    screenshots = site.parent / "screenshots"
    screenshots.mkdir(exist_ok=True)
    for index, (variant, label) in enumerate(VARIANTS.items()):
        tab = tabs.nth(index)
        tab.click()
        assert tab.get_attribute("aria-selected") == "true"
        panels = page.locator(".sphinx-tabs-panel")
        for other in range(panels.count()):
            assert panels.nth(other).is_visible() == (other == index), (label, other)
        panel = panels.nth(index)
        tab.evaluate("(element) => element.scrollIntoView({block: 'start', behavior: 'instant'})")
        if script_path(variant).exists():
            listing = panel.locator(f"div.byol-script-{variant.replace('_', '-')} pre")
            shown = listing.evaluate(CODE_WITHOUT_LINE_NUMBERS)
            assert shown.rstrip("\n") == script_path(variant).read_text().rstrip("\n"), label
            assert listing.is_visible()
            # a reader meets the command and the start of the BYOL core on the first screen
            for block in [panel.locator("div.highlight pre").first, panel.locator("div.byol-core pre").first]:
                top = block.evaluate("(element) => element.getBoundingClientRect().top")
                assert block.is_visible() and 0 <= top < VIEWPORT["height"] - 100, (label, top)
        else:
            assert "is not written yet" in panel.inner_text()
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


def test_the_distributed_tab_shows_its_diff(browser_page):
    page, base_url, _, problems = browser_page
    page.goto(base_url + "byol.html", wait_until="networkidle")
    variant = "pytorch_lightning_distributed"
    if not script_path(variant).exists():
        pytest.skip("no distributed script yet")
    page.locator(".sphinx-tabs-tab").nth(list(VARIANTS).index(variant)).click()
    diff = page.locator("div.byol-diff pre")
    assert diff.is_visible()
    text = diff.inner_text()
    assert text.startswith(
        "--- examples/pytorch_lightning/byol.py\n+++ examples/pytorch_lightning_distributed/byol.py"
    )
    added = [line for line in text.splitlines() if line.startswith("+") and not line.startswith("+++")]
    assert any("--devices" in line for line in added), added
    assert not problems, problems


def test_a_link_to_lines_of_a_script_opens_its_tab_and_shows_the_line(browser_page):
    """The links of How BYOL works lead to the line they name, in the tab that holds it, on screen."""
    page, base_url, _, problems = browser_page
    page.goto(base_url + "how_byol_works.html", wait_until="networkidle")
    links = page.locator("a.byol-lines")
    hrefs = links.evaluate_all("(links) => links.map(a => a.getAttribute('href'))")
    assert len(hrefs) >= 10
    for href in [hrefs[0], hrefs[len(hrefs) // 2], hrefs[-1]]:
        page.goto(base_url + "how_byol_works.html", wait_until="networkidle")
        page.locator(f"a.byol-lines[href='{href}']").first.click()
        page.wait_for_load_state("networkidle")
        variant, number = href.split("#")[1].rsplit("-L", 1)
        line = page.locator(f"[id='{variant}-L{number}']")
        top = line.evaluate("(element) => element.getBoundingClientRect().top")
        assert line.is_visible() and 0 <= top < VIEWPORT["height"], (href, top)
        shown = line.evaluate(CODE_WITHOUT_LINE_NUMBERS).rstrip("\n")
        assert shown == script_path(variant).read_text().splitlines()[int(number) - 1], href
    # and from another tab: the link opens the tab that holds the line
    page.goto(base_url + "byol.html", wait_until="networkidle")
    page.locator(".sphinx-tabs-tab").last.click()
    page.evaluate(f"location.hash = '{hrefs[0].split('#')[1]}'")
    line = page.locator(f"[id='{hrefs[0].split('#')[1]}']")
    line.wait_for(state="visible")
    assert 0 <= line.evaluate("(element) => element.getBoundingClientRect().top") < VIEWPORT["height"]
    assert not problems, problems
