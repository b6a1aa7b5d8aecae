"""The built pages: the scripts shown in full, notebooks equal to their scripts, no broken internal link,
the hyperparameter table equal to the scripts' defaults, the Results page equal to its generator's."""

import functools
import json
import re
import urllib.parse
from pathlib import Path

import nbformat
import pytest
from bs4 import BeautifulSoup
from docs_support import (
    CONF,
    DOCS,
    INSTALL_CELL_MARK,
    VARIANTS,
    built_site,
    normalise_code,
    present_variants,
    script_code_blocks,
    script_path,
)

from conftest import load_script


@pytest.fixture(scope="module")
def site() -> Path:
    return built_site()


def soup(path: Path) -> BeautifulSoup:
    return BeautifulSoup(path.read_text(), "html.parser")


@functools.cache
def tab_panels(site: Path) -> dict[str, BeautifulSoup]:
    """The BYOL page's tab panels, by tab label (parsed once: the page holds three long scripts)."""
    page = soup(site / "byol.html")
    panels = {}
    for button in page.select(".sphinx-tabs-tab"):
        panels[button.get_text(strip=True)] = page.find(id=button["aria-controls"])
    return panels


def download_targets(site: Path, panel) -> dict[str, Path]:
    """The files that a panel's download links point to, by file name."""
    targets = {}
    for link in panel.select("a.download"):
        path = site / urllib.parse.unquote(link["href"])
        targets[path.name] = path
    return targets


def test_one_tab_per_variant_in_order(site):
    assert list(tab_panels(site)) == list(VARIANTS.values())


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_tab_shows_its_script_in_full(site, variant):
    panel = tab_panels(site)[VARIANTS[variant]]
    blocks = [pre.get_text() for pre in panel.select("div.highlight pre")]
    if not script_path(variant).exists():
        assert "is not written yet" in panel.get_text()
        pytest.skip(f"examples/{variant}/byol.py does not exist yet")
    script = script_path(variant).read_text()
    assert script.rstrip("\n") in [block.rstrip("\n") for block in blocks]
    # and no other variant's script leaks into this tab
    for other in present_variants():
        if other != variant and script_path(other).read_text() != script:
            assert script_path(other).read_text().rstrip("\n") not in [b.rstrip("\n") for b in blocks]
    # the command that runs it
    assert f"examples/{variant}/byol.py" in " ".join(blocks[:-1] or blocks)


@pytest.mark.parametrize("variant", present_variants())
def test_downloads_are_the_script_and_its_notebook(site, variant):
    targets = download_targets(site, tab_panels(site)[VARIANTS[variant]])
    assert set(targets) == {"byol.py", "byol.ipynb"}
    assert targets["byol.py"].read_text() == script_path(variant).read_text()
    notebook = nbformat.read(targets["byol.ipynb"], as_version=4)
    nbformat.validate(notebook)
    # the stable copy behind the Colab badge is the same notebook
    assert (site / "notebooks" / variant / "byol.ipynb").read_bytes() == targets["byol.ipynb"].read_bytes()


@pytest.mark.parametrize("variant", present_variants())
def test_colab_badge_points_at_the_published_notebook(site, variant):
    panel = tab_panels(site)[VARIANTS[variant]]
    badge = panel.find("img", alt="Open in Colab")
    assert badge is not None
    href = badge.find_parent("a")["href"]
    repository = CONF["repository_url"].removeprefix("https://github.com/")
    assert href == (
        f"https://colab.research.google.com/github/{repository}/blob/gh-pages/notebooks/{variant}/byol.ipynb"
    )


@pytest.mark.parametrize("variant", present_variants())
def test_notebook_code_is_the_script_code(site, variant):
    targets = download_targets(site, tab_panels(site)[VARIANTS[variant]])
    notebook = nbformat.read(targets["byol.ipynb"], as_version=4)
    code_cells = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    install, code_cells = code_cells[0], code_cells[1:]
    assert notebook.cells[0].cell_type == "code" and INSTALL_CELL_MARK in install
    assert "pytorch-lightning" in install and "torchvision" in install
    expected = script_code_blocks(script_path(variant).read_text())
    assert len(expected) > 1, "the script has no `# %%` sections"
    assert [normalise_code(c) for c in code_cells] == [normalise_code(c) for c in expected]
    # text cells sit between the code cells: one per `# %%` section, plus the docstring's
    markdown = [cell for cell in notebook.cells if cell.cell_type == "markdown"]
    assert len(markdown) >= len(expected)


def internal_links(page: Path, site: Path):
    """(attribute value, resolved path, fragment) of every link to a file of the site."""
    for tag in soup(page).find_all(["a", "link", "img", "script", "source"]):
        for attribute in ("href", "src"):
            value = tag.get(attribute)
            if not value:
                continue
            parsed = urllib.parse.urlsplit(value)
            if parsed.scheme or parsed.netloc or value.startswith(("mailto:", "data:", "javascript:")):
                continue
            if not parsed.path:  # a link within the page
                yield value, page, parsed.fragment
                continue
            target = (page.parent / urllib.parse.unquote(parsed.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            yield value, target, parsed.fragment


def test_no_broken_internal_links(site):
    pages = sorted(site.rglob("*.html"))
    assert len(pages) >= 6
    ids: dict[Path, set[str]] = {}
    broken = []
    for page in pages:
        for value, target, fragment in internal_links(page, site):
            if not target.is_relative_to(site.resolve()) or not target.exists():
                broken.append(f"{page.relative_to(site)}: {value}")
                continue
            if fragment and target.suffix == ".html":
                if target not in ids:
                    document = soup(target)
                    ids[target] = {tag.get("id") for tag in document.find_all(id=True)} | {
                        tag.get("name") for tag in document.find_all(attrs={"name": True})
                    }
                if fragment not in ids[target]:
                    broken.append(f"{page.relative_to(site)}: {value} (no #{fragment})")
    assert not broken, "\n".join(broken)


def table_rows(rst: str, title_line: str) -> list[list[str]]:
    """The rows of the first list-table after `title_line` (a line of the RST)."""
    after_title = rst[rst.index(title_line) :]
    lines = after_title[after_title.index(".. list-table::") :].splitlines()
    rows: list[list[str]] = []
    for line in lines[1:]:
        if line.startswith("   * - "):
            rows.append([line.removeprefix("   * - ")])
        elif line.startswith("     - "):
            rows[-1].append(line.removeprefix("     - "))
        elif line.startswith("       ") and rows:
            rows[-1][-1] += " " + line.strip()
        elif line.strip() and not line.startswith("   "):
            break
    return rows


@pytest.mark.parametrize("variant", present_variants())
def test_hyperparameter_table_holds_every_default(variant):
    """The table shows the PyTorch script's defaults and says that the Lightning ones share them."""
    byol = load_script(script_path(variant), f"byol_docs_{variant}")
    rows = table_rows((DOCS / "how_byol_works.rst").read_text(), "The hyperparameters")
    defaults = {}
    for row in rows[1:]:
        flag = re.fullmatch(r"``(--[a-z-]+)``", row[1])
        if flag:
            defaults[flag.group(1)] = re.match(r"``([^`]+)``", row[2]).group(1)
    settings = vars(byol.parse_args([]))
    learned = [
        "data",
        "input_size",
        "backbone",
        "hidden_dim",
        "proj_dim",
        "optimizer",
        "epochs",
        "batch_size",
    ]
    learned += ["lr", "weight_decay", "warmup_epochs", "tau_base", "knn_k", "eval_every", "seed"]
    expected = {f"--{name.replace('_', '-')}": settings[name] for name in learned}
    assert set(expected) | {"--blur"} <= set(defaults), (
        f"missing from the table: {set(expected) - set(defaults)}"
    )
    for flag, default in expected.items():
        assert defaults[flag] == str(default), flag
    assert defaults["--blur"] == "auto"  # decided by the input size


def test_results_page_is_the_generators_output(tmp_path):
    """docs/results/ holds what docs/make_results.py makes of benchmarks/results/ now: not stale,
    not edited by hand."""
    make_results = load_script(DOCS / "make_results.py", "make_results")
    make_results.generate(DOCS.parent / "benchmarks" / "results", tmp_path)
    committed = DOCS / "results"
    assert (tmp_path / "results.inc").read_text() == (committed / "results.inc").read_text(), (
        "docs/results/ is stale: run python docs/make_results.py"
    )
    generated_pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert generated_pngs == sorted(p.name for p in committed.glob("*.png"))


def test_results_page_shows_the_results_or_says_none(site):
    text = soup(site / "results.html").get_text(" ", strip=True)
    results_dir = DOCS.parent / "benchmarks" / "results"
    has_throughput = any(results_dir.glob("throughput-*.json"))
    has_accuracy = any(results_dir.glob("accuracy-*.json"))
    assert ("no benchmarks/results/throughput-<machine>.json exists" in text) != has_throughput
    assert ("no benchmarks/results/accuracy-<name>.json exists" in text) != has_accuracy
    for path in results_dir.glob("accuracy-*.json"):
        assert json.loads(path.read_text())["device"] in text
