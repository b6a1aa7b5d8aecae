"""A short CPU run learns: kNN accuracy rises well above the untrained network's, without collapse."""

import json
import math

import pytest
import torch

# The README's quick check: 1,024 generated 32x32 images, views of 16 px, two epochs of 32 steps, about a
# minute on 2 cores. About 100 training images per class: the kNN monitor uses k = 20 neighbours, not 200.
# With the default 4096-wide heads it gained 0.15-0.22 over seeds 0-2; 512-wide heads gained 0.04-0.2.
LEARNING_RUN = (
    "--data synthetic --input-size 16 --batch-size 32 --epochs 2 --lr 1.6 "
    "--eval-every 1 --num-workers 0 --seed 0 --knn-k 20"
).split()


def untrained_knn_accuracy(byol, argv: list[str]) -> float:
    args = byol.parse_args(argv)
    data = byol.load_data(args)
    torch.manual_seed(args.seed)  # the training run's initial weights
    model = byol.BYOL(args.backbone, args.input_size <= 64, args.hidden_dim, args.proj_dim)
    mean_std = [torch.tensor(values) for values in data.mean_std]
    return byol.knn_accuracy(model.encoder, data, args, mean_std)


@pytest.mark.slow
def test_short_cpu_run_learns_without_collapse(byol, tmp_path):
    argv = [*LEARNING_RUN, "--output-dir", str(tmp_path)]
    untrained = untrained_knn_accuracy(byol, argv)
    final = byol.main(argv)
    epochs = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    print(f"kNN top-1: untrained {untrained:.3f}, after each epoch {[e['knn_top1'] for e in epochs]}")
    assert untrained < 0.25  # ten classes: chance is 0.1
    assert final["knn_top1"] >= untrained + 0.08
    for epoch in epochs:  # 256-dim normalised projections: healthy about 1/16, collapsed 0
        assert epoch["projection_std"] > 0.5 / math.sqrt(256)
