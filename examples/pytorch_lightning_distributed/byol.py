"""
BYOL with PyTorch Lightning on several GPUs or machines
=======================================================

Bootstrap Your Own Latent (BYOL, Grill et al. 2020, `arXiv 2006.07733
<https://arxiv.org/abs/2006.07733>`_) learns image representations without labels. Two augmented
views of each image go through two networks: the *online* network (encoder, projector, predictor)
learns to predict what the *target* network (encoder, projector) makes of the other view. The target
receives no gradients; its weights are a slow moving average of the online weights.

This is the Lightning example (``examples/pytorch_lightning/byol.py``) with distributed data parallelism
(DDP): one process per GPU, each with its share of every batch, gradients averaged between them.
``--batch-size`` is per process, the learning rate follows the global batch, and on GPUs BatchNorm uses
global-batch statistics (SyncBatchNorm). Lightning starts the processes, or joins torchrun's or SLURM's::

    python examples/pytorch_lightning_distributed/byol.py --data cifar10 --devices 4  # 4 GPUs
    torchrun --nnodes 2 --nproc-per-node 4 ... examples/pytorch_lightning_distributed/byol.py \\
        --data cifar10 --devices 4 --num-nodes 2  # on each of 2 machines
    python examples/pytorch_lightning_distributed/byol.py --data synthetic --input-size 16 --epochs 2 \\
        --batch-size 16 --accelerator cpu --devices 2  # two CPU processes

It writes ``metrics.jsonl`` (a line per epoch), ``checkpoint-last.pt`` (a Lightning checkpoint, for
``--resume``), ``backbone.pt`` (the online encoder's weights) and ``lightning_logs/`` (Lightning's CSV
log, a version per run) to ``--output-dir``.
"""

# %%
# Settings
# --------
# Every setting is a flag that ``--help`` explains; the defaults suit 32x32 images on one GPU. In a
# notebook, pass the flags to ``main``: ``main(["--data", "synthetic"])``.

import argparse
import copy
import functools
import json
import math
import os
import pickle
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import torchvision
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as TF
from pytorch_lightning.callbacks import ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, Dataset, TensorDataset, default_collate


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser("byol.py", allow_abbrev=False)  # a mistyped --epoch is an error
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter  # --help shows the defaults
    add = parser.add_argument
    add("--data", default="cifar10", help="cifar10, synthetic or an image folder (class subfolders or flat)")
    add("--data-dir", default="data", help="where torchvision downloads CIFAR-10")
    add("--val", help="image folder with class subfolders for the kNN monitor (default: the test split)")
    add("--synthetic-images", type=int, default=1024, help="how many images --data synthetic generates")
    add("--input-size", type=int, default=32, help="side of the views; 64 px or less: small-image stem")
    add("--blur", action=argparse.BooleanOptionalAction, help="blur the views (default: above 32 px)")
    add("--num-workers", type=int, default=min(8, os.cpu_count() or 1), help="processes decoding files")
    add("--backbone", default="resnet18", choices=["resnet18", "resnet34", "resnet50"], help="the encoder")
    add("--hidden-dim", type=int, default=4096, help="hidden width of projector and predictor")
    add("--proj-dim", type=int, default=256, help="output width of projector and predictor")
    add("--optimizer", default="sgd", choices=["sgd", "lars"], help="lars: the paper's, for large batches")
    add("--epochs", type=int, default=100, help="passes over the training images")
    add("--batch-size", type=int, default=512, help="images per step")
    add("--lr", type=float, default=0.2, help="peak learning rate for a batch of 256, scaled to the batch")
    add("--weight-decay", type=float, default=5e-4, help="weight decay, not on biases and norms")
    add("--warmup-epochs", type=float, default=10, help="linear warm-up, at most a tenth of --epochs")
    add("--tau-base", type=float, default=0.99, help="the target's moving-average rate, rising to 1")
    add("--eval-every", type=int, default=10, help="epochs between runs of the kNN monitor (0: never)")
    add("--knn-k", type=int, default=200, help="neighbours that vote in the kNN monitor")
    add("--output-dir", default="runs/pytorch_lightning_distributed", help="where metrics and checkpoints go")
    add("--resume", action="store_true", help="continue the run saved in --output-dir")
    add("--overwrite", action="store_true", help="replace the run saved in --output-dir")
    add("--seed", type=int, default=0, help="seed of every random draw")
    add("--precision", default="auto", choices=["auto", "bf16", "fp32"], help="auto: bf16 on recent GPUs")
    add("--compile", action=argparse.BooleanOptionalAction, help="compile the colour jitter (default: GPU)")
    add("--accelerator", default="auto", help="Lightning's accelerator: auto, cpu, gpu...")
    add("--devices", default="auto", help="processes per machine, one per GPU (auto: every GPU)")
    add("--num-nodes", type=int, default=1, help="machines")
    args = parser.parse_args([] if argv is None and "ipykernel" in sys.modules else argv)  # not Jupyter's
    smallest = {"batch_size": 2, "num_workers": 0, "eval_every": 0, "seed": 0, "warmup_epochs": 0}
    for name in ["synthetic_images", "input_size", "hidden_dim", "proj_dim", "epochs", "knn_k", *smallest]:
        if not getattr(args, name) >= smallest.get(name, 1):  # batch_size: BatchNorm needs two images
            parser.error(f"--{name.replace('_', '-')} must be at least {smallest.get(name, 1)}")
    if not (args.lr > 0 and args.weight_decay >= 0 and 0 <= args.tau_base < 1 and args.seed < 2**63):
        parser.error("--lr must be positive, --weight-decay not negative, --tau-base in [0, 1)")
    # What the defaults leave open is settled here, so that the checkpoint records what the run did.
    gpu = args.accelerator in ("gpu", "cuda") or (args.accelerator == "auto" and torch.cuda.is_available())
    args.blur = args.input_size > 32 if args.blur is None else args.blur
    args.compile = gpu if args.compile is None else args.compile
    if args.precision == "auto":  # GPUs before Ampere emulate bf16, slowly
        native = gpu and torch.cuda.is_bf16_supported(including_emulation=False)
        args.precision = "bf16" if native else "fp32"
    return args


# %%
# Augmentations
# -------------
# BYOL learns what two views of an image share, so the augmentations decide what it learns. The
# paper's two views (its Table 6) are asymmetric: both are cropped, flipped, colour-jittered and
# sometimes grey; view 1 is always blurred, view 2 rarely blurred and sometimes solarized. Each image
# draws its own parameters. Images held in memory (CIFAR-10) are cropped on the training device, a
# batch at a time; a folder's images are decoded and cropped (RandomResizedCrop) by DataLoader
# workers. The rest runs batched on the training device, drawing from one random generator.

JITTER = {"brightness": 0.4, "contrast": 0.4, "saturation": 0.2, "hue": 0.1}  # each in 80 % of views
VIEW_1 = {"blur": 1.0, "solarize": 0.0}  # probabilities; both views turn grey with probability 0.2
VIEW_2 = {"blur": 0.1, "solarize": 0.2}


def crop_on_device(images: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Random resized crops (aspect ratio 3/4-4/3, area 8-100 %) and flips of a batch, one per image.
    Each crop draws its ratio, then an area that fits it; RandomResizedCrop draws both, again if needed."""
    n, _, height, width = images.shape
    u = torch.rand(n, 5, device=images.device, generator=generator)
    ratio = torch.exp(math.log(3 / 4) + math.log(16 / 9) * u[:, 1])  # log-uniform in [3/4, 4/3]
    fits = torch.minimum(width / height / ratio, ratio * height / width).clamp(max=1)  # the largest area
    area = height * width * (0.08 + (fits - 0.08) * u[:, 0])
    w, h = (area * ratio).sqrt().clamp(max=width), (area / ratio).sqrt().clamp(max=height)
    left, top, index = u[:, 2] * (width - w), u[:, 3] * (height - h), torch.arange(n, device=u.device)
    # roi_align resizes each box bilinearly, averaging where it shrinks; aligned: pixel i is [i, i + 1)
    boxes = torch.stack([index, left, top, left + w, top + h], dim=1)
    crops = torchvision.ops.roi_align(images, boxes, size, sampling_ratio=-1, aligned=True)
    return torch.where(u[:, 4].view(-1, 1, 1, 1) < 0.5, crops.flip(3), crops)


def blend(images: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (factor * images + (1 - factor) * other).clamp(0, 1)


def adjust_hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Turns each image's hue by its shift, a fraction of the colour wheel, in HSV space."""
    r, g, b = images.split(1, dim=1)
    value, low = images.amax(1, keepdim=True), images.amin(1, keepdim=True)
    chroma = value - low
    divisor = torch.where(chroma > 0, chroma, 1.0)  # greys have no hue
    hue = torch.where(value == g, 2 + (b - r) / divisor, 4 + (r - g) / divisor)
    hue = torch.where(value == r, (g - b) / divisor, hue) / 6 + shift
    k = torch.cat([(n + 6 * hue) % 6 for n in (5, 3, 1)], dim=1)
    return value - chroma * torch.minimum(k, 4 - k).clamp(0, 1)  # back to red, green and blue


# What torchvision's ColorJitter does to one image, for a batch with a factor per image.
ADJUSTMENTS = [
    lambda images, factor: blend(images, torch.zeros_like(images), factor),  # brightness
    lambda images, factor: blend(images, TF.rgb_to_grayscale(images).mean((1, 2, 3), True), factor),
    lambda images, factor: blend(images, TF.rgb_to_grayscale(images), factor),  # saturation
    adjust_hue,
]


def color_jitter(images: torch.Tensor, apply, factors: list, order: torch.Tensor) -> torch.Tensor:
    """The four adjustments in each image's own random order (a column of `order`), where `apply`."""
    for slot in range(4):
        for index, adjust in enumerate(ADJUSTMENTS):
            chosen = apply & (order[:, slot : slot + 1] == index)
            images = torch.where(chosen, adjust(images, factors[index]), images)
    return images


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blurs each image with its own sigma; the kernel spans a tenth of the side (23 px at 224 px)."""
    n, c, height, width = images.shape
    size = max(3, round(width / 10) // 2 * 2 + 1)
    x = torch.arange(size, device=images.device) - size // 2
    kernel = torch.softmax(-0.5 * (x / sigma.view(-1, 1)) ** 2, dim=1).repeat_interleave(c, dim=0)
    out = F.pad(images, [size // 2] * 4, mode="reflect").view(1, n * c, height + size - 1, -1)
    out = F.conv2d(out, kernel.view(n * c, 1, 1, size), groups=n * c)  # along rows, then columns
    return F.conv2d(out, kernel.view(n * c, 1, size, 1), groups=n * c).view(n, c, height, width)


def augment(images: torch.Tensor, view: dict, generator, blur: bool, jitter=color_jitter) -> torch.Tensor:
    """Colour jitter, grayscale, blur and solarize of a batch of crops in [0, 1], per image."""

    def draw(low: float = 0.0, high: float = 1.0) -> torch.Tensor:  # one number per image
        numbers = torch.empty(len(images), 1, 1, 1, device=images.device)
        return numbers.uniform_(low, high, generator=generator)

    factors = [draw(1 - JITTER[name], 1 + JITTER[name]) for name in ("brightness", "contrast", "saturation")]
    factors.append(draw(-JITTER["hue"], JITTER["hue"]))
    order = torch.rand(len(images), 4, 1, 1, device=images.device, generator=generator).argsort(dim=1)
    images = jitter(images, draw() < 0.8, factors, order)
    images = torch.where(draw() < 0.2, TF.rgb_to_grayscale(images, 3), images)
    if blur:  # the paper's sigma, 0.1-2 px at 224 px, scaled; at 32 px it changes no pixel by 1 %
        blurred = gaussian_blur(images, draw(0.1, 2) * images.shape[-1] / 224)
        images = torch.where(draw() < view["blur"], blurred, images)
    return torch.where(draw() < view["solarize"], torch.where(images < 0.5, images, 1 - images), images)


def compiled(function):
    """`function` compiled by torch.compile at its first call; where that fails, `function` itself."""
    state = {"compiled": torch.compile(function, dynamic=False)}  # ~200 small kernels fused into a few

    def call(*args):
        if state["compiled"] is not None:
            try:
                return state["compiled"](*args)
            except Exception as error:  # no C compiler, an unsupported platform...
                warnings.warn(f"torch.compile failed, running eagerly: {error}", stacklevel=2)
                state["compiled"] = None
        return function(*args)

    return call


# %%
# Model
# -----
# The encoder f is a torchvision ResNet without its classifier. On small images (64 px or less) its
# stem is replaced: the ImageNet stem (7x7 stride-2 convolution and max-pool) would shrink a 32x32
# image to 1x1 before the last stage. The projector g and the predictor q are
# Linear -> BatchNorm -> ReLU -> Linear; only the online network has a predictor, and the target
# network, a copy of encoder and projector, receives no gradients.


def resnet_encoder(name: str, small_images: bool) -> tuple[nn.Module, int]:
    resnet = getattr(torchvision.models, name)(weights=None)
    if small_images:
        resnet.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        resnet.maxpool = nn.Identity()
    feature_dim = resnet.fc.in_features
    resnet.fc = nn.Identity()
    return resnet, feature_dim


def mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    layers = [nn.Linear(in_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.Linear(hidden_dim, out_dim))


class BYOL(nn.Module):
    def __init__(self, backbone: str, small_images: bool, hidden_dim: int, proj_dim: int) -> None:
        super().__init__()
        self.encoder, feature_dim = resnet_encoder(backbone, small_images)  # online f
        self.projector = mlp(feature_dim, hidden_dim, proj_dim)  # online g
        self.predictor = mlp(proj_dim, hidden_dim, proj_dim)  # q, online only
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)

    def forward(self, view_1: torch.Tensor, view_2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The symmetrised BYOL loss of a batch, and the online projections of view 1."""
        projection_1 = self.projector(self.encoder(view_1))
        projection_2 = self.projector(self.encoder(view_2))
        with torch.no_grad():  # the target's BatchNorm is in train mode too: batch statistics
            target_1 = self.target_projector(self.target_encoder(view_1))
            target_2 = self.target_projector(self.target_encoder(view_2))
        loss = regression_loss(self.predictor(projection_1), target_2)
        loss = loss + regression_loss(self.predictor(projection_2), target_1)
        return loss, projection_1.detach()


# %%
# Loss and target update
# ----------------------
# The loss is the mean squared error of the L2-normalised prediction and target projection,
# ``2 - 2 cos(p, z)``, with a stop-gradient on the target; it is symmetrised by swapping the views and
# the two terms are *summed* (a mean would halve the gradient). After every optimiser step the target
# moves towards the online network, ``target = tau * target + (1 - tau) * online``, tau rising from
# ``--tau-base`` to 1 on a cosine schedule. Only weights are averaged, not BatchNorm statistics.


def regression_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = F.normalize(prediction.float(), dim=-1)
    z = F.normalize(target.detach().float(), dim=-1)
    return (2 - 2 * (p * z).sum(dim=-1)).mean()


def tau_at(step: int, total_steps: int, tau_base: float) -> float:
    return 1 - (1 - tau_base) * (math.cos(math.pi * step / total_steps) + 1) / 2


@torch.no_grad()
def update_target(model: BYOL, tau: float) -> None:
    online = [*model.encoder.parameters(), *model.projector.parameters()]
    target = [*model.target_encoder.parameters(), *model.target_projector.parameters()]
    for online_weight, target_weight in zip(online, target, strict=True):
        target_weight.lerp_(online_weight, 1 - tau)  # tau * target + (1 - tau) * online


def lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """The learning rate's share of its peak: a linear warm-up, then a cosine decay to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / max(1, total_steps - warmup_steps)))


class LARS(torch.optim.Optimizer):
    """SGD with momentum whose update of each weight is scaled by its trust ratio, 1e-3 |w| / |g + wd w|
    (You et al. 2017, as in BYOL); groups with lars=False (biases, norms) take plain SGD steps."""

    def __init__(self, params, lr: float, momentum: float = 0.9) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": 0.0, "lars": False})

    @torch.no_grad()
    def step(self, closure=None):
        with torch.enable_grad():
            loss = closure() if closure is not None else None
        for group in self.param_groups:
            for weight in (w for w in group["params"] if w.grad is not None):
                update = weight.grad.add(weight, alpha=group["weight_decay"])
                if group["lars"]:
                    trust = 1e-3 * weight.norm() / update.norm()
                    update *= torch.where(torch.isfinite(trust) & (trust > 0), trust, 1.0)
                velocity = self.state[weight].setdefault("momentum_buffer", torch.zeros_like(weight))
                weight.sub_(velocity.mul_(group["momentum"]).add_(update), alpha=group["lr"])
        return loss


def make_optimizer(model: BYOL, args: argparse.Namespace, peak_lr: float) -> torch.optim.Optimizer:
    """Weight decay and LARS's adaptation apply to weights, not to biases and norms (1-D)."""
    online = [p for p in model.parameters() if p.requires_grad]  # encoder, projector, predictor
    groups = [
        {"params": [p for p in online if p.ndim > 1], "weight_decay": args.weight_decay, "lars": True},
        {"params": [p for p in online if p.ndim <= 1], "weight_decay": 0.0, "lars": False},
    ]
    optimizer = LARS if args.optimizer == "lars" else torch.optim.SGD
    return optimizer(groups, lr=peak_lr, momentum=0.9)


# %%
# Data
# ----
# CIFAR-10 (which torchvision downloads) and the synthetic images are held in memory as uint8
# tensors. The files of a folder are listed by torchvision's ImageFolder and decoded by DataLoader
# workers; an unreadable file is skipped and named.


class DataError(Exception):
    """Bad input: the message is shown to the user as it is."""


@dataclass
class Data:
    train: Dataset  # in memory: (image, label); a folder: ((crop, crop), label)
    bank: Dataset  # the training images as the kNN monitor sees them
    val: Dataset | None  # None: no kNN monitor
    mean_std: tuple


class ImageFiles(torchvision.datasets.ImageFolder):
    """ImageFolder, which also takes a flat folder (one class, named '': unlabelled) and gives the name
    of a file it cannot read instead of failing."""

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        if any(entry.is_dir() for entry in os.scandir(directory)):
            return super().find_classes(directory)
        return [""], {"": 0}

    def __getitem__(self, index: int) -> tuple | str:
        try:
            return super().__getitem__(index)
        except Exception as error:  # Pillow raises many types for broken files
            return f"{self.samples[index][0]} ({error})"


def image_folder(root: str, transform: T.Transform) -> ImageFiles:
    if not Path(root).is_dir():
        raise DataError(f"image folder not found: {root}")
    try:
        return ImageFiles(root, transform)
    except FileNotFoundError as error:  # a folder, or a class subfolder, without images
        raise DataError(f"no readable image in {root}: {error}") from None


def twice(transform: T.Transform, image) -> tuple:
    return transform(image), transform(image)  # two independent random crops


def collate_readable(samples: list) -> tuple:
    """A batch of the readable samples (None if none is), and the names of the unreadable ones."""
    readable = [sample for sample in samples if not isinstance(sample, str)]
    return (default_collate(readable) if readable else None), [s for s in samples if isinstance(s, str)]


def synthetic_images(n: int, seed: int, size: int = 32) -> TensorDataset:
    """Ten classes of textures (stripes, checks, dots, rings, grids, rays, waves, blobs) at random
    scales, phases and centres, lit through a mosaic of random colours: colour tells nothing."""
    g = torch.Generator().manual_seed(seed)
    labels = (torch.arange(n) % 10)[torch.randperm(n, generator=g)]
    y, x = torch.linspace(-1, 1, size).view(1, -1, 1), torch.linspace(-1, 1, size).view(1, 1, -1)
    scale, phase, cx, cy, side = torch.rand(5, n, 1, 1, generator=g)
    f, phase = (scale * math.log(5)).exp() * math.pi, phase * 2 * math.pi  # 1 to 5 cycles
    cx, cy = 1.2 * cx - 0.6, 1.2 * cy - 0.6
    diagonal = (x + torch.where(side < 0.5, -y, y)) / math.sqrt(2)
    radius, angle = ((x - cx) ** 2 + (y - cy) ** 2).sqrt(), torch.atan2(y - cy, x - cx)
    blobs = F.interpolate(torch.randn(n, 1, 4, 4, generator=g), size=(size, size), mode="bicubic")[:, 0]
    stripes = [torch.sin(y * f + phase), torch.sin(x * f + phase), torch.sin(diagonal * f + phase)]
    dots = torch.cos(2 * x * f + phase) * torch.cos(2 * y * f + phase) - 0.5
    grid = torch.maximum(torch.cos(x * f + phase), torch.cos(y * f + phase)) - 0.8
    waves = torch.sin(y * f + 0.6 * torch.sin(2 * x * f) + phase)
    rings, rays = torch.sin(2 * radius * f + phase), torch.sin(6 * angle + phase)
    textures = [*stripes, stripes[0] * stripes[1], dots, rings, grid, rays, waves, blobs]
    textures = torch.stack([texture.expand(n, size, size) for texture in textures])
    lit = (textures[labels, torch.arange(n)] > 0).float().unsqueeze(1)
    mosaic = F.interpolate(torch.rand(n, 3, 8, 8, generator=g), size=(size, size), mode="nearest")
    images = mosaic * (0.35 + 0.65 * lit) + 0.04 * torch.randn(n, 3, size, size, generator=g)
    return TensorDataset((images.clamp(0, 1) * 255).round().to(torch.uint8), labels)


def cifar10(data_dir: str, train: bool) -> TensorDataset:
    try:
        cifar = torchvision.datasets.CIFAR10(data_dir, train, download=True)
    except Exception as error:
        raise DataError(f"no CIFAR-10 ({error}); offline, pass it as folders: --data DIR --val DIR") from None
    return TensorDataset(torch.from_numpy(cifar.data).permute(0, 3, 1, 2), torch.tensor(cifar.targets))


def load_data(args: argparse.Namespace) -> Data:
    crop = T.Compose([T.RandomResizedCrop(args.input_size), T.RandomHorizontalFlip(), T.PILToTensor()])
    resize = T.Compose([T.Resize(args.input_size), T.CenterCrop(args.input_size), T.PILToTensor()])
    mean_std, val, classes = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), None, None  # ImageNet's
    if args.data == "cifar10":
        train, val = cifar10(args.data_dir, train=True), cifar10(args.data_dir, train=False)
        bank, mean_std = train, ((0.491, 0.482, 0.447), (0.247, 0.243, 0.262))
    elif args.data == "synthetic":
        train = bank = synthetic_images(args.synthetic_images, args.seed)
        val = synthetic_images(max(1, args.synthetic_images // 4), args.seed + 1)
    else:
        train = image_folder(args.data, functools.partial(twice, crop))  # picklable, for the workers
        bank, classes = image_folder(args.data, resize), train.classes
    if args.val is not None:
        val = image_folder(args.val, resize)
        if classes == [""] or val.classes != (classes or val.classes):  # in memory: not checked
            raise DataError(f"--val {args.val} needs the class subfolders of --data {args.data}")
    if args.batch_size > len(train):
        raise DataError(f"--batch-size {args.batch_size} is larger than the {len(train)} training images")
    return Data(train, bank, val if args.eval_every else None, mean_std)


def loader(images, args: argparse.Namespace, batch_size: int, **options) -> DataLoader:
    """Batches of what is readable (None if nothing is), with the names of unreadable files; the files
    of a folder are decoded by worker processes, and copied to the GPU from page-locked memory."""
    workers = args.num_workers if isinstance(images, ImageFiles) else 0
    options |= {"pin_memory": torch.cuda.is_available(), "collate_fn": collate_readable}
    return DataLoader(images, batch_size, num_workers=workers, **options)


def two_views(batch: tuple, memory, args, generator: torch.Generator, mean_std, jitter) -> list | None:
    """Both views of a batch, augmented on the device and normalised; None when fewer than two
    images could be read (BatchNorm needs two)."""
    readable, device = batch[0], mean_std[0].device
    if memory is not None:  # indices of images in memory: crop them here
        images = memory[readable.to(device, non_blocking=True)].float() / 255
        crops = [crop_on_device(images, args.input_size, generator) for _ in range(2)]
    elif readable is None or len(readable[1]) < 2:
        return None
    else:
        crops = [crop.to(device, non_blocking=True).float() / 255 for crop in readable[0]]
    views = [augment(crop, view, generator, args.blur, jitter) for crop, view in zip(crops, (VIEW_1, VIEW_2))]
    # channels-last: the layout of the fastest convolutions, cuDNN's (tensor cores) and oneDNN's (CPUs)
    return [TF.normalize(view, *mean_std).contiguous(memory_format=torch.channels_last) for view in views]


# %%
# Evaluation
# ----------
# A kNN classifier on frozen features tells whether the representation improves, without training
# anything: the online encoder's L2-normalised features of each validation image are compared with
# those of the training images, and the k most similar vote with weight exp(similarity / 0.1).


def knn_predict(query, bank, bank_labels, num_classes: int, k: int, t: float = 0.1) -> torch.Tensor:
    """Weighted kNN: the class of each L2-normalised query feature, from its k nearest bank features."""
    similarity, neighbours = (query @ bank.T).topk(min(k, len(bank)), dim=1)
    votes = torch.zeros(len(query), num_classes, device=query.device)
    return votes.scatter_add_(1, bank_labels[neighbours], (similarity / t).exp()).argmax(dim=1)


def features(encoder: nn.Module, images: torch.Tensor, args: argparse.Namespace, mean_std) -> torch.Tensor:
    """The L2-normalised features of uint8 images, resized and centre-cropped to the input size."""
    x = TF.center_crop(TF.resize(images, args.input_size), args.input_size)
    return F.normalize(encoder(TF.normalize(x / 255, *mean_std)).float(), dim=1)


# %%
# Training
# --------
# ``BYOLModule``, a LightningModule, holds the networks, the data and the step: it crops and augments
# both views on the device once Lightning has moved the batch there, returns the loss, and moves the
# target after the optimiser's step. The Trainer runs the rest: the loop, the bf16 autocast, the
# learning-rate schedule (a LambdaLR stepped every step), the logs and progress bar, the checkpoint
# after each epoch, and SIGTERM (it stops after the current step; a callback then saves). The kNN
# monitor is a validation loop, every ``--eval-every`` epochs.

CHECKPOINT, METRICS, BACKBONE = "checkpoint-last.pt", "metrics.jsonl", "backbone.pt"
# The settings that do not change what is learned, and so may change on --resume.
FREE_ON_RESUME = set("val eval_every knn_k num_workers output_dir resume overwrite accelerator".split())
FREE_ON_RESUME |= {"devices", "num_nodes"}  # world_size, which sets the global batch, is compared


def prepare_output_dir(args: argparse.Namespace) -> Path:
    output_dir = Path(args.output_dir)
    found = [output_dir / name for name in (CHECKPOINT, METRICS, BACKBONE) if (output_dir / name).exists()]
    if found and not (args.resume and (output_dir / CHECKPOINT).exists()):
        if not args.overwrite:
            run = f"a run without {CHECKPOINT}" if args.resume else "a run"
            raise DataError(f"{output_dir} holds {run}: pass --resume, --overwrite or another --output-dir")
        for path in found:
            path.unlink(missing_ok=True)  # other processes may have deleted it
    output_dir.mkdir(parents=True, exist_ok=True)
    return output_dir


class BYOLModule(pl.LightningModule):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__()
        self.save_hyperparameters(vars(args))  # saved in checkpoints: --resume compares them
        self.args, self.knn_top1, self.reported, self.tau = args, None, set(), args.tau_base
        self.model = BYOL(args.backbone, args.input_size <= 64, args.hidden_dim, args.proj_dim)
        self.jitter = compiled(color_jitter) if args.compile else color_jitter

    def prepare_data(self) -> None:  # in one process per machine, before the others read the data
        if self.args.data == "cifar10":
            torchvision.datasets.CIFAR10(self.args.data_dir, download=True)

    def setup(self, stage: str) -> None:
        self.data = load_data(self.args)
        prepare_output_dir(self.args)  # after the data: a mistyped --data must not cost the old run
        self.hparams["train_images"] = len(self.data.train)
        self.hparams["world_size"] = self.trainer.world_size
        in_memory = isinstance(self.data.train, TensorDataset)
        self.memory = self.data.train.tensors[0] if in_memory else None  # cropped on the device
        self.model.to(memory_format=torch.channels_last)  # as the fastest convolutions like it

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        saved = checkpoint["hyper_parameters"]
        for name in self.hparams.keys() - FREE_ON_RESUME:
            if saved.get(name) != self.hparams[name]:
                message = f"the checkpoint was made with {name} {saved.get(name)}, not {self.hparams[name]}"
                raise DataError(f"cannot resume: {message}")

    def configure_optimizers(self) -> dict:
        peak_lr = self.args.lr * self.args.batch_size * self.trainer.world_size / 256  # the global batch
        optimizer = make_optimizer(self.model, self.args, peak_lr)
        total_steps = self.trainer.estimated_stepping_batches
        warmup_epochs = min(self.args.warmup_epochs, self.args.epochs / 10)
        warmup_steps = round(warmup_epochs * total_steps / self.args.epochs)
        schedule = LambdaLR(optimizer, lambda step: lr_factor(step, total_steps, warmup_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.args.seed + self.global_rank)  # the workers' crops
        images = self.data.train if self.memory is None else range(len(self.data.train))
        shuffled = {"shuffle": True, "drop_last": True, "generator": generator}
        return loader(images, self.args, self.args.batch_size, **shuffled)

    def val_dataloader(self) -> list[DataLoader]:
        if self.data.val is None:
            return []
        return [loader(self.data.bank, self.args, 512), loader(self.data.val, self.args, 512)]

    def on_fit_start(self) -> None:  # now on the device
        self.generator = torch.Generator(self.device).manual_seed(self.args.seed + self.global_rank)
        self.mean_std = [torch.tensor(values, device=self.device) for values in self.data.mean_std]
        self.memory = self.memory.to(self.device) if self.memory is not None else None
        self.start = time.perf_counter()
        self.on_train_epoch_start()  # a resume in mid-epoch skips that hook

    def on_after_batch_transfer(self, batch: tuple, dataloader_idx: int) -> tuple:
        if not self.trainer.training:
            return batch
        return two_views(batch, self.memory, self.args, self.generator, self.mean_std, self.jitter), batch[1]

    def on_train_epoch_start(self) -> None:
        self.images, self.skipped, self.epoch_start = 0, 0, time.perf_counter()

    def training_step(self, batch: tuple, batch_idx: int) -> torch.Tensor | None:
        views, unreadable = batch
        for name in set(unreadable) - self.reported:
            print(f"warning: skipped unreadable image {name}", flush=True)
        self.reported |= set(unreadable)
        self.skipped += len(unreadable)
        if views is None:  # fewer than two readable images (under DDP, the other processes would wait)
            return None
        loss, projections = self.model(*views)
        if batch_idx % 20 == 0 and not torch.isfinite(loss):  # reading the GPU waits for it: not every step
            sys.exit(f"error: the loss diverged by step {self.global_step}: try a --lr below {self.args.lr}")
        projection_std = F.normalize(projections.float(), dim=1).std(dim=0).mean()  # 0: collapse
        self.images += len(views[0]) * self.trainer.world_size
        self.lr = self.lr_schedulers().get_last_lr()[0]
        speed = self.images / (time.perf_counter() - self.epoch_start)
        self.log("loss", loss, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=len(views[0]))
        self.log("projection_std", projection_std, on_step=False, on_epoch=True, sync_dist=True)
        if batch_idx % 20 == 0:
            self.log_dict({"lr": self.lr, "tau": self.tau, "img_s": speed}, prog_bar=True)
        return loss

    def on_train_batch_end(self, outputs, batch: tuple, batch_idx: int) -> None:
        if outputs is not None:  # after the optimiser's step, the target moves
            total_steps = self.trainer.estimated_stepping_batches
            self.tau = tau_at(self.global_step - 1, total_steps, self.args.tau_base)
            update_target(self.model, self.tau)

    def validation_step(self, batch: tuple, batch_idx: int, dataloader_idx: int = 0) -> None:
        if batch[0] is not None:  # the training images (the kNN memory bank), then the validation images
            images, labels = batch[0]
            outputs = features(self.model.encoder, images, self.args, self.mean_std)
            self.features[dataloader_idx].append(outputs)
            self.labels[dataloader_idx].append(labels)

    def on_validation_epoch_start(self) -> None:
        self.features, self.labels = [[], []], [[], []]

    def on_validation_epoch_end(self) -> None:
        bank, query = (self.all_gather(torch.cat(f)).reshape(-1, f[0].shape[1]) for f in self.features)
        bank_labels, labels = (self.all_gather(torch.cat(labels)).reshape(-1) for labels in self.labels)
        predicted = knn_predict(query, bank, bank_labels, int(bank_labels.max()) + 1, self.args.knn_k)
        self.knn_top1 = (predicted == labels).float().mean().item()
        self.log("knn_top1", self.knn_top1, sync_dist=True)

    def on_train_epoch_end(self) -> None:  # before the checkpoint of the epoch is saved
        metrics = self.trainer.callback_metrics
        if "loss_epoch" not in metrics:
            raise DataError(f"no readable image in --data {self.args.data}: every file failed to decode")
        loss, projection_std = metrics["loss_epoch"].item(), metrics["projection_std"].item()
        if not math.isfinite(loss):
            sys.exit(f"error: the loss diverged by step {self.global_step}: try a --lr below {self.args.lr}")
        epoch_time = time.perf_counter() - self.epoch_start
        row = {"epoch": self.current_epoch + 1, "step": self.global_step, "loss": loss, "lr": self.lr}
        count = torch.tensor(self.skipped, device=self.device)
        row |= {"tau": self.tau, "skipped_images": int(self.trainer.strategy.reduce(count, reduce_op="sum"))}
        row |= {"projection_std": projection_std}
        row |= {"images_per_s": self.images / epoch_time, "epoch_time_s": epoch_time}
        if self.knn_top1 is not None:
            row["knn_top1"], self.knn_top1 = self.knn_top1, None
        row["elapsed_s"] = time.perf_counter() - self.start
        self.print("  ".join(f"{key} {value:.4g}" for key, value in row.items()))
        if projection_std < 0.25 / math.sqrt(self.args.proj_dim):  # healthy: about 1 / sqrt(proj_dim)
            self.print(f"warning: the projections' std fell to {projection_std:.4f}: collapsing? Lower --lr")
        if self.trainer.is_global_zero:
            with open(Path(self.args.output_dir) / METRICS, "a") as file:
                file.write(json.dumps(row) + "\n")
        self.row = row


class SaveOnStop(pl.Callback):
    """After SIGTERM (Lightning stops after the step) or Ctrl-C, saves a checkpoint to resume from."""

    def on_exception(self, trainer: pl.Trainer, module: BYOLModule, exception: BaseException) -> None:
        finite = all(torch.isfinite(weight).all() for weight in module.parameters())  # not after a NaN
        if isinstance(exception, (SIGTERMException, KeyboardInterrupt)) and finite:
            trainer.save_checkpoint(Path(module.args.output_dir) / CHECKPOINT, weights_only=False)


class StopTogether(pl.Callback):
    """SIGTERM or Ctrl-C stop every process after the same step. Lightning's own handler broadcasts from
    inside the signal handler, which deadlocks DDP when the signal lands mid-collective (its issue 20806)."""

    def on_train_start(self, trainer: pl.Trainer, module: BYOLModule) -> None:
        self.signal = 0
        if threading.current_thread() is threading.main_thread():  # only the main thread receives signals
            for sig in (signal.SIGINT, signal.SIGTERM):  # replacing Lightning's handler (see above)
                signal.signal(sig, lambda signum, frame: setattr(self, "signal", signum))

    def on_train_batch_end(self, trainer: pl.Trainer, module: BYOLModule, outputs, batch, batch_idx) -> None:
        if batch_idx % 20 == 0 and trainer.strategy.reduce_boolean_decision(self.signal > 0, all=False):
            raise SIGTERMException(self.signal)


def train(args: argparse.Namespace) -> dict:
    """Train BYOL as the settings say; returns the last epoch's metrics."""
    pl.seed_everything(args.seed, verbose=False)
    output_dir, module = Path(args.output_dir), BYOLModule(args)
    checkpoint = ModelCheckpoint(output_dir, CHECKPOINT.removesuffix(".pt"), enable_version_counter=False)
    checkpoint.FILE_EXTENSION = ".pt"  # after each epoch, replacing the last one
    trainer = pl.Trainer(
        accelerator=args.accelerator,
        # the progress bar reads numbers back from the GPU, which waits for them: every 20 steps only
        callbacks=[checkpoint, StopTogether(), SaveOnStop(), TQDMProgressBar(refresh_rate=20)],
        strategy="ddp_notebook" if "ipykernel" in sys.modules else "ddp",  # Jupyter cannot start scripts
        devices=args.devices,
        num_nodes=args.num_nodes,
        sync_batchnorm=torch.cuda.is_available() and args.accelerator != "cpu",  # SyncBatchNorm needs GPUs
        precision="bf16-mixed" if args.precision == "bf16" else "32-true",
        benchmark=True,  # cuDNN picks its fastest convolutions for the fixed image size
        max_epochs=args.epochs,
        check_val_every_n_epoch=max(1, args.eval_every),
        num_sanity_val_steps=0,
        logger=CSVLogger(output_dir),
    )
    resume = output_dir / CHECKPOINT if args.resume and (output_dir / CHECKPOINT).exists() else None
    trainer.fit(module, ckpt_path=resume, weights_only=True)
    if trainer.is_global_zero:
        backbone = {name: tensor.cpu() for name, tensor in module.model.encoder.state_dict().items()}
        torch.save(backbone, output_dir / BACKBONE)
        print(f"saved the online encoder to {output_dir / BACKBONE}")
    return getattr(module, "row", {})  # in a notebook, DDP trains in forked processes, which keep theirs


def main(argv: list[str] | None = None) -> dict:
    try:
        return train(parse_args(argv))
    except DataError as error:
        print(f"byol.py: error: {error}", file=sys.stderr)
        sys.exit(2)
    except pickle.UnpicklingError as error:  # weights_only=True met a checkpoint that holds objects or code
        print(
            f"byol.py: error: refusing to load the checkpoint: {str(error).splitlines()[0]}", file=sys.stderr
        )
        sys.exit(2)
    except SIGTERMException as stopped:
        print("stopped by a signal: checkpoint saved, continue with --resume", file=sys.stderr)
        sys.exit(128 + (stopped.code or 15))  # the signal's number; SIGTERM's, 15, from Lightning


# %%
# Run
# ---
# In a notebook, give ``main`` the flags, e.g. ``main(["--data", "synthetic", "--epochs", "3"])``: a
# bare ``main()`` there would read the kernel's own command line.
if __name__ == "__main__":
    main()
