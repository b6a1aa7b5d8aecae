"""Training throughput, side by side, in one run on the same data and batch size:

- reference: lightly 1.6.0's BYOL example loop (PIL augmentations in DataLoader workers, fp32);
- equal_work: our data path and training step with the reference's model (ResNet-18 with the
  ImageNet stem, heads 512-1024-256), so that data path and step are compared on equal work;
- default: our example with its defaults (small-image stem, heads 512-4096-256);
- the compute ceilings: our training step alone, on views already augmented on the device, for the
  equal-work model and for the default model.

Images/s counts images (each a pair of views) over the timed steps, after warm-up steps. Prints a
table and writes benchmarks/results/throughput-<machine>.json (machine: 'cpu' or the GPU's name).

    python benchmarks/throughput.py --data ../shared/data/cifar10/train
"""

import argparse
import itertools
import json
import os
import platform
import statistics
import time
from argparse import Namespace
from pathlib import Path

import torch
from lightly.loss import NegativeCosineSimilarity
from plain_example import load_example
from reference_byol import image_source, reference_loader, reference_model, reference_step

RESULTS = Path(__file__).resolve().parent / "results"
# (small-image stem, hidden width): the reference's model and our default one, both ResNet-18
EQUAL_WORK, DEFAULT = (False, 1024), (True, 4096)
CORE = ("reference", "equal_work", "equal_work_ceiling", "default", "ceiling")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


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


def repeat_epochs(loader, sampler=None):
    epoch = 0
    while True:
        if sampler is not None:
            sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def measure_reference(source, args, device) -> float:
    torch.manual_seed(0)
    model = reference_model().to(device)
    criterion = NegativeCosineSimilarity()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.06)
    loader = reference_loader(source, args.batch_size, args.workers)
    return timed(
        repeat_epochs(loader),
        lambda batch: reference_step(model, criterion, optimizer, batch, 0.996, device),
        args.warmup,
        args.steps,
        args.batch_size,
        device,
    )


def our_model(byol, config, device):
    small_images, hidden_dim = config
    torch.manual_seed(0)
    model = byol.BYOL("resnet18", small_images, hidden_dim, 256)
    model = model.to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(byol.parameter_groups(model, 5e-4), lr=0.1, momentum=0.9)
    return model, optimizer


def measure_ours(
    byol, source, config, args, device, mean, std, in_memory=None, compiled=None, bf16=None
) -> float:
    """Our whole training loop: crops and flips (on the device from `in_memory`, the images decoded
    into memory, else in DataLoader workers), then the device's augmentations, then the step. As the
    examples do by default, the colour jitter is compiled on GPUs (unless --no-compile), and the
    step runs in bf16 where the device computes in bf16 natively."""
    model, optimizer = our_model(byol, config, device)
    compiled = args.compile if compiled is None else compiled
    bf16 = byol.has_fast_bf16(device) if bf16 is None else bf16
    settings = Namespace(seed=0, blur=False, compile=compiled)
    # (decoding into memory skips unreadable images, so the in-memory set may be the smaller)
    sampler = byol.EpochSampler(len(source if in_memory is None else in_memory), args.batch_size, 0)
    if in_memory is not None:
        loader = byol.DeviceCrops(in_memory, sampler, args.batch_size, 32, 0, device)
    else:
        loader = byol.make_loader(
            byol.TwoViewDataset(source, 32, 0),
            args.batch_size,
            args.workers,
            device,
            sampler=sampler,
            drop_last=True,
            persistent_workers=True,
        )
    counter = iter(range(10**9))

    def step(batch):
        images_1, images_2, _ = batch
        view_1, view_2 = byol.augment_views(images_1, images_2, next(counter), settings, device, mean, std)
        byol.training_step(model, optimizer, view_1, view_2, 0.1, 0.996, device, bf16)

    return timed(repeat_epochs(loader, sampler), step, args.warmup, args.steps, args.batch_size, device)


def crop_batch(byol, source, args, device) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch of both views' crops (uint8), on the device."""
    dataset = byol.TwoViewDataset(source, 32, 0)
    pairs = [dataset[(0, i)] for i in range(args.batch_size)]
    return torch.stack([p[0] for p in pairs]).to(device), torch.stack([p[1] for p in pairs]).to(device)


def device_views(byol, source, args, device, mean, std) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch of both views, augmented on the device."""
    images_1, images_2 = crop_batch(byol, source, args, device)
    return byol.augment_views(
        images_1, images_2, 0, Namespace(seed=0, blur=False, compile=False), device, mean, std
    )


def measure_ceiling(byol, source, config, args, device, mean, std, bf16=None) -> float:
    """Our training step alone, on one batch of views already augmented on the device."""
    model, optimizer = our_model(byol, config, device)
    bf16 = byol.has_fast_bf16(device) if bf16 is None else bf16
    views = device_views(byol, source, args, device, mean, std)
    forever = iter(lambda: views, None)
    return timed(
        forever,
        lambda v: byol.training_step(model, optimizer, *v, 0.1, 0.996, device, bf16),
        args.warmup,
        args.steps,
        args.batch_size,
        device,
    )


def measure_graphed_ceiling(byol, source, config, args, device, mean, std) -> float:
    """The ceiling step captured once as a CUDA graph and replayed, with lr and tau fixed: what
    launching the step's few hundred small kernels one by one costs (a failed capture or replay
    raises, and main reports it as any loop that fails).
    Autocast's cache of bf16 weights is off here, as CUDA graphs require: each use of a weight casts it."""
    model, optimizer = our_model(byol, config, device)
    bf16 = byol.has_fast_bf16(device)
    views = device_views(byol, source, args, device, mean, std)
    cache_enabled = torch.is_autocast_cache_enabled()
    torch.set_autocast_cache_enabled(False)  # the default of every torch.autocast that follows
    try:
        # warm-up on a side stream (cuDNN's choice of algorithms, the momentum buffers), then capture
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                byol.training_step(model, optimizer, *views, 0.1, 0.996, device, bf16)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            byol.training_step(model, optimizer, *views, 0.1, 0.996, device, bf16)
        forever = itertools.repeat(None)
        return timed(forever, lambda _: graph.replay(), args.warmup, args.steps, args.batch_size, device)
    finally:
        torch.set_autocast_cache_enabled(cache_enabled)


def measure_augmentation(byol, source, args, device, mean, std, compiled: bool) -> float:
    """The device augmentation of both views alone, on one batch of crops already on the device."""
    images_1, images_2 = crop_batch(byol, source, args, device)
    settings, counter = Namespace(seed=0, blur=False, compile=compiled), iter(range(10**9))
    return timed(
        itertools.repeat(None),
        lambda _: byol.augment_views(images_1, images_2, next(counter), settings, device, mean, std),
        args.warmup,
        args.steps,
        args.batch_size,
        device,
    )


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def throughput_record(args, device, byol, in_memory, load_s, runs, memory) -> dict:
    """The JSON record of the figures so far: each loop's median over its rounds, None for a loop
    not measured (yet, or because it failed)."""
    results = {name: statistics.median(values) for name, values in runs.items() if values}
    return {
        "device": torch.cuda.get_device_name()
        if device.type == "cuda"
        else f"cpu ({os.cpu_count()} cores, {platform.machine()})",
        "torch_version": torch.__version__,
        "data": args.data,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "timed_steps": args.steps,
        "repeats": args.repeats,
        "bf16": byol.has_fast_bf16(device),
        "compile": args.compile,
        "crops_on_device": in_memory is not None,
        "in_memory_load_s": load_s if in_memory is not None else None,
        **{f"{name}_images_per_s": results.get(name) for name in CORE},
        "ratio_equal_work_to_reference": ratio(results.get("equal_work"), results.get("reference")),
        # each loop against the ceiling of its own model
        "ratio_equal_work_to_ceiling": ratio(results.get("equal_work"), results.get("equal_work_ceiling")),
        "ratio_default_to_ceiling": ratio(results.get("default"), results.get("ceiling")),
        "reference_peak_mem_mb": memory.get("reference"),
        "equal_work_peak_mem_mb": memory.get("equal_work"),
        "default_peak_mem_mb": memory.get("default"),
        "candidates_images_per_s": {k: v for k, v in results.items() if k not in CORE},
        "rounds_images_per_s": runs,  # every round's figure, of which the above are the medians
    }


def machine_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name().lower().replace(" ", "-")
    return "cpu"


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
        "--repeats",
        type=int,
        default=1 if on_gpu else 3,
        help="rounds of all measurements; each figure is the median of its rounds (default: 3 on a CPU, "
        "whose speed varies from minute to minute on shared machines; 1 on a GPU)",
    )
    parser.add_argument("--warmup", type=int, default=20 if on_gpu else 3, help="untimed steps first")
    parser.add_argument(
        "--default-steps",
        type=int,
        default=None,
        help="timed steps for the default model (default: --steps on a GPU, a third of it on a CPU, "
        "where that model is 8x slower)",
    )
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=on_gpu,
        help="compile our colour augmentations with torch.compile, as the examples do on GPUs "
        "(default: on with CUDA)",
    )
    parser.add_argument(
        "--output", default=None, help="JSON path (default: results/throughput-<machine>.json)"
    )
    args = parser.parse_args()
    device = torch.device("cuda" if on_gpu else "cpu")
    if on_gpu:  # as the examples set them
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
    byol = load_example()
    source = image_source(args.data, None)
    mean, std = (torch.tensor(v, device=device) for v in byol.IMAGENET_MEAN_STD)
    # As the examples do by default: small images of one size are decoded into memory once, and
    # cropped on the device; the time that takes is reported, not counted in the images/s.
    start = time.perf_counter()
    in_memory = byol.load_into_memory(source) if byol.fits_on_device(source) else None
    load_s = time.perf_counter() - start
    print(
        f"{len(source)} images from {args.data}, batch {args.batch_size}, {args.workers} workers, on {device}"
        + (f"; decoded into memory in {load_s:.1f} s, cropped on the device" if in_memory is not None else "")
    )

    memory = {}
    default_steps = args.default_steps or (args.steps if on_gpu else max(1, args.steps // 3))
    default_args = Namespace(**{**vars(args), "steps": default_steps})
    measurements = [
        ("reference", lambda: measure_reference(source, args, device)),
        ("equal_work", lambda: measure_ours(byol, source, EQUAL_WORK, args, device, mean, std, in_memory)),
        ("equal_work_ceiling", lambda: measure_ceiling(byol, source, EQUAL_WORK, args, device, mean, std)),
        ("default", lambda: measure_ours(byol, source, DEFAULT, default_args, device, mean, std, in_memory)),
        ("ceiling", lambda: measure_ceiling(byol, source, DEFAULT, default_args, device, mean, std)),
    ]
    if on_gpu and args.compile:  # what the defaults owe to the compiled jitter
        measurements += [
            (
                "augmentation_eager",
                lambda: measure_augmentation(byol, source, args, device, mean, std, False),
            ),
            (
                "augmentation_compiled",
                lambda: measure_augmentation(byol, source, args, device, mean, std, True),
            ),
            (
                "default_eager_jitter",
                lambda: measure_ours(
                    byol, source, DEFAULT, default_args, device, mean, std, in_memory, compiled=False
                ),
            ),
        ]
    if on_gpu:  # what batch 512 would give
        batch_512 = Namespace(**{**vars(default_args), "batch_size": 512})
        measurements += [
            (
                "default_batch_512",
                lambda: measure_ours(byol, source, DEFAULT, batch_512, device, mean, std, in_memory),
            ),
            (
                "ceiling_batch_512",
                lambda: measure_ceiling(byol, source, DEFAULT, batch_512, device, mean, std),
            ),
        ]
    if byol.has_fast_bf16(device):  # what bf16 brings, or costs where the step is launch-bound
        measurements += [
            (
                "equal_work_fp32",
                lambda: measure_ours(
                    byol, source, EQUAL_WORK, args, device, mean, std, in_memory, bf16=False
                ),
            ),
            (
                "equal_work_ceiling_fp32",
                lambda: measure_ceiling(byol, source, EQUAL_WORK, args, device, mean, std, bf16=False),
            ),
        ]
    if in_memory is not None:  # what cropping on the device brings
        measurements.append(
            (
                "equal_work_worker_crops",
                lambda: measure_ours(byol, source, EQUAL_WORK, args, device, mean, std),
            )
        )
    if on_gpu:  # what the launch-bound step would gain from CUDA graphs (last: a failed graph can
        # leave the GPU unusable; the examples do not use graphs, which must be measured first)
        measurements += [
            (
                "equal_work_ceiling_cuda_graph",
                lambda: measure_graphed_ceiling(byol, source, EQUAL_WORK, args, device, mean, std),
            ),
            (
                "ceiling_cuda_graph",
                lambda: measure_graphed_ceiling(byol, source, DEFAULT, default_args, device, mean, std),
            ),
        ]
    # Rounds of every measurement, so that a slow spell of a shared machine hits all loops alike;
    # each loop's figure is its median over the rounds. The JSON is rewritten after every
    # measurement, so that a run cut short (a time limit, a failure) keeps what it measured.
    output = Path(args.output) if args.output else RESULTS / f"throughput-{machine_name(device)}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    runs = {name: [] for name, _ in measurements}
    for round_number in range(1, args.repeats + 1):
        if args.repeats > 1:
            print(f"round {round_number} of {args.repeats}", flush=True)
        for name, measure in measurements:
            try:
                reset_peak_memory(device)
                figure = measure()
            except Exception as error:  # one loop that fails must not cost the others' figures
                first_line = (str(error).splitlines() or [""])[0]
                print(f"  {name:<24} FAILED: {type(error).__name__}: {first_line}", flush=True)
                continue
            runs[name].append(figure)
            memory[name] = max(filter(None, [memory.get(name), peak_memory_mb(device)]), default=None)
            print(f"  {name:<24} {runs[name][-1]:>10,.0f} images/s", flush=True)
            record = throughput_record(args, device, byol, in_memory, load_s, runs, memory)
            output.write_text(json.dumps(record, indent=2) + "\n")

    record = throughput_record(args, device, byol, in_memory, load_s, runs, memory)
    output.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\n{'loop':<22}{'images/s':>12}{'peak MB':>10}{'x reference':>13}{'of ceiling':>12}")
    images_per_s = record["candidates_images_per_s"] | {key: record[f"{key}_images_per_s"] for key in CORE}
    rows = [
        ("reference (lightly)", "reference", "reference", None),
        ("ours, equal work", "equal_work", "reference", "equal_work_ceiling"),
        ("ours, defaults", "default", "reference", "ceiling"),
        ("ceiling, equal work", "equal_work_ceiling", None, None),
        ("ceiling, defaults", "ceiling", None, None),
    ]
    for label, key, reference, ceiling in rows:
        mem = f"{memory[key]:,.0f}" if memory.get(key) is not None else "-"
        figure = f"{images_per_s[key]:,.0f}" if images_per_s[key] is not None else "FAILED"
        vs_reference = ratio(images_per_s[key], images_per_s.get(reference))
        vs_ceiling = ratio(images_per_s[key], images_per_s.get(ceiling))
        ref = f"{vs_reference:.2f}x" if vs_reference is not None else ""
        ceil = f"{100 * vs_ceiling:.0f} %" if vs_ceiling is not None else ""
        print(f"{label:<22}{figure:>12}{mem:>10}{ref:>13}{ceil:>12}")
    print(f"\nwritten to {output}")


if __name__ == "__main__":
    main()
