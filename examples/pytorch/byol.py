"""
BYOL in plain PyTorch
=====================

Bootstrap Your Own Latent (BYOL, Grill et al. 2020, `arXiv 2006.07733
<https://arxiv.org/abs/2006.07733>`_) learns image representations without labels. Two augmented
views of each image go through two networks: the *online* network (encoder, projector, predictor)
learns to predict what the *target* network (encoder, projector) makes of the other view. The target
receives no gradients; its weights are a slow moving average of the online weights.

This file is a complete, standalone tutorial: it needs only ``torch``, ``torchvision`` and ``tqdm``,
and reads top to bottom. It trains, measures its own progress with a k-nearest-neighbour (kNN)
classifier, saves checkpoints and resumes from them.

Run it::

    python examples/pytorch/byol.py --data synthetic --input-size 16 --batch-size 32 --lr 1.6 \\
        --epochs 2 --knn-k 20   # CPU, a minute: kNN accuracy from about 0.2 to 0.3
    python examples/pytorch/byol.py --data cifar10                                # GPU, minutes
    python examples/pytorch/byol.py --data path/to/images --val path/to/val --input-size 96

It writes to ``--output-dir``: ``metrics.jsonl`` (one JSON object per epoch),
``checkpoint-last.pt`` (everything needed by ``--resume``) and, at the end, ``backbone.pt`` (the
online encoder's ``state_dict``, the network to use downstream).
"""

# %%
# Imports
# -------
# The standard library, PyTorch, torchvision and tqdm: nothing else.

import argparse
import copy
import json
import math
import os
import random
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

# %%
# Settings
# --------
# Every setting is a command-line flag; ``--help`` explains each one. The defaults suit CIFAR-sized
# images (32x32) on one GPU. Inside a Jupyter kernel ``sys.argv`` holds the kernel's own arguments,
# so there the defaults are used: call ``main(["--data", "synthetic", ...])`` to change them.


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str:
        # Where the default is None, the help text says what happens instead of "(default: None)".
        return action.help if action.default is None else super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        # One line that names the problem, instead of argparse's usage block.
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or a positive integer, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be zero or a positive number, got {text}")
    return value


def batch_size_value(text: str) -> int:
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2, as BatchNorm needs two images, got {text}")
    return value


def seed_value(text: str) -> int:
    value = int(text)
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"must lie in [0, 2**63), got {text}")
    return value


def tau_value(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), got {text}")
    return value


def default_num_workers() -> int:
    return max(1, min(16, (os.cpu_count() or 2) - 1))


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="byol.py",
        description="Train BYOL (Bootstrap Your Own Latent) on images, without labels.",
        formatter_class=HelpFormatter,
        allow_abbrev=False,  # a misspelt flag is an error, not silently another flag
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data",
        default="cifar10",
        help="'cifar10' (downloaded by torchvision into --data-dir), 'synthetic' (generated shapes, "
        "no download) or the path of an image folder (class subfolders or flat; any size and mode)",
    )
    data.add_argument("--data-dir", default="data", help="where --data cifar10 is downloaded")
    data.add_argument(
        "--val",
        default=None,
        help="image folder with class subfolders for the kNN monitor (default: CIFAR-10's test split "
        "for cifar10, the held-out part for synthetic, none for a folder)",
    )
    data.add_argument(
        "--train-images",
        type=positive_int,
        default=None,
        help="train on a random subset of this many images (chosen with --seed)",
    )
    data.add_argument(
        "--val-images",
        type=positive_int,
        default=None,
        help="evaluate on a random subset of this many validation images",
    )
    data.add_argument(
        "--synthetic-images",
        type=positive_int,
        default=1024,
        help="32x32 training images generated by --data synthetic (plus a quarter as many held out)",
    )
    data.add_argument(
        "--input-size",
        type=positive_int,
        default=32,
        help="side of the square views in pixels; 64 or less selects the small-image ResNet stem",
    )
    data.add_argument(
        "--blur",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Gaussian blur of the views: the paper's (sigma 0.1-2 px at 224 px) scaled to "
        "--input-size (default: on above 32 px; off at 32 px and below, as usual for CIFAR: scaled "
        "to 32 px its sigma is at most 0.29 px, which changes no pixel by more than 1 %%, and to "
        "16 px it changes none)",
    )
    data.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="fuse the colour augmentations into a few GPU kernels with torch.compile (default: on "
        "with CUDA, where launching their many small kernels is most of their cost)",
    )
    data.add_argument(
        "--crops-on-device",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="hold the training images in memory and crop and flip them on the training device, a "
        "batch at a time, rather than in DataLoader workers (default: on when the images are of one "
        "size, 64 px at most, and take 2 GB at most, as CIFAR-10's 150 MB; a folder of them is decoded "
        "once, at the start)",
    )
    data.add_argument(
        "--num-workers",
        type=non_negative_int,
        default=default_num_workers(),
        help="DataLoader worker processes that decode, crop and flip (0: in the main process)",
    )

    model = parser.add_argument_group("model")
    model.add_argument(
        "--backbone",
        choices=["resnet18", "resnet34", "resnet50"],
        default="resnet18",
        help="torchvision ResNet, untrained, used as the encoder",
    )
    model.add_argument(
        "--hidden-dim", type=positive_int, default=4096, help="hidden width of projector and predictor"
    )
    model.add_argument(
        "--proj-dim", type=positive_int, default=256, help="output width of projector and predictor"
    )

    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--epochs", type=positive_int, default=100, help="passes over the training set")
    optim.add_argument("--batch-size", type=batch_size_value, default=512, help="images per step")
    optim.add_argument(
        "--lr",
        type=positive_float,
        default=0.2,
        help="peak learning rate for a batch of 256; the run uses lr * batch-size / 256",
    )
    optim.add_argument("--momentum", type=non_negative_float, default=0.9, help="SGD momentum")
    optim.add_argument(
        "--weight-decay",
        type=non_negative_float,
        default=5e-4,
        help="weight decay, not applied to biases and normalisation parameters",
    )
    optim.add_argument(
        "--warmup-epochs",
        type=non_negative_float,
        default=10,
        help="epochs of linear learning-rate warm-up before the cosine decay, at most a tenth of --epochs",
    )
    optim.add_argument(
        "--tau-base",
        type=tau_value,
        default=0.99,
        help="moving-average rate of the target network at the first step; it rises to 1 on a "
        "cosine schedule",
    )

    run = parser.add_argument_group("run")
    run.add_argument("--output-dir", default="runs/pytorch", help="where metrics and checkpoints go")
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue the run saved in --output-dir/checkpoint-last.pt (in an empty --output-dir: "
        "start a new one)",
    )
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a run already in --output-dir (without it, such a directory is an error)",
    )
    run.add_argument(
        "--checkpoint-every",
        type=non_negative_int,
        default=0,
        help="also save a checkpoint every this many steps (0: only at the end of each epoch)",
    )
    run.add_argument(
        "--eval-every",
        type=non_negative_int,
        default=10,
        help="run the kNN monitor every this many epochs and after the last (0: never)",
    )
    run.add_argument("--knn-k", type=positive_int, default=200, help="neighbours of the kNN monitor")
    run.add_argument(
        "--knn-t", type=positive_float, default=0.1, help="temperature of the kNN monitor's votes"
    )
    run.add_argument(
        "--log-every", type=positive_int, default=20, help="refresh the progress bar every this many steps"
    )
    run.add_argument(
        "--device", default=None, help="'cuda', 'cpu', 'cuda:1', ... (default: cuda if available)"
    )
    run.add_argument(
        "--precision",
        choices=["auto", "bf16", "fp32"],
        default="auto",
        help="bf16 mixed precision or float32 (default: bf16 on GPUs and CPUs that compute in bf16 "
        "natively, with AVX512-BF16 or AMX, where it is about 1.5-2x faster; float32 elsewhere)",
    )
    run.add_argument("--seed", type=seed_value, default=0, help="seed of every random draw")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    if argv is None and "ipykernel" in sys.modules:
        argv = []  # inside Jupyter, sys.argv holds the kernel's arguments, not ours
    return build_parser().parse_args(argv)


# %%
# Augmentations
# -------------
# BYOL learns what stays the same between two views of an image, so the augmentations define what
# it learns. Table 6 of the paper gives two *asymmetric* views: both are randomly cropped, flipped,
# colour-jittered and sometimes turned grey; view 1 is always blurred and never solarized, view 2
# rarely blurred and sometimes solarized. Every image draws its own random parameters.
#
# The work is split for speed. DataLoader workers do what must happen per image (decode, random
# resized crop, flip) and hand over small ``uint8`` tensors. Everything else runs batched on the
# training device, with per-image random parameters drawn there. Small images of one size that fit
# in memory (CIFAR-10 takes 150 MB) skip the workers: their crops and flips run batched on the device
# too (bilinear rather than bicubic).
#
# Each image's crop depends only on ``(seed, epoch, index)`` (on the device: ``(seed, epoch,
# batch)``) and each batch's colour parameters only on ``(seed, step)``: a resumed run sees exactly
# the views of an uninterrupted one, whatever the number of workers.


def sample_seed(seed: int, *counters: int) -> int:
    """A 63-bit seed derived from the run's seed and some counters (epoch, index, step...)."""
    for counter in counters:
        seed = (seed * 1_000_003 + counter) % (2**63)
    return seed


def random_resized_crop_box(
    height: int, width: int, rng: random.Random, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)
) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a random crop, drawn as torchvision's RandomResizedCrop does."""
    area = height * width
    for _ in range(10):
        target_area = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    # Rarely reached: a central crop with the aspect ratio clamped into range.
    h, w = fallback_crop_size(height, width, ratio)
    return (height - h) // 2, (width - w) // 2, h, w


def fallback_crop_size(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    """(height, width) of the whole image, its aspect ratio clamped into range."""
    if width / height < ratio[0]:
        return round(width / ratio[0]), width
    if width / height > ratio[1]:
        return height, round(height * ratio[1])
    return height, width


def crop_and_flip(image: Image.Image | torch.Tensor, size: int, rng: random.Random) -> torch.Tensor:
    """The per-image part of a view: random resized crop (bicubic), horizontal flip, uint8 CHW."""
    width, height = TF.get_size(image)[::-1]
    top, left, h, w = random_resized_crop_box(height, width, rng)
    view = TF.resized_crop(
        image, top, left, h, w, [size, size], interpolation=TF.InterpolationMode.BICUBIC, antialias=True
    )
    if rng.random() < 0.5:
        view = TF.horizontal_flip(view)
    return TF.pil_to_tensor(view) if isinstance(view, Image.Image) else view


def random_resized_crop_boxes(
    n: int, height: int, width: int, generator: torch.Generator, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)
) -> torch.Tensor:
    """n random crops (left, top, right, bottom), each drawn as random_resized_crop_box draws one:
    up to 10 tries of (area, aspect ratio), all made at once; each crop keeps its first try that fits."""
    device = generator.device

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return torch.empty(*shape, device=device).uniform_(low, high, generator=generator)

    target_area = height * width * uniform(*scale, n, 10)
    aspect = uniform(math.log(ratio[0]), math.log(ratio[1]), n, 10).exp()
    w, h = (target_area * aspect).sqrt().round(), (target_area / aspect).sqrt().round()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.int().argmax(dim=1, keepdim=True)  # argmax returns the first of equal maxima
    w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]
    top, left = (uniform(0, 1, n) * (height - h + 1)).floor(), (uniform(0, 1, n) * (width - w + 1)).floor()
    # Rarely: no try fits, and the crop is the central one of random_resized_crop_box.
    none_fits = ~fits.any(dim=1)
    fallback_h, fallback_w = fallback_crop_size(height, width, ratio)
    h, w = h.masked_fill(none_fits, fallback_h), w.masked_fill(none_fits, fallback_w)
    top = top.masked_fill(none_fits, (height - fallback_h) // 2)
    left = left.masked_fill(none_fits, (width - fallback_w) // 2)
    return torch.stack([left, top, left + w, top + h], dim=1)


def crop_and_flip_batch(images: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """crop_and_flip for a batch of uint8 images (B, 3, H, W) on the device, each with its own crop
    and flip. roi_align cuts each crop out and resizes it: bilinear (not bicubic as crop_and_flip),
    averaged over each output pixel's area where the crop shrinks."""
    n, _, height, width = images.shape
    boxes = random_resized_crop_boxes(n, height, width, generator)
    flip = torch.rand(n, device=images.device, generator=generator) < 0.5
    image_index = torch.arange(n, dtype=boxes.dtype, device=images.device).unsqueeze(1)
    rois = torch.cat([image_index, boxes], dim=1)  # (image, left, top, right, bottom) per crop
    # aligned=True: pixel i spans [i, i + 1), so a box covering the image reproduces it exactly
    views = torchvision.ops.roi_align(images.float(), rois, size, sampling_ratio=-1, aligned=True)
    views = torch.where(flip.view(n, 1, 1, 1), views.flip(3), views)
    return views.round().clamp(0, 255).to(torch.uint8)


@dataclass(frozen=True)
class ViewAugmentation:
    """What the training device applies to one view (the paper's Table 6)."""

    jitter_prob: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_prob: float = 0.2
    blur_prob: float = 1.0
    solarize_prob: float = 0.0


VIEW_1 = ViewAugmentation(blur_prob=1.0, solarize_prob=0.0)
VIEW_2 = ViewAugmentation(blur_prob=0.1, solarize_prob=0.2)

# The batched operations below take images of shape (B, 3, H, W) with values in [0, 1] and one
# factor per image, and compute what torchvision's functional ops compute for each image alone.


def per_image(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


def grayscale(images: torch.Tensor) -> torch.Tensor:
    r, g, b = images.unbind(1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(1)


def blend(images: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (per_image(factor) * images + (1 - per_image(factor)) * other).clamp(0, 1)


def adjust_brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (images * per_image(factor)).clamp(0, 1)


def adjust_contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return blend(images, grayscale(images).mean(dim=(1, 2, 3), keepdim=True), factor)


def adjust_saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return blend(images, grayscale(images), factor)


def rgb_to_hsv(images: torch.Tensor) -> torch.Tensor:
    r, g, b = images.unbind(1)
    maxc, minc = images.amax(1), images.amin(1)
    delta = maxc - minc
    grey = delta == 0  # hue and saturation are undefined for greys; both are set to 0
    saturation = delta / torch.where(grey, torch.ones_like(maxc), maxc)
    delta = torch.where(grey, torch.ones_like(delta), delta)
    rc, gc, bc = (maxc - r) / delta, (maxc - g) / delta, (maxc - b) / delta
    hue = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = torch.where(grey, torch.zeros_like(hue), hue)
    hue = (hue * (1.0 / 6.0) + 1.0).fmod(1.0)
    return torch.stack((hue, saturation, maxc), dim=1)


def hsv_to_rgb(images: torch.Tensor) -> torch.Tensor:
    h, s, v = images.unbind(1)

    def channel(n: float) -> torch.Tensor:  # n = 5, 3, 1 for red, green, blue
        k = (n + 6 * h) % 6
        return v - v * s * torch.minimum(k, 4 - k).clamp(0, 1)

    return torch.stack((channel(5), channel(3), channel(1)), dim=1)


def adjust_hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    hsv = rgb_to_hsv(images)
    hue = (hsv[:, 0] + shift.view(-1, 1, 1)).remainder(1.0)
    return hsv_to_rgb(torch.stack((hue, hsv[:, 1], hsv[:, 2]), dim=1))


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Separable Gaussian blur with one sigma per image and reflect padding."""
    batch, channels, height, width = images.shape
    x = torch.arange(kernel_size, device=images.device, dtype=images.dtype) - kernel_size // 2
    kernel = torch.softmax(-0.5 * (x / sigma.view(-1, 1)) ** 2, dim=1)  # (B, k), rows sum to 1
    kernel = kernel.repeat_interleave(channels, dim=0)  # one kernel per (image, channel)
    pad = kernel_size // 2
    out = F.pad(images, (pad, pad, pad, pad), mode="reflect").reshape(
        1, batch * channels, *[height + 2 * pad, width + 2 * pad]
    )
    out = F.conv2d(out, kernel.view(-1, 1, 1, kernel_size), groups=batch * channels)
    out = F.conv2d(out, kernel.view(-1, 1, kernel_size, 1), groups=batch * channels)
    return out.view(batch, channels, height, width)


def solarize(images: torch.Tensor) -> torch.Tensor:
    return torch.where(images >= 0.5, 1 - images, images)


def blur_kernel_size(input_size: int) -> int:
    """About a tenth of the side, odd (23 at 224 px, as in the paper)."""
    return max(3, round(input_size / 10) // 2 * 2 + 1)


def color_jitter(
    images: torch.Tensor, apply: torch.Tensor, factors: list[torch.Tensor], order: torch.Tensor
) -> torch.Tensor:
    """Brightness, contrast, saturation and hue, per image in the order given by a row of ``order``
    (0 = brightness ... 3 = hue), on the images where ``apply`` is true."""
    adjustments = [adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue]
    for slot in range(4):
        for index, adjust in enumerate(adjustments):
            chosen = apply & (order[:, slot] == index)
            images = torch.where(per_image(chosen), adjust(images, factors[index]), images)
    return images


# The same function compiled: torch.compile fuses its ~200 small operations into a few kernels.
# It compiles at its first call; on an H200 it raised the training loop's speed by half (batch 256).
compiled_color_jitter = torch.compile(color_jitter, dynamic=False)


def augment(
    images: torch.Tensor,
    view: ViewAugmentation,
    generator: torch.Generator,
    mean: torch.Tensor,
    std: torch.Tensor,
    blur: bool,
    compiled: bool = False,
) -> torch.Tensor:
    """Batched colour jitter, grayscale, blur, solarize and normalisation of uint8 crops."""
    batch, device = images.shape[0], images.device

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(batch, device=device, generator=generator)

    def chance(p: float) -> torch.Tensor:
        return torch.rand(batch, device=device, generator=generator) < p

    x = images.float() / 255

    # Colour jitter: the four adjustments in a random order per image, all skipped with 1 - p.
    apply = chance(view.jitter_prob)
    factors = [
        uniform(1 - view.brightness, 1 + view.brightness),
        uniform(1 - view.contrast, 1 + view.contrast),
        uniform(1 - view.saturation, 1 + view.saturation),
        uniform(-view.hue, view.hue),
    ]
    order = torch.rand(batch, 4, device=device, generator=generator).argsort(dim=1)
    x = (compiled_color_jitter if compiled else color_jitter)(x, apply, factors, order)

    x = torch.where(per_image(chance(view.grayscale_prob)), grayscale(x).expand_as(x), x)

    # The paper's sigma range, [0.1, 2.0] at 224 px, scaled to the input size.
    sigma = uniform(0.1, 2.0) * x.shape[-1] / 224
    blurred = chance(view.blur_prob if blur else 0.0)
    if blur:
        x = torch.where(per_image(blurred), gaussian_blur(x, sigma, blur_kernel_size(x.shape[-1])), x)

    x = torch.where(per_image(chance(view.solarize_prob)), solarize(x), x)
    return (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)


# %%
# Model
# -----
# The encoder f is a torchvision ResNet without its classifier. On small images (64 px or less) its
# stem is replaced: the ImageNet stem (7x7 stride-2 convolution and max-pool) would shrink a 32x32
# image to 1x1 before the last stage. The projector g and the predictor q are
# Linear -> BatchNorm -> ReLU -> Linear; the predictor exists only in the online network.
# The target network is a copy of encoder and projector that never receives gradients.


def resnet_encoder(name: str, small_images: bool) -> tuple[nn.Module, int]:
    resnet = getattr(torchvision.models, name)(weights=None)
    if small_images:
        resnet.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        resnet.maxpool = nn.Identity()
    feature_dim = resnet.fc.in_features
    resnet.fc = nn.Identity()
    return resnet, feature_dim


def mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, out_dim),
    )


class BYOL(nn.Module):
    def __init__(self, backbone: str, small_images: bool, hidden_dim: int, proj_dim: int) -> None:
        super().__init__()
        self.encoder, feature_dim = resnet_encoder(backbone, small_images)  # online f
        self.projector = mlp(feature_dim, hidden_dim, proj_dim)  # online g
        self.predictor = mlp(proj_dim, hidden_dim, proj_dim)  # q, online only
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)

    def online_parameters(self) -> list[nn.Parameter]:
        """The parameters that have a moving-average twin in the target network, in its order."""
        return [*self.encoder.parameters(), *self.projector.parameters()]

    def target_parameters(self) -> list[nn.Parameter]:
        return [*self.target_encoder.parameters(), *self.target_projector.parameters()]

    def forward(self, view_1: torch.Tensor, view_2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The symmetrised BYOL loss of a batch, and the online projections of view 1."""
        projection_1 = self.projector(self.encoder(view_1))
        projection_2 = self.projector(self.encoder(view_2))
        prediction_1 = self.predictor(projection_1)
        prediction_2 = self.predictor(projection_2)
        with torch.no_grad():
            target_1 = self.target_projector(self.target_encoder(view_1))
            target_2 = self.target_projector(self.target_encoder(view_2))
        loss = regression_loss(prediction_1, target_2) + regression_loss(prediction_2, target_1)
        return loss, projection_1.detach()


# %%
# Loss and target update
# ----------------------
# The loss is the mean squared error between L2-normalised prediction and target projection,
# ``2 - 2 cos(p, z)``, with a stop-gradient on the target. It is symmetrised by swapping the views,
# and the two terms are *summed* (averaging them would halve the gradient).
#
# After every optimiser step the target moves towards the online network:
# ``target = tau * target + (1 - tau) * online``. tau rises from ``--tau-base`` to 1 on a cosine
# schedule, so the target changes more and more slowly. Only parameters are averaged; the target's
# BatchNorm statistics come from its own forward passes.


def regression_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = F.normalize(prediction.float(), dim=-1)
    z = F.normalize(target.detach().float(), dim=-1)
    return (2 - 2 * (p * z).sum(dim=-1)).mean()


def tau_at(step: int, total_steps: int, tau_base: float) -> float:
    return 1 - (1 - tau_base) * (math.cos(math.pi * step / total_steps) + 1) / 2


@torch.no_grad()
def update_target(model: BYOL, tau: float) -> None:
    # lerp(target, online, 1 - tau) = tau * target + (1 - tau) * online, one fused op for all weights
    torch._foreach_lerp_(model.target_parameters(), model.online_parameters(), 1 - tau)


def learning_rate_at(step: int, total_steps: int, warmup_steps: int, peak_lr: float) -> float:
    """Linear warm-up to peak_lr, then cosine decay to 0."""
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return peak_lr * 0.5 * (1 + math.cos(math.pi * progress))


def parameter_groups(model: BYOL, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on weight matrices and kernels only: biases and norm parameters are 1-D."""
    online = [*model.online_parameters(), *model.predictor.parameters()]
    return [
        {"params": [p for p in online if p.ndim > 1], "weight_decay": weight_decay},
        {"params": [p for p in online if p.ndim <= 1], "weight_decay": 0.0},
    ]


# %%
# Data
# ----
# Three sources of images: CIFAR-10 through torchvision, any folder of images, and a synthetic set of
# textures (no download, and quick to learn: see ``synthetic_images``).
# A *source* lists images and labels and loads one image at a time; the datasets below turn a
# source into training pairs of views or into evaluation images.

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
CIFAR10_MEAN_STD = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


class DataError(Exception):
    """Bad input data: the message is shown to the user as it is."""


class UnreadableImage(Exception):
    pass


def open_rgb(path: str) -> Image.Image:
    """Decode any common image file into 8-bit RGB, refusing decompression bombs."""
    try:
        with Image.open(path) as image:
            if image.width * image.height > Image.MAX_IMAGE_PIXELS:
                raise UnreadableImage(
                    f"{image.width}x{image.height} pixels, over PIL's decompression-bomb limit"
                )
            image.load()
            if image.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit greyscale: keep the top 8 bits
                pixels = np.asarray(image, dtype=np.float64) / 257
                image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
            elif image.mode == "P":
                image = image.convert("RGBA")  # palette transparency is only kept through RGBA
            return image.convert("RGB")
    except UnreadableImage:
        raise
    except Exception as error:  # PIL raises many types for broken files
        raise UnreadableImage(str(error) or type(error).__name__) from None


def check_image_header(path: str) -> tuple[str | None, tuple[int, int]]:
    """Why the file cannot be used (None if it can), and its (width, height). Reads only the header,
    so it is fast."""
    try:
        if os.path.getsize(path) == 0:
            return "empty file", (0, 0)
        with Image.open(path) as image:
            if image.width * image.height > Image.MAX_IMAGE_PIXELS:
                return f"{image.width}x{image.height} pixels, over PIL's decompression-bomb limit", image.size
            return None, image.size
    except Exception as error:
        return str(error) or type(error).__name__, (0, 0)


class FolderSource:
    """Images in a folder: class subfolders give labels; a flat folder has none."""

    def __init__(self, root: str) -> None:
        root_path = Path(root)
        if not root_path.is_dir():
            raise DataError(f"image folder not found: {root}")
        files = sorted(p for p in root_path.rglob("*") if p.is_file() and not p.name.startswith("."))
        candidates = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
        others = len(files) - len(candidates)
        if others:
            example = next(p for p in files if p.suffix.lower() not in IMAGE_EXTENSIONS)
            print(f"warning: ignored {others} file(s) in {root} that are not images, e.g. {example}")
        with ThreadPoolExecutor(16) as pool:
            checks = list(pool.map(check_image_header, map(str, candidates)))  # (problem, size)
        for path, (problem, _) in zip(candidates, checks):
            if problem:
                print(f"warning: skipped unreadable image {path}: {problem}")
        good = [p for p, (problem, _) in zip(candidates, checks) if problem is None]
        if not good:
            raise DataError(f"no readable image in {root} (looked for {', '.join(IMAGE_EXTENSIONS)})")
        self.labelled = all(p.parent != root_path for p in good)
        self.classes = sorted({p.relative_to(root_path).parts[0] for p in good}) if self.labelled else []
        class_index = {name: i for i, name in enumerate(self.classes)}
        self.paths = [str(p) for p in good]
        self.sizes = {size for problem, size in checks if problem is None}  # (width, height)
        self.labels = [class_index[p.relative_to(root_path).parts[0]] if self.labelled else 0 for p in good]

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> Image.Image:
        return open_rgb(self.paths[index])

    def name(self, index: int) -> str:
        return self.paths[index]


class TensorSource:
    """Images already in memory as a uint8 tensor (N, 3, H, W): CIFAR-10 and the synthetic set."""

    def __init__(
        self, images: torch.Tensor, labels: list[int], classes: list[str], labelled: bool = True
    ) -> None:
        self.images, self.labels, self.classes, self.labelled = images, labels, classes, labelled

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, index: int) -> torch.Tensor:
        return self.images[index]

    def name(self, index: int) -> str:
        return f"image {index}"


class Subset:
    """A random subset of a source, chosen with a seed."""

    def __init__(self, source: FolderSource | TensorSource, size: int, seed: int, flag: str) -> None:
        if size > len(source):
            raise DataError(f"{flag} {size}: the data has only {len(source)} images")
        order = torch.randperm(len(source), generator=torch.Generator().manual_seed(seed))
        self.source, self.indices = source, order[:size].tolist()
        self.labels = [source.labels[i] for i in self.indices]
        self.classes, self.labelled = source.classes, source.labelled

    def __len__(self) -> int:
        return len(self.indices)

    def load(self, index: int) -> Image.Image | torch.Tensor:
        return self.source.load(self.indices[index])

    def name(self, index: int) -> str:
        return self.source.name(self.indices[index])


def fits_on_device(source: FolderSource | TensorSource | Subset) -> bool:
    """Whether the images are small (64 px at most), of one size, and 2 GB at most all together: then
    the whole set fits in memory (CIFAR-10 takes 150 MB) and the crops can be made on the device."""
    base = source.source if isinstance(source, Subset) else source
    sizes = {tuple(base.images.shape[:-3:-1])} if isinstance(base, TensorSource) else base.sizes
    if len(sizes) != 1:
        return False
    width, height = next(iter(sizes))
    return max(width, height) <= 64 and len(source) * 3 * width * height <= 2**31


def load_into_memory(source: FolderSource | TensorSource | Subset) -> TensorSource:
    """All the images of a source as one uint8 tensor; a folder's are decoded here, once, in threads."""
    if isinstance(source, TensorSource):
        return source
    if isinstance(source, Subset) and isinstance(source.source, TensorSource):
        images = source.source.images[source.indices]
        return TensorSource(images, source.labels, source.classes, source.labelled)

    def decode(index: int) -> torch.Tensor | None:
        try:
            return TF.pil_to_tensor(source.load(index))
        except UnreadableImage as error:
            print(f"warning: skipped unreadable image {source.name(index)}: {error}")
            return None

    with ThreadPoolExecutor(16) as pool:
        decoded = list(pool.map(decode, range(len(source))))
    readable = [i for i, image in enumerate(decoded) if image is not None]
    if not readable:
        raise DataError("no readable image in the training set: every one failed to decode")
    sizes = {tuple(decoded[i].shape[:-3:-1]) for i in readable}
    if len(sizes) > 1:
        found = ", ".join(f"{w}x{h}" for w, h in sorted(sizes)[:3])
        raise DataError(
            f"--crops-on-device needs training images of one size; found {found}: resize them "
            "first, or leave the crops to the DataLoader workers (--no-crops-on-device)"
        )
    images = torch.stack([decoded[i] for i in readable])
    return TensorSource(images, [source.labels[i] for i in readable], source.classes, source.labelled)


TEXTURES = [
    "horizontal stripes",
    "vertical stripes",
    "diagonal stripes",
    "checkerboard",
    "dots",
    "rings",
    "grid",
    "rays",
    "waves",
    "blobs",
]


def synthetic_images(num_images: int, seed: int, size: int = 32) -> TensorSource:
    """Ten classes of textures (stripes, checkerboard, rings...) at random scales and phases, lit
    through a mosaic of random colours. Colour says nothing about the class and differs between
    crops of one image, so colour statistics (which dominate an untrained network's features)
    don't separate the classes; features invariant to the augmentations do."""
    g = torch.Generator().manual_seed(seed)
    n = num_images

    def uniform(*shape: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        return low + (high - low) * torch.rand(*shape, generator=g)

    labels = (torch.arange(n) % len(TEXTURES))[torch.randperm(n, generator=g)]
    coords = torch.linspace(-1, 1, size)
    y, x = coords.view(1, -1, 1), coords.view(1, 1, -1)
    frequency = uniform(n, 1, 1, low=math.log(1), high=math.log(5)).exp() * math.pi  # 1 to 5 cycles
    phase = uniform(n, 1, 1, high=2 * math.pi)
    cx, cy = uniform(n, 1, 1, low=-0.6, high=0.6), uniform(n, 1, 1, low=-0.6, high=0.6)
    direction = torch.where(uniform(n, 1, 1) < 0.5, -1.0, 1.0)
    radius, angle = ((x - cx) ** 2 + (y - cy) ** 2).sqrt(), torch.atan2(y - cy, x - cx)
    blobs = F.interpolate(torch.randn(n, 1, 4, 4, generator=g), size=(size, size), mode="bicubic")[:, 0]
    patterns = torch.stack(
        [
            torch.sin(y * frequency + phase).expand(n, size, size),
            torch.sin(x * frequency + phase).expand(n, size, size),
            torch.sin((x + direction * y) * frequency / math.sqrt(2) + phase),
            torch.sin(x * frequency + phase) * torch.sin(y * frequency + phase),
            torch.cos(2 * x * frequency + phase) * torch.cos(2 * y * frequency + phase) - 0.5,
            torch.sin(2 * radius * frequency + phase),
            torch.maximum(torch.cos(x * frequency + phase), torch.cos(y * frequency + phase)) - 0.8,
            torch.sin(6 * angle + phase).expand(n, size, size),
            torch.sin(y * frequency + 0.6 * torch.sin(2 * x * frequency) + phase),
            blobs,
        ]
    )  # (textures, n, H, W)
    lit = (patterns[labels, torch.arange(n)] > 0).float().unsqueeze(1)
    mosaic = F.interpolate(torch.rand(n, 3, 8, 8, generator=g), size=(size, size), mode="nearest")
    images = mosaic * (0.35 + 0.65 * lit) + 0.04 * torch.randn(n, 3, size, size, generator=g)
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    return TensorSource(images, labels.tolist(), TEXTURES)


def cifar10_source(data_dir: str, train: bool) -> TensorSource:
    try:
        cifar = torchvision.datasets.CIFAR10(data_dir, train=train, download=True)
    except Exception as error:
        raise DataError(
            f"could not download CIFAR-10 into {data_dir} ({error}); without internet, pass a copy of "
            "it as an image folder: --data PATH/train --val PATH/test"
        ) from None
    images = torch.from_numpy(cifar.data).permute(0, 3, 1, 2).contiguous()
    return TensorSource(images, list(cifar.targets), list(cifar.classes))


class TwoViewDataset(Dataset):
    """Training pairs: two independent crops-and-flips of one image, as uint8 tensors.

    Its keys are (epoch, index) pairs, so that each image's random crop depends only on the seed,
    the epoch and the index. An unreadable image yields its name and the reason instead."""

    def __init__(self, source: FolderSource | TensorSource | Subset, input_size: int, seed: int) -> None:
        self.source, self.input_size, self.seed = source, input_size, seed

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor] | tuple[str, str]:
        epoch, index = key
        rng = random.Random(sample_seed(self.seed, epoch, index))  # Python's RNG: fast for a few draws
        try:
            image = self.source.load(index)
        except UnreadableImage as error:
            return self.source.name(index), str(error)
        return crop_and_flip(image, self.input_size, rng), crop_and_flip(image, self.input_size, rng)


class EvalDataset(Dataset):
    """Evaluation images: shorter side resized to the input size, centre crop, uint8, with label."""

    def __init__(self, source: FolderSource | TensorSource | Subset, input_size: int) -> None:
        self.source, self.input_size = source, input_size

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | tuple[str, str]:
        try:
            image = self.source.load(index)
        except UnreadableImage as error:
            return self.source.name(index), str(error)
        image = TF.resize(
            image, [self.input_size], interpolation=TF.InterpolationMode.BICUBIC, antialias=True
        )
        image = TF.center_crop(image, [self.input_size, self.input_size])
        return (TF.pil_to_tensor(image) if isinstance(image, Image.Image) else image), self.source.labels[
            index
        ]


def collate_skipping_unreadable(
    samples: list[tuple],
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[str, str]]]:
    """Stack the good samples; return the (name, reason) of unreadable ones separately."""
    unreadable = [s for s in samples if isinstance(s[0], str)]
    good = [s for s in samples if not isinstance(s[0], str)]
    if not good:
        return torch.empty(0), torch.empty(0), unreadable
    first = torch.stack([s[0] for s in good])
    second = (
        torch.stack([s[1] for s in good])
        if torch.is_tensor(good[0][1])
        else torch.tensor([s[1] for s in good])
    )
    return first, second, unreadable


class EpochSampler(Sampler):
    """Shuffles once per epoch with a seed derived from (seed, epoch); yields (epoch, index) keys.

    start_batch skips the batches a resumed run has already trained on."""

    def __init__(self, num_images: int, batch_size: int, seed: int) -> None:
        self.num_images, self.batch_size, self.seed = num_images, batch_size, seed
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        return (self.num_images // self.batch_size - self.start_batch) * self.batch_size

    def __iter__(self):
        generator = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch))
        order = torch.randperm(self.num_images, generator=generator)
        used = order[
            self.start_batch * self.batch_size : self.num_images // self.batch_size * self.batch_size
        ]
        return iter([(self.epoch, int(i)) for i in used])


class DeviceCrops:
    """The DataLoader's stand-in for images held in memory: the sampler's batches of (epoch, index)
    keys become pairs of crops made on the device, a batch at a time, each batch's randomness drawn
    from (seed, epoch, batch, rank). It yields what the DataLoader yields: (crops_1, crops_2,
    unreadable)."""

    def __init__(
        self,
        source: TensorSource,
        sampler: EpochSampler,
        batch_size: int,
        input_size: int,
        seed: int,
        device: torch.device,
        rank: int = 0,
    ) -> None:
        self.images = source.images.to(device)  # the whole training set, once
        self.sampler, self.batch_size, self.input_size = sampler, batch_size, input_size
        self.seed, self.rank = seed, rank

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size

    def __iter__(self):
        epoch, first_batch, device = self.sampler.epoch, self.sampler.start_batch, self.images.device
        # The epoch's order, copied to the device once: a copy per batch would wait for the GPU.
        order = torch.tensor([index for _, index in self.sampler], device=device)
        for batch, indices in enumerate(order.split(self.batch_size), start=first_batch):
            images = self.images[indices]
            generator = torch.Generator(device).manual_seed(sample_seed(self.seed, epoch, batch, self.rank))
            crops_1 = crop_and_flip_batch(images, self.input_size, generator)
            crops_2 = crop_and_flip_batch(images, self.input_size, generator)
            yield crops_1, crops_2, []


@dataclass
class Data:
    train: FolderSource | TensorSource | Subset
    val: FolderSource | TensorSource | Subset | None  # None: no kNN monitor
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def load_data(args: argparse.Namespace) -> Data:
    mean_std = IMAGENET_MEAN_STD
    if args.data == "synthetic":
        train = synthetic_images(args.synthetic_images, args.seed)
        val = synthetic_images(max(1, args.synthetic_images // 4), args.seed + 1)
    elif args.data == "cifar10":
        train, val, mean_std = cifar10_source(args.data_dir, True), None, CIFAR10_MEAN_STD
        if args.val is None:
            val = cifar10_source(args.data_dir, False)
    else:
        train, val = FolderSource(args.data), None
    if args.val is not None:
        val = FolderSource(args.val)
        if not val.labelled:
            raise DataError(f"--val {args.val} needs class subfolders: the kNN monitor needs labels")
    if val is not None and not train.labelled:
        raise DataError(f"--data {args.data} has no class subfolders, so it cannot serve as kNN memory bank")
    if val is not None and train.classes != val.classes:
        raise DataError(f"the classes of --data and --val differ: {train.classes} and {val.classes}")
    if args.train_images is not None:
        train = Subset(train, args.train_images, args.seed, "--train-images")
    if args.val_images is not None and val is not None:
        val = Subset(val, args.val_images, args.seed, "--val-images")
    if args.crops_on_device is None:
        args.crops_on_device = fits_on_device(train)
    if args.crops_on_device:
        train = load_into_memory(train)
    if args.batch_size > len(train):
        raise DataError(f"--batch-size {args.batch_size} is larger than the {len(train)} training images")
    return Data(train, val, *mean_std)


def make_loader(
    dataset: Dataset, batch_size: int, num_workers: int, device: torch.device, **kwargs
) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",  # page-locked memory: copies to the GPU overlap compute
        collate_fn=collate_skipping_unreadable,
        prefetch_factor=4 if num_workers > 0 else None,
        **kwargs,
    )


# %%
# Evaluation
# ----------
# A kNN classifier on frozen features tells whether the representation is learning, without
# training anything: each validation image's features (L2-normalised output of the *online* encoder)
# are compared by cosine similarity with those of the training images, and the k = 200 most similar
# vote for their class with weight exp(similarity / 0.1).


@torch.no_grad()
def embed(
    encoder: nn.Module,
    loader: DataLoader,
    device: torch.device,
    mean: torch.Tensor,
    std: torch.Tensor,
    bf16: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    was_training = encoder.training
    encoder.eval()
    features, labels = [], []
    for images, batch_labels, _ in loader:
        if len(images) == 0:
            continue
        x = (images.to(device, non_blocking=True).float() / 255 - mean.view(1, 3, 1, 1)) / std.view(
            1, 3, 1, 1
        )
        with autocast(device, bf16):
            features.append(F.normalize(encoder(channels_last(x)).float(), dim=1))
        labels.append(batch_labels.to(device))
    encoder.train(was_training)
    if not features:
        raise DataError("no readable image in an evaluation set: every one failed to decode")
    return torch.cat(features), torch.cat(labels)


def knn_predict(
    query: torch.Tensor, bank: torch.Tensor, bank_labels: torch.Tensor, num_classes: int, k: int, t: float
) -> torch.Tensor:
    """Weighted kNN: the predicted class of each (L2-normalised) query feature."""
    k = min(k, len(bank))
    predictions = []
    for chunk in query.split(1024):
        similarity, neighbours = (chunk @ bank.T).topk(k, dim=1)
        votes = torch.zeros(len(chunk), num_classes, device=query.device)
        votes.scatter_add_(1, bank_labels[neighbours], (similarity / t).exp())
        predictions.append(votes.argmax(dim=1))
    return torch.cat(predictions)


def knn_accuracy(
    encoder: nn.Module,
    data: Data,
    args: argparse.Namespace,
    device: torch.device,
    mean: torch.Tensor,
    std: torch.Tensor,
) -> float:
    def loader(source) -> DataLoader:
        return make_loader(EvalDataset(source, args.input_size), 512, args.num_workers, device)

    bank, bank_labels = embed(encoder, loader(data.train), device, mean, std, args.precision == "bf16")
    query, labels = embed(encoder, loader(data.val), device, mean, std, args.precision == "bf16")
    num_classes = max(len(data.train.classes), int(bank_labels.max()) + 1)
    predicted = knn_predict(query, bank, bank_labels, num_classes, args.knn_k, args.knn_t)
    return (predicted == labels).float().mean().item()


# %%
# Checkpoints
# -----------
# A checkpoint holds everything the run needs to continue exactly: online and target weights (with
# BatchNorm statistics), the optimiser's momentum, the position in the schedule and in the epoch,
# the settings and the random-number state. It is written to a temporary file and renamed, so a
# crash during the save leaves the previous checkpoint intact. It is read back with
# ``weights_only=True``, which refuses pickled code.

CHECKPOINT, METRICS, BACKBONE = "checkpoint-last.pt", "metrics.jsonl", "backbone.pt"
# Settings that must not change when a run is resumed.
RESUME_MUST_MATCH = [
    "data",
    "train_images",
    "synthetic_images",
    "crops_on_device",
    "input_size",
    "backbone",
    "hidden_dim",
    "proj_dim",
    "epochs",
    "batch_size",
    "lr",
    "momentum",
    "weight_decay",
    "warmup_epochs",
    "tau_base",
    "seed",
]


def save_atomically(obj: Any, path: Path) -> None:
    temporary = path.with_name(path.name + ".tmp")
    try:
        with open(temporary, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise DataError(f"could not write {path} ({error}); the previous file, if any, is intact") from None


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise DataError(
            f"refusing to load {path}: not a checkpoint of plain tensors and values ({error})"
        ) from None


def check_same_run(checkpoint: dict[str, Any], args: argparse.Namespace, steps_per_epoch: int) -> None:
    """Refuse to resume a run whose settings, or number of steps per epoch, differ from this one's."""
    changed = [k for k in RESUME_MUST_MATCH if checkpoint["args"].get(k) != getattr(args, k)]
    if changed:
        raise DataError(
            "cannot resume: the checkpoint was made with other settings: "
            + ", ".join(f"--{k.replace('_', '-')} {checkpoint['args'].get(k)}" for k in changed)
        )
    if len(checkpoint["epoch_losses"]) != steps_per_epoch:
        raise DataError(
            f"cannot resume: the checkpoint's epochs have {len(checkpoint['epoch_losses'])} steps, this "
            f"run's {steps_per_epoch}: the number of training images changed"
        )


def prepare_output_dir(args: argparse.Namespace) -> Path:
    output_dir = Path(args.output_dir)
    previous_run = [
        output_dir / name for name in (CHECKPOINT, METRICS, BACKBONE) if (output_dir / name).exists()
    ]
    resumable = args.resume and (output_dir / CHECKPOINT).exists()
    if previous_run and not resumable:
        if not args.overwrite:
            what = f"a run without {CHECKPOINT}" if args.resume else f"a run ({previous_run[0].name})"
            hint = "" if args.resume else "--resume to continue it, "
            raise DataError(
                f"{output_dir} already holds {what}: pass {hint}--overwrite to replace it, "
                "or another --output-dir"
            )
        for path in previous_run:
            path.unlink()
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"cannot create --output-dir {output_dir}: {error}") from None
    if not os.access(output_dir, os.W_OK):
        raise DataError(f"cannot write into --output-dir {output_dir}")
    return output_dir


def save_checkpoint(
    path: Path,
    model: BYOL,
    optimizer: torch.optim.Optimizer,
    step: int,
    args: argparse.Namespace,
    losses: torch.Tensor,
    projection_stds: torch.Tensor,
) -> None:
    state = {
        "model": model.state_dict(),  # online and target networks, with BatchNorm statistics
        "optimizer": optimizer.state_dict(),  # momentum buffers
        "step": step,  # the schedules' position; the epoch and the batch in it follow from it
        "epoch": step // len(losses),
        "args": vars(args),
        "rng_cpu": torch.get_rng_state(),
        "epoch_losses": losses.cpu(),  # so that the resumed epoch's mean loss is the uninterrupted one's
        "epoch_projection_stds": projection_stds.cpu(),
    }
    save_atomically(state, path)


def forget_metrics_after(step: int, output_dir: Path) -> None:
    """Drop the metrics of epochs that the checkpoint does not include (written after it, before a
    crash), and a line that a crash cut short."""
    metrics_path = output_dir / METRICS
    lines = metrics_path.read_text().splitlines() if metrics_path.exists() else []
    kept = []
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            print(f"warning: dropped an incomplete line of {metrics_path}: {line[:60]}")
            continue
        if row["step"] <= step:
            kept.append(line)
    metrics_path.write_text("".join(line + "\n" for line in kept))


def resume(
    path: Path,
    args: argparse.Namespace,
    model: BYOL,
    optimizer: torch.optim.Optimizer,
    losses: torch.Tensor,
    projection_stds: torch.Tensor,
) -> int:
    """Load a checkpoint into model, optimiser and the epoch's buffers; return its step."""
    checkpoint = load_checkpoint(path)
    if not isinstance(checkpoint, dict) or not {"args", "step", "model", "optimizer"} <= checkpoint.keys():
        raise DataError(f"cannot resume: {path} is not a checkpoint of this script")
    check_same_run(checkpoint, args, len(losses))
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    losses.copy_(checkpoint["epoch_losses"])
    projection_stds.copy_(checkpoint["epoch_projection_stds"])
    torch.set_rng_state(checkpoint["rng_cpu"])
    forget_metrics_after(checkpoint["step"], path.parent)
    return checkpoint["step"]


# %%
# Training
# --------
# One step: copy the uint8 crops to the device, augment them there, compute the symmetrised loss
# (in bf16 where the hardware has it), take an SGD step, move the target. The schedules are
# functions of the step.
# The loop avoids waiting for the GPU: losses stay on the device and are read only every
# ``--log-every`` steps, to refresh the progress bar and to stop on a NaN.


def has_fast_bf16(device: torch.device) -> bool:
    """Whether the device computes in bf16 natively; a CPU without AVX512-BF16 or AMX emulates it."""
    if device.type == "cuda":  # Ampere (compute capability 8.0) and later; older GPUs emulate it
        return torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type == "cpu":
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return False


def autocast(device: torch.device, bf16: bool):
    # bf16 mixed precision: matrix products and convolutions in bf16, weights and reductions in float32
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def channels_last(x: torch.Tensor) -> torch.Tensor:
    # the fastest convolution kernels of cuDNN (tensor cores) and of oneDNN (CPUs) are channels-last
    return x.contiguous(memory_format=torch.channels_last)


def pick_device(name: str | None) -> torch.device:
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DataError(f"--device {name} is not a device name: use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise DataError(
            f"--device {name} was asked for, but PyTorch sees {torch.cuda.device_count()} CUDA GPU(s)"
        )
    return device


def augment_views(
    images_1: torch.Tensor,
    images_2: torch.Tensor,
    step: int,
    args: argparse.Namespace,
    device: torch.device,
    mean: torch.Tensor,
    std: torch.Tensor,
    rank: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator(device=device).manual_seed(sample_seed(args.seed, step, rank))
    images_1, images_2 = images_1.to(device, non_blocking=True), images_2.to(device, non_blocking=True)
    view_1 = augment(images_1, VIEW_1, generator, mean, std, args.blur, args.compile)
    view_2 = augment(images_2, VIEW_2, generator, mean, std, args.blur, args.compile)
    return channels_last(view_1), channels_last(view_2)


def training_step(
    model: BYOL,
    optimizer: torch.optim.Optimizer,
    view_1: torch.Tensor,
    view_2: torch.Tensor,
    lr: float,
    tau: float,
    device: torch.device,
    bf16: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One BYOL update; returns the loss and the std of the normalised projections (collapse monitor)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast(device, bf16):
        loss, projections = model(view_1, view_2)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    update_target(model, tau)
    projection_std = F.normalize(projections.float(), dim=1).std(dim=0).mean()
    return loss.detach(), projection_std


class StopRequest:
    """Turns SIGINT and SIGTERM into a request that the loop honours after the current step."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self.previous = {}

    def __enter__(self) -> "StopRequest":
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self.handle)
        return self

    def handle(self, signum: int, frame: Any) -> None:
        self.signal = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


class TrainingStopped(Exception):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def stopped_by(signum: int, step: int, checkpoint_path: Path) -> TrainingStopped:
    return TrainingStopped(
        f"stopped by {signal.Signals(signum).name} at step {step}: checkpoint saved to {checkpoint_path}; "
        "continue with --resume",
        exit_code=128 + signum,
    )


def stop_if_diverged(
    losses: torch.Tensor, start: int, end: int, epoch: int, steps_per_epoch: int, peak_lr: float
) -> None:
    """Stop on a NaN or infinite loss among losses[start:end], naming the first bad step."""
    bad = (~torch.isfinite(losses[start:end])).nonzero()
    if len(bad):
        batch = start + int(bad[0])
        raise TrainingStopped(
            f"error: the loss became {losses[batch].item()} at step {epoch * steps_per_epoch + batch} "
            f"(epoch {epoch + 1}); the learning rate is probably too high (peak {peak_lr:.4g}): try a "
            "lower --lr. The last checkpoint, saved before the loss diverged, is kept.",
            exit_code=1,
        )


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Train BYOL as the settings say; returns the last epoch's metrics."""
    device = pick_device(args.device)
    if args.blur is None:
        args.blur = args.input_size > 32
    if args.compile is None:
        args.compile = device.type == "cuda"
    if args.precision == "auto":
        args.precision = "bf16" if has_fast_bf16(device) else "fp32"
    torch.manual_seed(args.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True

    data = load_data(args)
    # after the data: a mistyped --data must not cost the run that --overwrite would replace
    output_dir = prepare_output_dir(args)
    mean = torch.tensor(data.mean, device=device)
    std = torch.tensor(data.std, device=device)
    model = BYOL(args.backbone, args.input_size <= 64, args.hidden_dim, args.proj_dim)
    model = model.to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(parameter_groups(model, args.weight_decay), lr=0.0, momentum=args.momentum)

    steps_per_epoch = len(data.train) // args.batch_size
    total_steps = args.epochs * steps_per_epoch
    warmup_steps = round(min(args.warmup_epochs, args.epochs / 10) * steps_per_epoch)
    peak_lr = args.lr * args.batch_size / 256

    # Per-step losses and projection stds of the current epoch, kept on the device: reading them
    # makes the CPU wait for the GPU, so that happens only every --log-every steps.
    losses = torch.zeros(steps_per_epoch, device=device)
    projection_stds = torch.zeros(steps_per_epoch, device=device)
    step, metrics = 0, {}
    checkpoint_path = output_dir / CHECKPOINT
    if args.resume and checkpoint_path.exists():
        step = resume(checkpoint_path, args, model, optimizer, losses, projection_stds)
        print(f"resumed from {checkpoint_path} at step {step} of {total_steps}")
    elif args.resume:
        print(f"nothing to resume in {output_dir}: starting a new run")

    sampler = EpochSampler(len(data.train), args.batch_size, args.seed)
    if args.crops_on_device:
        loader = DeviceCrops(data.train, sampler, args.batch_size, args.input_size, args.seed, device)
    else:
        loader = make_loader(
            TwoViewDataset(data.train, args.input_size, args.seed),
            args.batch_size,
            args.num_workers,
            device,
            sampler=sampler,
            drop_last=True,
            persistent_workers=args.num_workers > 0,
        )
    print(
        f"training {args.backbone} on {len(data.train)} images ({args.data}), {args.epochs} epochs of "
        f"{steps_per_epoch} steps, batch {args.batch_size}, lr {peak_lr:.4g}, on {device}"
        + (" (crops on the device)" if args.crops_on_device else "")
    )
    reported_unreadable: set[str] = set()
    run_start = time.perf_counter()

    with StopRequest() as stop:
        while step < total_steps:
            epoch, start_batch = divmod(step, steps_per_epoch)
            sampler.set_epoch(epoch, start_batch)
            if start_batch == 0:
                losses.zero_()
                projection_stds.zero_()
            images_seen, skipped, epoch_start = 0, 0, time.perf_counter()
            progress = tqdm(
                total=steps_per_epoch,
                initial=start_batch,
                desc=f"epoch {epoch + 1}/{args.epochs}",
                disable=None,
                leave=False,
                dynamic_ncols=True,
            )

            for batch, (images_1, images_2, unreadable) in enumerate(loader, start=start_batch):
                for name, reason in unreadable:
                    if name not in reported_unreadable:
                        reported_unreadable.add(name)
                        tqdm.write(f"warning: skipped unreadable image {name}: {reason}")
                skipped += len(unreadable)
                lr = learning_rate_at(step, total_steps, warmup_steps, peak_lr)
                tau = tau_at(step, total_steps, args.tau_base)
                if len(images_1) >= 2:  # BatchNorm needs two images; a batch of unreadables is skipped
                    view_1, view_2 = augment_views(images_1, images_2, step, args, device, mean, std)
                    losses[batch], projection_stds[batch] = training_step(
                        model, optimizer, view_1, view_2, lr, tau, device, args.precision == "bf16"
                    )
                    images_seen += len(images_1)
                step += 1
                progress.update()
                at_checkpoint = args.checkpoint_every and step % args.checkpoint_every == 0
                if (batch + 1) % args.log_every == 0 or at_checkpoint or stop.signal:
                    stop_if_diverged(losses, start_batch, batch + 1, epoch, steps_per_epoch, peak_lr)
                    elapsed = time.perf_counter() - epoch_start
                    progress.set_postfix(
                        loss=f"{losses[batch].item():.3f}",
                        lr=f"{lr:.4f}",
                        tau=f"{tau:.4f}",
                        img_s=f"{images_seen / elapsed:.0f}",
                    )
                # A stop request in the epoch's last step waits for the epoch's metrics, below.
                stop_now = stop.signal and batch + 1 < steps_per_epoch
                if at_checkpoint or stop_now:
                    save_checkpoint(checkpoint_path, model, optimizer, step, args, losses, projection_stds)
                if stop_now:
                    progress.close()
                    raise stopped_by(stop.signal, step, checkpoint_path)
            progress.close()
            stop_if_diverged(losses, start_batch, steps_per_epoch, epoch, steps_per_epoch, peak_lr)
            if device.type == "cuda":
                torch.cuda.synchronize()
            train_time = time.perf_counter() - epoch_start
            epoch += 1
            metrics = {
                "epoch": epoch,
                "step": step,
                "loss": losses.mean().item(),
                "lr": lr,
                "tau": tau,
                "images_per_s": images_seen / train_time,
                "projection_std": projection_stds.mean().item(),
                "skipped_images": skipped,
                "epoch_time_s": train_time,
            }
            if (
                data.val is not None
                and args.eval_every
                and (epoch % args.eval_every == 0 or epoch == args.epochs)
            ):
                metrics["knn_top1"] = knn_accuracy(model.encoder, data, args, device, mean, std)
            metrics["elapsed_s"] = time.perf_counter() - run_start
            save_checkpoint(checkpoint_path, model, optimizer, step, args, losses, projection_stds)
            with open(output_dir / METRICS, "a") as file:
                file.write(json.dumps(metrics) + "\n")
            print(format_summary(metrics, args.epochs))
            collapse_threshold = 0.25 / math.sqrt(args.proj_dim)
            if metrics["projection_std"] < collapse_threshold:
                print(
                    f"warning: the projections' std ({metrics['projection_std']:.4f}) fell below "
                    f"{collapse_threshold:.4f}: the representation may be collapsing (healthy: about "
                    f"{1 / math.sqrt(args.proj_dim):.4f}); try a lower --lr or a higher --tau-base"
                )
            if stop.signal and step < total_steps:  # in the run's last step, it simply ends
                raise stopped_by(stop.signal, step, checkpoint_path)

    backbone = {name: tensor.cpu() for name, tensor in model.encoder.state_dict().items()}
    save_atomically(backbone, output_dir / BACKBONE)  # CPU tensors: loadable without a GPU
    print(f"saved the online encoder to {output_dir / BACKBONE}")
    return metrics


def format_summary(metrics: dict[str, Any], epochs: int) -> str:
    line = (
        f"epoch {metrics['epoch']}/{epochs}  step {metrics['step']}  loss {metrics['loss']:.4f}  "
        f"lr {metrics['lr']:.4f}  tau {metrics['tau']:.4f}  proj_std {metrics['projection_std']:.4f}  "
        f"{metrics['images_per_s']:.0f} img/s"
    )
    if "knn_top1" in metrics:
        line += f"  knn_top1 {metrics['knn_top1']:.4f}"
    if metrics["skipped_images"]:
        line += f"  skipped {metrics['skipped_images']}"
    return line


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    try:
        return train(args)
    except DataError as error:
        sys.exit(f"byol.py: error: {error}")
    except TrainingStopped as stopped:
        print(stopped, file=sys.stderr)
        sys.exit(stopped.exit_code)


if __name__ == "__main__":
    main()
