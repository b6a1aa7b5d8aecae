"""Turn the benchmark results into the Results page's tables and plots.

    python docs/make_results.py       # reads benchmarks/results/, writes docs/results/

Reads, from --results-dir:

- ``throughput-<machine>.json``: images/s of the reference example and of ours on one machine
  (written by benchmarks/throughput.py);
- ``accuracy-<name>.json``: one training run's settings, wall-clock time and kNN / linear accuracy,
  with ``accuracy-<name>.metrics.jsonl`` beside it, the run's metrics.jsonl (one JSON object per epoch);
- ``tuning/accuracy-<name>.json``: the same for the short runs that chose the defaults, shown as one
  table of the settings each run changed and what it reached.

Writes, into --output-dir, ``results.inc`` (reStructuredText, included by docs/results.rst) and
``training-curves.png`` (kNN accuracy and loss against epochs and against wall-clock minutes). Without
any results file, results.inc says that nothing has been measured yet and no plot is written.
Nothing on the Results page is typed by hand: re-run this script after adding results, and commit
its output with them. `nox -s docs` runs it before building."""

import argparse
import json
import math
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
INCLUDE = "results.inc"
CURVES = "training-curves.png"

THROUGHPUT_REQUIRED = ["device", "batch_size", "reference_images_per_s"]
ACCURACY_REQUIRED = ["device", "command", "epochs", "batch_size", "knn_top1"]


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


def load_results(results_dir: Path) -> tuple[list[dict], list[dict], list[dict]]:
    """(throughput results, accuracy results, tuning results), each sorted by file name."""
    if not results_dir.is_dir():
        return [], [], []
    throughput = []
    for path in sorted(results_dir.glob("throughput-*.json")):
        result = read_json(path, THROUGHPUT_REQUIRED)
        throughput.append({**result, "name": path.stem.removeprefix("throughput-")})
    return throughput, load_accuracy(results_dir), load_accuracy(results_dir / "tuning")


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
        return str(result["command"])
    command = "python benchmarks/throughput.py"
    for key, flag in [("data", "--data"), ("batch_size", "--batch-size"), ("workers", "--workers")]:
        if result.get(key) is not None:
            command += f" {flag} {result[key]}"
    if result.get("timed_steps") is not None:
        command += f" --steps {result['timed_steps']}"
    return command


def throughput_section(throughput: list[dict]) -> list[str]:
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
        if result.get("crops_on_device"):
            settings.append(
                f"our crops made on the device from images decoded into memory "
                f"(in {result['in_memory_load_s']:.0f} s, not counted)"
            )
        if result.get("workers") is not None:
            settings.append(f"{result['workers']} DataLoader workers")
        lines += [f"**{result['name']}**: {', '.join(settings)}.", ""]
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
        candidates = result.get("candidates_images_per_s") or {}
        if candidates:
            lines += ["Other configurations measured in the same run (images/s):", ""]
            lines += [f"- ``{name}``: {rate(value)}" for name, value in candidates.items()]
            lines += [""]
        lines += ["To reproduce:", "", ".. code-block:: bash", "", f"   {throughput_command(result)}", ""]
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


def accuracy_section(accuracy: list[dict], curves: str | None) -> list[str]:
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
        lines += [f"``{result['name']}``{torch_version}:", "", ".. code-block:: bash", ""]
        lines += [f"   {line}" for line in str(result["command"]).splitlines()] + [""]
        if result.get("recipe"):
            lines += [f"Its settings, defaults included: {recipe_text(result['recipe'])}.", ""]
    if curves:
        lines += [
            "Training curves",
            "~~~~~~~~~~~~~~~",
            "",
            f".. image:: /results/{curves}",
            "   :alt: kNN accuracy and loss against epochs and against wall-clock minutes",
            "",
            "From ``benchmarks/results/accuracy-<name>.metrics.jsonl``, the runs' own ``metrics.jsonl``:",
            "the kNN accuracy where the run evaluated it, the mean loss of each epoch.",
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
    """Option pairs back as command-line text: '--lr 0.1 --no-blur'."""
    return " ".join(f"{flag} {value}" if value else flag for flag, value in options)


def tuning_section(tuning: list[dict]) -> list[str]:
    """One table of the short runs that chose the defaults: what each changed, what it reached."""
    if not tuning:
        return []
    options = [command_options(str(result["command"])) for result in tuning]
    shared = set.intersection(*(set(run) for run in options))
    first = str(tuning[0]["command"]).split()
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
        "its own value, the later one, wins):",
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
                changed or "(the shared command)",
                plain(result["device"]) + (f", {result['precision']}" if result.get("precision") else ""),
                percent(result["knn_top1"]),
                percent(result.get("linear_top1")),
                f"{losses[-1]:.3f}" if losses else "n/a",
                pair(result.get("train_wall_s"), result.get("total_wall_s"), "{:.1f}", scale=1 / 60),
            ]
        )
    header = ["run", "settings changed", "device", "kNN top-1", "linear top-1", "last loss", "minutes"]
    return [*lines, *list_table("Tuning runs", header, rows)]


def curve(metrics: list[dict], key: str) -> tuple[list[float], list[float], list[float]]:
    """(epochs, minutes, values) of the rows that hold `key`; minutes is nan where not recorded."""
    rows = [row for row in metrics if is_number(row.get(key))]
    epochs = [float(row["epoch"]) for row in rows]
    elapsed = [row["elapsed_s"] / 60 if is_number(row.get("elapsed_s")) else math.nan for row in rows]
    return epochs, elapsed, [float(row[key]) for row in rows]


def plot_curves(accuracy: list[dict], path: Path) -> bool:
    """kNN accuracy and loss against epochs and minutes, one line per run; False if nothing to plot."""
    runs = [result for result in accuracy if result["metrics"]]
    if not runs:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
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
            axis.plot(x, values, marker="o" if len(x) < 30 else None, markersize=3, label=result["name"])
        axis.set_xlabel("epoch" if x_name == "epoch" else "wall-clock minutes")
        axis.set_ylabel(y_label)
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("BYOL training: kNN accuracy and loss")
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return True


def generate(results_dir: Path, output_dir: Path) -> list[Path]:
    """Write the page's include and plots; return the paths written."""
    throughput, accuracy, tuning = load_results(results_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    curves_path = output_dir / CURVES
    curves_path.unlink(missing_ok=True)  # a plot of results that no longer exist must not stay
    has_curves = plot_curves(accuracy, curves_path)
    lines = [
        ".. This file is generated by docs/make_results.py from benchmarks/results/: do not edit it.",
        "",
        *throughput_section(throughput),
        *accuracy_section(accuracy, CURVES if has_curves else None),
        *tuning_section(tuning),
    ]
    include = output_dir / INCLUDE
    include.write_text("\n".join(lines).rstrip("\n") + "\n")
    return [include, *([curves_path] if has_curves else [])]


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
