"""The site builds from scratch with warnings as errors, and the build holds what the pages promise."""

import re
import subprocess

from docs_support import DOCS, VARIANTS, present_variants, sphinx_build


def test_fresh_build_succeeds_with_warnings_as_errors(tmp_path):
    # -E: a new environment, so every page is read again and every warning shows.
    result = sphinx_build(tmp_path / "html", "-E")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "WARNING" not in output and "ERROR" not in output, output[-5000:]
    for page in ["index", "byol", "how_byol_works", "own_data", "results", "troubleshooting"]:
        assert (tmp_path / "html" / f"{page}.html").exists(), page
    for variant in present_variants():
        assert (tmp_path / "html" / "gallery" / variant / "byol.html").exists(), variant
        # the stable copy that the Colab badge points to
        assert (tmp_path / "html" / "notebooks" / variant / "byol.ipynb").exists(), variant


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
