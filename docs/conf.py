"""Sphinx configuration of the BYOL examples' site. Build: `nox -s docs` (or
`python -m sphinx -W --keep-going -b html docs docs/_build/html`). Offline: nothing is fetched."""

import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))

project = "BYOL examples"
author = "BYOL examples contributors"
copyright = "BYOL examples contributors, MIT licence"

# The GitHub repository that hosts this project. The "Open in Colab" badges open the notebooks of the
# published site, expected on this repository's `gh-pages` branch under notebooks/<variant>/byol.ipynb
# (the build writes them there: docs/_build/html/notebooks/). Change this one line for a fork.
repository_url = "https://github.com/byol-examples/byol-examples"

extensions = [
    "sphinx.ext.mathjax",
    "sphinx_copybutton",
    "sphinx_gallery.gen_gallery",
    "sphinx_tabs.tabs",
    "byol_docs",  # docs/_ext/byol_docs.py: the variants' tabs content and the notebooks' stable copies
]

# The three example scripts, in the order of the BYOL page's tabs. A script that does not exist yet is
# left out of the gallery and its tab says so; the build works with any subset.
byol_variants = {
    "pytorch": "PyTorch",
    "pytorch_lightning": "Lightning",
    "pytorch_lightning_distributed": "Lightning Distributed",
}
byol_repository_url = repository_url
present = [name for name in byol_variants if (ROOT / "examples" / name / "byol.py").exists()]
for name in set(byol_variants) - set(present):  # the gallery of a script that was removed must go
    shutil.rmtree(DOCS / "gallery" / name, ignore_errors=True)

sphinx_gallery_conf = {
    "examples_dirs": [f"../examples/{name}" for name in present],
    "gallery_dirs": [f"gallery/{name}" for name in present],
    "plot_gallery": False,  # never execute the scripts during the build
    # only the byol.py scripts, not a helper module that may appear beside one
    "ignore_pattern": r"(?:^|[/\\])(?!byol\.py$)[^/\\]+\.py$",
    "first_notebook_cell": (
        "# Install the examples' dependencies (Colab already has torch and torchvision).\n"
        "%pip install --quiet torch torchvision tqdm pytorch-lightning"
    ),
    "download_all_examples": False,
    "write_computation_times": False,
    "show_signature": False,
    "remove_config_comments": True,
}
# The three scripts are all called byol.py; their labels and downloads include the folder.
suppress_warnings = ["sphinx_gallery.duplicate_filename"]

sphinx_tabs_disable_tab_closing = True  # else clicking the open tab closes it
sphinx_tabs_valid_builders = ["linkcheck"]

copybutton_prompt_text = r"\$ "
copybutton_prompt_is_regexp = True

source_suffix = {".rst": "restructuredtext"}
exclude_patterns = ["_build"]
templates_path = []
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_theme = "furo"
html_title = "BYOL examples"
html_favicon = "_static/favicon.svg"
html_show_sourcelink = False
html_copy_source = False
highlight_language = "none"  # plain `::` blocks (commands, folder trees); code blocks name their language
pygments_style = "sphinx"
pygments_dark_style = "monokai"
