"""Each generated notebook runs top to bottom in a Jupyter kernel (nbclient), with the smoke-run
settings passed to main() in its last cell, as a reader would edit it; the install cell is left out
(the test machine is offline and has the dependencies)."""

import json
import re
import runpy

import nbformat
import pytest
from docs_support import INSTALL_CELL_MARK, ROOT, built_site, present_variants

SMOKE_ARGS = runpy.run_path(str(ROOT / "tests" / "smoke_settings.py"))["SMOKE_ARGS"]
# What a notebook needs beyond the shared smoke settings (noxfile.py's EXTRA_SMOKE_ARGS for the
# command-line runs): inside a kernel, DDP on the CPU runs as two processes too.
EXTRA_NOTEBOOK_ARGS = {"pytorch_lightning_distributed": ["--devices", "2", "--accelerator", "cpu"]}


def smoke_notebook(notebook: nbformat.NotebookNode, argv: list[str]) -> nbformat.NotebookNode:
    """The notebook without its install cell, and with main(argv) as the last cell's call."""
    first = notebook.cells[0]
    assert first.cell_type == "code" and INSTALL_CELL_MARK in first.source
    notebook.cells = notebook.cells[1:]
    last = [cell for cell in notebook.cells if cell.cell_type == "code"][-1]
    calls = re.findall(r"\bmain\(\)", last.source)
    assert len(calls) == 1, f"expected one main() call in the last cell:\n{last.source}"
    last.source = last.source.replace("main()", f"main({argv!r})")
    return notebook


@pytest.mark.slow
@pytest.mark.parametrize("variant", present_variants())
def test_notebook_runs_top_to_bottom(variant, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    notebook_path = built_site() / "notebooks" / variant / "byol.ipynb"
    output_dir = tmp_path / "run"
    argv = [*SMOKE_ARGS, *EXTRA_NOTEBOOK_ARGS.get(variant, []), "--output-dir", str(output_dir)]
    notebook = smoke_notebook(nbformat.read(notebook_path, as_version=4), argv)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # the kernel inherits it: a CPU run, as in CI
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if a cell fails

    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.output_type == "error"
    ]
    assert not errors
    metrics = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    epochs = int(SMOKE_ARGS[SMOKE_ARGS.index("--epochs") + 1])
    assert [row["epoch"] for row in metrics] == list(range(1, epochs + 1))
    assert "knn_top1" in metrics[-1]
