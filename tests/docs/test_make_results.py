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
    assert sorted(p.name for p in written) == ["commands.inc", "quick-check.inc", "results.inc", CURVES]
    rst = (tmp_path / "out" / "results.inc").read_text()
    commands = (tmp_path / "out" / "commands.inc").read_text()
    assert "Not measured yet" not in rst
    # in short: each figure in words, with where it comes from; these files record no script version
    headline = rst[rst.index("In short") : rst.index("Throughput\n---")]
    assert "All measured with earlier versions" not in headline  # none of them says so
    assert (
        "- **CIFAR-10, 50,000 images at 32 px**, NVIDIA H200, 4 epochs, batch 512: kNN top-1 72.4\u00a0%; "
        "15,013 images/s, 5.2 minutes of training (date not recorded)." in headline
    )
    assert "with the reference's model, 2.99x the images/s of lightly's example" in headline
    # throughput: machine, device, the images/s, against the reference and against its own step alone
    throughput = rst[rst.index("Throughput\n---") : rst.index("Accuracy\n---")]
    rows = [line.strip() for line in throughput.splitlines() if line.startswith(("   * - ", "     - "))]
    header = ["- images/s", "- x lightly's example", "- of its step alone", "- peak GPU memory (MB)"]
    assert rows == [
        *["* - loop", *header],
        *["* - lightly 1.6.0's example", "- 3,049", "- 1.00x", "- n/a", "- 2,100"],
        *["* - ours, equal work", "- 9,120", "- 2.99x", "- 62 %", "- 3,300"],
        *["* - ours, defaults", "- 14,876", "- 4.88x", "- 93 %", "- 5,200"],
        *["* - ours, equal work, step alone", "- 14,710", "- 4.82x", "- n/a", "- n/a"],
        *["* - ours, defaults, step alone", "- 16,015", "- 5.25x", "- n/a", "- n/a"],
        # the other configurations of the same run, in the same table
        *["* - ours, defaults (batch 512)", "- 18,123", "- 5.94x", "- n/a", "- n/a"],
    ]
    machine = "**NVIDIA H100 80GB HBM3**, batch 256, torch 2.14.1, our augmentations: kornia, on the device"
    assert (
        f"{machine}, 15 DataLoader workers (measured date not recorded, script version not recorded)." in rst
    )
    # the augmentation alone, where the benchmark measured it
    augmentation = "both views of a batch of 256 images made on the device, as ``two_views`` makes them"
    assert f"The augmentation alone ({augmentation}): 2.5 ms per batch, 104,065 images/s." in rst
    # accuracy: the run in words, kNN top-1 as a percentage, linear not measured, images/s, minutes
    accuracy = rst[rst.index("Accuracy\n---") :]
    rows = [line.strip() for line in accuracy.splitlines() if line.startswith(("   * - ", "     - "))]
    assert rows[6:] == [
        "* - NVIDIA H200: 50,000 images (10,000 to test) at 32 px, 4 epochs, batch 512",
        *[
            "- 72.4\u00a0%",
            "- n/a",
            "- 15,013",
            "- 5.2 / 5.8",
            "- date not recorded (script version not recorded)",
        ],
    ]
    assert f".. image:: /results/{CURVES}" in rst
    png = (tmp_path / "out" / CURVES).read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    # the commands, at the page's end: the machine's own CIFAR-10 folder is a placeholder for the reader's
    command = "python benchmarks/throughput.py --data CIFAR10_DIR/train --batch-size 256 --workers 15"
    assert f"   {command} --steps 100" in commands and "On NVIDIA H100 80GB HBM3 (torch 2.14.1):" in commands
    assert (
        "NVIDIA H200: 50,000 images (10,000 to test) at 32 px, 4 epochs, batch 512 (torch 2.14.1):"
        in commands
    )
    command = "python examples/pytorch/byol.py --data CIFAR10_DIR/train --val CIFAR10_DIR/test --epochs 4"
    assert f"   {command}\n" in commands and "../shared" not in commands + rst
    # the settings it resolved, defaults included, from the recipe that accuracy.py records
    recipe = "32 px, heads 4096 to 256, lr 0.2 per 256 images, crops on the device"
    assert f"Its settings, defaults included: {recipe}." in commands


def test_throughput_of_earlier_benchmarks_without_the_augmentation_figures(make_results, tmp_path):
    """Results written before the benchmark timed the augmentation alone (or with keys it no longer
    writes, such as a compiled jitter's) still make the page, without that line."""
    results = tmp_path / "results"
    results.mkdir()
    old = {k: v for k, v in THROUGHPUT.items() if not k.startswith("augmentation")} | {"compile": True}
    (results / "throughput-h100.json").write_text(json.dumps(old))
    make_results.generate(results, tmp_path / "out")
    rst = (tmp_path / "out" / "results.inc").read_text()
    assert "Throughput on NVIDIA H100 80GB HBM3" in rst and "The augmentation alone" not in rst


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
    assert [p.name for p in written] == ["results.inc", "commands.inc", "quick-check.inc"]
    assert not list(out.glob("*.png"))
    rst = (out / "results.inc").read_text()
    assert rst.count("Not measured yet") == 2 and ".. image::" not in rst and "In short" not in rst
    # the landing page says what the quick start prints, without figures
    assert "kNN accuracy" in (out / "quick-check.inc").read_text()
    assert not re.search(r"\d", (out / "quick-check.inc").read_text())


def test_accuracy_without_metrics_has_no_plot(make_results, tmp_path):
    written = make_results.generate(write_results(tmp_path / "results", metrics=False), tmp_path / "out")
    assert [p.name for p in written] == ["results.inc", "commands.inc", "quick-check.inc"]
    rst = (tmp_path / "out" / "results.inc").read_text()
    run = "NVIDIA H200: 50,000 images (10,000 to test) at 32 px, 4 epochs, batch 512"
    assert "72.4\u00a0%" in rst and f"No training curves for {run}: no metrics.jsonl was kept." in rst


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
    header = ["* - settings changed", "- kNN top-1", "- linear top-1", "- last loss", "- minutes"]
    assert rows[:6] == [*header, "- measured"]
    assert rows[6:12] == [
        "* - ``--lr 0.2``",  # inline code: the browser does not break it at its hyphens
        *["- 30.0\u00a0%", "- n/a", "- 1.000", "- 5.2 / 5.8"],  # 1.000: the loss of the last epoch
        "- date not recorded (script version not recorded)",
    ]
    assert rows[12] == "* - ``--lr 0.1``" and rows[18] == "* - ``--lr 0.1 --tau-base 0.98``"
    # the tuning runs stay out of the main table and the curves
    assert "--lr 0.1" not in rst[: rst.index("Tuning runs")]


def test_without_tuning_runs_no_tuning_table(make_results, tmp_path):
    make_results.generate(write_results(tmp_path / "results"), tmp_path / "out")
    assert "Tuning runs" not in (tmp_path / "out" / "results.inc").read_text()


def test_generated_rst_builds_without_warnings(make_results, tmp_path):
    """The includes, with every kind of results file, tables, commands and plots, are valid RST for
    Sphinx under -W, as the page includes them."""
    source = tmp_path / "site"
    results = write_reader_results(tmp_path / "results", tmp_path / "root")
    make_results.generate(results, source / "results", tmp_path / "root")
    (source / "conf.py").write_text("")
    page = "Results\n=======\n\n.. include:: results/results.inc\n\n"
    page += "Reproducing the figures\n-----------------------\n\n.. include:: results/commands.inc\n"
    (source / "index.rst").write_text(page)
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", str(source), str(tmp_path / "html")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    html = (tmp_path / "html" / "index.html").read_text()
    document = BeautifulSoup(html, "html.parser")
    assert "72.4\u00a0%" in document.get_text() and CURVES in html
    assert "--optimizer lars" in [code.get_text() for code in document.select("td code")]  # kept whole


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
    headline = rst[rst.index("In short") : rst.index("Accuracy\n---")]
    current, older = headline.split("Measured with earlier versions")
    assert "Measured with today's scripts:" in current and "(2026-12-02, commit abc1234)." in current
    assert "(2026-12-02, commit 0ld0ld0)." in older and "0ld0ld0" not in current
    # and an earlier script's command runs from its commit's checkout
    commands = (tmp_path / "out" / "commands.inc").read_text()
    assert "(torch 2.14.1, the scripts of commit 0ld0ld0):" in commands
    assert "the scripts of commit abc1234" not in commands
    # the table says the same, row by row
    assert "     - 2026-12-02, commit abc1234\n" in rst
    assert "     - 2026-12-02, commit 0ld0ld0 (earlier script)\n" in rst


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
    # where and when, and that the time varies
    assert "(measured 2026-12-02, script version not recorded, see :doc:`results`)" in text
    assert "The time varies with the machine" in text


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


# What a reader meets: the figures first, in words, each said once, in tables that fit the column.

AGAINST = {  # as benchmarks/against_commit.py writes it
    "commit": "3217b80",
    "settings": ["--data", "/tmp/cifar10/train", "--batch-size", "128", "--workers", "2"],
    "device": "cpu (2 cores, x86_64)",
    "rounds": {
        "3217b80": {"reference": [90.0, 88.0], "default": [17.0, 17.5], "augmentation_only": [400.0, 410.0]},
        "this checkout": {"reference": [86.0, 87.0], "default": [18.0, 18.5]},
    },
    "medians": {
        "3217b80": {"reference": 89.0, "default": 17.25, "augmentation_only": 405.0},
        "this checkout": {"reference": 86.5, "default": 18.25},
    },
    "ratios": {"reference": 0.972, "default": 1.058},
}
AUGMENTATION = {  # as benchmarks/augmentation_speed.py writes it
    "date": "2026-12-06",
    "machine": "NVIDIA H100 80GB HBM3",
    "torch_version": "2.14.1",
    "script": "examples/pytorch/byol.py",
    "commit": "101f4bb",
    "script_sha256": None,
    "compared_with": "3217b80",
    "device": "NVIDIA H100 80GB HBM3",
    "threads": 16,
    "batch_size": 256,
    "size": 32,
    "rounds_ms": {"3217b80": [4.1, 4.0, 3.9], "this checkout": [2.1, 2.0, 2.2]},
    "median_ms": {"3217b80": 4.0, "this checkout": 2.1},
}
# Throughput configurations and a run name as the benchmarks name them: none may label the page
RAW_CANDIDATES = {
    "equal_work_ceiling_fp32": 233.3,
    "default_compiled_jitter": 7207.0,
    "equal_work_worker_crops": 236.8,
}
RAW_NAME = "cpu-16px-10k-20ep-worker-crops"


def write_reader_results(directory, root):
    """Results shaped as the benchmarks write them, with every kind of file: throughput with other
    configurations, two comparable runs that differ in one setting, the untrained network among the tuning
    runs, tuning runs of today's script, and comparisons against an earlier commit."""
    results = write_results(directory)
    throughput = {**THROUGHPUT, "candidates_images_per_s": RAW_CANDIDATES}
    (results / "throughput-h100.json").write_text(json.dumps(throughput))
    small = {
        **ACCURACY,
        "device": "cpu",
        "machine": "cpu (2 cores, x86_64)",
        "precision": "bf16",
        "command": "python examples/pytorch/byol.py --data ../shared/data/cifar10/train --input-size 16",
        "epochs": 20,
        "batch_size": 128,
        "train_images": 10000,
        "test_images": 2000,
        "knn_top1": 0.331,
        "linear_top1": 0.415,
        "recipe": {"input_size": 16, "lr": 0.2, "crops_on_device": False},
    }
    lines = "\n".join(json.dumps(row) for row in metrics_rows(4, 1.0)) + "\n"
    for name, crops in [(RAW_NAME, False), ("cpu-16px-10k-20ep", True)]:
        run = {**small, "recipe": {**small["recipe"], "crops_on_device": crops}}
        (results / f"accuracy-{name}.json").write_text(json.dumps(run))
        (results / f"accuracy-{name}.metrics.jsonl").write_text(lines)
    write_tuning(results, {"cpu-tune-lr0.2": "--lr 0.2", "cpu-tune-untrained": "--lr 1e-9 --epochs 1"})
    # the tuning runs of this session's script (as cpu-tune-kornia and cpu-tune-lars are)
    script = root / "examples" / "pytorch" / "byol.py"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("print('today')\n")
    provenance = {"date": "2026-12-06", "commit": "101f4bb", "script": "examples/pytorch/byol.py"}
    provenance["script_sha256"] = hashlib.sha256(script.read_bytes()).hexdigest()
    for name, flags in {"cpu-tune-kornia": "", "cpu-tune-lars": " --optimizer lars"}.items():
        command = "python examples/pytorch/byol.py --data runs/subsets/train-10k --val runs/subsets/val-2k"
        run = {**small, **provenance, "command": command + " --input-size 16 --epochs 8" + flags}
        run |= {"epochs": 8, "precision": "fp32", "test_images": 5000, "knn_top1": 0.32, "name": name}
        (results / "tuning" / f"accuracy-{name}.json").write_text(json.dumps(run))
    for path in (results / "tuning").glob("accuracy-*.json"):  # all on the same 10,000 images at 16 px
        run = json.loads(path.read_text())
        run |= {"train_images": 10000, "test_images": 5000, "recipe": {**run["recipe"], "input_size": 16}}
        run |= {"device": "cpu", "machine": "cpu (2 cores, x86_64)"}
        if "untrained" in path.name:
            run |= {"knn_top1": 0.279, "recipe": {**run["recipe"], "lr": 1e-9}}
        path.write_text(json.dumps(run))
    (results / "logs").mkdir()
    (results / "logs" / "against-3217b80-cpu.json").write_text(json.dumps(AGAINST))
    (results / "logs" / "augmentation-against-3217b80-nvidia.json").write_text(json.dumps(AUGMENTATION))
    return results


@pytest.fixture(scope="module")
def reader_page(make_results, tmp_path_factory):
    """(results.inc, commands.inc, the results folder) made from write_reader_results, once."""
    tmp_path = tmp_path_factory.mktemp("reader")
    root = tmp_path / "root"
    results = write_reader_results(tmp_path / "results", root)
    make_results.generate(results, tmp_path / "out", root)
    return (
        (tmp_path / "out" / "results.inc").read_text(),
        (tmp_path / "out" / "commands.inc").read_text(),
        results,
    )


def prose(rst: str, literals: bool = False) -> str:
    """The text a reader reads as labels: without code blocks, images and comments, and without inline
    literals unless asked for."""
    kept, in_block = [], False
    for line in rst.splitlines():
        if line.startswith((".. code-block::", ".. image::", ".. ")):
            in_block = line.startswith((".. code-block::", ".. image::"))
            continue
        if in_block and (line.startswith("   ") or not line):
            continue
        in_block = False
        kept.append(line)
    return "\n".join(kept) if literals else re.sub(r"``[^`]*``", "", "\n".join(kept))


def test_labels_are_words_not_keys_or_file_names(make_results, reader_page):
    """Loops, configurations and runs are labelled in words: no JSON key such as equal_work_ceiling_fp32,
    no run or file name such as cpu-16px-10k-20ep-worker-crops, on the page or in its plots' legends."""
    rst, commands, _ = reader_page
    for text in (prose(rst), prose(commands)):
        assert not re.findall(r"\b[a-z]+(?:_[a-z0-9]+)+\b", text)  # snake_case keys
        for name in [RAW_NAME, "cpu-16px-10k-20ep", "cpu-tune-", "pytorch-cifar10", "h100", "this checkout"]:
            assert name not in text, name
    for text in (prose(rst, literals=True), prose(commands, literals=True)):  # not even as inline code
        for key in [*RAW_CANDIDATES, "augmentation_only", "equal_work", "_images_per_s"]:
            assert key not in text, key
    table = [line.strip() for line in rst.splitlines() if line.startswith("   * - ")]
    for label in [
        "ours, equal work, step alone (fp32)",
        "ours, defaults (colour jitter compiled)",
        "ours, equal work (crops in DataLoader workers)",
    ]:
        assert f"* - {label}" in table, label
    # two runs that differ in one setting are told apart by it, in the table and in the plot's legend
    runs = "cpu (2 cores, x86_64), bf16: 10,000 images (2,000 to test) at 16 px, 20 epochs, batch 128, crops "
    assert f"* - {runs}in DataLoader workers" in table and f"* - {runs}on the device" in table
    small = [json.loads(p.read_text()) for p in sorted(reader_page[2].glob("accuracy-cpu-*.json"))]
    assert sorted(make_results.run_labels(small, with_data=False)) == [
        "cpu (2 cores, x86_64), bf16: 20 epochs, batch 128, crops in DataLoader workers",
        "cpu (2 cores, x86_64), bf16: 20 epochs, batch 128, crops on the device",
    ]
    heads = [{**ACCURACY, "recipe": {"hidden_dim": 4096, "proj_dim": size}} for size in (256, 128)]
    assert [label.rsplit(", ", 1)[1] for label in make_results.run_labels(heads)] == [
        "heads 4096 to 256",
        "heads 4096 to 128",
    ]
    assert make_results.loop_label("default_batch_512") == "ours, defaults (batch 512)"
    assert make_results.loop_label("augmentation_only") == "augmentation alone"


def test_the_page_opens_with_what_the_scripts_reach_and_how_fast(reader_page):
    """The first screen: a sentence, then 'In short', whose lines give accuracy and images/s; how the page
    is made comes last and short, after the published figures and the commands."""
    page = (DOCS / "results.rst").read_text()
    before = page[: page.index(".. include:: results/results.inc")]
    assert len(before.strip().splitlines()) <= 6 and "make_results" not in before
    assert "code-block" not in before and "CIFAR10_DIR" not in before
    sections = re.findall(r"^(\S.*)\n-+\n", page, flags=re.MULTILINE)
    assert sections == ["Published figures", "Reproducing the figures", "How this page is made"]
    last = page[page.index("How this page is made") :]
    assert "docs/make_results.py" in last and len(last.splitlines()) <= 10
    assert page.index("make_results") > page.index("How this page is made")
    for rst in (reader_page[0], (DOCS / "results" / "results.inc").read_text()):
        first = rst.split("\n\n", 1)[1]  # after the comment that says the file is generated
        assert first.startswith("In short\n--------\n")
        headline = first[: first.index("\nThroughput\n---")]
        assert "kNN top-1" in headline and "images/s" in headline


def paragraphs_of(rst: str) -> list[str]:
    """The paragraphs of a page's prose: blocks between blank lines, without tables, code and images."""
    blocks = [" ".join(block.split()) for block in prose(rst).split("\n\n")]
    return [b for b in blocks if len(b) > 60 and not b.startswith("* -") and not re.match(r"^- \S", b)]


def test_no_paragraph_is_said_twice(make_results, reader_page, tmp_path):
    """The plots share one caption, said once before them; no paragraph repeats (three plots here)."""
    results = write_results(tmp_path / "three")
    for images, size in [(10000, 16), (5000, 16)]:
        run = {**ACCURACY, "train_images": images, "recipe": {**ACCURACY["recipe"], "input_size": size}}
        (results / f"accuracy-{images}.json").write_text(json.dumps(run))
        lines = "\n".join(json.dumps(row) for row in metrics_rows(2, 1.0)) + "\n"
        (results / f"accuracy-{images}.metrics.jsonl").write_text(lines)
    written = make_results.generate(results, tmp_path / "three-out")
    assert len([p for p in written if p.suffix == ".png"]) == 3
    pages = [
        (tmp_path / "three-out" / "results.inc").read_text(),
        reader_page[0],
        (DOCS / "results" / "results.inc").read_text(),
        (DOCS / "results.rst").read_text() + (DOCS / "results" / "commands.inc").read_text(),
    ]
    for rst in pages:
        paragraphs = paragraphs_of(rst)
        repeated = {p for p in paragraphs if paragraphs.count(p) > 1}
        assert not repeated, repeated
    caption = pages[0]
    assert caption.count("metrics.jsonl") == 1 and caption.index("metrics.jsonl") < caption.index(
        ".. image::"
    )


# The content column of the Results page at 1400x900 is 736 px wide (Furo). In Chromium a table can
# shrink to the sum of its columns' longest unbreakable words; measured on this page, a unit below
# (a character of a column's longest word, plus 2 per column for the cells' padding) takes 6.7 to 8.4 px,
# and the tables that overflowed the column by 50 to 60 px scored 112 and 119. 80 units fit with room.
TABLE_UNITS = 80


def list_tables(rst: str) -> list[tuple[str, list[list[str]]]]:
    """(title, rows of cells) of each list-table of a page."""
    tables = []
    for block in rst.split(".. list-table::")[1:]:
        title, *lines = block.splitlines()
        rows: list[list[str]] = []
        for line in lines:
            if line.startswith("   * - "):
                rows.append([line[7:]])
            elif line.startswith("     - "):
                rows[-1].append(line[7:])
            elif line and not line.startswith("   "):
                break
        tables.append((title.strip(), rows))
    return tables


def narrowest_width(rows: list[list[str]]) -> int:
    """The width in units that a table cannot shrink below: per column, its longest word (a non-breaking
    space joins two words), plus 2 for the padding."""
    columns = range(len(rows[0]))
    return sum(
        2 + max(len(word) for row in rows for word in row[c].replace("\\", "").split(" ")) for c in columns
    )


def test_tables_fit_the_content_column(reader_page):
    pages = [reader_page[0], reader_page[1], *(p.read_text() for p in (DOCS / "results").glob("*.inc"))]
    pages.append((DOCS / "results.rst").read_text())
    tables = [table for page in pages for table in list_tables(page)]
    assert len(tables) >= 8
    wide = {title: narrowest_width(rows) for title, rows in tables if narrowest_width(rows) > TABLE_UNITS}
    assert not wide, wide
    # what the check measures: the tables that overflowed at 1400 px score above the limit
    overflowed = [
        ["cpu-16px-10k-20ep-worker-crops", "2026-11-28, commit 9ec3594, an earlier examples/pytorch/byol.py"]
    ]
    overflowed[0] += [
        "cpu, bf16",
        "20, 128",
        "10,000 / 2,000",
        "33.1\u00a0%",
        "41.5\u00a0%",
        "115",
        "29.0 / 32.2",
    ]
    assert narrowest_width(overflowed) > TABLE_UNITS


def test_the_untrained_network_stands_beside_the_runs_it_explains(reader_page):
    """The untrained network's accuracy (a tuning run) leads the rows of the runs of its data, in the
    accuracy table, in the short list and in the plot, and the tuning table starts with it."""
    rst = reader_page[0]
    accuracy = rst[rst.index("Accuracy\n---") : rst.index("Tuning runs")]
    rows = [line.strip() for line in accuracy.splitlines() if line.startswith("   * - ")]
    untrained = (
        "* - untrained network (the baseline): cpu (2 cores, x86_64), 10,000 images (5,000 to test) at 16 px"
    )
    assert rows.index(untrained) == rows.index(next(r for r in rows if "at 16 px, 20 epochs" in r)) - 1
    assert accuracy[accuracy.index(untrained) :].split("\n", 2)[1].strip() == "- 27.9\u00a0%"
    headline = rst[: rst.index("Throughput\n---")]
    assert headline.count("(untrained: 27.9\u00a0%)") == 4  # the two 16 px runs, the two tuning runs
    assert "untrained" not in next(line for line in headline.splitlines() if "50,000 images" in line)
    assert "the dashed line is the untrained network" in accuracy
    tuning = rst[rst.index("Tuning runs") :]
    first = next(
        line.strip() for line in tuning.splitlines() if line.startswith("   * - ") and "settings" not in line
    )
    assert first == "* - untrained network, the baseline: ``--lr 1e-9 --epochs 1``"
    # and on the page itself, beside the CPU runs of 16 px on 10,000 images
    page = (DOCS / "results" / "results.inc").read_text()
    page_accuracy = page[page.index("Accuracy\n---") : page.index("Tuning runs")]
    assert "untrained network (the baseline)" in page_accuracy and "27.9\u00a0%" in page_accuracy


def test_new_kinds_of_results_files_make_the_page(reader_page):
    """Comparisons against an earlier commit (benchmarks/against_commit.py, augmentation_speed.py) and
    tuning runs of today's script appear without a change to the generator."""
    rst, commands, _ = reader_page
    against = rst[rst.index("Against earlier commits") : rst.index("Accuracy\n---")]
    rows = [line.strip() for line in against.splitlines() if line.startswith(("   * - ", "     - "))]
    assert rows[:4] == ["* - loop", "- commit 3217b80", "- newer checkout", "- newer / older"]
    assert rows[4:8] == ["* - lightly 1.6.0's example", "- 89", "- 86", "- 0.97x"]
    assert rows[12:16] == ["* - augmentation alone", "- 405", "- n/a", "- n/a"]
    assert "2 rounds, settings ``--data CIFAR10_DIR/train --batch-size 128 --workers 2``" in against
    assert (
        "commit 3217b80, 4.0 ms (64,000 images/s); commit 101f4bb, 2.1 ms (121,905 images/s): 1.90x as fast"
        in " ".join(against.split())
    )
    assert "python benchmarks/against_commit.py 3217b80 --rounds 2 -- --data CIFAR10_DIR/train" in commands
    assert "python benchmarks/augmentation_speed.py 3217b80 --batch-size 256 --size 32 --rounds 3" in commands
    # today's tuning runs lead the short list, in words
    today = rst[rst.index("Measured with today's scripts:") : rst.index("Measured with a version")]
    assert "**Tuning run, 10,000 images at 16 px**, cpu (2 cores, x86_64), 8 epochs, the defaults:" in today
    assert "8 epochs, ``--optimizer lars``: kNN top-1 32.0\u00a0% (untrained: 27.9\u00a0%)" in today
    tuning = rst[rst.index("Tuning runs") :]
    assert "* - ``--optimizer lars``" in tuning and "* - none (the shared command alone)" in tuning


def test_committed_includes_are_the_generators_output(make_results, tmp_path):
    """Every include of docs/results/ (the figures, the commands, the landing page's sentence) is what the
    generator makes of benchmarks/results/ now."""
    make_results.generate(DOCS.parent / "benchmarks" / "results", tmp_path)
    for path in sorted(tmp_path.glob("*.inc")):
        committed = DOCS / "results" / path.name
        assert committed.exists() and committed.read_text() == path.read_text(), (
            f"docs/results/{path.name} is stale: run python docs/make_results.py"
        )
