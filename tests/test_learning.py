"""A short CPU run learns: kNN accuracy rises well above the untrained network's, without collapse."""

import json
import math

import pytest
import torch

# 1,024 generated 32x32 images, views of 16 px, two epochs of 32 steps: about 40 s on 2 cores.
# The training set holds about 100 images per class, so the kNN monitor uses k = 20 neighbours
# (k = 200 would reach two classes' worth of images).
LEARNING_RUN = (
    "--data synthetic --input-size 16 --batch-size 32 --epochs 2 --lr 1.6 --hidden-dim 512 "
    "--eval-every 1 --num-workers 1 --seed 0 --knn-k 20"
).split()


def untrained_knn_accuracy(byol, argv: list[str]) -> float:
    args = byol.parse_args(argv)
    data = byol.load_data(args)
    torch.manual_seed(args.seed)  # the same initial weights as the training run
    model = byol.BYOL(args.backbone, args.input_size <= 64, args.hidden_dim, args.proj_dim)
    mean, std = torch.tensor(data.mean), torch.tensor(data.std)
    return byol.knn_accuracy(model.encoder, data, args, torch.device("cpu"), mean, std)


@pytest.mark.slow
def test_short_cpu_run_learns_without_collapse(byol, tmp_path):
    argv = [*LEARNING_RUN, "--output-dir", str(tmp_path)]
    untrained = untrained_knn_accuracy(byol, argv)
    final = byol.main(argv)
    epochs = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    print(f"kNN top-1: untrained {untrained:.3f}, after each epoch {[e['knn_top1'] for e in epochs]}")
    assert untrained < 0.25  # ten classes: chance is 0.1
    assert final["knn_top1"] >= untrained + 0.08
    assert epochs[-1]["loss"] < epochs[0]["loss"]
    # 256-dim normalised projections: healthy std is about 1/sqrt(256); collapse drives it to 0
    for epoch in epochs:
        assert epoch["projection_std"] > 0.5 / math.sqrt(256)
