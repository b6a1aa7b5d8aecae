"""Time of the augmentation alone, this checkout's kornia pipeline against another commit's hand-written
one (crop_on_device and augment, as at 3217b80): both views of one batch of uint8 images held on the
device, cropped there, in alternating rounds; prints the median milliseconds per batch of each.

    python benchmarks/augmentation_speed.py 3217b80 --batch-size 256 --size 32 --rounds 5

Writes benchmarks/results/logs/augmentation-against-COMMIT-MACHINE.json.
"""

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from provenance import machine, provenance

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "examples/pytorch/byol.py"
MEAN_STD = (0.491, 0.482, 0.447), (0.247, 0.243, 0.262)


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ours(byol, images: torch.Tensor, size: int):
    """This checkout's: kornia's Table 6 pipelines, cropping on the device."""
    views = [
        byol.augmentation(size, view, MEAN_STD, crop=True).to(images.device)
        for view in (byol.VIEW_1, byol.VIEW_2)
    ]
    indices = torch.arange(len(images))
    return lambda: byol.two_views(indices, views, images, images.device)


def theirs(byol, images: torch.Tensor, size: int):
    """The commit's: roi_align crops, then the batched colour jitter, grey and solarize (no blur at 32 px,
    as its default), normalised."""
    generator = torch.Generator(images.device).manual_seed(0)
    mean_std = [torch.tensor(values, device=images.device) for values in MEAN_STD]

    def step():
        crops = [byol.crop_on_device(images.float() / 255, size, generator) for _ in range(2)]
        views = [
            byol.augment(crop, view, generator, size > 32)
            for crop, view in zip(crops, (byol.VIEW_1, byol.VIEW_2))
        ]
        return [byol.TF.normalize(view, *mean_std) for view in views]

    return step


def milliseconds(step, device: torch.device, repeats: int = 5) -> float:
    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("commit", help="the commit whose hand-written augmentation to time, e.g. 3217b80")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--size", type=int, default=32, help="side of the images and of the views")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (figures: medians)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as scratch:
        old_script = Path(scratch) / "byol_old.py"
        old_script.write_text(
            subprocess.run(
                ["git", "show", f"{args.commit}:{SCRIPT}"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        old, new = load(old_script, "byol_old"), load(ROOT / SCRIPT, "byol_new")
    images = torch.randint(
        0, 256, (args.batch_size, 3, args.size, args.size), dtype=torch.uint8, device=device
    )
    steps = {args.commit: theirs(old, images, args.size), "this checkout": ours(new, images, args.size)}
    rounds = {name: [] for name in steps}
    for round_number in range(args.rounds):
        for name, step in steps.items():
            rounds[name].append(milliseconds(step, device))
        print(
            f"round {round_number + 1}: " + ", ".join(f"{n} {r[-1]:.1f} ms" for n, r in rounds.items()),
            flush=True,
        )
    medians = {name: statistics.median(values) for name, values in rounds.items()}
    print(f"\nboth views of {args.batch_size} images at {args.size} px, median ms per batch:")
    for name, value in medians.items():
        print(f"  {name:<16}{value:>9.1f} ms  ({args.batch_size / value * 1000:,.0f} images/s)")
    result = {
        **provenance(SCRIPT),
        "compared_with": args.commit,
        "device": machine(),
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "size": args.size,
        "rounds_ms": rounds,
        "median_ms": medians,
    }
    name = machine().split(" ")[0].lower()
    output = ROOT / "benchmarks" / "results" / "logs" / f"augmentation-against-{args.commit}-{name}.json"
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {output}")


if __name__ == "__main__":
    sys.exit(main())
