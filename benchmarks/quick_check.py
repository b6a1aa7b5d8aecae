"""The README's main job, measured: kNN accuracy of the untrained network and after each epoch, and the
time it takes, written to benchmarks/results/quick-check.json. The README and the docs quote these
figures, and a docs test holds them to this file.

    python benchmarks/quick_check.py
"""

import json
import tempfile
import time
from pathlib import Path

import torch
from plain_example import load_example
from provenance import ROOT, provenance

ROOT_COMMAND = "python examples/pytorch/byol.py"
ARGUMENTS = "--data synthetic --input-size 16 --batch-size 32 --lr 1.6 --epochs 2 --eval-every 1 --knn-k 20"
RESULT = "benchmarks/results/quick-check.json"


def main() -> None:
    byol = load_example()
    with tempfile.TemporaryDirectory() as output_dir:
        argv = [*ARGUMENTS.split(), "--output-dir", output_dir]
        args = byol.parse_args(argv)
        device = torch.device(args.device)
        _, bank, val, mean_std = byol.load_data(args)  # the run's own data
        torch.manual_seed(args.seed)  # the initial weights of the run below
        model = byol.BYOL(args.backbone, args.input_size <= 64, args.hidden_dim, args.proj_dim)
        untrained = byol.knn_accuracy(model.encoder.to(device), bank, val, args, mean_std, device)
        start = time.perf_counter()
        byol.main(argv)
        seconds = time.perf_counter() - start
        rows = [json.loads(line) for line in (Path(output_dir) / "metrics.jsonl").read_text().splitlines()]
    result = {
        "command": f"{ROOT_COMMAND} {ARGUMENTS}",
        **provenance("examples/pytorch/byol.py"),
        "untrained_knn_top1": untrained,
        "knn_top1": [row["knn_top1"] for row in rows],
        "seconds": seconds,
    }
    (ROOT / RESULT).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
