"""The site in headless Chromium, served over http: no console error, each tab shows its script and hides
the others with its downloads on its first screen, no code line of the BYOL page wraps, the download
links resolve, every image loads, the chosen tab is kept (reload, Back, a link from another page), the
diff shows its added and removed lines in colour (light and dark mode), and on a phone the tab bar is one
row and the architecture figure readable. Screenshots of each tab go to docs/_build/screenshots/ (beside
the site, not published).

Without Chromium (Debian's /usr/bin/chromium) or Playwright the test is skipped, unless
REQUIRE_BROWSER=1 (as in CI), where it fails."""

import colorsys
import os
import re
import urllib.parse
from pathlib import Path
from xml.etree import ElementTree

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


def watch(page, problems: list[str]):
    """Collect a page's console errors, page errors, failed requests and HTTP errors into problems."""
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(  # not a request that the next navigation cut short (net::ERR_ABORTED)
        "requestfailed",
        lambda request: (
            problems.append(f"request failed: {request.url} ({request.failure})")
            if "ERR_ABORTED" not in (request.failure or "")
            else None
        ),
    )
    page.on(
        "response",
        lambda response: (
            problems.append(f"HTTP {response.status}: {response.url}") if response.status >= 400 else None
        ),
    )
    return page


@pytest.fixture(scope="module")
def browser_site():
    """The browser, the site's address and its folder; each test that needs a browser of its own (a
    phone's window, dark mode, no stored tab) opens a context of its own in it."""
    sync_playwright = browser_or_skip()
    site = built_site()
    with serve(site) as base_url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser, base_url, site
        browser.close()


@pytest.fixture(scope="module")
def browser_page(browser_site):
    browser, base_url, site = browser_site
    problems: list[str] = []
    page = watch(browser.new_page(viewport=VIEWPORT), problems)
    yield page, base_url, site, problems
    page.close()


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
    page.goto(base_url + "byol.html", wait_until="load")
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


def test_no_table_of_the_results_page_is_cut_off(browser_page):
    """At 1400x900 every table of Results fits its column: no last column hidden behind a scroll bar."""
    page, base_url, _, problems = browser_page
    page.goto(base_url + "results.html", wait_until="load")
    widths = page.evaluate(
        "[...document.querySelectorAll('article table')].map((table) => {"
        "  const box = table.closest('.table-wrapper') || table.parentElement;"
        "  return [box.scrollWidth, box.clientWidth]; })"
    )
    assert len(widths) >= 3 and all(scroll <= client for scroll, client in widths), widths
    assert not problems, problems


def test_each_tab_shows_its_script_and_hides_the_others(browser_page):
    page, base_url, site, problems = browser_page
    problems.clear()
    page.goto(base_url + "byol.html", wait_until="load")
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
            # a reader meets the command, the tab's intro and the downloads on the tab's first screen
            command, download = (
                panel.locator("div.highlight pre").first,
                panel.locator("p:has(a.download)").first,
            )
            for element in [command, download]:
                box = element.evaluate("(element) => element.getBoundingClientRect().toJSON()")
                assert element.is_visible() and box["top"] >= 0 and box["bottom"] <= VIEWPORT["height"], (
                    label,
                    element.inner_text()[:60],
                    box,
                )
        else:
            assert "is not written yet" in panel.inner_text()
        page.screenshot(path=str(screenshots / f"byol-tab-{variant}.png"))
        assert (screenshots / f"byol-tab-{variant}.png").stat().st_size > 10_000
    assert not problems, problems


def test_download_links_resolve_to_files_in_the_build(browser_page):
    page, base_url, site, problems = browser_page
    page.goto(base_url + "byol.html", wait_until="load")
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
    page.goto(base_url + "byol.html", wait_until="load")
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
    page.goto(base_url + "how_byol_works.html", wait_until="load")
    links = page.locator("a.byol-lines")
    hrefs = links.evaluate_all("(links) => links.map(a => a.getAttribute('href'))")
    assert len(hrefs) >= 10
    for href in [hrefs[0], hrefs[len(hrefs) // 2], hrefs[-1]]:
        page.goto(base_url + "how_byol_works.html", wait_until="load")
        page.locator(f"a.byol-lines[href='{href}']").first.click()
        page.wait_for_load_state("load")
        variant, number = href.split("#")[1].rsplit("-L", 1)
        line = page.locator(f"[id='{variant}-L{number}']")
        top = line.evaluate("(element) => element.getBoundingClientRect().top")
        assert line.is_visible() and 0 <= top < VIEWPORT["height"], (href, top)
        shown = line.evaluate(CODE_WITHOUT_LINE_NUMBERS).rstrip("\n")
        assert shown == script_path(variant).read_text().splitlines()[int(number) - 1], href
    # and from another tab: the link opens the tab that holds the line
    page.goto(base_url + "byol.html", wait_until="load")
    page.locator(".sphinx-tabs-tab").last.click()
    page.evaluate(f"location.hash = '{hrefs[0].split('#')[1]}'")
    line = page.locator(f"[id='{hrefs[0].split('#')[1]}']")
    line.wait_for(state="visible")
    assert 0 <= line.evaluate("(element) => element.getBoundingClientRect().top") < VIEWPORT["height"]
    assert not problems, problems


SELECTED_TAB = "() => document.querySelector('.sphinx-tabs-tab[aria-selected=true]').textContent.trim()"


def test_the_chosen_tab_is_kept_across_a_reload_back_and_a_link_from_another_page(browser_site):
    """The address names the open tab (byol.html?tab=lightning), and the browser keeps the last one
    chosen: a reload, Back, and a link from another page open it again. A link to a line of a script
    opens that line's tab still."""
    browser, base_url, _ = browser_site
    problems: list[str] = []
    context = browser.new_context(viewport=VIEWPORT)  # nothing stored yet
    page = watch(context.new_page(), problems)
    page.goto(base_url + "byol.html", wait_until="load")
    assert page.evaluate(SELECTED_TAB) == "PyTorch" and page.url.endswith("byol.html?tab=pytorch")
    page.locator(".sphinx-tabs-tab", has_text="Lightning").first.click()
    assert page.url.endswith("byol.html?tab=lightning")
    page.reload(wait_until="load")
    assert page.evaluate(SELECTED_TAB) == "Lightning"
    # a link from another page, which names no tab (the navigation's)
    page.goto(base_url + "how_byol_works.html", wait_until="load")
    page.locator(".sidebar-tree a[href='byol.html']").first.click()
    page.wait_for_load_state("load")
    assert page.evaluate(SELECTED_TAB) == "Lightning" and page.url.endswith("byol.html?tab=lightning")
    # Back, to a page whose tab was changed
    page.locator(".sphinx-tabs-tab", has_text="Lightning Distributed").click()
    page.goto(base_url + "index.html", wait_until="load")
    page.go_back(wait_until="load")
    assert page.evaluate(SELECTED_TAB) == "Lightning Distributed"
    assert page.url.endswith("byol.html?tab=lightning-distributed")
    # the address alone, in a browser that keeps nothing
    fresh = watch(browser.new_context(viewport=VIEWPORT).new_page(), problems)
    fresh.goto(base_url + "byol.html?tab=lightning", wait_until="load")
    assert fresh.evaluate(SELECTED_TAB) == "Lightning"
    # a link to a line opens the line's tab, whatever the address and the browser keep; choosing
    # another tab then drops the line's anchor from the address
    fresh.goto(base_url + "byol.html?tab=lightning#pytorch-L1", wait_until="load")
    assert fresh.evaluate(SELECTED_TAB) == "PyTorch" and fresh.locator("[id='pytorch-L1']").is_visible()
    fresh.locator(".sphinx-tabs-tab", has_text="Lightning Distributed").click()
    assert fresh.url.endswith("byol.html?tab=lightning-distributed")
    fresh.reload(wait_until="load")
    assert fresh.evaluate(SELECTED_TAB) == "Lightning Distributed"
    fresh.context.close()
    context.close()
    assert not problems, problems


# The colour of each line of the diff (that of the span that holds its text), and the background that it
# is drawn on.
DIFF_LINE_COLOURS = """(pre) => {
    const background = (element) => {
        for (; element; element = element.parentElement) {
            const colour = getComputedStyle(element).backgroundColor;
            if (colour !== "rgba(0, 0, 0, 0)" && colour !== "transparent") return colour;
        }
        return "rgb(255, 255, 255)";
    };
    const lines = [];
    for (const span of pre.querySelectorAll(":scope > span")) {
        const text = span.textContent;
        if (!text.trim()) continue;
        const colour = getComputedStyle(span).color;
        lines.push({text: text.slice(0, 40), colour, background: background(span)});
    }
    return {lines, pre: background(pre)};
}"""


def rgb(colour: str) -> tuple[float, ...]:
    return tuple(float(part) / 255 for part in re.findall(r"[\d.]+", colour)[:3])


def luminance(colour: str) -> float:
    channels = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb(colour)]
    return 0.2126 * channels[0] + 0.7152 * channels[1] + 0.0722 * channels[2]


def contrast(one: str, other: str) -> float:
    light, dark = sorted([luminance(one), luminance(other)], reverse=True)
    return (light + 0.05) / (dark + 0.05)


def hue(colour: str) -> tuple[float, float]:
    """Hue in degrees and saturation (HLS) of a CSS rgb() colour."""
    h, _, saturation = colorsys.rgb_to_hls(*rgb(colour))
    return 360 * h, saturation


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_diff_shows_added_lines_green_and_removed_lines_red(browser_site, scheme):
    browser, base_url, _ = browser_site
    variant = "pytorch_lightning_distributed"
    if not script_path(variant).exists():
        pytest.skip("no distributed script yet")
    problems: list[str] = []
    context = browser.new_context(viewport=VIEWPORT, color_scheme=scheme)
    page = watch(context.new_page(), problems)
    page.goto(base_url + "byol.html?tab=lightning-distributed", wait_until="load")
    diff = page.locator("div.byol-diff pre")
    assert diff.is_visible()
    shown = diff.evaluate(DIFF_LINE_COLOURS)
    assert (luminance(shown["pre"]) > 0.5) == (scheme == "light"), shown["pre"]  # the page is in that mode
    added = [
        line for line in shown["lines"] if line["text"].startswith("+") and not line["text"].startswith("+++")
    ]
    removed = [
        line for line in shown["lines"] if line["text"].startswith("-") and not line["text"].startswith("---")
    ]
    assert len(added) >= 10 and removed, shown["lines"][:20]
    for lines, hues, name in [(added, (90, 160), "green"), (removed, (-20, 20), "red")]:
        for line in lines:
            degrees, saturation = hue(line["colour"])
            degrees = degrees - 360 if degrees > 180 else degrees
            assert hues[0] <= degrees <= hues[1] and saturation > 0.3, (scheme, name, line)
            assert contrast(line["colour"], line["background"]) >= 4.5, (scheme, name, line)
    context.close()
    assert not problems, problems


PHONE = {"width": 390, "height": 844}


def svg_text_sizes(svg: Path) -> list[float]:
    """The font sizes of the text of an SVG (its <text> elements, not their subscripts' <tspan>s), in its
    own units: the root's size, or a class's from its <style>."""
    source = svg.read_text()
    root = ElementTree.fromstring(source)
    default = float(root.get("font-size", 16))
    classes = {
        name: float(size) for name, size in re.findall(r"\.([\w-]+)\s*\{[^}]*font-size:\s*([\d.]+)px", source)
    }
    sizes = []
    for text in root.iter("{http://www.w3.org/2000/svg}text"):
        own = [classes[name] for name in text.get("class", "").split() if name in classes]
        sizes.append(float(text.get("font-size", own[0] if own else default)))
    return sizes


def test_on_a_phone_the_tabs_stay_one_row_and_the_figure_is_readable(browser_site):
    """At 390x844: the BYOL page's tab bar is one row (scrolling sideways if it must), and the architecture
    figure's text is at least 11 px, the figure scrolling sideways within the column, not the page."""
    browser, base_url, site = browser_site
    problems: list[str] = []
    context = browser.new_context(viewport=PHONE)
    page = watch(context.new_page(), problems)
    page.goto(base_url + "byol.html", wait_until="load")
    tabs = page.locator(".sphinx-tabs-tab")
    boxes = [tab.evaluate("(tab) => tab.getBoundingClientRect().toJSON()") for tab in tabs.all()]
    tops = [box["top"] for box in boxes]  # the open tab sits 1 px higher (sphinx-tabs' margin)
    assert len(tops) == len(VARIANTS) and max(tops) - min(tops) < min(b["height"] for b in boxes) / 2, boxes
    bar = page.locator(".sphinx-tabs [role=tablist]").evaluate(
        """(bar) => ({right: bar.getBoundingClientRect().right, scrolls: bar.scrollWidth > bar.clientWidth,
                      overflow: getComputedStyle(bar).overflowX})"""
    )
    assert bar["right"] <= PHONE["width"] and (not bar["scrolls"] or bar["overflow"] in {"auto", "scroll"}), (
        bar
    )
    for tab in tabs.all():  # each tab can be chosen
        tab.click()
        assert tab.get_attribute("aria-selected") == "true"
    page.goto(base_url + "how_byol_works.html", wait_until="load")
    figure = page.locator("img.byol-architecture")
    width = figure.evaluate("(image) => image.getBoundingClientRect().width")
    svg = site / "_images" / "byol-architecture.svg"
    scale = width / float(ElementTree.fromstring(svg.read_text()).get("viewBox").split()[2])
    assert min(svg_text_sizes(svg)) * scale >= 11, (width, min(svg_text_sizes(svg)) * scale)
    link = page.locator("a.byol-architecture").evaluate(
        "(link) => ({right: link.getBoundingClientRect().right, overflow: getComputedStyle(link).overflowX})"
    )
    assert link["right"] <= PHONE["width"] and link["overflow"] in {"auto", "scroll"}, link
    caption = page.locator("figure figcaption").first.evaluate(
        "(caption) => caption.getBoundingClientRect().right"
    )
    assert caption <= PHONE["width"]
    for name in ["byol.html", "how_byol_works.html"]:  # the page itself does not scroll sideways
        page.goto(base_url + name, wait_until="load")
        assert page.evaluate(
            "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        ), name
    context.close()
    assert not problems, problems
