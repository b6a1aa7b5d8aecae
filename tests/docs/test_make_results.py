"""docs/make_results.py on small results files made here: tables, plots, and the page without results."""

import hashlib
import json
import re
import subprocess
import sys

import pytest
from bs4 import BeautifulSoup
from docs_support import DOCS

from conftest import load_script

SCRIPT = DOCS / "make_results.py"
CURVES = "training-curves-32px-50000.png"  # one plot per view size and number of training images

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
    "augmentations": "kornia, on the device",
    "augmentation_batch_size": 256,
    "augmentation_ms_per_batch": 2.46,
    "augmentation_images_per_s": 104065.0,
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
    assert sorted(p.name for p in written) == ["quick-check.inc", "results.inc", CURVES]
    rst = (tmp_path / "out" / "results.inc").read_text()
    assert "Not measured yet" not in rst
    # in short: each figure with where it comes from; these files record no script version
    headline = rst[rst.index("In short") : rst.index("Throughput\n---")]
    assert "Nothing is measured with today's scripts yet." in headline
    assert "pytorch-cifar10, NVIDIA H200: kNN top-1 72.4\u00a0%" in headline
    assert "equal work at 2.99x the reference's images/s" in headline
    # throughput: machine, device, the images/s, against the reference and against its own ceiling
    throughput = rst[rst.index("Throughput\n---") : rst.index("Accuracy\n---")]
    rows = [line.strip() for line in throughput.splitlines() if line.startswith(("   * - ", "     - "))]
    assert rows == [
        *["* - loop", "- images/s", "- x reference", "- of its ceiling", "- peak GPU memory (MB)"],
        *["* - reference: lightly 1.6.0's example", "- 3,049", "- 1.00x", "- n/a", "- 2,100"],
        *["* - ours, equal work", "- 9,120", "- 2.99x", "- 62 %", "- 3,300"],
        *["* - ours, defaults", "- 14,876", "- 4.88x", "- 93 %", "- 5,200"],
        *["* - ceiling, equal work", "- 14,710", "- 4.82x", "- n/a", "- n/a"],
        *["* - ceiling, defaults", "- 16,015", "- 5.25x", "- n/a", "- n/a"],
    ]
    machine = "**h100** (measured date not recorded, script version not recorded): NVIDIA H100 80GB HBM3"
    settings = "torch 2.14.1, batch 256, our augmentations: kornia, on the device, 15 DataLoader workers."
    assert f"{machine}, {settings}" in rst
    # the augmentation alone, where the benchmark measured it
    augmentation = "both views of a batch of 256 images made on the device, as ``two_views`` makes them"
    assert f"The augmentation alone ({augmentation}): 2.5 ms per batch, 104,065 images/s." in rst
    # the machine's own CIFAR-10 folder is a placeholder for the reader's
    command = "python benchmarks/throughput.py --data CIFAR10_DIR/train --batch-size 256 --workers 15"
    assert f"   {command} --steps 100" in rst
    assert "- ``default_batch_512``: 18,123" in rst  # the other configurations of the same run
    # accuracy: device, kNN top-1 as a percentage, linear not measured, images/s, minutes, command
    accuracy = rst[rst.index("Accuracy\n---") :]
    rows = [line.strip() for line in accuracy.splitlines() if line.startswith(("   * - ", "     - "))]
    assert rows[9:] == [
        *["* - pytorch-cifar10", "- date not recorded, script version not recorded", "- NVIDIA H200"],
        *["- 4, 512", "- 50,000 / 10,000"],
        *["- 72.4\u00a0%", "- n/a", "- 15,013", "- 5.2 / 5.8"],
    ]
    assert "``pytorch-cifar10`` (torch 2.14.1):" in rst
    command = "python examples/pytorch/byol.py --data CIFAR10_DIR/train --val CIFAR10_DIR/test --epochs 4"
    assert f"   {command}\n" in rst and "../shared" not in rst
    # the settings it resolved, defaults included, from the recipe that accuracy.py records
    recipe = "32 px, heads 4096 to 256, lr 0.2 per 256 images, crops on the device"
    assert f"Its settings, defaults included: {recipe}." in rst
    assert f".. image:: /results/{CURVES}" in rst
    png = (tmp_path / "out" / CURVES).read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


def test_throughput_of_earlier_benchmarks_without_the_augmentation_figures(make_results, tmp_path):
    """Results written before the benchmark timed the augmentation alone (or with keys it no longer
    writes, such as a compiled jitter's) still make the page, without that line."""
    results = tmp_path / "results"
    results.mkdir()
    old = {k: v for k, v in THROUGHPUT.items() if not k.startswith("augmentation")} | {"compile": True}
    (results / "throughput-h100.json").write_text(json.dumps(old))
    make_results.generate(results, tmp_path / "out")
    rst = (tmp_path / "out" / "results.inc").read_text()
    assert "Throughput on h100" in rst and "The augmentation alone" not in rst


def test_recipes_without_a_blur_key(make_results, tmp_path):
    """Today's runs record no blur setting (it is always on); earlier runs' recipes said on or off."""
    assert make_results.recipe_text({"input_size": 32, "seed": 0}) == "32 px, seed 0"
    assert make_results.recipe_text({"input_size": 32, "blur": False}) == "32 px, blur off"


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
    assert (out / CURVES).exists()
    written = make_results.generate(tmp_path / "no-such-folder", out)
    assert [p.name for p in written] == ["results.inc", "quick-check.inc"]
    assert not list(out.glob("*.png"))
    rst = (out / "results.inc").read_text()
    assert rst.count("Not measured yet") == 2 and ".. image::" not in rst and "In short" not in rst
    # the landing page says what the quick start prints, without figures
    assert "kNN accuracy" in (out / "quick-check.inc").read_text()
    assert not re.search(r"\d", (out / "quick-check.inc").read_text())


def test_accuracy_without_metrics_has_no_plot(make_results, tmp_path):
    written = make_results.generate(write_results(tmp_path / "results", metrics=False), tmp_path / "out")
    assert [p.name for p in written] == ["results.inc", "quick-check.inc"]
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
    header = ["* - run", "- measured", "- settings changed", "- device", "- kNN top-1", "- linear top-1"]
    assert rows[:8] == [*header, "- last loss", "- minutes"]
    assert rows[8:12] == [
        "* - a-lr0.2",
        "- date not recorded, script version not recorded",
        "- --lr 0.2",
        "- NVIDIA H200",
    ]
    assert rows[12:14] == ["- 30.0\u00a0%", "- n/a"]
    assert rows[14] == "- 1.000"  # the loss of the last epoch
    assert rows[16:19] == ["* - b-lr0.1", "- date not recorded, script version not recorded", "- --lr 0.1"]
    assert rows[24:27] == [
        "* - c-tau",
        "- date not recorded, script version not recorded",
        "- --lr 0.1 --tau-base 0.98",
    ]
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
    assert "72.4\u00a0%" in BeautifulSoup(html, "html.parser").get_text() and CURVES in html


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


def test_figures_say_which_version_of_the_script_they_measured(make_results, tmp_path):
    """A result that records its script's hash counts as today's only while the script is unchanged."""
    root = tmp_path / "root"
    (root / "examples" / "pytorch").mkdir(parents=True)
    script = root / "examples" / "pytorch" / "byol.py"
    script.write_text("print('today')\n")
    provenance = {"date": "2026-12-02", "machine": "2-core CPU", "script": "examples/pytorch/byol.py"}
    today = {**ACCURACY, **provenance, "commit": "abc1234"}
    today["script_sha256"] = hashlib.sha256(script.read_bytes()).hexdigest()
    earlier = {**today, "commit": "0ld0ld0", "script_sha256": hashlib.sha256(b"older").hexdigest()}
    results = tmp_path / "results"
    results.mkdir()
    (results / "accuracy-today.json").write_text(json.dumps(today))
    (results / "accuracy-earlier.json").write_text(json.dumps(earlier))
    make_results.generate(results, tmp_path / "out", root)
    rst = (tmp_path / "out" / "results.inc").read_text()
    headline = rst[rst.index("In short") : rst.index("Throughput\n---")]
    current, older = headline.split("Measured with earlier versions")
    assert "- today, NVIDIA H200" in current and "(measured 2026-12-02, commit abc1234)." in current
    assert "- earlier, NVIDIA H200" in older
    assert "(measured 2026-12-02, commit 0ld0ld0, an earlier examples/pytorch/byol.py)" in older
    # and an earlier script's command runs from its commit's checkout
    assert "(with the scripts of commit 0ld0ld0, whose flags may differ from today's):" in rst
    assert "commit abc1234, whose flags" not in rst
    # the table says the same, row by row
    assert "     - 2026-12-02, commit abc1234\n" in rst


def test_quick_check_figures_reach_the_landing_page(make_results, tmp_path):
    results = write_results(tmp_path / "results", accuracy=False)
    quick = {
        "command": "python examples/pytorch/byol.py --data synthetic --epochs 2",
        "date": "2026-12-02",
        "machine": "cpu (2 cores, x86_64)",
        "untrained_knn_top1": 0.2031,
        "knn_top1": [0.29, 0.3362],
        "seconds": 101.4,
    }
    (results / "quick-check.json").write_text(json.dumps(quick))
    make_results.generate(results, tmp_path / "out")
    text = " ".join((tmp_path / "out" / "quick-check.inc").read_text().split())
    assert "on a CPU (2 cores, x86_64), it took 101 seconds" in text
    assert "went from 0.20 (untrained) to 0.34" in text
    rst = (tmp_path / "out" / "results.inc").read_text()
    assert "kNN top-1 20.3\u00a0% untrained, 33.6\u00a0% after 2 epochs in 101 seconds" in rst


def test_one_plot_per_view_size_and_training_set(make_results, tmp_path):
    results = write_results(tmp_path / "results")
    small = {**ACCURACY, "train_images": 10000, "recipe": {**ACCURACY["recipe"], "input_size": 16}}
    (results / "accuracy-small.json").write_text(json.dumps(small))
    lines = [json.dumps(row) for row in metrics_rows(2, 1.0)]
    (results / "accuracy-small.metrics.jsonl").write_text("\n".join(lines) + "\n")
    written = make_results.generate(results, tmp_path / "out")
    plots = sorted(p.name for p in written if p.suffix == ".png")
    assert plots == ["training-curves-16px-10000.png", CURVES]
    rst = (tmp_path / "out" / "results.inc").read_text()
    assert "Training curves: 16 px views, 10,000 training images" in rst
