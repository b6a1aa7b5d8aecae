"""Turn the benchmark results into the Results page's tables and plots.

    python docs/make_results.py       # reads benchmarks/results/, writes docs/results/

Reads, from --results-dir:

- ``throughput-<machine>.json``: images/s of the reference example and of ours on one machine
  (written by benchmarks/throughput.py);
- ``accuracy-<name>.json``: one training run's settings, wall-clock time and kNN / linear accuracy,
  with ``accuracy-<name>.metrics.jsonl`` beside it, the run's metrics.jsonl (one JSON object per epoch);
- ``tuning/accuracy-<name>.json``: the same for the short runs that chose the defaults, shown as one
  table of the settings each run changed and what it reached; a run named ``...untrained`` (or with a
  learning rate below 1e-6) is the untrained network, shown as the baseline beside the runs of its data;
- ``logs/against-<commit>-<machine>.json``: the throughput loops of this checkout against an earlier
  commit's, in alternating rounds (benchmarks/against_commit.py);
- ``logs/augmentation-against-<commit>-<machine>.json``: the augmentation alone, against an earlier
  commit's (benchmarks/augmentation_speed.py);
- ``quick-check.json``: the README's main job, measured (written by benchmarks/quick_check.py).

Each result records when, on what machine and with which commit of the scripts it was measured (see
benchmarks/provenance.py); the page says so beside it, and says when the script measured differs from
today's. The page labels runs and loops in words, from what their files record (machine, images, view
size, epochs, the settings that tell runs apart), never by file names or JSON keys.

Writes, into --output-dir, ``results.inc`` (the figures: reStructuredText, included by docs/results.rst),
``commands.inc`` (the commands that measured them, included at the page's end) and one
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
from dataclasses import dataclass, field
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
INCLUDE = "results.inc"
COMMANDS = "commands.inc"  # the commands behind the figures, at the end of the page
QUICK_CHECK = "quick-check.inc"  # what the landing page says of its quick start
CURVES = "training-curves-{}px-{}.png"  # per group of comparable runs: view size, training images

THROUGHPUT_REQUIRED = ["device", "batch_size", "reference_images_per_s"]
ACCURACY_REQUIRED = ["device", "command", "epochs", "batch_size", "knn_top1"]
QUICK_REQUIRED = ["command", "untrained_knn_top1", "knn_top1", "seconds"]
AGAINST_REQUIRED = ["commit", "medians"]
AUGMENTATION_REQUIRED = ["compared_with", "median_ms", "batch_size", "size"]


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


@dataclass
class Results:
    throughput: list[dict] = field(default_factory=list)
    accuracy: list[dict] = field(default_factory=list)
    tuning: list[dict] = field(default_factory=list)
    against: list[dict] = field(default_factory=list)  # throughput loops against an earlier commit's
    augmentation: list[dict] = field(default_factory=list)  # the augmentation alone, likewise
    quick: dict | None = None


def load_results(results_dir: Path) -> Results:
    if not results_dir.is_dir():
        return Results()
    throughput = []
    for path in sorted(results_dir.glob("throughput-*.json")):
        result = read_json(path, THROUGHPUT_REQUIRED)
        throughput.append({**result, "name": path.stem.removeprefix("throughput-")})
    logs = results_dir / "logs"
    against = [read_json(path, AGAINST_REQUIRED) for path in sorted(logs.glob("against-*.json"))]
    augmentation = [
        read_json(path, AUGMENTATION_REQUIRED) for path in sorted(logs.glob("augmentation-against-*.json"))
    ]
    quick = results_dir / "quick-check.json"
    return Results(
        throughput,
        load_accuracy(results_dir),
        load_accuracy(results_dir / "tuning"),
        against,
        augmentation,
        read_json(quick, QUICK_REQUIRED) if quick.exists() else None,
    )


# Where a result comes from: when, on what, with which version of its script.


def script_is_current(result: dict, root: Path) -> bool | None:
    """Whether the result measured today's version of its script; None where that is not recorded."""
    if not result.get("script_sha256") or not result.get("script"):
        return None
    path = root / result["script"]
    return path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == result["script_sha256"]


def measured(result: dict, root: Path, short: bool = False) -> str:
    """'2026-11-28, commit d9aa4ba, an earlier examples/pytorch/byol.py': what the result records
    (short, for a table cell: '2026-11-28, commit d9aa4ba (earlier script)')."""
    parts = [result.get("date") or "date not recorded"]
    if result.get("commit"):
        parts.append(f"commit {result['commit']}")
    current = script_is_current(result, root)
    text = ", ".join(parts)
    if current is None:
        return f"{text} (script version not recorded)" if short else f"{text}, script version not recorded"
    if not current:
        return f"{text} (earlier script)" if short else f"{text}, an earlier {result['script']}"
    return text


def earlier_commits(results: list[dict], root: Path) -> list[str]:
    """Where results measured earlier scripts: the commits to check out to run their commands as they were."""
    return sorted({r["commit"] for r in results if r.get("commit") and script_is_current(r, root) is False})


def run_with(results: list[dict], root: Path) -> str:
    commits = earlier_commits(results, root)
    if not commits:
        return ""
    return f" (with the scripts of commit {', '.join(commits)}, whose flags may differ from today's)"


def ran_with(result: dict, root: Path) -> str:
    """' (torch 2.14.1, the scripts of commit 9ec3594)': what a command below ran with, where recorded."""
    parts = [f"torch {result['torch_version']}"] if result.get("torch_version") else []
    parts += [f"the scripts of commit {commit}" for commit in earlier_commits([result], root)]
    return f" ({', '.join(parts)})" if parts else ""


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


def escape(text: str) -> str:
    """Text shown as it is in reStructuredText: no character of it taken for markup."""
    return text.replace("\\", "\\\\").replace("*", "\\*").replace("`", "\\`").replace("|", "\\|")


class Markup(str):
    """A cell's text that is reStructuredText already (inline code), not to be escaped."""


def code(text: str, before: str = "", after: str = "") -> Markup:
    """A cell holding command-line text as inline code, which the browser does not break at its hyphens:
    'untrained network, the baseline: ``--lr 1e-9 --epochs 1``'."""
    return Markup(escape(before) + (f"``{text}``" if text else "") + escape(after))


def cell(text: str) -> str:
    """Text safe inside a list-table cell (no leading markup characters to misparse)."""
    return (text if isinstance(text, Markup) else escape(text)) or "n/a"


def list_table(title: str, header: list[str], rows: list[list[str]], widths: str = "auto") -> list[str]:
    lines = [f".. list-table:: {title}", "   :header-rows: 1", f"   :widths: {widths}", ""]
    for row in [header, *rows]:
        lines.append(f"   * - {cell(row[0])}")
        lines += [f"     - {cell(value)}" for value in row[1:]]
    return [*lines, ""]


def heading(title: str, underline: str) -> list[str]:
    return [title, underline * len(title), ""]


# How runs and loops read on the page: in words, from what their files record.


def machine_of(result: dict) -> str:
    """The machine as recorded: its description where the file has one ('cpu (2 cores, x86_64)'), else
    the device ('NVIDIA H200')."""
    device = plain(result.get("device"))
    machine = result.get("machine")
    if isinstance(machine, str) and machine != device and machine.lower().startswith(device.lower()):
        return machine
    return device


def view_size(result: dict) -> int:
    return (result.get("recipe") or {}).get("input_size", 32)


def images_text(result: dict, test: bool = True) -> str:
    """'10,000 images (2,000 to test) at 16 px'."""
    train, tested = result.get("train_images"), result.get("test_images")
    text = f"{train:,} images" if is_number(train) else "images"
    if test and is_number(tested):
        text += f" ({tested:,} to test)"
    return f"{text} at {view_size(result)} px"


def dataset_of(result: dict) -> str:
    """'CIFAR-10, ' where the run's command names it, '' where it does not say."""
    command = str(result.get("command", "")).lower()
    return "CIFAR-10, " if "cifar10" in command or "cifar-10" in command else ""


def data_title(result: dict) -> str:
    """'CIFAR-10, 50,000 images at 32 px'."""
    return dataset_of(result) + images_text(result, test=False)


def is_untrained(result: dict) -> bool:
    """The untrained network's run: the baseline that the trained runs of its data compare with."""
    lr = (result.get("recipe") or {}).get("lr")
    return str(result.get("name", "")).endswith("untrained") or (is_number(lr) and lr < 1e-6)


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


def distinguishing(result: dict, runs: list[dict]) -> str:
    """The recorded settings in which this run differs from the others it is shown with."""
    keys = [key for key, _ in RECIPE_LABELS if key != "input_size"]  # the view size heads each group
    differ = [k for k in keys if len({json.dumps((r.get("recipe") or {}).get(k)) for r in runs}) > 1]
    if "proj_dim" in differ and "hidden_dim" not in differ:  # the heads read 'heads 4096 to 128'
        differ.insert(differ.index("proj_dim"), "hidden_dim")
    recipe = result.get("recipe") or {}
    return recipe_text({key: recipe[key] for key in differ if key in recipe})


def run_labels(runs: list[dict], with_data: bool = True) -> list[str]:
    """One label per run, in words: machine and precision, data, epochs, batch, and what sets it apart
    from the others; the commit is added where two labels would read the same."""
    labels, trained = [], [r for r in runs if not is_untrained(r)]
    for result in runs:
        if is_untrained(result):
            label = "untrained network (the baseline)"
            labels.append(f"{label}: {machine_of(result)}, {images_text(result)}" if with_data else label)
            continue
        who = machine_of(result) + (f", {result['precision']}" if result.get("precision") else "")
        parts = [images_text(result)] if with_data else []
        parts += [f"{result['epochs']} epochs", f"batch {result['batch_size']}"]
        if distinct := distinguishing(result, trained):
            parts.append(distinct)
        labels.append(f"{who}: {', '.join(parts)}")
    for index, label in enumerate(labels):
        if labels.count(label) > 1 and runs[index].get("commit"):
            labels[index] = f"{label} (commit {runs[index]['commit']})"
    return labels


# The loops that benchmarks/throughput.py times, by key prefix, and the loop whose step alone each is
LOOP_LABELS = {
    "reference": "lightly 1.6.0's example",
    "equal_work": "ours, equal work",
    "default": "ours, defaults",
    "equal_work_ceiling": "ours, equal work, step alone",
    "ceiling": "ours, defaults, step alone",
    "augmentation": "augmentation alone",
}
LOOP_ORDER = ["reference", "equal_work", "default", "equal_work_ceiling", "ceiling"]
STEP_ALONE = {"equal_work": "equal_work_ceiling", "default": "ceiling"}
# What the rest of a configuration's key means, beyond its loop: 'equal_work_ceiling_fp32' reads
# 'ours, equal work, step alone (fp32)'
MODIFIERS = {
    "fp32": "fp32",
    "bf16": "bf16",
    "worker_crops": "crops in DataLoader workers",
    "compiled_jitter": "colour jitter compiled",
    "compiled": "compiled",
    "only": "",
}


def split_loop(key: str) -> tuple[str | None, str]:
    """(the loop a configuration's key starts with, the rest of the key): the longest loop that fits."""
    for base in sorted(LOOP_LABELS, key=len, reverse=True):
        if key == base or key.startswith(base + "_"):
            return base, key[len(base) :].strip("_")
    return None, key


def loop_label(key: str) -> str:
    """A loop's or configuration's key in words: 'default_batch_512' reads 'ours, defaults (batch 512)'."""
    base, rest = split_loop(key)
    words = []
    while rest:
        if match := re.match(r"batch_(\d+)_?", rest):
            words.append(f"batch {match.group(1)}")
            rest = rest[match.end() :]
            continue
        known = next(
            (m for m in sorted(MODIFIERS, key=len, reverse=True) if re.match(rf"{m}(_|$)", rest)), None
        )
        word = known or rest.split("_")[0]
        if MODIFIERS.get(word, word):
            words.append(MODIFIERS.get(word, word))
        rest = rest[len(word) :].strip("_")
    label = LOOP_LABELS[base] if base else key.replace("_", " ")
    return f"{label} ({', '.join(words)})" if words else label


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


def throughput_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    """The table of one throughput file: its loops, then the other configurations of the same run."""
    figures = {key: result.get(f"{key}_images_per_s") for key in LOOP_ORDER}
    figures = {key: value for key, value in figures.items() if value is not None}
    figures |= {k: v for k, v in (result.get("candidates_images_per_s") or {}).items() if v is not None}
    reference = result.get("reference_images_per_s")
    memory = {key: result.get(f"{key}_peak_mem_mb") for key in figures}
    rows = []
    for key, value in figures.items():
        base, rest = split_loop(key)
        alone = STEP_ALONE.get(base or "")
        alone = figures.get(f"{alone}_{rest}" if rest else alone) if alone else None
        rows.append(
            [
                loop_label(key),
                rate(value),
                ratio(value / reference)
                if is_number(value) and is_number(reference) and reference
                else "n/a",
                f"{100 * value / alone:.0f} %" if is_number(value) and is_number(alone) and alone else "n/a",
                rate(memory[key]),
            ]
        )
    header = ["loop", "images/s", "x lightly's example", "of its step alone", "peak GPU memory (MB)"]
    if not any(is_number(value) for value in memory.values()):  # a CPU: no GPU memory to show
        header, rows = header[:-1], [row[:-1] for row in rows]
    return header, rows


def throughput_settings(result: dict, root: Path) -> str:
    settings = [f"batch {result['batch_size']}"]
    if result.get("torch_version"):
        settings.append(f"torch {result['torch_version']}")
    if (result.get("repeats") or 1) > 1:
        settings.append(f"each figure the median of {result['repeats']} rounds")
    if result.get("bf16") is not None:
        settings.append("our steps in bf16" if result["bf16"] else "our steps in float32")
    if result.get("augmentations"):
        settings.append(f"our augmentations: {result['augmentations']}")
    if result.get("crops_on_device"):
        load = result.get("in_memory_load_s")
        load = f" (in {load:.0f} s, not counted)" if is_number(load) else ""
        settings.append(f"our crops made on the device from images decoded into memory{load}")
    if result.get("workers") is not None:
        settings.append(f"{result['workers']} DataLoader workers")
    return f"**{machine_of(result)}**, {', '.join(settings)} (measured {measured(result, root)})."


def throughput_section(throughput: list[dict], root: Path) -> list[str]:
    lines = heading("Throughput", "-")
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
        "- *lightly 1.6.0's example*, the reference: lightly's BYOL example loop (PIL augmentations in",
        "  DataLoader workers, fp32);",
        "- *ours, equal work*: our data path and training step with the reference's model (ResNet-18 with",
        "  the ImageNet stem, heads 512-1024-256), so that both do the same arithmetic;",
        "- *ours, defaults*: ``examples/pytorch/byol.py`` with its defaults (small-image stem, heads",
        "  512-4096-256);",
        "- *step alone*: our training step on views already augmented on the device, what the loop would",
        "  reach if loading and augmenting cost nothing; *of its step alone* says how close a loop comes.",
        "",
    ]
    for result in throughput:
        lines += [throughput_settings(result, root), ""]
        header, rows = throughput_rows(result)
        lines += list_table(f"Throughput on {machine_of(result)}", header, rows)
        lines += augmentation_line(result)
    return lines


def against_section(against: list[dict], augmentation: list[dict], root: Path) -> list[str]:
    """This checkout's speed against an earlier commit's, measured side by side on one machine."""
    if not (against or augmentation):
        return []
    lines = [
        *heading("Against earlier commits", "~"),
        "The same loops of two versions of the scripts, timed in alternating rounds on one machine, so",
        "that a slow spell of a shared machine hits both alike (each figure: the median of the rounds).",
        "",
    ]
    for result in against:
        older = str(result["commit"])
        medians = result["medians"]
        newer = next((name for name in medians if name != older), None)
        if newer is None:
            continue
        rounds = max((len(v) for v in (result.get("rounds") or {}).get(newer, {}).values()), default=0)
        newer_name = "newer checkout" if newer == "this checkout" else newer
        where = f"**{machine_of(result)}**, {newer_name} against commit {older}"
        settings = with_placeholder(" ".join(str(word) for word in result.get("settings") or []))
        details = [f"{rounds} rounds" if rounds else None, f"settings ``{settings}``" if settings else None]
        if result.get("date"):
            details.append(f"measured {result['date']}")
        details = [d for d in details if d]
        lines += [f"{where}{' (' + ', '.join(details) + ')' if details else ''}, images/s:", ""]
        old, new = medians.get(older) or {}, medians.get(newer) or {}
        keys = [k for k in LOOP_ORDER if k in old or k in new]
        keys += sorted((old.keys() | new.keys()) - set(keys))
        rows = [
            [
                loop_label(key),
                rate(old.get(key)),
                rate(new.get(key)),
                ratio(new[key] / old[key])
                if is_number(new.get(key)) and is_number(old.get(key)) and old[key]
                else "n/a",
            ]
            for key in keys
        ]
        header = ["loop", f"commit {older}", newer_name, "newer / older"]
        lines += list_table(f"{machine_of(result)}: against commit {older}", header, rows)
    for result in augmentation:
        older = str(result["compared_with"])
        medians = result["median_ms"]
        newer = next((name for name in medians if name != older), None)
        if newer is None:
            continue
        newer_name = f"commit {result['commit']}" if result.get("commit") else newer
        batch = result["batch_size"]

        def speed(ms, batch=batch) -> str:
            return f"{ms:.1f} ms ({rate(batch / ms * 1000)} images/s)" if is_number(ms) and ms else "n/a"

        old, new = medians.get(older), medians.get(newer)
        faster = f": {ratio(old / new)} as fast" if is_number(old) and is_number(new) and new else ""
        rounds = max((len(v) for v in (result.get("rounds_ms") or {}).values()), default=0)
        lines += [
            f"The augmentation alone, **{machine_of(result)}**: both views of a batch of {batch:,} images "
            f"at {result['size']} px, made on the device, {rounds} rounds "
            f"(measured {measured(result, root)}): "
            f"commit {older}, {speed(old)}; {newer_name}, {speed(new)}{faster}.",
            "",
        ]
    return lines


def group_key(result: dict) -> tuple:
    return view_size(result), result.get("train_images")


def accuracy_groups(accuracy: list[dict], tuning: list[dict]) -> list[list[dict]]:
    """The accuracy runs by view size and number of training images (the most images first), each group
    led by the untrained network of its data where one was measured (here or among the tuning runs)."""
    groups: dict[tuple, list[dict]] = {}
    for result in accuracy:
        groups.setdefault(group_key(result), []).append(result)
    ordered = []
    for key in sorted(groups, key=lambda k: (k[1] if is_number(k[1]) else 0, k[0]), reverse=True):
        runs = groups[key]
        untrained = [r for r in runs if is_untrained(r)]
        untrained += [r for r in tuning if is_untrained(r) and group_key(r) == key and r not in untrained]
        ordered.append([*untrained, *(r for r in runs if not is_untrained(r))])
    return ordered


def baseline_of(result: dict, accuracy: list[dict], tuning: list[dict]) -> dict | None:
    """The untrained network's result for this run's data, if measured."""
    if is_untrained(result):
        return None
    return next(
        (r for r in [*accuracy, *tuning] if is_untrained(r) and group_key(r) == group_key(result)), None
    )


def minutes(result: dict) -> str:
    return pair(result.get("train_wall_s"), result.get("total_wall_s"), "{:.1f}", scale=1 / 60)


def accuracy_section(accuracy: list[dict], tuning: list[dict], curves: list, root: Path) -> list[str]:
    lines = heading("Accuracy", "-")
    if not accuracy:
        return [
            *lines,
            "Not measured yet: no ``benchmarks/results/accuracy-<name>.json`` exists. The plots of loss",
            "and kNN accuracy over training appear here once a run's results are added.",
            "",
        ]
    lines += [
        "Top-1 accuracy on the test images of the frozen *online* encoder: a weighted k-nearest-neighbour",
        "classifier (cosine similarity of L2-normalised features, k = 200, votes weighted by",
        "``exp(similarity / 0.1)``, the run's training images as memory bank) and, where measured, a linear",
        "classifier trained on the same features (``benchmarks/accuracy.py`` describes the protocol). Runs",
        "of the same images and view size compare with each other; the untrained network of the same",
        "data, where measured, comes first, as what training adds to. Minutes are wall-clock: training, then",
        "in all (with the evaluation).",
        "",
    ]
    header = ["run", "kNN top-1", "linear top-1", "images/s", "minutes", "measured"]
    rows = []
    for group in accuracy_groups(accuracy, tuning):
        for result, label in zip(group, run_labels(group), strict=True):
            rows.append(
                [
                    label,
                    percent(result["knn_top1"]),
                    percent(result.get("linear_top1")),
                    rate(result.get("images_per_s")),
                    minutes(result),
                    measured(result, root, short=True),
                ]
            )
    lines += list_table("Accuracy", header, rows)
    if curves:
        lines += [
            "The plots below follow training, from the runs' own ``metrics.jsonl``: the kNN accuracy where a",
            "run evaluated it, and the mean loss of each epoch, against epochs and against wall-clock",
            "minutes; the dashed line is the untrained network, where measured. Only runs of one view size",
            "and one number of training images share a plot.",
            "",
        ]
    for name, title in curves:
        lines += [*heading(title, "~"), f".. image:: /results/{name}", f"   :alt: {title}", ""]
    missing = [
        label for result, label in zip(accuracy, run_labels(accuracy), strict=True) if not result["metrics"]
    ]
    if missing:
        lines += [f"No training curves for {'; '.join(missing)}: no metrics.jsonl was kept.", ""]
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


# The flags that say where the data is: the tuning table names the data by its number of images instead
DATA_FLAGS = {"--data", "--val", "--train-images", "--val-images"}


def tuning_changes(tuning: list[dict]) -> tuple[set, list[str]]:
    """(the options every tuning run shares, each run's own options as text): the data flags that differ
    between runs are left out, as the number of images says what they chose."""
    options = [command_options(with_placeholder(str(result["command"]))) for result in tuning]
    shared = set.intersection(*(set(run) for run in options)) if options else set()
    hidden = DATA_FLAGS - {flag for flag, _ in shared}
    changes = [options_text([o for o in run if o not in shared and o[0] not in hidden]) for run in options]
    return shared, changes


def tuning_section(tuning: list[dict], root: Path) -> list[str]:
    """One table of the short runs that chose the defaults: what each changed, what it reached."""
    if not tuning:
        return []
    tuning = sorted(tuning, key=lambda result: not is_untrained(result))  # the baseline first
    options = [command_options(with_placeholder(str(result["command"]))) for result in tuning]
    shared, changes = tuning_changes(tuning)
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
    data = {images_text(result) for result in tuning}
    machines = {machine_of(result) for result in tuning}
    where = []
    if len(data) == 1:
        where.append(f"on the same {next(iter(data))}")
    if len({result.get("device") for result in tuning}) == 1:
        where.append(f"on {plain(tuning[0].get('device'))}")
    lines = [
        *heading("Tuning runs", "~"),
        "Short runs that chose the defaults, each changing one or two settings of the same command"
        f"{''.join(', ' + part for part in where)}{run_with(tuning, root)}. {evaluation} Every run shares "
        "(where a run repeats "
        "a flag, its own value, the later one, wins):",
        "",
        ".. code-block:: bash",
        "",
        f"   {program} {common}".rstrip(),
        "",
    ]
    precisions = {result.get("precision") for result in tuning}
    rows = []
    for result, changed in zip(tuning, changes, strict=True):
        before = "untrained network, the baseline: " if is_untrained(result) else ""
        after = "" if changed else "none (the shared command alone)"
        if len(data) > 1:
            after += f"; {images_text(result)}"
        if len(machines) > 1 and len({r.get("device") for r in tuning}) > 1:
            after += f"; {machine_of(result)}"
        changed = code(changed, before, after)
        losses = [row["loss"] for row in result["metrics"] if is_number(row.get("loss"))]
        row = [changed, percent(result["knn_top1"]), percent(result.get("linear_top1"))]
        row += [f"{losses[-1]:.3f}" if losses else "n/a", minutes(result)]
        if len(precisions) > 1:
            row.append(plain(result.get("precision")))
        rows.append([*row, measured(result, root, short=True)])
    header = ["settings changed", "kNN top-1", "linear top-1", "last loss", "minutes"]
    if len(precisions) > 1:
        header.append("precision")
    header.append("measured")
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
        if result["metrics"] and not is_untrained(result):
            groups.setdefault(group_key(result), []).append(result)
    return groups


def plot_curves(runs: list[dict], title: str, path: Path, baseline: dict | None = None) -> None:
    """kNN accuracy and loss against epochs and minutes, one line per run, the legend below the plots;
    the untrained network's kNN accuracy, where measured, as a dashed line."""
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
    labels = run_labels(runs, with_data=False)
    for axis, key, x_name, y_label in panels:
        for result, label in zip(runs, labels, strict=True):
            epochs, elapsed, values = curve(result["metrics"], key)
            if key == "knn_top1":
                values = [100 * v for v in values]
            x = epochs if x_name == "epoch" else elapsed
            axis.plot(x, values, marker="o" if len(x) < 30 else None, markersize=4, label=label)
        if key == "knn_top1" and baseline:
            untrained = f"untrained network ({percent(baseline['knn_top1']).replace(chr(160), ' ')})"
            axis.axhline(100 * baseline["knn_top1"], color="grey", linestyle="--", label=untrained)
        axis.set_xlabel("epoch" if x_name == "epoch" else "wall-clock minutes", fontsize=12)
        axis.set_ylabel(y_label, fontsize=12)
        axis.tick_params(labelsize=11)
        axis.grid(alpha=0.3)
    handles, legend = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, legend, loc="lower center", ncol=1, fontsize=11, frameon=False)
    fig.suptitle(title, fontsize=14)
    fig.tight_layout(rect=(0, 0.035 * len(legend) + 0.01, 1, 1))  # room for the legend, a line per run
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
        f"{quick['knn_top1'][-1]:.2f} (measured {measured(quick, root)}, see :doc:`results`). The time "
        "varies with the machine and what else runs on it. It writes "
        "``runs/pytorch/metrics.jsonl``, ``runs/pytorch/checkpoint-last.pt`` and "
        "``runs/pytorch/backbone.pt``, the trained encoder."
    )


def training_time(result: dict) -> str:
    """', 29 minutes of training' (1.1 under ten), where recorded."""
    seconds = result.get("train_wall_s")
    if not is_number(seconds):
        return ""
    value = seconds / 60
    return f", {value:.1f} minutes of training" if value < 10 else f", {value:.0f} minutes of training"


def linear(result: dict) -> str:
    """', linear 41.5 %' where the linear classifier was measured."""
    value = result.get("linear_top1")
    return f", linear {percent(value)}" if is_number(value) else ""


def when(result: dict) -> str:
    """'2026-11-28, commit d9aa4ba': the date and commit of a headline figure."""
    parts = [result.get("date") or "date not recorded"]
    if result.get("commit"):
        parts.append(f"commit {result['commit']}")
    return ", ".join(parts)


def headline_section(results: Results, root: Path) -> list[str]:
    """What the scripts reach and how fast, on which machine: one line per measurement, in words."""
    items = []  # (measured with today's scripts, text)
    accuracy, tuning = results.accuracy, results.tuning
    for group in accuracy_groups(accuracy, []):
        runs = [r for r in group if not is_untrained(r)]
        for result, label in zip(runs, run_labels(runs, with_data=False), strict=True):
            baseline = baseline_of(result, accuracy, tuning)
            untrained = f" (untrained: {percent(baseline['knn_top1'])})" if baseline else ""
            machine, details = label.split(": ", 1)
            items.append(
                (
                    script_is_current(result, root),
                    f"**{data_title(result)}**, {machine}, {details}: kNN top-1 "
                    f"{percent(result['knn_top1'])}{untrained}{linear(result)}; "
                    f"{rate(result.get('images_per_s'))} images/s{training_time(result)} ({when(result)}).",
                )
            )
    for result, changed in zip(tuning, tuning_changes(tuning)[1], strict=True):
        if not script_is_current(result, root) or is_untrained(result):
            continue
        baseline = baseline_of(result, accuracy, tuning)
        untrained = f" (untrained: {percent(baseline['knn_top1'])})" if baseline else ""
        items.append(
            (
                True,
                f"**Tuning run, {data_title(result)}**, {machine_of(result)}, {result['epochs']} epochs, "
                f"{f'``{changed}``' if changed else 'the defaults'}: kNN top-1 {percent(result['knn_top1'])}"
                f"{untrained}{linear(result)}; {rate(result.get('images_per_s'))} images/s"
                f"{training_time(result)} ({when(result)}).",
            )
        )
    for result in results.throughput:
        equal = result.get("ratio_equal_work_to_reference")
        reference, equal_work = result.get("reference_images_per_s"), result.get("equal_work_images_per_s")
        if not is_number(equal) and is_number(equal_work) and is_number(reference) and reference:
            equal = equal_work / reference
        items.append(
            (
                script_is_current(result, root),
                f"**Training speed**, {machine_of(result)}, batch {plain(result.get('batch_size'))}: "
                f"{rate(result.get('default_images_per_s'))} images/s with the defaults; with the "
                f"reference's model, {ratio(equal)} the images/s of lightly's example ({when(result)}).",
            )
        )
    quick = results.quick
    if quick:
        epochs = len(quick["knn_top1"])
        size = re.search(r"--input-size (\d+)", quick["command"])
        size = f" at {size.group(1)} px" if size else ""
        items.append(
            (
                script_is_current(quick, root),
                f"**The README's quick check**, {epochs} epochs on generated images{size}, "
                f"{quick.get('machine', 'a machine')}: kNN top-1 {percent(quick['untrained_knn_top1'])} "
                f"untrained, {percent(quick['knn_top1'][-1])} after {epochs} epochs in "
                f"{quick['seconds']:.0f} seconds ({when(quick)}).",
            )
        )
    if not items:
        return []
    lines = heading("In short", "-")
    groups = [
        (True, "Measured with today's scripts:"),
        (False, "Measured with earlier versions of the scripts than today's (the commit says which):"),
        (None, "Measured with a version of the scripts that the results do not record:"),
    ]
    for version, title in groups:
        texts = [text for is_current, text in items if is_current is version]
        if texts:
            if version is False and all(is_current is False for is_current, _ in items):
                title = (
                    "All measured with earlier versions of the scripts than today's (the commit says which):"
                )
            lines += [title, "", *(f"- {text}" for text in texts), ""]
    return lines


def commands_text(results: Results, root: Path) -> list[str]:
    """The commands that measured the figures: the page's last section."""
    lines = [
        "In these commands, ``CIFAR10_DIR`` stands for a folder holding CIFAR-10 as image folders,",
        "``CIFAR10_DIR/train/<class>/*.jpg`` and ``CIFAR10_DIR/test/<class>/*.jpg``; the benchmarks train",
        "and evaluate on random subsets of it, made as folders of links by ``benchmarks/subset.py``. A",
        "command that ran the scripts of an earlier commit says which: its flags may differ from today's,",
        "so run it from a checkout of that commit to repeat the measurement as it was.",
        "",
    ]
    if not (results.throughput or results.accuracy or results.against or results.augmentation):
        return [*lines, "No figure is measured yet.", ""]

    def block(command: str) -> list[str]:
        return [".. code-block:: bash", "", *(f"   {line}" for line in command.splitlines()), ""]

    if results.throughput or results.against or results.augmentation:
        lines += heading("Throughput commands", "~")
    for result in results.throughput:
        lines += [f"On {machine_of(result)}{ran_with(result, root)}:", "", *block(throughput_command(result))]
    for result in results.against:
        settings = with_placeholder(" ".join(str(word) for word in result.get("settings") or []))
        rounds = max(
            (len(v) for loops in (result.get("rounds") or {}).values() for v in loops.values()), default=0
        )
        command = f"python benchmarks/against_commit.py {result['commit']}"
        command += f" --rounds {rounds}" if rounds else ""
        command += f" -- {settings}" if settings else ""
        lines += [f"Against commit {result['commit']}, on {machine_of(result)}:", "", *block(command)]
    for result in results.augmentation:
        rounds = max((len(v) for v in (result.get("rounds_ms") or {}).values()), default=0)
        command = (
            f"python benchmarks/augmentation_speed.py {result['compared_with']} "
            f"--batch-size {result['batch_size']} --size {result['size']}"
        )
        command += f" --rounds {rounds}" if rounds else ""
        lines += [
            f"The augmentation against commit {result['compared_with']}, on {machine_of(result)}:",
            "",
            *block(command),
        ]
    if results.accuracy:
        lines += [
            *heading("Training commands", "~"),
            "Each run's training command, as ``benchmarks/accuracy.py`` ran it (after ``--``) with",
            "``--output-dir`` added; accuracy.py then evaluates the saved encoder.",
            "",
        ]
    for group in accuracy_groups(results.accuracy, []):
        for result, label in zip(group, run_labels(group), strict=True):
            lines += [f"{label}{ran_with(result, root)}:", ""]
            lines += block(with_placeholder(str(result["command"])))
            if result.get("recipe"):
                lines += [f"Its settings, defaults included: {recipe_text(result['recipe'])}.", ""]
    return lines


def generate(results_dir: Path, output_dir: Path, root: Path = ROOT) -> list[Path]:
    """Write the page's includes and plots; return the paths written. root: where the scripts are, whose
    versions the results are compared with."""
    results = load_results(results_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for old in output_dir.glob("training-curves*.png"):
        old.unlink()  # a plot of results that no longer exist must not stay
    curves, written = [], []
    for (size, images), runs in sorted(comparable_groups(results.accuracy).items(), key=str):
        name = CURVES.format(size, images)
        title = (
            f"Training curves: {size} px views, {images:,} training images" if images else f"{size} px views"
        )
        plot_curves(runs, title, output_dir / name, baseline_of(runs[0], results.accuracy, results.tuning))
        curves.append((name, title))
        written.append(output_dir / name)
    lines = [
        ".. This file is generated by docs/make_results.py from benchmarks/results/: do not edit it.",
        "",
        *headline_section(results, root),
        *throughput_section(results.throughput, root),
        *against_section(results.against, results.augmentation, root),
        *accuracy_section(results.accuracy, results.tuning, curves, root),
        *tuning_section(results.tuning, root),
    ]
    include = output_dir / INCLUDE
    include.write_text("\n".join(lines).rstrip("\n") + "\n")
    commands = output_dir / COMMANDS
    header = ".. This file is generated by docs/make_results.py from benchmarks/results/: do not edit it."
    commands.write_text("\n".join([header, "", *commands_text(results, root)]).rstrip("\n") + "\n")
    quick_check = output_dir / QUICK_CHECK
    quick_check.write_text(quick_check_text(results.quick, root) + "\n")
    return [include, commands, quick_check, *written]


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
