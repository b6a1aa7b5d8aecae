"""Training throughput, side by side in one run, on the same data and batch size:

- reference: lightly 1.6.0's BYOL example loop (PIL augmentations in DataLoader workers, fp32);
- equal_work: the plain example's loop (crops and augmentations by its kornia pipelines on the device,
  then its training_step) with the reference's model (ResNet-18 with the ImageNet stem, heads
  512-1024-256): equal work, but for the blur, which the example applies as the paper does (view 1
  always, view 2 in 10 % of images) and the reference at 32 px not at all;
- default: the same loop with the examples' default model (small-image stem, heads 512-4096-256);
- the ceilings: the training step alone, on views already augmented on the device, for each model;
- augmentation: the augmentation alone, both views of a batch of 256 images at 32 px through the
  example's kornia pipelines (crops included, from the images in memory), in ms per batch and images/s;
- equal_work_worker_crops (folders only): the loop with the crops made by DataLoader workers, which is
  what the examples do with a folder of images (they crop on the device the images they hold in memory);
- default_batch_512 (GPUs only): the default loop at batch 512.

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
from torch import nn

RESULTS = Path(__file__).resolve().parent / "results"
# (small-image stem, hidden width): the reference's model and our default one, both ResNet-18
EQUAL_WORK, DEFAULT = (False, 1024), (True, 4096)
CORE = ("reference", "equal_work", "equal_work_ceiling", "default", "ceiling", "augmentation")
AUGMENTATION_BATCH = 256  # the augmentation alone: both views of this many images at 32 px


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
    if len(loader) == 0:
        raise ValueError(f"fewer images than a batch of {loader.batch_size}")
    while True:
        yield from loader


def example_settings(byol, args, device: torch.device) -> Namespace:
    """The example's own settings (its parse_args, its defaults) for these loops: 32 px, no kNN monitor."""
    flags = f"--data {args.data} --input-size 32 --batch-size {args.batch_size} --eval-every 0"
    return byol.parse_args([*flags.split(), "--num-workers", str(args.workers), "--device", str(device)])


def pipelines(run: Namespace, crop: bool) -> list[nn.Module]:
    """The example's two views at 32 px, on the device; crop=False: the images are crops already."""
    byol = run.byol
    return [
        byol.augmentation(32, view, run.mean_std, crop).to(run.device) for view in (byol.VIEW_1, byol.VIEW_2)
    ]


def our_model(run: Namespace, config: tuple):
    small_images, hidden_dim = config
    torch.manual_seed(0)  # the weights, then kornia's draws
    model = run.byol.BYOL("resnet18", small_images, hidden_dim, 256)
    model = model.to(run.device, memory_format=torch.channels_last)  # as the example's
    return model, run.byol.make_optimizer(model, run.options, peak_lr=0.1)


def measure_ours(run: Namespace, config: tuple, args, worker_crops: bool = False) -> float:
    """The example's loop: crops (on the device from the images in memory, or by DataLoader workers from
    the folder's files), the kornia augmentations on the device, and the training step."""
    model, optimizer = our_model(run, config)
    memory = None if worker_crops else run.memory
    views = pipelines(run, crop=memory is not None)
    images = run.train if memory is None else range(len(memory))
    batches = run.byol.loader(images, run.options, args.batch_size, shuffle=True, drop_last=True)

    def step(batch):
        pair = run.byol.two_views(batch, views, memory, run.device)
        run.byol.training_step(model, optimizer, pair, 0.1, 0.996, run.options.precision == "bf16")

    return timed(forever(batches), step, args.warmup, args.steps, args.batch_size, run.device)


def measure_ceiling(run: Namespace, config: tuple, args) -> float:
    """The training step alone, on one batch of views already augmented on the device."""
    model, optimizer = our_model(run, config)
    indices = torch.arange(args.batch_size) % len(run.memory)
    pair = run.byol.two_views(indices, pipelines(run, crop=True), run.memory, run.device)
    bf16 = run.options.precision == "bf16"
    step = lambda _: run.byol.training_step(model, optimizer, pair, 0.1, 0.996, bf16)  # noqa: E731
    return timed(itertools.repeat(None), step, args.warmup, args.steps, args.batch_size, run.device)


def measure_augmentation(run: Namespace, args) -> float:
    """The augmentation alone: both views of a batch of 256 images in memory, as two_views makes them
    (crops, flips, colour jitter, grey, blur, solarisation, normalisation), in images/s."""
    torch.manual_seed(0)
    views = pipelines(run, crop=True)
    indices = torch.arange(AUGMENTATION_BATCH) % len(run.memory)
    step = lambda _: run.byol.two_views(indices, views, run.memory, run.device)  # noqa: E731
    return timed(itertools.repeat(None), step, args.warmup, args.steps, AUGMENTATION_BATCH, run.device)


def measure_reference(args, device) -> float:
    torch.manual_seed(0)
    model = reference_model().to(device)
    criterion = NegativeCosineSimilarity()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.06)
    loader = reference_loader(args.data, args.batch_size, args.workers)
    step = lambda batch: reference_step(model, criterion, optimizer, batch, 0.996, device)  # noqa: E731
    return timed(forever(loader), step, args.warmup, args.steps, args.batch_size, device)


def in_memory(train, device: torch.device) -> torch.Tensor:
    """The training images as one uint8 tensor on the device: a folder's are decoded here, once."""
    if isinstance(train, torch.utils.data.TensorDataset):
        return train.tensors[0].to(device)
    paths = [path for path, _ in train.samples]
    with ThreadPoolExecutor(8) as pool:
        images = list(pool.map(lambda path: TF.pil_to_tensor(train.loader(path)), paths))
    return torch.stack(images).to(device)


def machine(device: torch.device) -> str:
    return (
        torch.cuda.get_device_name()
        if device.type == "cuda"
        else f"cpu ({os.cpu_count()} cores, {platform.machine()})"
    )


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def record(args, device, load_s, runs, memory, precision) -> dict:
    """The JSON record of the figures so far: each loop's median over its rounds (None: not measured)."""
    results = {name: statistics.median(values) for name, values in runs.items() if values}
    augmentation = results.get("augmentation")
    return {
        **provenance("examples/pytorch/byol.py"),
        "device": machine(device),
        "data": args.data,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "timed_steps": args.steps,
        "repeats": args.repeats,
        "bf16": precision == "bf16",
        "augmentations": "kornia, on the device",
        "crops_on_device": True,
        "in_memory_load_s": load_s,
        **{f"{name}_images_per_s": results.get(name) for name in CORE},
        "augmentation_batch_size": AUGMENTATION_BATCH,
        "augmentation_ms_per_batch": 1000 * AUGMENTATION_BATCH / augmentation if augmentation else None,
        "ratio_equal_work_to_reference": ratio(results.get("equal_work"), results.get("reference")),
        "ratio_equal_work_to_ceiling": ratio(results.get("equal_work"), results.get("equal_work_ceiling")),
        "ratio_default_to_ceiling": ratio(results.get("default"), results.get("ceiling")),
        "reference_peak_mem_mb": memory.get("reference"),
        "equal_work_peak_mem_mb": memory.get("equal_work"),
        "default_peak_mem_mb": memory.get("default"),
        "candidates_images_per_s": {k: v for k, v in results.items() if k not in CORE},
        "rounds_images_per_s": runs,  # every round's figure, of which the above are the medians
    }  # fmt: skip


def parse_args() -> argparse.Namespace:
    on_gpu = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description="BYOL training throughput: reference against ours.")
    add = parser.add_argument
    add("--data", default="synthetic", help="'synthetic' or an image folder")
    add("--batch-size", type=int, default=256 if on_gpu else 128)
    add("--workers", type=int, default=min(16, os.cpu_count() or 1), help="DataLoader workers")
    add("--steps", type=int, default=100 if on_gpu else 30, help="timed steps")
    add("--repeats", type=int, default=1 if on_gpu else 3, help="rounds of all loops (medians)")
    add("--warmup", type=int, default=20 if on_gpu else 3, help="untimed steps first")
    add("--default-steps", type=int, help="timed steps of the default model (CPU: --steps / 3)")
    add("--output", type=Path, help="JSON path (default: results/throughput-<machine>.json)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    on_gpu = torch.cuda.is_available()
    device = torch.device("cuda" if on_gpu else "cpu")
    torch.backends.cudnn.benchmark = True  # as the examples set it
    byol = load_example()
    options = example_settings(byol, args, device)
    train, _, _, mean_std = byol.load_data(options)
    start = time.perf_counter()
    memory = in_memory(train, device)
    load_s = time.perf_counter() - start
    print(
        f"{len(memory)} images from {args.data}, batch {args.batch_size}, {args.workers} workers, on {device}"
    )
    run = Namespace(byol=byol, options=options, train=train, memory=memory, mean_std=mean_std, device=device)
    default_steps = args.default_steps or (args.steps if on_gpu else max(1, args.steps // 3))
    default_args = Namespace(**{**vars(args), "steps": default_steps})
    measurements = [
        ("reference", lambda: measure_reference(args, device)),
        ("equal_work", lambda: measure_ours(run, EQUAL_WORK, args)),
        ("equal_work_ceiling", lambda: measure_ceiling(run, EQUAL_WORK, args)),
        ("default", lambda: measure_ours(run, DEFAULT, default_args)),
        ("ceiling", lambda: measure_ceiling(run, DEFAULT, default_args)),
        ("augmentation", lambda: measure_augmentation(run, args)),
    ]
    if args.data != "synthetic":  # what the examples do with a folder: crops in the workers
        measurements.append(("equal_work_worker_crops", lambda: measure_ours(run, EQUAL_WORK, args, True)))
    if on_gpu:  # what batch 512 gives
        batch_512 = Namespace(**{**vars(default_args), "batch_size": 512})
        measurements.append(("default_batch_512", lambda: measure_ours(run, DEFAULT, batch_512)))
    # Rounds of every loop, so that a slow spell of a shared machine hits all of them alike; the JSON is
    # rewritten after every measurement, so that a run cut short keeps what it measured.
    machine_name = torch.cuda.get_device_name().lower().replace(" ", "-") if on_gpu else "cpu"
    output = args.output or RESULTS / f"throughput-{machine_name}.json"
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
                first_line = (str(error).splitlines() or [""])[0]
                print(f"  {name:<26} FAILED: {type(error).__name__}: {first_line}", flush=True)
                continue
            peaks[name] = max(filter(None, [peaks.get(name), peak_memory_mb(device)]), default=None)
            print(f"  {name:<26} {runs[name][-1]:>10,.0f} images/s", flush=True)
            result = record(args, device, load_s, runs, peaks, options.precision)
            output.write_text(json.dumps(result, indent=2) + "\n")
    result = record(args, device, load_s, runs, peaks, options.precision)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'loop':<24}{'images/s':>12}{'x reference':>13}{'of ceiling':>12}")
    rows = [
        ("reference (lightly)", "reference", None),
        ("ours, equal work", "equal_work", "equal_work_ceiling"),
        ("ours, defaults", "default", "ceiling"),
    ]
    for label, key, ceiling in rows:
        figure = result[f"{key}_images_per_s"]
        vs_reference = ratio(figure, result["reference_images_per_s"])
        vs_ceiling = ratio(figure, result.get(f"{ceiling}_images_per_s"))
        of_ceiling = f"{100 * vs_ceiling:>11.0f} %" if vs_ceiling is not None else ""
        print(f"{label:<24}{figure or 0:>12,.0f}{vs_reference or 0:>12.2f}x{of_ceiling}")
    if result["augmentation_ms_per_batch"] is not None:
        print(
            f"augmentation alone (both views of {AUGMENTATION_BATCH} images at 32 px): "
            f"{result['augmentation_ms_per_batch']:.1f} ms per batch, "
            f"{result['augmentation_images_per_s']:,.0f} images/s"
        )
    print(f"\nwritten to {output}")


if __name__ == "__main__":
    main()
