"""docs/make_results.py on small results files made here: tables, plots, and the page without results."""

import json
import subprocess
import sys

import pytest
from docs_support import DOCS

from conftest import load_script

SCRIPT = DOCS / "make_results.py"

THROUGHPUT = {  # as benchmarks/throughput.py writes it
    "device": "NVIDIA H100 80GB HBM3",
    "torch_version": "2.14.1",
    "data": "/tmp/cifar10/train",
    "batch_size": 256,
    "workers": 15,
    "timed_steps": 100,
    "reference_images_per_s": 3049.4,
    "equal_work_images_per_s": 9120.0,
    "default_images_per_s": 14876.2,
    "ceiling_images_per_s": 16015.0,
    "equal_work_ceiling_images_per_s": 14710.0,
    "ratio_equal_work_to_reference": 2.99,
    "ratio_equal_work_to_ceiling": 0.62,
    "ratio_default_to_ceiling": 0.929,
    "reference_peak_mem_mb": 2100.5,
    "equal_work_peak_mem_mb": 3300.0,
    "default_peak_mem_mb": 5200.0,
    "candidates_images_per_s": {"default_batch_512": 18123.4},
}
ACCURACY = {
    "device": "NVIDIA H200",
    "torch_version": "2.14.1",
    "command": "python examples/pytorch/byol.py --data ../shared/data/cifar10/train "
    "--val ../shared/data/cifar10/test --epochs 4",
    "epochs": 4,
    "batch_size": 512,
    "train_images": 50000,
    "test_images": 10000,
    "train_wall_s": 312.0,
    "total_wall_s": 345.6,
    "images_per_s": 15012.7,
    "knn_top1": 0.7243,
    "linear_top1": None,
    "recipe": {"input_size": 32, "hidden_dim": 4096, "proj_dim": 256, "lr": 0.2, "crops_on_device": True},
}


def metrics_rows(epochs: int, minutes_per_epoch: float) -> list[dict]:
    rows = []
    for epoch in range(1, epochs + 1):
        row = {
            "epoch": epoch,
            "step": 97 * epoch,
            "loss": 2.0 / epoch,
            "lr": 0.4,
            "tau": 0.99,
            "images_per_s": 15000.0,
            "projection_std": 0.05,
            "skipped_images": 0,
            "epoch_time_s": 60 * minutes_per_epoch,
            "elapsed_s": 60 * minutes_per_epoch * epoch,
        }
        if epoch % 2 == 0:
            row["knn_top1"] = 0.3 + 0.1 * epoch
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def make_results():
    return load_script(SCRIPT, "make_results")


TUNING_COMMAND = "python examples/pytorch/byol.py --data cifar10 --input-size 16 --epochs 8"


def write_tuning(directory, changes: dict[str, str]) -> None:
    """Short tuning runs in directory/tuning, one per {name: flags added to TUNING_COMMAND}."""
    (directory / "tuning").mkdir(parents=True, exist_ok=True)
    for index, (name, flags) in enumerate(changes.items()):
        result = {**ACCURACY, "command": f"{TUNING_COMMAND} {flags}".strip(), "knn_top1": 0.3 + index / 100}
        (directory / "tuning" / f"accuracy-{name}.json").write_text(json.dumps(result))
        lines = [json.dumps(row) for row in metrics_rows(2, 1.0)]
        (directory / "tuning" / f"accuracy-{name}.metrics.jsonl").write_text("\n".join(lines) + "\n")


def write_results(directory, accuracy=True, metrics=True):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "throughput-h100.json").write_text(json.dumps(THROUGHPUT))
    if accuracy:
        (directory / "accuracy-pytorch-cifar10.json").write_text(json.dumps(ACCURACY))
    if metrics:
        lines = [json.dumps(row) for row in metrics_rows(4, 1.3)]
        (directory / "accuracy-pytorch-cifar10.metrics.jsonl").write_text("\n".join(lines) + "\n")
    return directory


def test_tables_and_plots_from_results(make_results, tmp_path):
    results = write_results(tmp_path / "results")
    written = make_results.generate(results, tmp_path / "out")
    assert sorted(p.name for p in written) == ["results.inc", "training-curves.png"]
    rst = (tmp_path / "out" / "results.inc").read_text()
    assert "Not measured yet" not in rst
    # throughput: machine, device, the images/s, against the reference and against its own ceiling
    throughput = rst[rst.index("Throughput") : rst.index("Accuracy")]
    rows = [line.strip() for line in throughput.splitlines() if line.startswith(("   * - ", "     - "))]
    assert rows == [
        *["* - loop", "- images/s", "- x reference", "- of its ceiling", "- peak GPU memory (MB)"],
        *["* - reference: lightly 1.6.0's example", "- 3,049", "- 1.00x", "- n/a", "- 2,100"],
        *["* - ours, equal work", "- 9,120", "- 2.99x", "- 62 %", "- 3,300"],
        *["* - ours, defaults", "- 14,876", "- 4.88x", "- 93 %", "- 5,200"],
        *["* - ceiling, equal work", "- 14,710", "- 4.82x", "- n/a", "- n/a"],
        *["* - ceiling, defaults", "- 16,015", "- 5.25x", "- n/a", "- n/a"],
    ]
    assert "**h100**: NVIDIA H100 80GB HBM3, torch 2.14.1, batch 256, 15 DataLoader workers." in rst
    command = "python benchmarks/throughput.py --data /tmp/cifar10/train --batch-size 256 --workers 15"
    assert f"   {command} --steps 100" in rst
    assert "- ``default_batch_512``: 18,123" in rst  # the other configurations of the same run
    # accuracy: device, kNN top-1 as a percentage, linear not measured, images/s, minutes, command
    accuracy = rst[rst.index("Accuracy") :]
    rows = [line.strip() for line in accuracy.splitlines() if line.startswith(("   * - ", "     - "))]
    assert rows[8:] == [
        *["* - pytorch-cifar10", "- NVIDIA H200", "- 4, 512", "- 50,000 / 10,000"],
        *["- 72.4\u00a0%", "- n/a", "- 15,013", "- 5.2 / 5.8"],
    ]
    assert "``pytorch-cifar10`` (torch 2.14.1):" in rst
    assert "   " + ACCURACY["command"] in rst
    # the settings it resolved, defaults included, from the recipe that accuracy.py records
    recipe = "32 px, heads 4096 to 256, lr 0.2 per 256 images, crops on the device"
    assert f"Its settings, defaults included: {recipe}." in rst
    assert ".. image:: /results/training-curves.png" in rst
    png = (tmp_path / "out" / "training-curves.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


def test_curves_are_the_metrics(make_results, tmp_path):
    rows = metrics_rows(4, 1.5)
    epochs, minutes, knn = make_results.curve(rows, "knn_top1")
    assert epochs == [2.0, 4.0] and minutes == [3.0, 6.0]
    assert knn == pytest.approx([0.5, 0.7])
    epochs, minutes, loss = make_results.curve(rows, "loss")
    assert epochs == [1.0, 2.0, 3.0, 4.0] and loss == pytest.approx([2.0, 1.0, 2 / 3, 0.5])


def test_a_resumed_runs_repeated_epoch_keeps_its_last_row(make_results, tmp_path):
    rows = metrics_rows(3, 1.0)
    repeated = {**rows[1], "loss": 9.0}
    path = tmp_path / "run.metrics.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [rows[0], rows[1], repeated, rows[2]]) + "\n")
    read = make_results.read_metrics(path)
    assert [row["epoch"] for row in read] == [1, 2, 3] and read[1]["loss"] == 9.0


def test_without_results_the_page_says_not_measured(make_results, tmp_path):
    out = tmp_path / "out"
    # a plot left from earlier results must go
    make_results.generate(write_results(tmp_path / "before"), out)
    assert (out / "training-curves.png").exists()
    written = make_results.generate(tmp_path / "no-such-folder", out)
    assert [p.name for p in written] == ["results.inc"]
    assert not (out / "training-curves.png").exists()
    rst = (out / "results.inc").read_text()
    assert rst.count("Not measured yet") == 2 and ".. image::" not in rst


def test_accuracy_without_metrics_has_no_plot(make_results, tmp_path):
    written = make_results.generate(write_results(tmp_path / "results", metrics=False), tmp_path / "out")
    assert [p.name for p in written] == ["results.inc"]
    rst = (tmp_path / "out" / "results.inc").read_text()
    assert "72.4\u00a0%" in rst and "No metrics.jsonl for: pytorch-cifar10" in rst


def test_tuning_runs_show_what_each_changed(make_results, tmp_path):
    results = write_results(tmp_path / "results")
    write_tuning(results, {"a-lr0.2": "--lr 0.2", "b-lr0.1": "--lr 0.1", "c-tau": "--lr 0.1 --tau-base 0.98"})
    make_results.generate(results, tmp_path / "out")
    rst = (tmp_path / "out" / "results.inc").read_text()
    tuning = rst[rst.index("Tuning runs") :]
    assert f"   {TUNING_COMMAND}\n" in tuning  # the settings every run shares, once
    # the test sample's noise: 2 standard errors of a difference, at 10,000 images and 31 % on average
    assert "on 10,000 test images: a difference between two runs under 1.3 points" in tuning
    rows = [line.strip() for line in tuning.splitlines() if line.startswith(("   * - ", "     - "))]
    header = ["* - run", "- settings changed", "- device", "- kNN top-1", "- linear top-1", "- last loss"]
    assert rows[:7] == [*header, "- minutes"]
    assert rows[7:10] == ["* - a-lr0.2", "- --lr 0.2", "- NVIDIA H200"]
    assert rows[10:12] == ["- 30.0\u00a0%", "- n/a"]
    assert rows[12] == "- 1.000"  # the loss of the last epoch
    assert rows[14:16] == ["* - b-lr0.1", "- --lr 0.1"]
    assert rows[21:23] == ["* - c-tau", "- --lr 0.1 --tau-base 0.98"]
    # the tuning runs stay out of the main table and the curves
    assert "a-lr0.2" not in rst[: rst.index("Tuning runs")]


def test_without_tuning_runs_no_tuning_table(make_results, tmp_path):
    make_results.generate(write_results(tmp_path / "results"), tmp_path / "out")
    assert "Tuning runs" not in (tmp_path / "out" / "results.inc").read_text()


def test_generated_rst_builds_without_warnings(make_results, tmp_path):
    """The include, with tables, commands and plot, is valid RST for Sphinx under -W."""
    source = tmp_path / "site"
    results = write_results(tmp_path / "results")
    write_tuning(results, {"lr0.2": "--lr 0.2", "lr0.1": "--lr 0.1"})
    make_results.generate(results, source / "results")
    (source / "conf.py").write_text("")
    (source / "index.rst").write_text("Results\n=======\n\n.. include:: results/results.inc\n")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", str(source), str(tmp_path / "html")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    html = (tmp_path / "html" / "index.html").read_text()
    assert "72.4\u00a0%" in html and "training-curves.png" in html


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("throughput-x.json", "{not json", "not readable JSON"),
        ("throughput-x.json", json.dumps({"device": "GPU"}), "missing batch_size"),
        ("accuracy-x.json", json.dumps({**ACCURACY, "knn_top1": None}), "missing knn_top1"),
        ("accuracy-x.json", json.dumps([1, 2]), "expected a JSON object"),
    ],
)
def test_bad_results_file_is_named(tmp_path, name, content, problem):
    (tmp_path / name).write_text(content)
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--results-dir", str(tmp_path), "--output-dir", str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert name in result.stderr and problem in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
