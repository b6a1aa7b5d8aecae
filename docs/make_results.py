"""Turn the benchmark results into the Results page's tables and plots.

    python docs/make_results.py       # reads benchmarks/results/, writes docs/results/

Reads, from --results-dir:

- ``throughput-<machine>.json``: images/s of the reference example and of ours on one machine
  (written by benchmarks/throughput.py);
- ``accuracy-<name>.json``: one training run's settings, wall-clock time and kNN / linear accuracy,
  with ``accuracy-<name>.metrics.jsonl`` beside it, the run's metrics.jsonl (one JSON object per epoch);
- ``tuning/accuracy-<name>.json``: the same for the short runs that chose the defaults, shown as one
  table of the settings each run changed and what it reached;
- ``quick-check.json``: the README's main job, measured (written by benchmarks/quick_check.py).

Each result records when, on what machine and with which commit of the scripts it was measured (see
benchmarks/provenance.py); the page says so beside it, and says when the script measured differs from
today's. Data paths in the commands shown read CIFAR10_DIR, the folder holding CIFAR-10's image folders.

Writes, into --output-dir, ``results.inc`` (reStructuredText, included by docs/results.rst) and one
``training-curves-<view size>px-<images>.png`` per group of comparable runs (same view size, same number
of training images: kNN accuracy and loss against epochs and against wall-clock minutes). Without any
results file, results.inc says that nothing has been measured yet and no plot is written.
Nothing on the Results page is typed by hand: re-run this script after adding results, and commit
its output with them. `nox -s docs` runs it before building."""

import argparse
import hashlib
import json
import math
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
INCLUDE = "results.inc"
QUICK_CHECK = "quick-check.inc"  # what the landing page says of its quick start
CURVES = "training-curves-{}px-{}.png"  # per group of comparable runs: view size, training images

THROUGHPUT_REQUIRED = ["device", "batch_size", "reference_images_per_s"]
ACCURACY_REQUIRED = ["device", "command", "epochs", "batch_size", "knn_top1"]
QUICK_REQUIRED = ["command", "untrained_knn_top1", "knn_top1", "seconds"]


class ResultsError(Exception):
    """A results file that cannot be read: the message names the file and the problem."""


def read_json(path: Path, required: list[str]) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ResultsError(f"{path}: not readable JSON ({error})") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: expected a JSON object, got {type(data).__name__}")
    missing = [key for key in required if data.get(key) is None]
    if missing:
        raise ResultsError(f"{path}: missing {', '.join(missing)}")
    return data


def read_metrics(path: Path) -> list[dict]:
    """The rows of a metrics.jsonl, one per epoch; a resumed run's repeated epochs keep the last row."""
    rows: dict[int, dict] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ResultsError(f"{path}, line {number}: not JSON ({error})") from None
        if not isinstance(row, dict) or "epoch" not in row:
            raise ResultsError(f"{path}, line {number}: expected an object with an 'epoch'")
        rows[int(row["epoch"])] = row
    return [rows[epoch] for epoch in sorted(rows)]


def load_accuracy(results_dir: Path) -> list[dict]:
    """The accuracy results in a folder, sorted by file name, each with its 'name' and 'metrics'."""
    accuracy = []
    for path in sorted(results_dir.glob("accuracy-*.json")):
        result = read_json(path, ACCURACY_REQUIRED)
        metrics_path = path.with_name(path.stem + ".metrics.jsonl")
        metrics = read_metrics(metrics_path) if metrics_path.exists() else []
        accuracy.append({**result, "name": path.stem.removeprefix("accuracy-"), "metrics": metrics})
    return accuracy


def load_results(results_dir: Path) -> tuple[list[dict], list[dict], list[dict], dict | None]:
    """(throughput results, accuracy results, tuning results, the quick check or None)."""
    if not results_dir.is_dir():
        return [], [], [], None
    throughput = []
    for path in sorted(results_dir.glob("throughput-*.json")):
        result = read_json(path, THROUGHPUT_REQUIRED)
        throughput.append({**result, "name": path.stem.removeprefix("throughput-")})
    quick = results_dir / "quick-check.json"
    quick = read_json(quick, QUICK_REQUIRED) if quick.exists() else None
    return throughput, load_accuracy(results_dir), load_accuracy(results_dir / "tuning"), quick


# Where a result comes from: when, on what, with which version of its script.


def script_is_current(result: dict, root: Path) -> bool | None:
    """Whether the result measured today's version of its script; None where that is not recorded."""
    if not result.get("script_sha256") or not result.get("script"):
        return None
    path = root / result["script"]
    return path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == result["script_sha256"]


def measured(result: dict, root: Path) -> str:
    """'2026-11-28, commit d9aa4ba, an earlier examples/pytorch/byol.py': what the result records."""
    parts = [result.get("date") or "date not recorded"]
    if result.get("commit"):
        parts.append(f"commit {result['commit']}")
    current = script_is_current(result, root)
    if current is None:
        parts.append("script version not recorded")
    elif not current:
        parts.append(f"an earlier {result['script']}")
    return ", ".join(parts)


def run_with(results: list[dict], root: Path) -> str:
    """Where results measured earlier scripts: the commits to check out to run their commands as they were."""
    commits = sorted(
        {r["commit"] for r in results if r.get("commit") and script_is_current(r, root) is False}
    )
    if not commits:
        return ""
    return f" (with the scripts of commit {', '.join(commits)}, whose flags may differ from today's)"


def with_placeholder(command: str) -> str:
    """A command with its CIFAR-10 folder, a path of the machine that ran it, written CIFAR10_DIR."""
    return re.sub(r"\S*cifar10(?=/(train|test)\b)", "CIFAR10_DIR", command)


# Formatting: numbers as a reader wants them, and "n/a" where a value was not measured.


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def rate(value) -> str:
    return f"{value:,.0f}" if is_number(value) else "n/a"


def ratio(value) -> str:
    return f"{value:.2f}x" if is_number(value) else "n/a"


def percent(value) -> str:
    return f"{100 * value:.1f}\u00a0%" if is_number(value) else "n/a"  # no line break before the %


def pair(first, second, form: str, scale: float = 1.0) -> str:
    """'first / second' in the given format, or n/a unless both were measured."""
    if not (is_number(first) and is_number(second)):
        return "n/a"
    if scale != 1.0:
        first, second = first * scale, second * scale
    return f"{form.format(first)} / {form.format(second)}"


def plain(value) -> str:
    return "n/a" if value is None else str(value)


def cell(text: str) -> str:
    """Text safe inside a list-table cell (no leading markup characters to misparse)."""
    return text.replace("\\", "\\\\").replace("*", "\\*").replace("`", "\\`").replace("|", "\\|") or "n/a"


def list_table(title: str, header: list[str], rows: list[list[str]], widths: str = "auto") -> list[str]:
    lines = [f".. list-table:: {title}", "   :header-rows: 1", f"   :widths: {widths}", ""]
    for row in [header, *rows]:
        lines.append(f"   * - {cell(row[0])}")
        lines += [f"     - {cell(value)}" for value in row[1:]]
    return [*lines, ""]


# The loops that benchmarks/throughput.py times: (key prefix, label, key prefix of its own ceiling).
LOOPS = [
    ("reference", "reference: lightly 1.6.0's example", None),
    ("equal_work", "ours, equal work", "equal_work_ceiling"),
    ("default", "ours, defaults", "ceiling"),
    ("equal_work_ceiling", "ceiling, equal work", None),
    ("ceiling", "ceiling, defaults", None),
]


def throughput_command(result: dict) -> str:
    """The command recorded in the file, else the one its recorded settings imply."""
    if result.get("command"):
        return with_placeholder(str(result["command"]))
    command = "python benchmarks/throughput.py"
    for key, flag in [("data", "--data"), ("batch_size", "--batch-size"), ("workers", "--workers")]:
        if result.get(key) is not None:
            command += f" {flag} {result[key]}"
    if result.get("timed_steps") is not None:
        command += f" --steps {result['timed_steps']}"
    return with_placeholder(command)


def augmentation_line(result: dict) -> list[str]:
    """What the augmentation alone costs, where benchmarks/throughput.py measured it."""
    per_batch, per_second = result.get("augmentation_ms_per_batch"), result.get("augmentation_images_per_s")
    if not (is_number(per_batch) or is_number(per_second)):
        return []
    batch = result.get("augmentation_batch_size")
    images = f"{batch:,} images" if is_number(batch) else "images"
    figures = [f"{per_batch:.1f} ms per batch" if is_number(per_batch) else None]
    figures.append(f"{rate(per_second)} images/s" if is_number(per_second) else None)
    measured_figures = ", ".join(figure for figure in figures if figure)
    what = f"both views of a batch of {images} made on the device, as ``two_views`` makes them"
    return [f"The augmentation alone ({what}): {measured_figures}.", ""]


def throughput_section(throughput: list[dict], root: Path) -> list[str]:
    lines = ["Throughput", "----------", ""]
    if not throughput:
        return [
            *lines,
            "Not measured yet: no ``benchmarks/results/throughput-<machine>.json`` exists. Measure it",
            "with ``nox -s bench`` (``benchmarks/throughput.py``) on the machine of interest.",
            "",
        ]
    lines += [
        "Training images per second, one image being its pair of views, measured by",
        "``benchmarks/throughput.py`` in one run on the same data and batch size:",
        "",
        "- *reference*: lightly 1.6.0's BYOL example loop (PIL augmentations in DataLoader workers, fp32);",
        "- *ours, equal work*: our data path and training step with the reference's model (ResNet-18 with",
        "  the ImageNet stem, heads 512-1024-256), so that both do the same arithmetic;",
        "- *ours, defaults*: ``examples/pytorch/byol.py`` with its defaults (small-image stem, heads",
        "  512-4096-256);",
        "- *ceiling*: our training step alone, on views already augmented on the device: what the loop",
        "  would reach if data loading and augmentation cost nothing.",
        "",
    ]
    for result in throughput:
        reference = result.get("reference_images_per_s")
        settings = [plain(result["device"])]
        if result.get("torch_version"):
            settings.append(f"torch {result['torch_version']}")
        settings.append(f"batch {result['batch_size']}")
        if (result.get("repeats") or 1) > 1:
            settings.append(f"each figure the median of {result['repeats']} rounds")
        if result.get("bf16") is not None:
            settings.append("our steps in bf16" if result["bf16"] else "our steps in float32")
        if result.get("augmentations"):
            settings.append(f"our augmentations: {result['augmentations']}")
        if result.get("crops_on_device"):
            settings.append(
                f"our crops made on the device from images decoded into memory "
                f"(in {result['in_memory_load_s']:.0f} s, not counted)"
            )
        if result.get("workers") is not None:
            settings.append(f"{result['workers']} DataLoader workers")
        lines += [f"**{result['name']}** (measured {measured(result, root)}): {', '.join(settings)}.", ""]
        rows = []
        for key, label, ceiling in LOOPS:
            value = result.get(f"{key}_images_per_s")
            if value is None:
                continue
            own_ceiling = result.get(f"{ceiling}_images_per_s") if ceiling else None
            rows.append(
                [
                    label,
                    rate(value),
                    ratio(value / reference)
                    if is_number(value) and is_number(reference) and reference
                    else "n/a",
                    f"{100 * value / own_ceiling:.0f} %"
                    if is_number(value) and is_number(own_ceiling) and own_ceiling
                    else "n/a",
                    rate(result.get(f"{key}_peak_mem_mb")),
                ]
            )
        header = ["loop", "images/s", "x reference", "of its ceiling", "peak GPU memory (MB)"]
        lines += list_table(f"Throughput on {result['name']}", header, rows)
        lines += augmentation_line(result)
        candidates = result.get("candidates_images_per_s") or {}
        if candidates:
            lines += ["Other configurations measured in the same run (images/s):", ""]
            lines += [f"- ``{name}``: {rate(value)}" for name, value in candidates.items()]
            lines += [""]
        reproduce = f"To reproduce{run_with([result], root)}:"
        lines += [reproduce, "", ".. code-block:: bash", "", f"   {throughput_command(result)}", ""]
    return lines


# How a run's resolved settings read on the page, in the order a reader looks for them
RECIPE_LABELS = [
    ("backbone", "{}"),
    ("input_size", "{} px"),
    ("hidden_dim", "heads {}"),
    ("proj_dim", "to {}"),
    ("optimizer", "{}"),
    ("lr", "lr {} per 256 images"),
    ("momentum", "momentum {}"),
    ("weight_decay", "weight decay {}"),
    ("warmup_epochs", "warm-up {} epochs (at most a tenth of the run)"),
    ("tau_base", "tau from {}"),
    ("blur", "blur {}"),
    ("crops_on_device", "crops {}"),
    ("seed", "seed {}"),
]


def recipe_text(recipe: dict) -> str:
    """'resnet18, 16 px, heads 4096 to 256, lr 0.2 per 256 images, ...' from a run's recorded recipe."""
    parts = []
    for key, form in RECIPE_LABELS:
        if key not in recipe:
            continue
        value = recipe[key]
        if key == "crops_on_device":
            value = "on the device" if value else "in DataLoader workers"
        elif isinstance(value, bool):
            value = "on" if value else "off"
        text = form.format(value)
        if key == "proj_dim" and parts and parts[-1].startswith("heads"):
            parts[-1] += f" {text}"  # "heads 4096 to 256"
        else:
            parts.append(text)
    return ", ".join(parts)


def accuracy_section(accuracy: list[dict], curves: list[tuple[str, str]], root: Path) -> list[str]:
    lines = ["Accuracy", "--------", ""]
    if not accuracy:
        return [
            *lines,
            "Not measured yet: no ``benchmarks/results/accuracy-<name>.json`` exists. The plots of loss",
            "and kNN accuracy over training appear here once a run's results are added.",
            "",
        ]
    lines += [
        "Top-1 accuracy on the test images of the frozen online encoder: weighted kNN (k = 200,",
        "temperature 0.1) and, where measured, a linear classifier. From ``benchmarks/results/"
        "accuracy-<name>.json``; times are wall-clock minutes.",
        "",
    ]
    header = [
        "run",
        "measured",
        "device",
        "epochs, batch",
        "images: train / test",
        "kNN top-1",
        "linear top-1",
        "images/s",
        "minutes: training / total",
    ]
    rows = [
        [
            result["name"],
            measured(result, root),
            plain(result["device"]) + (f", {result['precision']}" if result.get("precision") else ""),
            f"{plain(result['epochs'])}, {plain(result['batch_size'])}",
            pair(result.get("train_images"), result.get("test_images"), "{:,}"),
            percent(result["knn_top1"]),
            percent(result.get("linear_top1")),
            rate(result.get("images_per_s")),
            pair(result.get("train_wall_s"), result.get("total_wall_s"), "{:.1f}", scale=1 / 60),
        ]
        for result in accuracy
    ]
    lines += list_table("Accuracy", header, rows)
    lines += [
        "To reproduce a run: its training command, as ``benchmarks/accuracy.py`` ran it (after ``--``) with",
        "``--output-dir`` added; accuracy.py then evaluates the saved encoder.",
        "",
    ]
    for result in accuracy:
        torch_version = f" (torch {result['torch_version']})" if result.get("torch_version") else ""
        lines += [
            f"``{result['name']}``{torch_version}{run_with([result], root)}:",
            "",
            ".. code-block:: bash",
            "",
        ]
        lines += [f"   {line}" for line in with_placeholder(str(result["command"])).splitlines()] + [""]
        if result.get("recipe"):
            lines += [f"Its settings, defaults included: {recipe_text(result['recipe'])}.", ""]
    for name, title in curves:
        lines += [title, "~" * len(title), "", f".. image:: /results/{name}", f"   :alt: {title}", ""]
        lines += [
            "From the runs' own ``metrics.jsonl``: the kNN accuracy where the run evaluated it, the mean"
        ]
        lines += [
            "loss of each epoch. Only runs of one view size and one number of training images share a plot.",
            "",
        ]
    missing = [result["name"] for result in accuracy if not result["metrics"]]
    if missing:
        lines += [f"No metrics.jsonl for: {', '.join(missing)}; no curves for these runs.", ""]
    return lines


def command_options(command: str) -> list[tuple[str, str | None]]:
    """The ``--flag value`` pairs of a command line, in order (value None for a bare switch)."""
    tokens = command.split()
    options = []
    for index, token in enumerate(tokens):
        if token.startswith("--"):
            value = tokens[index + 1] if index + 1 < len(tokens) else None
            options.append((token, None if value is None or value.startswith("--") else value))
    return options


def options_text(options: list[tuple[str, str | None]]) -> str:
    """Option pairs back as command-line text: '--lr 0.1 --resume'."""
    return " ".join(f"{flag} {value}" if value else flag for flag, value in options)


def tuning_section(tuning: list[dict], root: Path) -> list[str]:
    """One table of the short runs that chose the defaults: what each changed, what it reached."""
    if not tuning:
        return []
    options = [command_options(with_placeholder(str(result["command"]))) for result in tuning]
    shared = set.intersection(*(set(run) for run in options))
    first = with_placeholder(str(tuning[0]["command"])).split()
    program = " ".join(first[: next((i for i, t in enumerate(first) if t.startswith("--")), len(first))])
    common = options_text([option for option in options[0] if option in shared])
    test_images = {result.get("test_images") for result in tuning}
    if len(test_images) == 1 and is_number(next(iter(test_images))):
        # two standard errors of the difference between two runs' accuracies, from the test sample
        count = next(iter(test_images))
        accuracy = sum(result["knn_top1"] for result in tuning) / len(tuning)
        noise = 200 * math.sqrt(2 * accuracy * (1 - accuracy) / count)
        evaluation = (
            f"Evaluation as above, on {count:,} test images: a difference between two runs under "
            f"{noise:.1f} points is within the noise of the test sample alone (two standard errors), "
            "and the noise of training (other seeds) comes on top."
        )
    else:
        evaluation = "Evaluation as above."
    lines = [
        "Tuning runs",
        "~~~~~~~~~~~",
        "",
        "Short runs, each changing one or two settings of the same command, to choose the defaults;",
        f"from ``benchmarks/results/tuning/``. {evaluation} Every run shares (where a run repeats a flag,",
        f"its own value, the later one, wins){run_with(tuning, root)}:",
        "",
        ".. code-block:: bash",
        "",
        f"   {program} {common}".rstrip(),
        "",
    ]
    rows = []
    for result, run in zip(tuning, options):
        changed = options_text([option for option in run if option not in shared])
        losses = [row["loss"] for row in result["metrics"] if is_number(row.get("loss"))]
        rows.append(
            [
                result["name"],
                measured(result, root),
                changed or "(the shared command)",
                plain(result["device"]) + (f", {result['precision']}" if result.get("precision") else ""),
                percent(result["knn_top1"]),
                percent(result.get("linear_top1")),
                f"{losses[-1]:.3f}" if losses else "n/a",
                pair(result.get("train_wall_s"), result.get("total_wall_s"), "{:.1f}", scale=1 / 60),
            ]
        )
    header = ["run", "measured", "settings changed", "device", "kNN top-1", "linear top-1", "last loss"]
    header.append("minutes")
    return [*lines, *list_table("Tuning runs", header, rows)]


def curve(metrics: list[dict], key: str) -> tuple[list[float], list[float], list[float]]:
    """(epochs, minutes, values) of the rows that hold `key`; minutes is nan where not recorded."""
    rows = [row for row in metrics if is_number(row.get(key))]
    epochs = [float(row["epoch"]) for row in rows]
    elapsed = [row["elapsed_s"] / 60 if is_number(row.get("elapsed_s")) else math.nan for row in rows]
    return epochs, elapsed, [float(row[key]) for row in rows]


def comparable_groups(accuracy: list[dict]) -> dict[tuple, list[dict]]:
    """The runs with metrics, grouped by view size and number of training images: only these compare."""
    groups: dict[tuple, list[dict]] = {}
    for result in accuracy:
        if result["metrics"]:
            size = (result.get("recipe") or {}).get("input_size", 32)
            groups.setdefault((size, result.get("train_images")), []).append(result)
    return groups


def plot_curves(runs: list[dict], title: str, path: Path) -> None:
    """kNN accuracy and loss against epochs and minutes, one line per run, the legend below the plots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    panels = [
        (axes[0][0], "knn_top1", "epoch", "kNN top-1 (%)"),
        (axes[0][1], "knn_top1", "minutes", "kNN top-1 (%)"),
        (axes[1][0], "loss", "epoch", "loss"),
        (axes[1][1], "loss", "minutes", "loss"),
    ]
    for axis, key, x_name, y_label in panels:
        for result in runs:
            epochs, elapsed, values = curve(result["metrics"], key)
            if key == "knn_top1":
                values = [100 * v for v in values]
            x = epochs if x_name == "epoch" else elapsed
            axis.plot(x, values, marker="o" if len(x) < 30 else None, markersize=4, label=result["name"])
        axis.set_xlabel("epoch" if x_name == "epoch" else "wall-clock minutes", fontsize=12)
        axis.set_ylabel(y_label, fontsize=12)
        axis.tick_params(labelsize=11)
        axis.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), fontsize=12, frameon=False)
    fig.suptitle(title, fontsize=14)
    fig.tight_layout(rect=(0, 0.04 + 0.04 * ((len(labels) - 1) // 3), 1, 1))  # room for the legend
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def quick_check_text(quick: dict | None, root: Path) -> str:
    """The quick start's figures, for the landing page (the README says the same; a test holds it)."""
    if not quick:
        return "The first command prints a line per epoch, with the kNN accuracy of the representation."
    return (
        "The first command prints a line per epoch (loss, learning rate, tau, images/s and kNN "
        f"accuracy): on a {quick.get('machine', 'CPU').replace('cpu', 'CPU')}, it took "
        f"{quick['seconds']:.0f} seconds, and the "
        f"kNN accuracy went from {quick['untrained_knn_top1']:.2f} (untrained) to "
        f"{quick['knn_top1'][-1]:.2f} (measured {measured(quick, root)}, see :doc:`results`). It writes "
        "``runs/pytorch/metrics.jsonl``, ``runs/pytorch/checkpoint-last.pt`` and "
        "``runs/pytorch/backbone.pt``, the trained encoder."
    )


def headline_section(throughput, accuracy, tuning, quick, root: Path) -> list[str]:
    """What the scripts reach, how fast, on which machine: one line per measurement, newest scripts first."""
    items = []
    if quick:
        epochs = len(quick["knn_top1"])
        items.append(
            f"The README's quick check, {quick.get('machine', 'a machine')}: kNN top-1 "
            f"{percent(quick['untrained_knn_top1'])} untrained, {percent(quick['knn_top1'][-1])} after "
            f"{epochs} epochs in {quick['seconds']:.0f} seconds (generated images; measured "
            f"{measured(quick, root)})."
        )
    for result in [*accuracy, *(r for r in tuning if script_is_current(r, root))]:
        size = (result.get("recipe") or {}).get("input_size", 32)
        images = f"{result['train_images']:,} images" if is_number(result.get("train_images")) else "images"
        items.append(
            f"{result['name']}, {plain(result['device'])}: kNN top-1 {percent(result['knn_top1'])}, "
            f"linear {percent(result.get('linear_top1'))}, after {result['epochs']} epochs of {images} at "
            f"{size} px, {rate(result.get('images_per_s'))} images/s (measured {measured(result, root)})."
        )
    for result in throughput:
        items.append(
            f"Throughput, {plain(result['device'])}: {rate(result.get('default_images_per_s'))} images/s "
            f"at batch {plain(result.get('batch_size'))}, equal work at "
            f"{ratio(result.get('ratio_equal_work_to_reference'))} the reference's images/s "
            f"(measured {measured(result, root)})."
        )
    if not items:
        return []
    current = [item for item in items if "an earlier" not in item and "not recorded" not in item]
    lines = ["In short", "--------", ""]
    if current:
        lines += ["Measured with today's scripts:", "", *(f"- {item}" for item in current), ""]
    else:
        lines += ["Nothing is measured with today's scripts yet.", ""]
    earlier = [item for item in items if item not in current]
    if earlier:
        lines += ["Measured with earlier versions of the scripts (the figures need measuring again):", ""]
        lines += [f"- {item}" for item in earlier] + [""]
    return lines


def generate(results_dir: Path, output_dir: Path, root: Path = ROOT) -> list[Path]:
    """Write the page's include and plots; return the paths written. root: where the scripts are, whose
    versions the results are compared with."""
    throughput, accuracy, tuning, quick = load_results(results_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for old in output_dir.glob("training-curves*.png"):
        old.unlink()  # a plot of results that no longer exist must not stay
    curves, written = [], []
    for (size, images), runs in sorted(comparable_groups(accuracy).items(), key=str):
        name = CURVES.format(size, images)
        title = (
            f"Training curves: {size} px views, {images:,} training images" if images else f"{size} px views"
        )
        plot_curves(runs, title, output_dir / name)
        curves.append((name, title))
        written.append(output_dir / name)
    lines = [
        ".. This file is generated by docs/make_results.py from benchmarks/results/: do not edit it.",
        "",
        *headline_section(throughput, accuracy, tuning, quick, root),
        *throughput_section(throughput, root),
        *accuracy_section(accuracy, curves, root),
        *tuning_section(tuning, root),
    ]
    include = output_dir / INCLUDE
    include.write_text("\n".join(lines).rstrip("\n") + "\n")
    quick_check = output_dir / QUICK_CHECK
    quick_check.write_text(quick_check_text(quick, root) + "\n")
    return [include, quick_check, *written]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the Results page's tables and plots.")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--output-dir", type=Path, default=DOCS / "results")
    args = parser.parse_args(argv)
    try:
        written = generate(args.results_dir, args.output_dir)
    except ResultsError as error:
        sys.exit(f"make_results.py: error: {error}")
    for path in written:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
