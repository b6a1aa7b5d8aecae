"""A short CPU run learns: kNN accuracy rises well above the untrained network's, without collapse."""

import json
import math

import pytest
import torch

# The README's quick check: 1,024 generated 32x32 images, views of 16 px, two epochs of 32 steps, about a
# minute on 2 cores. About 100 training images per class: the kNN monitor uses k = 20 neighbours, not 200.
LEARNING_RUN = (
    "--data synthetic --input-size 16 --batch-size 32 --epochs 2 --lr 1.6 "
    "--eval-every 1 --num-workers 0 --seed 0 --knn-k 20"
).split()


def untrained_knn_accuracy(byol, argv: list[str]) -> float:
    """The kNN monitor on the training run's initial weights: the same data, the same seed."""
    args = byol.parse_args(argv)
    _, bank, val, mean_std = byol.load_data(args)
    torch.manual_seed(args.seed)  # as train() seeds its initial weights
    model = byol.BYOL(args.backbone, args.input_size <= 64, args.hidden_dim, args.proj_dim)
    return byol.knn_accuracy(model.encoder, bank, val, args, mean_std, torch.device(args.device))


@pytest.mark.slow
def test_short_cpu_run_learns_without_collapse(byol, tmp_path):
    argv = [*LEARNING_RUN, "--device", "cpu", "--output-dir", str(tmp_path)]
    untrained = untrained_knn_accuracy(byol, argv)
    final = byol.main(argv)
    epochs = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    print(f"kNN top-1: untrained {untrained:.3f}, after each epoch {[e['knn_top1'] for e in epochs]}")
    assert [epoch["epoch"] for epoch in epochs] == [1, 2] and epochs[-1] == final
    assert untrained < 0.25  # ten classes: chance is 0.1
    assert final["knn_top1"] >= untrained + 0.08
    for epoch in epochs:  # 256-dim normalised projections: healthy about 1/16, collapsed 0
        assert epoch["projection_std"] > 0.5 / math.sqrt(256)
        assert math.isfinite(epoch["loss"]) and epoch["loss"] < 4  # two terms, each 2 for unrelated vectors
