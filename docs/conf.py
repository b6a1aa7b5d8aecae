"""Sphinx configuration of the BYOL examples' site. Build: `nox -s docs` (or
`python -m sphinx -W --keep-going -b html docs docs/_build/html`). Offline: nothing is fetched."""

import os
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))

project = "BYOL examples"
author = "BYOL examples contributors"
copyright = "BYOL examples contributors, MIT licence"

# The GitHub repository that hosts this project, read from one environment variable, so that a fork
# publishes with its own address. Unset (a local build), the site shows no repository link and no "Open
# in Colab" badge: they would lead nowhere. Set, the badges open the notebooks of the published site,
# expected on the repository's gh-pages branch under notebooks/<variant>/byol.ipynb (the build writes
# them there: docs/_build/html/notebooks/).
repository_url = os.environ.get("BYOL_REPOSITORY_URL", "").rstrip("/")

extensions = [
    "sphinx.ext.mathjax",
    "sphinx_copybutton",
    "sphinx_gallery.gen_gallery",
    "sphinx_tabs.tabs",
    "byol_docs",  # docs/_ext/byol_docs.py: the variants' tabs content and the notebooks' stable copies
]

# The three example scripts, in the order of the BYOL page's tabs: its label, the command its tab shows
# first, and the objects of the script that make its BYOL core (the loss, the step, the target update).
# A script that does not exist yet is left out of the gallery and its tab says so.
byol_variants = {
    "pytorch": {
        "label": "PyTorch",
        "command": "python examples/pytorch/byol.py --data cifar10",
        "core": ["BYOL.forward", "regression_loss", "update_target", "training_step"],
    },
    "pytorch_lightning": {
        "label": "Lightning",
        "command": "python examples/pytorch_lightning/byol.py --data cifar10",
        "core": ["BYOLModule.training_step", "BYOLModule.optimizer_step"],
    },
    "pytorch_lightning_distributed": {
        "label": "Lightning Distributed",
        "command": "python examples/pytorch_lightning_distributed/byol.py --data cifar10 --devices 4",
        "core": ["BYOLModule.training_step", "BYOLModule.optimizer_step"],
        "diff": "pytorch_lightning",  # shown as a diff against this script
    },
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
        "# Run unedited, the last cell's bare main() trains with the defaults: 100 epochs of CIFAR-10,\n"
        "# which it first downloads to ./data (a GPU runtime helps). To change them, give main() the flags,\n"
        '# e.g. main(["--data", "synthetic", "--epochs", "3"]) for a quick try.\n'
        "%pip install --quiet torch torchvision kornia tqdm pytorch-lightning"
    ),
    "download_all_examples": False,
    "write_computation_times": False,
    "show_signature": False,
    "remove_config_comments": True,
}
# The three scripts are all called byol.py; their labels and downloads include the folder.
suppress_warnings = ["sphinx_gallery.duplicate_filename"]

sphinx_tabs_disable_tab_closing = True  # else clicking the open tab closes it
smartquotes = False  # flags such as --lr must stay copyable: no typographic dashes or quotes
sphinx_tabs_valid_builders = ["linkcheck"]

copybutton_prompt_text = r"\$ "
copybutton_prompt_is_regexp = True

source_suffix = {".rst": "restructuredtext"}
# sphinx-gallery's index pages each hold one card: the tabs of the BYOL page link to the scripts' pages.
exclude_patterns = ["_build", "gallery/*/index.rst"]
templates_path = []
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_js_files = ["byol.js"]  # a link to a line of a script in a hidden tab opens that tab
html_theme = "furo"
html_title = "BYOL examples"
html_favicon = "_static/favicon.svg"
html_show_sourcelink = False
html_copy_source = False
highlight_language = "none"  # plain `::` blocks (commands, folder trees); code blocks name their language
pygments_style = "a11y-light"  # accessible contrast, made for light and dark pages
pygments_dark_style = "a11y-dark"
if repository_url:  # a link to the repository in each page's footer (no "edit this page" button: the
    # scripts' gallery pages are generated, and their sources are not in the repository)
    html_theme_options = {
        "footer_icons": [{"name": "GitHub", "url": repository_url, "html": "Source on GitHub", "class": ""}]
    }
