"""Turn the benchmark results into the Results page's tables and plots.

    python docs/make_results.py       # reads benchmarks/results/, writes docs/results/

Reads, from --results-dir:

- ``throughput-<machine>.json``: images/s of the reference example and of ours on one machine
  (written by benchmarks/throughput.py);
- ``accuracy-<name>.json``: one training run's settings, wall-clock time and kNN / linear accuracy,
  with ``accuracy-<name>.metrics.jsonl`` beside it, the run's metrics.jsonl (one JSON object per epoch).

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

THROUGHPUT_REQUIRED = ["device", "batch_size", "reference_images_per_s", "default_images_per_s"]
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


def load_results(results_dir: Path) -> tuple[list[dict], list[dict]]:
    """(throughput results, accuracy results), sorted by file name, each with its 'name'."""
    throughput, accuracy = [], []
    if not results_dir.is_dir():
        return throughput, accuracy
    for path in sorted(results_dir.glob("throughput-*.json")):
        result = read_json(path, THROUGHPUT_REQUIRED)
        throughput.append({**result, "name": path.stem.removeprefix("throughput-")})
    for path in sorted(results_dir.glob("accuracy-*.json")):
        result = read_json(path, ACCURACY_REQUIRED)
        metrics_path = path.with_name(path.stem + ".metrics.jsonl")
        metrics = read_metrics(metrics_path) if metrics_path.exists() else []
        accuracy.append({**result, "name": path.stem.removeprefix("accuracy-"), "metrics": metrics})
    return throughput, accuracy


# Formatting: numbers as a reader wants them, and "n/a" where a value was not measured.


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def rate(value) -> str:
    return f"{value:,.0f}" if is_number(value) else "n/a"


def ratio(value) -> str:
    return f"{value:.2f}x" if is_number(value) else "n/a"


def percent(value) -> str:
    return f"{100 * value:.1f} %" if is_number(value) else "n/a"


def minutes(seconds) -> str:
    return f"{seconds / 60:.1f}" if is_number(seconds) else "n/a"


def images(train, test) -> str:
    return f"{train:,} / {test:,}" if is_number(train) and is_number(test) else "n/a"


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


def ratio_keys(throughput: list[dict]) -> list[str]:
    return sorted({key for result in throughput for key in result if key.startswith("ratio_")})


def throughput_section(throughput: list[dict]) -> list[str]:
    lines = ["Throughput", "----------", ""]
    if not throughput:
        return [
            *lines,
            "Not measured yet: no ``benchmarks/results/throughput-<machine>.json`` exists. Measure it",
            "with ``nox -s bench`` on the machine of interest.",
            "",
        ]
    lines += [
        "Images per second, one image being its pair of views, from ``benchmarks/results/"
        "throughput-<machine>.json``:",
        "*reference*: lightly's BYOL example as written; *equal work*: our script with the reference's",
        "settings; *default*: our script with its defaults; *ceiling*: one training step on views",
        "already on the device, without data loading.",
        "",
    ]
    ratios = ratio_keys(throughput)
    header = [
        "machine",
        "device",
        "batch",
        "reference",
        "equal work",
        "default",
        "ceiling",
        *[key.removeprefix("ratio_").replace("_", " ") for key in ratios],
    ]
    rows = [
        [
            result["name"],
            plain(result["device"]),
            plain(result["batch_size"]),
            rate(result.get("reference_images_per_s")),
            rate(result.get("equal_work_images_per_s")),
            rate(result.get("default_images_per_s")),
            rate(result.get("ceiling_images_per_s")),
            *[ratio(result.get(key)) for key in ratios],
        ]
        for result in throughput
    ]
    lines += list_table("Throughput (images/s)", header, rows)
    lines += ["To reproduce on a machine (the command each file recorded, else the default one):", ""]
    for result in throughput:
        lines += [f"``{result['name']}``:", "", ".. code-block:: bash", ""]
        lines += [f"   {result.get('command') or 'nox -s bench'}", ""]
    return lines


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
        "epochs",
        "batch",
        "train / test images",
        "kNN top-1",
        "linear top-1",
        "images/s",
        "training (min)",
        "total (min)",
        "torch",
    ]
    rows = [
        [
            result["name"],
            plain(result["device"]),
            plain(result["epochs"]),
            plain(result["batch_size"]),
            images(result.get("train_images"), result.get("test_images")),
            percent(result["knn_top1"]),
            percent(result.get("linear_top1")),
            rate(result.get("images_per_s")),
            minutes(result.get("train_wall_s")),
            minutes(result.get("total_wall_s")),
            plain(result.get("torch_version")),
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
        lines += [f"``{result['name']}``:", "", ".. code-block:: bash", ""]
        lines += [f"   {line}" for line in str(result["command"]).splitlines()] + [""]
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
    throughput, accuracy = load_results(results_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    curves_path = output_dir / CURVES
    curves_path.unlink(missing_ok=True)  # a plot of results that no longer exist must not stay
    has_curves = plot_curves(accuracy, curves_path)
    lines = [
        ".. This file is generated by docs/make_results.py from benchmarks/results/: do not edit it.",
        "",
        *throughput_section(throughput),
        *accuracy_section(accuracy, CURVES if has_curves else None),
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
