"""What the docs tests share: paths, the built site, the scripts' code, a local web server.

A plain module rather than a conftest.py, so that the root conftest stays the only module named
`conftest` (the other tests import from it)."""

import ast
import contextlib
import functools
import http.server
import os
import runpy
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SITE = DOCS / "_build" / "html"
CONF = runpy.run_path(str(DOCS / "conf.py"))
VARIANTS: dict[str, str] = {
    name: variant["label"] for name, variant in CONF["byol_variants"].items()
}  # tab labels
INSTALL_CELL_MARK = "%pip install"


def script_path(variant: str) -> Path:
    return ROOT / "examples" / variant / "byol.py"


def present_variants() -> list[str]:
    return [name for name in VARIANTS if script_path(name).exists()]


def sphinx_build(output: Path, *options: str, repository_url: str = "") -> subprocess.CompletedProcess:
    """Build the site with warnings as errors; repository_url as a fork would set it to publish."""
    environment = {**os.environ, "BYOL_REPOSITORY_URL": repository_url}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-b",
            "html",
            "-d",
            str(output.parent / "doctrees"),  # not in the published folder: they hold this machine's paths
            *options,
            str(DOCS),
            str(output),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environment,
        timeout=600,
    )


@functools.cache
def built_site() -> Path:
    """docs/_build/html, brought up to date once per test session, as a local build: without
    BYOL_REPOSITORY_URL (a no-op after `nox -s docs` without it)."""
    result = sphinx_build(SITE)
    if result.returncode != 0:
        raise AssertionError(f"the docs build failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return SITE


def script_code_blocks(source: str) -> list[str]:
    """The code of a sphinx-gallery script, split where its notebook splits it: without the module
    docstring, cut at each `# %%` line; after a marker, the comment lines that follow it directly are
    a text cell, the rest is code.

    Written independently of sphinx-gallery, so that comparing its notebooks with this tests it."""
    body = ast.parse(source).body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        source = "\n".join(source.splitlines()[body[0].end_lineno :])
    blocks, current = [], []
    for line in source.splitlines():
        if line.rstrip() == "# %%":
            blocks.append(current)
            current = []
            continue
        current.append(line)
    blocks.append(current)
    code = []
    for number, lines in enumerate(blocks):
        start = 0
        if number > 0:  # the text cell right after a marker
            while start < len(lines) and lines[start].startswith("#"):
                start += 1
        text = "\n".join(lines[start:]).strip("\n")
        if text.strip():
            code.append(text)
    return code


def normalise_code(text: str) -> str:
    """Code with trailing whitespace and blank-line runs at block edges removed."""
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve a folder over http on localhost; yields the base URL."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(directory), **kwargs)

        def log_message(self, format, *args):  # keep the test output quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
