"""Train with an example script, then evaluate its frozen encoder on a test split: kNN and linear probe.

    python benchmarks/accuracy.py --name cpu-16px --train ../shared/data/cifar10/train \\
        --test ../shared/data/cifar10/test --train-images 5000 --test-images 2000 --input-size 16 -- \\
        python examples/pytorch/byol.py --data ../shared/data/cifar10/train --train-images 5000 \\
        --val ../shared/data/cifar10/test --val-images 2000 --input-size 16 --epochs 10

Everything after ``--`` is the training command; this script adds ``--output-dir runs/accuracy-NAME``
and runs it, then reads ``backbone.pt`` from there. Evaluation protocol, on the online encoder in
eval mode, images resized to --input-size and centre-cropped, no augmentation, features computed
in bf16 autocast where the device computes in bf16 natively (as the examples' own kNN monitor):

- kNN: weighted k-nearest neighbours (k = 200, t = 0.1) on L2-normalised features, the training
  images (the same random subset as the training run, chosen with seed 0) as memory bank.
- linear probe: the same features, standardised; a linear layer trained on the training images with
  full-batch L-BFGS (200 iterations, L2 penalty 1e-4), evaluated on the test images.

Writes benchmarks/results/accuracy-NAME.json (or into --results-dir) and, beside it, the run's metrics
as accuracy-NAME.metrics.jsonl.
"""

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from plain_example import load_example
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# The resolved settings that make a run's recipe, recorded so that a result still says how it was made
# after a default changes (its command names only the flags that were given)
RECIPE = [
    "backbone",
    "input_size",
    "hidden_dim",
    "proj_dim",
    "lr",
    "momentum",
    "weight_decay",
    "warmup_epochs",
    "tau_base",
    "blur",
    "crops_on_device",
    "seed",
]


def load_encoder(path: Path, backbone: str) -> nn.Module:
    """A torchvision ResNet without classifier; the stem follows the saved first convolution."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    encoder, _ = load_example().resnet_encoder(backbone, small_images=state["conv1.weight"].shape[-1] == 3)
    encoder.load_state_dict(state)
    return encoder


def features(encoder, source, input_size: int, device, mean, std) -> tuple[torch.Tensor, torch.Tensor]:
    byol = load_example()
    loader = byol.make_loader(byol.EvalDataset(source, input_size), 512, byol.default_num_workers(), device)
    return byol.embed(encoder, loader, device, mean, std, byol.has_fast_bf16(device))


def linear_probe(
    train_x, train_y, test_x, test_y, num_classes: int, l2: float = 1e-4, steps: int = 200
) -> float:
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    torch.manual_seed(0)
    layer = nn.Linear(train_x.shape[1], num_classes).to(train_x.device)
    optimizer = torch.optim.LBFGS(
        layer.parameters(), max_iter=steps, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(layer(train_x), train_y) + l2 * layer.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return (layer(test_x).argmax(1) == test_y).float().mean().item()


def run_settings(output_dir: Path) -> dict:
    """The settings the run resolved (batch size, precision...), from the checkpoint that the examples
    write; empty for the reference example, which writes none."""
    checkpoint = output_dir / "checkpoint-last.pt"
    if not checkpoint.exists():
        return {}
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["args"]


def batch_size_of(command: list[str], settings: dict) -> int:
    """The run's batch size: from its command, else from its settings, else the reference's own 256."""
    if "--batch-size" in command:
        return int(command[command.index("--batch-size") + 1])
    return settings.get("batch_size", 256)


def main() -> None:
    if "--" not in sys.argv:
        sys.exit("usage: accuracy.py [options] -- TRAINING COMMAND (see --help)")
    split = sys.argv.index("--")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="results go to RESULTS_DIR/accuracy-NAME.*")
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=RESULTS,
        help="where the results go (default: benchmarks/results; tuning runs: benchmarks/results/tuning)",
    )
    parser.add_argument("--train", required=True, help="training image folder (kNN bank, probe training)")
    parser.add_argument("--test", required=True, help="test image folder with the same classes")
    parser.add_argument("--train-images", type=int, default=None, help="random subset, as the run used")
    parser.add_argument("--test-images", type=int, default=None, help="random subset of the test images")
    parser.add_argument("--input-size", type=int, default=32)
    parser.add_argument("--backbone", default="resnet18")
    args = parser.parse_args(sys.argv[1:split])
    command = sys.argv[split + 1 :]

    start = time.perf_counter()
    output_dir = ROOT / "runs" / f"accuracy-{args.name}"
    shutil.rmtree(output_dir, ignore_errors=True)
    subprocess.run([*command, "--output-dir", str(output_dir)], check=True, cwd=ROOT)
    command_wall = time.perf_counter() - start

    byol = load_example()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    train = byol.FolderSource(args.train)
    test = byol.FolderSource(args.test)
    if args.train_images:
        train = byol.Subset(train, args.train_images, 0, "--train-images")
    if args.test_images:
        test = byol.Subset(test, args.test_images, 0, "--test-images")
    mean = torch.tensor(byol.IMAGENET_MEAN_STD[0], device=device)
    std = torch.tensor(byol.IMAGENET_MEAN_STD[1], device=device)
    encoder = load_encoder(output_dir / "backbone.pt", args.backbone).to(device)
    bank, bank_labels = features(encoder, train, args.input_size, device, mean, std)
    query, labels = features(encoder, test, args.input_size, device, mean, std)
    num_classes = len(train.classes)
    knn = (byol.knn_predict(query, bank, bank_labels, num_classes, 200, 0.1) == labels).float().mean().item()
    linear = linear_probe(bank, bank_labels, query, labels, num_classes)

    settings = run_settings(output_dir)
    rows = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    train_wall = sum(row["epoch_time_s"] for row in rows)
    result = {
        "name": args.name,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch_version": torch.__version__,
        "command": " ".join(command),
        "epochs": len(rows),
        "batch_size": batch_size_of(command, settings),
        "precision": settings.get("precision", "fp32"),  # the reference trains in float32
        "recipe": {key: settings[key] for key in RECIPE if key in settings},
        "train_images": len(train),
        "test_images": len(test),
        "train_wall_s": train_wall,
        "command_wall_s": command_wall,
        "total_wall_s": time.perf_counter() - start,
        "images_per_s": sum(row["images_per_s"] * row["epoch_time_s"] for row in rows) / train_wall,
        "knn_top1": knn,
        "linear_top1": linear,
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / f"accuracy-{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    shutil.copy(output_dir / "metrics.jsonl", args.results_dir / f"accuracy-{args.name}.metrics.jsonl")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
