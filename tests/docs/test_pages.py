"""The built pages: the scripts shown in full, notebooks equal to their scripts, no broken internal link,
the hyperparameter table equal to the scripts' defaults, the Results page equal to its generator's."""

import ast
import contextlib
import copy
import difflib
import functools
import io
import json
import re
import sys
import types
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


@functools.cache
def soup(path: Path) -> BeautifulSoup:
    """A built page, parsed once per test session (the BYOL page, three scripts long, takes a second):
    read it, do not change it."""
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


def code_of(pre) -> str:
    """The code of a listing, without its line numbers."""
    pre = copy.copy(pre)
    for number in pre.select("span.linenos"):
        number.decompose()
    return pre.get_text()


def line_numbers_of(pre) -> list[int]:
    return [int(number.get_text()) for number in pre.select("span.linenos")]


def assigned_names(node: ast.AST) -> set[str]:
    """The names an assignment binds, one (A = ...) or several (A, B = ...)."""
    names = set()
    for target in getattr(node, "targets", []):
        names |= {element.id for element in ast.walk(target) if isinstance(element, ast.Name)}
    return names


def object_source(path: Path, name: str) -> tuple[int, int]:
    """First and last line of a function, class or method (Class.method) of a script, decorators included."""
    body = ast.parse(path.read_text()).body
    for part in name.split("."):  # a def or class by its name, or a top-level assignment by its target
        node = next(n for n in body if part in {getattr(n, "name", None), *assigned_names(n)})
        body = getattr(node, "body", [])
    return min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))]), node.end_lineno


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_tab_shows_its_script_in_full(site, variant):
    panel = tab_panels(site)[VARIANTS[variant]]
    if not script_path(variant).exists():
        assert "is not written yet" in panel.get_text()
        pytest.skip(f"examples/{variant}/byol.py does not exist yet")
    listings = panel.select(f"div.byol-script-{variant.replace('_', '-')} pre")
    assert len(listings) == 1
    script = script_path(variant).read_text()
    assert code_of(listings[0]).rstrip("\n") == script.rstrip("\n")
    assert line_numbers_of(listings[0]) == list(range(1, len(script.splitlines()) + 1))
    # and no other variant's script is in this tab
    blocks = [code_of(pre).rstrip("\n") for pre in panel.select("div.highlight pre")]
    for other in present_variants():
        if other != variant:
            assert script_path(other).read_text().rstrip("\n") not in blocks


@pytest.mark.parametrize("variant", present_variants())
def test_tab_starts_with_its_command_its_intro_and_its_downloads(site, variant):
    """A reader meets the command, the tab's intro paragraph and the downloads, then the details, the
    BYOL core from the script itself with the script's own line numbers, and the whole script."""
    panel = tab_panels(site)[VARIANTS[variant]]
    settings = CONF["byol_variants"][variant]
    first = panel.select("div.highlight pre")[0]
    assert code_of(first).strip() == settings["command"]
    byol = load_script(script_path(variant), f"byol_core_{variant}")
    assert byol.parse_args(settings["command"].split()[2:])  # the command's flags exist
    lines = script_path(variant).read_text().splitlines()
    cores = panel.select("div.byol-core pre")
    assert len(cores) == len(settings["core"])
    for pre, name in zip(cores, settings["core"], strict=True):
        start, end = object_source(script_path(variant), name)
        assert code_of(pre).rstrip("\n") == "\n".join(lines[start - 1 : end]), name
        assert line_numbers_of(pre) == list(range(start, end + 1)), name
        caption = pre.find_parent("div", class_="literal-block-wrapper").select_one(".caption-text")
        assert caption.get_text() == f"{name}, lines {start}-{end}"
    # in this order: the command, the intro (the directive's first paragraph), the downloads, the core,
    # the whole script; nothing but the intro between the command and the downloads
    source = (DOCS / "byol.rst").read_text()
    content = source[source.index(f".. byol-variant:: {variant}") :].split("\n\n")[1]
    intro = " ".join(content.split())
    children = [child for child in panel.children if getattr(child, "name", None)]
    command = next(c for c in children if c.select_one("pre") is first or c.find("pre") is first)
    download = next(c for c in children if c.select_one("a.download"))
    after_command = children[children.index(command) + 1 : children.index(download)]
    assert [" ".join(c.get_text().split()) for c in after_command] == [intro.replace("``", "")]
    elements = panel.find_all(True)
    core = panel.select_one("div.byol-core")
    script = panel.select_one(f"div.byol-script-{variant.replace('_', '-')}")
    assert elements.index(download) < elements.index(core) < elements.index(script)


def test_the_distributed_tab_shows_what_it_adds_to_the_lightning_script(site):
    variant = "pytorch_lightning_distributed"
    base = CONF["byol_variants"][variant]["diff"]
    if not script_path(variant).exists():
        pytest.skip("no distributed script yet")
    diffs = tab_panels(site)[VARIANTS[variant]].select("div.byol-diff pre")
    assert len(diffs) == 1
    expected = difflib.unified_diff(
        script_path(base).read_text().splitlines(),
        script_path(variant).read_text().splitlines(),
        f"examples/{base}/byol.py",
        f"examples/{variant}/byol.py",
        lineterm="",
    )
    assert code_of(diffs[0]).rstrip("\n") == "\n".join(expected)
    for other in ["pytorch", base]:  # only the distributed script is a diff of another
        assert not tab_panels(site)[VARIANTS[other]].select("div.byol-diff")


@pytest.mark.parametrize("variant", present_variants())
def test_downloads_are_the_script_and_its_notebook(site, variant):
    targets = download_targets(site, tab_panels(site)[VARIANTS[variant]])
    assert set(targets) == {"byol.py", "byol.ipynb"}
    assert targets["byol.py"].read_text() == script_path(variant).read_text()
    notebook = nbformat.read(targets["byol.ipynb"], as_version=4)
    nbformat.validate(notebook)
    # the stable copy behind the Colab badge is the same notebook
    assert (site / "notebooks" / variant / "byol.ipynb").read_bytes() == targets["byol.ipynb"].read_bytes()


def test_no_colab_badge_or_repository_link_without_an_address(site):
    """built_site() builds without BYOL_REPOSITORY_URL: no badge or link may point at an address that is
    not set (test_build builds with one and checks the badges)."""
    for page in site.glob("*.html"):
        document = soup(page)
        assert not document.find("img", alt="Open in Colab"), page.name
        links = [a["href"] for a in document.find_all("a", href=True)]
        assert not [h for h in links if "colab.research.google.com" in h or "/blob/" in h], page.name


@pytest.mark.parametrize("variant", present_variants())
def test_notebook_code_is_the_script_code(site, variant):
    targets = download_targets(site, tab_panels(site)[VARIANTS[variant]])
    notebook = nbformat.read(targets["byol.ipynb"], as_version=4)
    code_cells = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    install, code_cells = code_cells[0], code_cells[1:]
    assert notebook.cells[0].cell_type == "code" and INSTALL_CELL_MARK in install
    for package in ["torch", "torchvision", "kornia", "tqdm", "pytorch-lightning"]:  # what the scripts import
        assert package in install.split(), package
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
    defaults, shown = {}, {}
    for row in rows[1:]:
        flag = re.fullmatch(r"``(--[a-z-]+)``", row[1])
        if flag:
            defaults[flag.group(1)] = re.match(r"``([^`]+)``", row[2]).group(1)
            shown[flag.group(1)] = row[2]
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
    assert set(expected) == set(defaults), f"the table's flags differ: {set(expected) ^ set(defaults)}"
    for flag, default in expected.items():
        if isinstance(default, float):  # 10.0 epochs of warm-up read 10
            assert float(defaults[flag]) == default, flag
        else:
            assert defaults[flag] == str(default), flag
    # --optimizer lars brings defaults of its own, which the table names after the SGD ones
    lars = vars(byol.parse_args(["--optimizer", "lars"]))
    for name in ["lr", "weight_decay"]:
        flag = f"--{name.replace('_', '-')}"
        assert f"``{lars[name]}`` with ``--optimizer lars``" in shown[flag], flag


# Flags that the pages give to other programs than the scripts
OTHER_PROGRAMS_FLAGS = {
    "torchrun": {"--nnodes", "--nproc-per-node", "--node-rank", "--master-addr", "--master-port"},
    "sbatch": {"--nodes", "--ntasks-per-node", "--gpus-per-node"},
    "docker": {"--shm-size", "--ipc"},
    "docs/make_augmentation_figure.py": {"--cifar10-train"},
    "benchmarks/subset.py": {"--images", "--seed"},
}


def script_flags(variant: str) -> set[str]:
    """The flags of a script, as its --help lists them."""
    byol = load_script(script_path(variant), f"byol_flags_{variant}")
    help_text = io.StringIO()
    with contextlib.redirect_stdout(help_text), pytest.raises(SystemExit):
        byol.parse_args(["--help"])
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", help_text.getvalue()))


def test_every_flag_that_the_pages_name_exists():
    """A flag that a page or the README names is one of the scripts' (or another program's): a flag the
    scripts dropped cannot linger in the docs. The results' includes quote the commands of earlier runs
    as they were, and are left out."""
    known = set().union(*(script_flags(variant) for variant in present_variants()))
    known |= set().union(*OTHER_PROGRAMS_FLAGS.values())
    pages = [*sorted(DOCS.glob("*.rst")), DOCS.parent / "README.md"]
    unknown = {}
    for page in pages:
        flags = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", page.read_text())) - known
        if flags:
            unknown[page.name] = sorted(flags)
    assert not unknown, unknown


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


def test_links_to_lines_of_a_script_show_those_lines(site):
    """How BYOL works links each implementation detail to its lines: the link's target line holds what
    its title names, and the BYOL page shows that line of the script under that anchor."""
    page = soup(site / "how_byol_works.html")
    links = page.select("a.byol-lines")
    assert len(links) >= 10
    byol_page = soup(site / "byol.html")
    for link in links:
        where, target = link["href"].split("#")
        assert where == "byol.html", link
        variant, number = re.fullmatch(r"(\w+)-L(\d+)", target).groups()
        title = re.fullmatch(rf"examples/{variant}/byol.py: ([\w.]+)(?: \((.+)\))?", link["title"])
        name, text = title.groups()
        start, end = object_source(script_path(variant), name)
        lines = script_path(variant).read_text().splitlines()
        if text:  # the first line of the object that holds the text
            expected = next(n for n in range(start, end + 1) if text in lines[n - 1])
            assert link.get_text() == f"line {expected}"
        else:
            expected = start
            assert link.get_text() == (f"lines {start}-{end}" if end > start else f"line {start}")
        assert int(number) == expected, link
        shown = byol_page.find(id=target)
        assert shown.find_parent("div", class_=f"byol-script-{variant.replace('_', '-')}"), target
        assert code_of(shown).rstrip("\n") == lines[expected - 1], target


def code_blocks(text: str, opening: str) -> list[str]:
    """The code blocks of a README (after ```bash) or of an RST page (after .. code-block:: bash)."""
    blocks = []
    if opening == "```bash":
        for block in text.split("```bash\n")[1:]:
            blocks.append(block.split("```")[0])
    else:
        for block in text.split(".. code-block:: bash\n\n")[1:]:
            lines = []
            for line in block.splitlines():
                if line and not line.startswith("   "):
                    break
                lines.append(line.removeprefix("   "))
            blocks.append("\n".join(lines).strip("\n") + "\n")
    return blocks


def test_readme_and_landing_page_give_the_same_set_up():
    readme = (DOCS.parent / "README.md").read_text()
    landing = (DOCS / "index.rst").read_text()
    set_up = code_blocks(readme[readme.index("## Set up") :], "```bash")[0]
    assert set_up == code_blocks(landing[landing.index("Quick start") :], ".. code-block")[0]
    # its main job is a run of the plain script whose flags all exist
    main_job = " ".join(set_up.replace("\\\n", " ").split("&&")[1].split("\n")[0].split())
    assert main_job.startswith("python examples/pytorch/byol.py ")
    byol = load_script(script_path("pytorch"), "byol_readme")
    args = byol.parse_args(main_job.split()[2:])
    assert args.data == "synthetic"
    assert "pip install nox && nox" in set_up  # and the tests


def test_quick_start_figures_are_the_measured_ones(site):
    """The README and the landing page quote benchmarks/results/quick-check.json, or no figures."""
    readme = " ".join((DOCS.parent / "README.md").read_text().split())
    landing = soup(site / "index.html").get_text(" ", strip=True)
    path = DOCS.parent / "benchmarks" / "results" / "quick-check.json"
    if not path.exists():
        assert "(untrained)" not in readme and "(untrained)" not in landing
        return
    quick = json.loads(path.read_text())
    went = f"went from {quick['untrained_knn_top1']:.2f} (untrained) to {quick['knn_top1'][-1]:.2f}"
    took = f"took {quick['seconds']:.0f} seconds"
    for text in (readme, landing):
        assert went in text and took in text
    assert quick["command"] in readme.replace(" \\ ", " ")


def test_troubleshooting_quotes_the_untrained_accuracy_that_was_measured():
    untrained = json.loads(
        (DOCS.parent / "benchmarks/results/tuning/accuracy-cpu-tune-untrained.json").read_text()
    )
    page = (DOCS / "troubleshooting.rst").read_text()
    assert f"{100 * untrained['knn_top1']:.1f} %" in " ".join(page.split())


def test_no_page_shows_a_path_of_the_machine_that_built_it(site):
    """Readers see no path of the build machine or of its benchmark data (CIFAR10_DIR stands for it)."""
    internal = ["shared/data", "../shared", "/work/", "/tmp/", "/root/", "/home/", str(DOCS.parent)]
    shown = [*site.rglob("*.html"), *site.rglob("*.ipynb"), *site.rglob("*.py"), *site.rglob("*.txt")]
    assert not list(site.rglob("*.pickle")), "Sphinx's doctrees belong beside the site, not in it"
    assert len(shown) > 10
    for path in shown:
        text = path.read_text()
        if path.suffix == ".html":
            text = soup(path).get_text()
        found = [part for part in internal if part in text]
        assert not found, f"{path.relative_to(site)}: {found}"


def text_outside_code(path: Path) -> str:
    """A page's text as a reader sees it, without its code blocks and inline code (cut out of the HTML
    before it is parsed: the BYOL page is mostly code)."""
    html = re.sub(r"<(pre|code|script|style)\b.*?</\1>", " ", path.read_text(), flags=re.S)
    return BeautifulSoup(html, "html.parser").get_text(" ")


def test_no_markup_shows_as_text(site):
    """No page shows RST's markup itself: ``code`` inside **bold** is not code, but literal backticks."""
    shown = {}
    for page in sorted(site.rglob("*.html")):
        text = text_outside_code(page)
        found = [mark for mark in ["``", "**", ":script:", ":doc:", ":ref:"] if mark in text]
        if found:
            shown[str(page.relative_to(site))] = found
    assert not shown, shown


@pytest.mark.parametrize("variant", present_variants())
def test_gallery_pages_show_the_commands_as_bash(site, variant):
    """The commands of a script's docstring, on its gallery page, are highlighted as bash, not as Python,
    and each line is a command as a shell takes it: no doubled backslash at a line's end."""
    page = soup(site / "gallery" / variant / "byol.html")
    commands = [
        pre
        for pre in page.select("div.highlight pre")
        if pre.get_text().lstrip().startswith(("python ", "torchrun "))
    ]
    assert commands, "the docstring's commands"
    for pre in commands:
        wrapper = pre.find_parent("div", class_=re.compile(r"^highlight-"))
        assert "highlight-bash" in wrapper["class"], (wrapper["class"], pre.get_text()[:80])
        for line in pre.get_text().splitlines():
            assert not line.rstrip().endswith("\\\\"), line
    # and nowhere else on the page, nor in the notebook, a line that ends in a doubled backslash
    assert not re.search(r"\\\\\n", page.get_text()), variant
    notebook = nbformat.read(site / "notebooks" / variant / "byol.ipynb", as_version=4)
    assert not any(re.search(r"\\\\\n", cell.source) for cell in notebook.cells), variant


BARE_MAIN = "bare main() trains with the defaults"


def test_the_pages_say_what_a_bare_main_does(site, monkeypatch):
    """In a notebook, a bare main() trains with the defaults (it reads no command line: Jupyter's is the
    kernel's): the BYOL page, each notebook's first cell and last text cell, and each gallery page say so,
    and no page says otherwise."""

    def said(text: str) -> str:
        return " ".join(text.replace("`", "").split())

    assert BARE_MAIN in said(soup(site / "byol.html").get_text())
    for variant in present_variants():
        notebook = nbformat.read(site / "notebooks" / variant / "byol.ipynb", as_version=4)
        first = notebook.cells[0].source
        assert BARE_MAIN in said(first) and INSTALL_CELL_MARK in first, variant
        last_text = [cell for cell in notebook.cells if cell.cell_type == "markdown"][-1]
        assert BARE_MAIN in said(last_text.source), variant
        assert BARE_MAIN in said(soup(site / "gallery" / variant / "byol.html").get_text()), variant
        # what they say is true: under a kernel, with a kernel's command line, main() gets the defaults,
        # which train on CIFAR-10 (downloaded to ./data) for 100 epochs
        byol = load_script(script_path(variant), f"byol_flags_{variant}")
        monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
        monkeypatch.setattr(sys, "argv", ["ipykernel_launcher.py", "-f", "kernel-1234.json"])
        defaults = vars(byol.parse_args(None))
        assert defaults == vars(byol.parse_args([])), variant
        assert (defaults["data"], defaults["data_dir"], defaults["epochs"]) == ("cifar10", "data", 100)
        monkeypatch.delitem(sys.modules, "ipykernel")
    kernels_command_line = re.compile(r"kernel's (own )?command line")
    for page in site.rglob("*.html"):
        assert not kernels_command_line.search(said(soup(page).get_text())), page.name
    for notebook in site.rglob("*.ipynb"):
        assert not kernels_command_line.search(said(notebook.read_text())), notebook


def test_how_byol_works_dates_what_it_quotes_from_the_benchmarks():
    """Each paragraph of How BYOL works that quotes a results file names the date and the commit of its
    measurement, and its figures are that file's; no paragraph says that the default epochs "take
    minutes" without a measurement."""
    text = (DOCS / "how_byol_works.rst").read_text()
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n|\n(?=- )", text)]
    quoting = [p for p in paragraphs if "benchmarks/results/" in p]
    assert quoting
    for paragraph in quoting:
        path = re.search(r"benchmarks/results/[\w./-]+\.json", paragraph).group()
        result = json.loads((DOCS.parent / path).read_text())
        assert result["date"] in paragraph and result["commit"] in paragraph, paragraph
        values = [v for v in result.values() if isinstance(v, int | float)]
        values += [v for v in result.get("candidates_images_per_s", {}).values()]
        for figure in re.findall(r"\b\d{1,3}(?:,\d{3})+\b", paragraph):  # 10,458 images/s
            assert any(round(value) == int(figure.replace(",", "")) for value in values), (figure, path)
        for seconds in re.findall(r"\b(\d+) s\b", paragraph):  # trained in 69 s
            assert any(round(value) == int(seconds) for value in values), (seconds, path)
        for percent in re.findall(r"\b(\d+\.\d) %", paragraph):  # a kNN accuracy of 45.6 %
            assert any(f"{100 * value:.1f}" == percent for value in values), (percent, path)
        if "images/s" in paragraph and "H200" in paragraph:
            assert result["device"] == "NVIDIA H200", path
    for page in [*sorted(DOCS.glob("*.rst")), DOCS.parent / "README.md"]:
        said = " ".join(page.read_text().split())
        assert not re.search(r"epochs take (only )?minutes", said), page.name
