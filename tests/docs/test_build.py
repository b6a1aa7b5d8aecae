"""The site builds from scratch with warnings as errors, and the build holds what the pages promise."""

import re
import subprocess

from bs4 import BeautifulSoup
from docs_support import DOCS, VARIANTS, present_variants, sphinx_build

REPOSITORY = "https://github.com/someone/byol-examples"


def test_fresh_build_succeeds_with_warnings_as_errors(tmp_path):
    """Built as a fork publishes it, with its repository's address (the other docs tests read a build
    without one)."""
    # -E: a new environment, so every page is read again and every warning shows.
    result = sphinx_build(tmp_path / "html", "-E", repository_url=REPOSITORY)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "WARNING" not in output and "ERROR" not in output, output[-5000:]
    for page in ["index", "byol", "how_byol_works", "own_data", "results", "troubleshooting"]:
        assert (tmp_path / "html" / f"{page}.html").exists(), page
    for variant in present_variants():
        assert (tmp_path / "html" / "gallery" / variant / "byol.html").exists(), variant
        # not sphinx-gallery's index of one card: the BYOL page's tabs are the index
        assert not (tmp_path / "html" / "gallery" / variant / "index.html").exists(), variant
        # the stable copy that the Colab badge points to
        assert (tmp_path / "html" / "notebooks" / variant / "byol.ipynb").exists(), variant
        # the badge opens that copy, as the repository's gh-pages branch publishes it
        notebook = f"someone/byol-examples/blob/gh-pages/notebooks/{variant}/byol.ipynb"
        badge = f"https://colab.research.google.com/github/{notebook}"
        assert f'href="{badge}"' in (tmp_path / "html" / "byol.html").read_text(), variant
    # in each tab, the badge comes with the downloads, before the BYOL core
    page = BeautifulSoup((tmp_path / "html" / "byol.html").read_text(), "html.parser")
    for variant in present_variants():
        panel = page.find(id=page.find("button", string=VARIANTS[variant])["aria-controls"])
        elements = panel.find_all(True)
        badge, download = panel.select_one("img.colab-badge"), panel.select_one("a.download")
        core = panel.select_one("div.byol-core")
        assert elements.index(badge) < elements.index(download) < elements.index(core), variant
    # and each page's footer links to the repository
    assert f'href="{REPOSITORY}"' in (tmp_path / "html" / "index.html").read_text()


def test_generated_files_are_git_ignored():
    generated = ["docs/gallery/pytorch/byol.ipynb", "docs/_build/html/index.html"]
    result = subprocess.run(
        ["git", "check-ignore", *generated], capture_output=True, text=True, cwd=DOCS.parent
    )
    assert result.stdout.split() == generated, result.stderr


def test_every_variant_has_a_gallery_header():
    # sphinx-gallery refuses an examples folder without one
    for variant in VARIANTS:
        header = DOCS.parent / "examples" / variant / "GALLERY_HEADER.rst"
        assert header.exists(), header
        title, underline = header.read_text().splitlines()[:2]
        assert re.fullmatch(r"=+", underline) and len(underline) >= len(title), header
