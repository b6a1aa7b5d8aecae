"""Train with an example script, then evaluate its frozen encoder on a test split: kNN and linear probe.

    python benchmarks/subset.py CIFAR10_DIR/train runs/subsets/train-5k --images 5000
    python benchmarks/subset.py CIFAR10_DIR/test runs/subsets/test-2k --images 2000
    python benchmarks/accuracy.py --name cpu-16px --train runs/subsets/train-5k \\
        --test runs/subsets/test-2k --input-size 16 -- python examples/pytorch/byol.py \\
        --data runs/subsets/train-5k --val runs/subsets/test-2k --input-size 16 --epochs 10

Everything after ``--`` is the training command; this script adds ``--output-dir runs/accuracy-NAME``
and runs it, then reads ``backbone.pt`` from there. Evaluation protocol, on the online encoder in
eval mode, images resized to --input-size and centre-cropped, no augmentation, features computed
in bf16 autocast where the device computes in bf16 natively (as the examples' own kNN monitor):

- kNN: weighted k-nearest neighbours (k = 200, t = 0.1) on L2-normalised features, the training
  images as memory bank.
- linear probe: the same features, standardised; a linear layer trained on the training images with
  full-batch L-BFGS (200 iterations, L2 penalty 1e-4), evaluated on the test images.

Writes benchmarks/results/accuracy-NAME.json (or into --results-dir) and, beside it, the run's metrics
as accuracy-NAME.metrics.jsonl.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from argparse import Namespace
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision.transforms.v2 as T
from plain_example import load_example
from provenance import provenance
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# The resolved settings that make a run's recipe, recorded so that a result still says how it was made
# after a default changes (its command names only the flags that were given)
RECIPE = [
    "backbone",
    "input_size",
    "hidden_dim",
    "proj_dim",
    "optimizer",
    "lr",
    "weight_decay",
    "warmup_epochs",
    "tau_base",
    "seed",
]


def load_encoder(path: Path, backbone: str) -> nn.Module:
    """The example's encoder (a torchvision ResNet without classifier), built through its BYOL class with
    the small-image stem if the saved first convolution is 3x3, and the saved weights."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    small_images = state["conv1.weight"].shape[-1] == 3
    encoder = load_example().BYOL(backbone, small_images, hidden_dim=8, proj_dim=8).encoder  # heads unused
    encoder.load_state_dict(state)
    return encoder


@torch.no_grad()
def features(encoder: nn.Module, folder: str, input_size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised features of a folder's images and their labels, as the examples' kNN monitor makes
    them: the images resized and centre-cropped, normalised with ImageNet's statistics (the examples' for
    folders), in bf16 on GPUs that compute in it natively."""
    byol = load_example()
    resize = T.Compose([T.Resize(input_size), T.CenterCrop(input_size), T.PILToTensor()])
    normalize = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
    settings = Namespace(num_workers=min(8, os.cpu_count() or 1))
    encoder.eval()
    embedded, labels = [], []
    for images, image_labels in byol.loader(byol.ImageFiles(folder, resize), settings, 512):
        with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            embedded.append(F.normalize(encoder(normalize(images.to(device) / 255)).float(), dim=1))
        labels.append(image_labels.to(device))
    return torch.cat(embedded), torch.cat(labels)


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
    write (the plain script's "settings", Lightning's "hyper_parameters"); empty for the reference."""
    checkpoint = output_dir / "checkpoint-last.pt"
    if not checkpoint.exists():
        return {}
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    return state.get("settings") or state.get("hyper_parameters") or {}


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
    parser.add_argument("--input-size", type=int, default=32)
    parser.add_argument("--backbone", default="resnet18")
    args = parser.parse_args(sys.argv[1:split])
    command = sys.argv[split + 1 :]

    start = time.perf_counter()
    output_dir = ROOT / "runs" / f"accuracy-{args.name}"
    shutil.rmtree(output_dir, ignore_errors=True)
    subprocess.run([*command, "--output-dir", str(output_dir)], check=True, cwd=ROOT)
    command_wall = time.perf_counter() - start

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    encoder = load_encoder(output_dir / "backbone.pt", args.backbone).to(device)
    bank, bank_labels = features(encoder, args.train, args.input_size, device)
    query, labels = features(encoder, args.test, args.input_size, device)
    num_classes = int(bank_labels.max()) + 1
    predicted = load_example().knn_predict(query, bank, bank_labels, num_classes, 200, 0.1)
    knn = (predicted == labels).float().mean().item()
    linear = linear_probe(bank, bank_labels, query, labels, num_classes)

    settings = run_settings(output_dir)
    rows = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    train_wall = sum(row["epoch_time_s"] for row in rows)
    script = next((word for word in command if word.endswith(".py")), "")
    result = {
        "name": args.name,
        **provenance(script),  # the training script, given relative to the project's root
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "command": " ".join(
            ["python", *command[1:]] if Path(command[0]).name.startswith("python") else command
        ),
        "epochs": len(rows),
        "batch_size": batch_size_of(command, settings),
        "precision": settings.get("precision", "fp32"),  # the reference trains in float32
        "recipe": {key: settings[key] for key in RECIPE if key in settings},
        "train_images": len(bank),
        "test_images": len(query),
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
