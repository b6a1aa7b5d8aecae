"""Throughput of this checkout's examples against another commit's, side by side on one machine:
alternating rounds of each commit's own benchmarks/throughput.py with the same settings, so that a slow
spell of a shared machine hits both alike; prints each loop's median and the ratio of the two.

    python benchmarks/against_commit.py 200c71a --rounds 3 -- --data CIFAR10_DIR/train --batch-size 128

Everything after ``--`` goes to both throughput.py runs. The other commit is checked out with
``git worktree`` into a temporary folder. Writes benchmarks/results/logs/against-COMMIT-MACHINE.json.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOOPS = ("reference", "equal_work", "equal_work_ceiling", "default", "ceiling")


def main() -> None:
    split = sys.argv.index("--") if "--" in sys.argv else len(sys.argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("commit", help="the commit to compare with, e.g. 200c71a")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each (each figure: their median)")
    args = parser.parse_args(sys.argv[1:split])
    settings = sys.argv[split + 1 :]
    figures = {"this checkout": {loop: [] for loop in LOOPS}, args.commit: {loop: [] for loop in LOOPS}}
    with tempfile.TemporaryDirectory() as scratch:
        other = Path(scratch) / "other"
        subprocess.run(["git", "worktree", "add", "--detach", str(other), args.commit], cwd=ROOT, check=True)
        try:
            for round_number in range(args.rounds):
                for name, root in ((args.commit, other), ("this checkout", ROOT)):
                    output = Path(scratch) / f"{round_number}.json"
                    command = [sys.executable, str(root / "benchmarks" / "throughput.py"), *settings]
                    print(f"round {round_number + 1}: {name}", flush=True)
                    subprocess.run(
                        [*command, "--repeats", "1", "--output", str(output)], cwd=root, check=True
                    )
                    record = json.loads(output.read_text())
                    for loop in LOOPS:
                        figures[name][loop].append(record[f"{loop}_images_per_s"])
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(other)], cwd=ROOT, check=True)
    medians = {
        name: {loop: statistics.median(values) for loop, values in loops.items()}
        for name, loops in figures.items()
    }
    print(f"\n{'loop':<22}{args.commit:>14}{'this checkout':>16}{'ratio':>8}")
    for loop in LOOPS:
        old, new = medians[args.commit][loop], medians["this checkout"][loop]
        print(f"{loop:<22}{old:>14,.1f}{new:>16,.1f}{new / old:>8.3f}")
    machine = record["device"].split(" ")[0].lower()
    result = {
        "commit": args.commit,
        "settings": settings,
        "device": record["device"],
        "rounds": figures,
        "medians": medians,
    }
    output = ROOT / "benchmarks" / "results" / "logs" / f"against-{args.commit}-{machine}.json"
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {output}")


if __name__ == "__main__":
    main()
