"""Throughput of this checkout's examples against another commit's, side by side on one machine:
alternating rounds of each commit's own benchmarks/throughput.py with the same settings, so that a slow
spell of a shared machine hits both alike; prints each loop's median and the ratio of the two.

    python benchmarks/against_commit.py 200c71a --rounds 3 -- --data CIFAR10_DIR/train --batch-size 128

Everything after ``--`` goes to both throughput.py runs, so it may use only the flags both know (checked
first against each one's --help: --data, --batch-size, --workers, --steps, --warmup, --default-steps
have long been there; --compile only before the examples moved to kornia). The other commit is checked
out with ``git worktree`` into a temporary folder. Loops that only one side measures (the augmentation
alone, say) are shown without a ratio. Writes benchmarks/results/logs/against-COMMIT-MACHINE.json.
"""

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOOPS = ("reference", "equal_work", "equal_work_ceiling", "default", "ceiling")  # shown first


def check_flags(name: str, root: Path, settings: list[str]) -> None:
    """Exits if a flag of `settings` is not one that the throughput.py of `name`, in `root`, knows."""
    help_text = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "throughput.py"), "--help"],
        cwd=root, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    flags = {word.split("=")[0] for word in settings if word.startswith("--")}
    unknown = sorted(flag for flag in flags if flag not in re.findall(r"--[\w-]+", help_text))
    if unknown:
        sys.exit(f"against_commit.py: error: the throughput.py of {name} has no {', '.join(unknown)}")


def figures_of(record: dict) -> dict:
    """Every loop's images/s in a throughput.py record, the candidates' too (those not measured: left out)."""
    loops = {
        key.removesuffix("_images_per_s"): value
        for key, value in record.items()
        if key.endswith("_images_per_s")
    }
    loops |= record.get("candidates_images_per_s") or {}
    return {loop: value for loop, value in loops.items() if isinstance(value, int | float)}


def main() -> None:
    split = sys.argv.index("--") if "--" in sys.argv else len(sys.argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("commit", help="the commit to compare with, e.g. 200c71a")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each (each figure: their median)")
    parser.add_argument(
        "--output", type=Path, help="JSON path (default: results/logs/against-COMMIT-MACHINE.json)"
    )
    args = parser.parse_args(sys.argv[1:split])
    settings = sys.argv[split + 1 :]
    figures = {args.commit: defaultdict(list), "this checkout": defaultdict(list)}
    with tempfile.TemporaryDirectory() as scratch:
        other = Path(scratch) / "other"
        subprocess.run(["git", "worktree", "add", "--detach", str(other), args.commit], cwd=ROOT, check=True)
        try:
            for name, root in ((args.commit, other), ("this checkout", ROOT)):
                check_flags(name, root, settings)
            for round_number in range(args.rounds):
                for name, root in ((args.commit, other), ("this checkout", ROOT)):
                    output = Path(scratch) / f"{round_number}.json"
                    command = [sys.executable, str(root / "benchmarks" / "throughput.py"), *settings]
                    print(f"round {round_number + 1}: {name}", flush=True)
                    subprocess.run(
                        [*command, "--repeats", "1", "--output", str(output)], cwd=root, check=True
                    )
                    record = json.loads(output.read_text())
                    for loop, value in figures_of(record).items():
                        figures[name][loop].append(value)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(other)], cwd=ROOT, check=True)
    medians = {
        name: {loop: statistics.median(values) for loop, values in loops.items()}
        for name, loops in figures.items()
    }
    old, new = medians[args.commit], medians["this checkout"]
    loops = [*LOOPS, *sorted((old.keys() | new.keys()) - set(LOOPS))]
    print(f"\n{'loop':<26}{args.commit:>14}{'this checkout':>16}{'ratio':>8}")
    show = lambda value: f"{value:,.1f}" if value is not None else "-"  # noqa: E731
    for loop in (loop for loop in loops if loop in old or loop in new):
        ratio = f"{new[loop] / old[loop]:.3f}" if loop in old and loop in new and old[loop] else "-"
        print(f"{loop:<26}{show(old.get(loop)):>14}{show(new.get(loop)):>16}{ratio:>8}")
    machine = record["device"].split(" ")[0].lower()
    result = {
        "commit": args.commit,
        "settings": settings,
        "device": record["device"],
        "rounds": figures,
        "medians": medians,
        "ratios": {
            loop: new[loop] / old[loop] for loop in loops if loop in old and loop in new and old[loop]
        },
    }
    output = args.output or ROOT / "benchmarks" / "results" / "logs" / f"against-{args.commit}-{machine}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {output}")


if __name__ == "__main__":
    main()
