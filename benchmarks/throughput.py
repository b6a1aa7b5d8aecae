"""Training throughput, side by side in one run, on the same data and batch size:

- reference: lightly 1.6.0's BYOL example loop (PIL augmentations in DataLoader workers, fp32);
- equal_work: the plain example's loop (crops and augmentations on the device, then its training_step)
  with the reference's model (ResNet-18 with the ImageNet stem, heads 512-1024-256): equal work;
- default: the same loop with the examples' default model (small-image stem, heads 512-4096-256);
- the ceilings: the training step alone, on views already augmented on the device, for each model;
- equal_work_worker_crops (folders only): the loop with the crops made by DataLoader workers, which is
  what the examples do with a folder of images (they crop on the device the images they hold in memory).

A folder is decoded into memory once for the in-memory loops; the time that takes is reported, not
counted. Images/s counts images (each a pair of views) over the timed steps, after warm-up steps. Prints
a table and writes benchmarks/results/throughput-<machine>.json (machine: 'cpu' or the GPU's name).

    python benchmarks/throughput.py --data CIFAR10_DIR/train
"""

import argparse
import itertools
import json
import os
import platform
import statistics
import time
from argparse import Namespace
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torchvision.transforms.v2.functional as TF
from lightly.loss import NegativeCosineSimilarity
from plain_example import load_example
from provenance import provenance
from reference_byol import reference_loader, reference_model, reference_step

RESULTS = Path(__file__).resolve().parent / "results"
# (small-image stem, hidden width): the reference's model and our default one, both ResNet-18
EQUAL_WORK, DEFAULT = (False, 1024), (True, 4096)
CORE = ("reference", "equal_work", "equal_work_ceiling", "default", "ceiling")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_memory_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None


def timed(batches, step, warmup: int, steps: int, batch_size: int, device: torch.device) -> float:
    """Images/s of `step` over `steps` batches, after `warmup` untimed ones."""
    iterator = iter(batches)
    for _ in range(warmup):
        step(next(iterator))
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step(next(iterator))
    synchronize(device)
    return steps * batch_size / (time.perf_counter() - start)


def forever(loader):
    """The loader's batches, epoch after epoch."""
    while True:
        yield from loader


def settings(args, device: torch.device) -> Namespace:
    """The example's settings for these loops: 32 px views, no blur (as at 32 px by default)."""
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
    return Namespace(
        data=args.data, data_dir="data", val=None, synthetic_images=1024, seed=0, input_size=32, blur=False,
        batch_size=args.batch_size, eval_every=0, num_workers=args.workers, device=str(device), bf16=bf16,
    )  # fmt: skip


def our_model(byol, config, device):
    small_images, hidden_dim = config
    torch.manual_seed(0)
    model = byol.BYOL("resnet18", small_images, hidden_dim, 256)
    model = model.to(device, memory_format=torch.channels_last)  # as the example's
    optimizer = byol.make_optimizer(model, Namespace(optimizer="sgd", weight_decay=5e-4), peak_lr=0.1)
    return model, optimizer


def measure_ours(byol, data, memory, config, args, device, jitter) -> float:
    """The example's loop: crops and flips (on the device from `memory`, the images in memory, else in
    DataLoader workers), the device's augmentations, and the training step."""
    model, optimizer = our_model(byol, config, device)
    options = settings(args, device)
    mean_std = [torch.tensor(values, device=device) for values in data.mean_std]
    generator = torch.Generator(device).manual_seed(0)
    images = data.train if memory is None else range(len(memory))
    batches = byol.loader(images, options, args.batch_size, shuffle=True, drop_last=True)

    def step(batch):
        views = byol.two_views(batch, memory, options, generator, mean_std, jitter)
        byol.training_step(model, optimizer, views, 0.1, 0.996, options.bf16)

    return timed(forever(batches), step, args.warmup, args.steps, args.batch_size, device)


def measure_ceiling(byol, data, memory, config, args, device) -> float:
    """The training step alone, on one batch of views already augmented on the device."""
    model, optimizer = our_model(byol, config, device)
    options = settings(args, device)
    mean_std = [torch.tensor(values, device=device) for values in data.mean_std]
    batch = (torch.arange(args.batch_size), [])
    views = byol.two_views(
        batch, memory, options, torch.Generator(device).manual_seed(0), mean_std, byol.color_jitter
    )
    step = lambda _: byol.training_step(model, optimizer, views, 0.1, 0.996, options.bf16)  # noqa: E731
    return timed(itertools.repeat(None), step, args.warmup, args.steps, args.batch_size, device)


def measure_reference(args, device) -> float:
    torch.manual_seed(0)
    model = reference_model().to(device)
    criterion = NegativeCosineSimilarity()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.06)
    loader = reference_loader(args.data, args.batch_size, args.workers)
    step = lambda batch: reference_step(model, criterion, optimizer, batch, 0.996, device)  # noqa: E731
    return timed(forever(loader), step, args.warmup, args.steps, args.batch_size, device)


def in_memory(byol, data, device: torch.device) -> torch.Tensor:
    """The training images as one uint8 tensor on the device: a folder's are decoded here, once."""
    if isinstance(data.train, torch.utils.data.TensorDataset):
        return data.train.tensors[0].to(device)
    paths = [path for path, _ in data.train.samples]
    with ThreadPoolExecutor(8) as pool:
        images = list(pool.map(lambda path: TF.pil_to_tensor(data.train.loader(path)), paths))
    return torch.stack(images).to(device)


def machine(device: torch.device) -> str:
    return (
        torch.cuda.get_device_name()
        if device.type == "cuda"
        else f"cpu ({os.cpu_count()} cores, {platform.machine()})"
    )


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def record(args, device, load_s, runs, memory, compiled) -> dict:
    """The JSON record of the figures so far: each loop's median over its rounds (None: not measured)."""
    results = {name: statistics.median(values) for name, values in runs.items() if values}
    return {
        **provenance("examples/pytorch/byol.py"),
        "device": machine(device),
        "data": args.data,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "timed_steps": args.steps,
        "repeats": args.repeats,
        "bf16": device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False),
        "compile": compiled,
        "crops_on_device": True,
        "in_memory_load_s": load_s,
        **{f"{name}_images_per_s": results.get(name) for name in CORE},
        "ratio_equal_work_to_reference": ratio(results.get("equal_work"), results.get("reference")),
        "ratio_equal_work_to_ceiling": ratio(results.get("equal_work"), results.get("equal_work_ceiling")),
        "ratio_default_to_ceiling": ratio(results.get("default"), results.get("ceiling")),
        "reference_peak_mem_mb": memory.get("reference"),
        "equal_work_peak_mem_mb": memory.get("equal_work"),
        "default_peak_mem_mb": memory.get("default"),
        "candidates_images_per_s": {k: v for k, v in results.items() if k not in CORE},
        "rounds_images_per_s": runs,  # every round's figure, of which the above are the medians
    }  # fmt: skip


def main() -> None:
    on_gpu = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description="BYOL training throughput: reference against ours.")
    parser.add_argument("--data", default="synthetic", help="'synthetic' or an image folder")
    parser.add_argument("--batch-size", type=int, default=256 if on_gpu else 128)
    parser.add_argument(
        "--workers", type=int, default=min(16, os.cpu_count() or 1), help="DataLoader workers"
    )
    parser.add_argument("--steps", type=int, default=100 if on_gpu else 30, help="timed steps")
    parser.add_argument(
        "--repeats", type=int, default=1 if on_gpu else 3, help="rounds of all loops (medians)"
    )
    parser.add_argument("--warmup", type=int, default=20 if on_gpu else 3, help="untimed steps first")
    parser.add_argument(
        "--default-steps", type=int, help="timed steps of the default model (CPU: --steps / 3)"
    )
    parser.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, default=on_gpu, help="as the examples"
    )
    parser.add_argument("--output", type=Path, help="JSON path (default: results/throughput-<machine>.json)")
    args = parser.parse_args()
    device = torch.device("cuda" if on_gpu else "cpu")
    torch.backends.cudnn.benchmark = True  # as the examples set it
    byol = load_example()
    data = byol.load_data(settings(args, device))
    start = time.perf_counter()
    memory = in_memory(byol, data, device)
    load_s = time.perf_counter() - start
    print(
        f"{len(memory)} images from {args.data}, batch {args.batch_size}, {args.workers} workers, on {device}"
    )
    jitter = byol.compiled(byol.color_jitter) if args.compile else byol.color_jitter
    default_args = Namespace(
        **{**vars(args), "steps": args.default_steps or (args.steps if on_gpu else max(1, args.steps // 3))}
    )
    measurements = [
        ("reference", lambda: measure_reference(args, device)),
        ("equal_work", lambda: measure_ours(byol, data, memory, EQUAL_WORK, args, device, jitter)),
        ("equal_work_ceiling", lambda: measure_ceiling(byol, data, memory, EQUAL_WORK, args, device)),
        ("default", lambda: measure_ours(byol, data, memory, DEFAULT, default_args, device, jitter)),
        ("ceiling", lambda: measure_ceiling(byol, data, memory, DEFAULT, default_args, device)),
    ]
    if args.data != "synthetic":  # what the examples do with a folder: crops in the workers
        measurements.append(
            (
                "equal_work_worker_crops",
                lambda: measure_ours(byol, data, None, EQUAL_WORK, args, device, jitter),
            )
        )
    if on_gpu:  # what batch 512 gives, and what the defaults owe to the compiled jitter
        batch_512 = Namespace(**{**vars(default_args), "batch_size": 512})
        measurements.append(
            (
                "default_batch_512",
                lambda: measure_ours(byol, data, memory, DEFAULT, batch_512, device, jitter),
            )
        )
        measurements.append(
            (
                "default_eager_jitter",
                lambda: measure_ours(byol, data, memory, DEFAULT, default_args, device, byol.color_jitter),
            )
        )
    # Rounds of every loop, so that a slow spell of a shared machine hits all of them alike; the JSON is
    # rewritten after every measurement, so that a run cut short keeps what it measured.
    output = (
        args.output
        or RESULTS
        / f"throughput-{torch.cuda.get_device_name().lower().replace(' ', '-') if on_gpu else 'cpu'}.json"
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    runs, peaks = {name: [] for name, _ in measurements}, {}
    for round_number in range(1, args.repeats + 1):
        print(f"round {round_number} of {args.repeats}", flush=True)
        for name, measure in measurements:
            if on_gpu:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            try:
                runs[name].append(measure())
            except Exception as error:  # one loop that fails must not cost the others' figures
                print(
                    f"  {name:<26} FAILED: {type(error).__name__}: {(str(error).splitlines() or [''])[0]}",
                    flush=True,
                )
                continue
            peaks[name] = max(filter(None, [peaks.get(name), peak_memory_mb(device)]), default=None)
            print(f"  {name:<26} {runs[name][-1]:>10,.0f} images/s", flush=True)
            output.write_text(
                json.dumps(record(args, device, load_s, runs, peaks, args.compile), indent=2) + "\n"
            )
    result = record(args, device, load_s, runs, peaks, args.compile)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'loop':<24}{'images/s':>12}{'x reference':>13}{'of ceiling':>12}")
    rows = [
        ("reference (lightly)", "reference", None),
        ("ours, equal work", "equal_work", "equal_work_ceiling"),
    ]
    for label, key, ceiling in [*rows, ("ours, defaults", "default", "ceiling")]:
        figure = result[f"{key}_images_per_s"]
        vs_reference, vs_ceiling = (
            ratio(figure, result["reference_images_per_s"]),
            ratio(figure, result.get(f"{ceiling}_images_per_s")),
        )
        print(
            f"{label:<24}{figure or 0:>12,.0f}{vs_reference or 0:>12.2f}x{100 * (vs_ceiling or 0):>11.0f} %"
        )
    print(f"\nwritten to {output}")


if __name__ == "__main__":
    main()
