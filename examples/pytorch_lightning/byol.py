"""
BYOL with PyTorch Lightning
===========================

Bootstrap Your Own Latent (BYOL, Grill et al. 2020, `arXiv 2006.07733
<https://arxiv.org/abs/2006.07733>`_) learns image representations without labels. Two augmented
views of each image go through two networks: the *online* network (encoder, projector, predictor)
learns to predict what the *target* network (encoder, projector) makes of the other view. The target
receives no gradients; its weights are a slow moving average of the online weights.

This is the plain-PyTorch example (``examples/pytorch/byol.py``) with its loop handed to Lightning: a
``LightningModule`` holds the networks and the step, and a ``Trainer`` runs the loop, bf16, the
progress bar, the logs, the checkpoints and the signals. The other sections copy the plain script's.
Run it as the plain one::

    python examples/pytorch_lightning/byol.py --data synthetic --input-size 16 --batch-size 32 \
        --lr 1.6 --epochs 2
    python examples/pytorch_lightning/byol.py --data cifar10  # CIFAR-10, on a GPU

It writes ``metrics.jsonl`` (a line per epoch), ``checkpoint-last.pt`` (a Lightning checkpoint, for
``--resume``), ``backbone.pt`` (the online encoder's weights) and ``lightning_logs/`` (Lightning's CSV
log, a version per run) to ``--output-dir``.
"""

# %%
# Settings
# --------
# Every setting is a flag that ``--help`` explains; the defaults suit 32x32 images on one GPU.

import argparse
import copy
import fcntl
import functools
import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

import kornia.augmentation as K
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import torchvision
import torchvision.transforms.v2 as T
from pytorch_lightning.callbacks import ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.plugins import TorchCheckpointIO
from pytorch_lightning.utilities.exceptions import SIGTERMException
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, Dataset, RandomSampler, TensorDataset


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help with each flag's default, except where the default is None: the flag's help says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is None else super()._get_help_string(action)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        "byol.py",
        description="Pre-trains a ResNet on images without labels with BYOL; a kNN classifier monitors it.",
        epilog="example: python byol.py --data synthetic --input-size 16 --batch-size 32 --lr 1.6 --epochs 2",
        formatter_class=HelpFormatter,
        allow_abbrev=False,  # a mistyped --epoch is an error, not --epochs
    )
    add = parser.add_argument_group("data").add_argument
    add("--data", default="cifar10", help="cifar10, synthetic or an image folder (class subfolders or flat)")
    add("--data-dir", default="data", help="where torchvision downloads CIFAR-10")
    add("--val", help="kNN monitor's images: a folder of --data's classes (default: the test split if any)")
    add("--synthetic-images", type=int, default=1024, help="how many images --data synthetic generates")
    add("--input-size", type=int, default=32, help="side of the views; 64 px or less: small-image stem")
    add("--num-workers", type=int, default=min(8, os.cpu_count() or 1), help="processes decoding files")
    add = parser.add_argument_group("model").add_argument
    add("--backbone", default="resnet18", choices=["resnet18", "resnet34", "resnet50"], help="the encoder")
    add("--hidden-dim", type=int, default=4096, help="hidden width of projector and predictor")
    add("--proj-dim", type=int, default=256, help="output width of projector and predictor")
    add = parser.add_argument_group("optimisation").add_argument
    add("--optimizer", default="sgd", choices=["sgd", "lars"], help="lars: for large batches, as solo-learn")
    add("--epochs", type=int, default=100, help="passes over the training images")
    add("--batch-size", type=int, default=512, help="images per step")
    add("--lr", type=float, help="peak learning rate for a batch of 256, scaled (default: sgd 0.2, lars 1.0)")
    add("--weight-decay", type=float, help="not on biases and norms (default: sgd 5e-4, lars 1e-5)")
    add("--warmup-epochs", type=float, help="learning rate warm-up (default: a tenth of --epochs, <= 10)")
    add("--tau-base", type=float, default=0.99, help="the target's moving-average rate, rising to 1")
    add = parser.add_argument_group("run").add_argument
    add("--eval-every", type=int, default=10, help="epochs between runs of the kNN monitor (0: never)")
    add("--knn-k", type=int, default=200, help="neighbours that vote in the kNN monitor")
    add("--output-dir", default="runs/pytorch_lightning", help="where metrics and checkpoints go")
    add("--resume", action="store_true", help="continue the run saved in --output-dir")
    add("--overwrite", action="store_true", help="replace the run saved in --output-dir")
    add("--seed", type=int, default=0, help="seed of every random draw")
    add("--precision", default="auto", choices=["auto", "bf16", "fp32"], help="auto: bf16 on recent GPUs")
    add("--accelerator", default="auto", help="Lightning's accelerator: auto, cpu, gpu...")
    args = parser.parse_args([] if argv is None and "ipykernel" in sys.modules else argv)  # not Jupyter's
    lars = args.optimizer == "lars"
    args.lr = (1.0 if lars else 0.2) if args.lr is None else args.lr
    args.weight_decay = (1e-5 if lars else 5e-4) if args.weight_decay is None else args.weight_decay
    args.warmup_epochs = min(10, args.epochs / 10) if args.warmup_epochs is None else args.warmup_epochs
    lowest = {"batch_size": 2, "num_workers": 0, "eval_every": 0, "seed": 0, "warmup_epochs": 0}
    for name in ["synthetic_images", "input_size", "hidden_dim", "proj_dim", "epochs", "knn_k", *lowest]:
        if not getattr(args, name) >= lowest.get(name, 1):  # batch_size: BatchNorm needs two images
            parser.error(f"--{name.replace('_', '-')} must be at least {lowest.get(name, 1)}")
    if not (args.lr > 0 and args.weight_decay >= 0 and 0 <= args.tau_base < 1 and args.seed < 2**32):
        parser.error("--lr must be > 0, --weight-decay >= 0, --tau-base in [0, 1) and --seed < 2**32")
    if args.warmup_epochs > args.epochs:
        parser.error(f"--warmup-epochs {args.warmup_epochs:g} is longer than --epochs {args.epochs}")
    if args.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        parser.error(f"--accelerator {args.accelerator}: PyTorch sees no CUDA GPU here")
    if args.precision == "auto":  # bf16 where the GPU computes in it natively (since Ampere)
        gpu = torch.cuda.is_available() if args.accelerator == "auto" else args.accelerator in ("gpu", "cuda")
        args.precision = "bf16" if gpu and torch.cuda.get_device_capability() >= (8, 0) else "fp32"
    return args


# %%
# Augmentations
# -------------
# BYOL learns what two views of an image share, so the augmentations decide what it learns. The
# paper's two views (its Table 6) are asymmetric: view 1 is always blurred, view 2 rarely, and only
# view 2 is sometimes solarized. kornia runs them on the training device, a batch at a time, each
# image with its own random parameters. Where kornia differs from the paper: ColorJitter applies its
# four adjustments in one random order per batch (the paper: per image); crops resize bilinearly.

VIEW_1, VIEW_2 = {"blur": 1.0, "solarize": 0.0}, {"blur": 0.1, "solarize": 0.2}  # probabilities


def augmentation(size: int, view: dict, mean_std: tuple, crop: bool) -> nn.Sequential:
    """One view of Table 6, for a batch of images in [0, 1]; crop=False: the images are crops already."""
    kernel = max(3, round(size / 10) // 2 * 2 + 1)  # about a tenth of the side: 23 px at 224 px
    sigma = (0.1 * size / 224, 2.0 * size / 224)  # the paper's 0.1-2 px at 224 px: at 32 px, barely a blur
    return nn.Sequential(
        K.RandomResizedCrop((size, size), scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) if crop else nn.Identity(),
        K.RandomHorizontalFlip(p=0.5),
        K.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1, p=0.8),
        K.RandomGrayscale(p=0.2),
        K.RandomGaussianBlur(kernel, sigma, p=view["blur"]),
        K.RandomSolarize(thresholds=0.0, additions=0.0, p=view["solarize"]),  # x above 0.5 becomes 1 - x
        K.Normalize(*mean_std),
    )


def two_views(batch, views: list[nn.Module], memory: torch.Tensor | None, device) -> list[torch.Tensor]:
    """Both views of a batch, on the device: a batch of indices of images in memory, cropped here, or of
    pairs of crops that DataLoader workers made of a folder's images."""
    crops = [memory[batch.to(device)]] * 2 if memory is not None else batch[0]
    crops = [crop.to(device, non_blocking=True).float() / 255 for crop in crops]
    # channels-last: the layout of the fastest convolutions, cuDNN's (tensor cores) and oneDNN's (CPUs)
    return [view(crop).contiguous(memory_format=torch.channels_last) for view, crop in zip(views, crops)]


# %%
# Model
# -----
# The encoder f is a torchvision ResNet without its classifier; on small images its ImageNet stem
# (7x7 stride-2 convolution and max-pool, which would shrink 32 px to 2 before the last stage) becomes
# one 3x3 convolution. The projector g and the predictor q are Linear -> BatchNorm -> ReLU -> Linear;
# only the online network has a predictor, and the target network receives no gradients.


def mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    layers = [nn.Linear(in_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.Linear(hidden_dim, out_dim))


class BYOL(nn.Module):
    def __init__(self, backbone: str, small_images: bool, hidden_dim: int, proj_dim: int) -> None:
        super().__init__()
        self.encoder = getattr(torchvision.models, backbone)()  # online f
        if small_images:  # 64 px or less
            self.encoder.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            self.encoder.maxpool = nn.Identity()
        feature_dim, self.encoder.fc = self.encoder.fc.in_features, nn.Identity()
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
# The loss compares the L2-normalised prediction with the target's projection of the other view,
# ``2 - 2 cos(p, z)``, with no gradient into the target; the two directions are *summed*. After each
# optimiser step the target moves towards the online network by ``1 - tau``, tau rising from
# ``--tau-base`` to 1 on a cosine. Only weights are averaged, not BatchNorm statistics.


def regression_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = F.normalize(prediction.float(), dim=-1)
    z = F.normalize(target.detach().float(), dim=-1)
    return (2 - 2 * (p * z).sum(dim=-1)).mean()


@torch.no_grad()
def update_target(model: BYOL, tau: float) -> None:
    online = [*model.encoder.parameters(), *model.projector.parameters()]
    target = [*model.target_encoder.parameters(), *model.target_projector.parameters()]
    for online_weight, target_weight in zip(online, target, strict=True):
        target_weight.lerp_(online_weight, 1 - tau)  # tau * target + (1 - tau) * online


def tau_at(step: int, total_steps: int, tau_base: float) -> float:
    return 1 - (1 - tau_base) * (math.cos(math.pi * step / total_steps) + 1) / 2


def lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """The learning rate's share of its peak: a linear warm-up, then a cosine decay to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / max(1, total_steps - warmup_steps)))


class LARS(torch.optim.Optimizer):
    """SGD with momentum whose update of each weight, g + wd w, is scaled by min(trust / lr, 1), the trust
    ratio being 0.02 |w| / |g + wd w| (solo-learn's LARS); groups with lars=False take plain SGD steps."""

    def __init__(self, params, lr: float, momentum: float = 0.9) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure=None):
        with torch.enable_grad():
            loss = closure() if closure is not None else None
        for group in self.param_groups:
            for weight in (w for w in group["params"] if w.grad is not None):
                update = weight.grad.add(weight, alpha=group["weight_decay"])
                if group["lars"]:  # a zero weight or update: a plain step
                    ratio = 0.02 * weight.norm() / update.norm() / group["lr"]
                    update *= torch.where(ratio.isfinite() & (ratio > 0), ratio.clamp(max=1), 1.0)
                velocity = self.state[weight].setdefault("momentum_buffer", torch.zeros_like(weight))
                weight.sub_(velocity.mul_(group["momentum"]).add_(update), alpha=group["lr"])
        return loss


def make_optimizer(model: BYOL, args: argparse.Namespace, peak_lr: float) -> torch.optim.Optimizer:
    """Weight decay and LARS's adaptation apply to weights, not to biases and norms (1-D)."""
    online = [p for p in model.parameters() if p.requires_grad]  # encoder, projector, predictor
    weights = {"params": [p for p in online if p.ndim > 1], "weight_decay": args.weight_decay, "lars": True}
    others = {"params": [p for p in online if p.ndim <= 1], "weight_decay": 0.0, "lars": False}
    optimizer = LARS if args.optimizer == "lars" else torch.optim.SGD
    return optimizer([weights, others], lr=peak_lr, momentum=0.9)


# %%
# Data
# ----
# CIFAR-10 (which torchvision downloads) and the synthetic images are held in memory as uint8
# tensors. A folder's files are listed by torchvision's ImageFolder, and decoded and cropped by
# DataLoader workers; an unreadable file is named and replaced by the next readable one.


class RunError(Exception):
    """A problem the user can fix (bad input, a busy or full output directory): shown as one line."""


class ImageFiles(torchvision.datasets.ImageFolder):
    """ImageFolder that also takes a flat folder (one class, named '': unlabelled), and that names an
    unreadable file and gives the next readable one instead."""

    def __init__(self, root: str, transform: T.Transform) -> None:
        try:
            super().__init__(root, transform)
        except FileNotFoundError as error:  # no such folder, or one without images
            raise RunError(f"no images in {root}: {error}") from None

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        if any(entry.is_dir() for entry in os.scandir(directory)):
            return super().find_classes(directory)
        return [""], {"": 0}

    def __getitem__(self, index: int) -> tuple:
        for _ in self.samples:
            try:
                return super().__getitem__(index)
            except Exception as error:  # Pillow raises many types for broken files
                print(f"warning: skipped unreadable image {self.samples[index][0]} ({error})", flush=True)
                index = (index + 1) % len(self.samples)
        raise RunError(f"no readable image in {self.root}: every file failed to decode")


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
    lit = (textures[labels, torch.arange(n)] > 0).unsqueeze(1)
    mosaic = F.interpolate(torch.rand(n, 3, 8, 8, generator=g), size=(size, size), mode="nearest")
    images = mosaic * (0.35 + 0.65 * lit) + 0.04 * torch.randn(n, 3, size, size, generator=g)
    dataset = TensorDataset((images.clamp(0, 1) * 255).round().to(torch.uint8), labels)
    dataset.classes = [str(label) for label in range(10)]
    return dataset


def cifar10(data_dir: str, train: bool) -> TensorDataset:
    try:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        with open(Path(data_dir) / "cifar-10.lock", "a") as lock:  # processes started together take turns:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the first downloads, the others find the files
            cifar = torchvision.datasets.CIFAR10(data_dir, train, download=True)
    except Exception as error:  # offline, or --data-dir not writable
        raise RunError(f"no CIFAR-10 ({error}); give it as folders instead: --data DIR --val DIR") from None
    dataset = TensorDataset(torch.tensor(cifar.data).permute(0, 3, 1, 2), torch.tensor(cifar.targets))
    dataset.classes = cifar.classes
    return dataset


def load_data(args: argparse.Namespace) -> tuple[Dataset, Dataset, Dataset | None, tuple]:
    """The training images, the kNN monitor's memory bank and queries (None: no monitor), mean and std."""
    crop = T.Compose([T.RandomResizedCrop(args.input_size), T.PILToTensor()])  # in the workers
    resize = T.Compose([T.Resize(args.input_size), T.CenterCrop(args.input_size), T.PILToTensor()])
    mean_std, val = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), None  # ImageNet's
    if args.data == "cifar10":
        train, val = cifar10(args.data_dir, train=True), cifar10(args.data_dir, train=False)
        bank, mean_std = train, ((0.491, 0.482, 0.447), (0.247, 0.243, 0.262))
    elif args.data == "synthetic":
        train = bank = synthetic_images(args.synthetic_images, args.seed)
        val = synthetic_images(max(1, args.synthetic_images // 4), args.seed + 1)
    else:
        train, bank = ImageFiles(args.data, functools.partial(twice, crop)), ImageFiles(args.data, resize)
        bank[0]  # names the unreadable files before the first readable one, and fails if there is none
    if args.val is not None:
        val = ImageFiles(args.val, resize)
        if val.classes != bank.classes or val.classes == [""]:
            raise RunError(f"--val {args.val} needs the class subfolders of --data {args.data}")
    if args.batch_size > len(train):
        raise RunError(f"--batch-size {args.batch_size} is larger than the {len(train)} training images")
    return train, bank, val if args.eval_every else None, mean_std


def twice(transform: T.Transform, image) -> tuple:
    return transform(image), transform(image)  # two independent random crops


def loader(images: Dataset, args: argparse.Namespace, batch_size: int, **options) -> DataLoader:
    """Batches of images; a folder's are decoded by worker processes (images in memory need none)."""
    workers = args.num_workers if isinstance(images, ImageFiles) else 0
    options |= {"num_workers": workers, "pin_memory": torch.cuda.is_available()}  # pinned: faster copies
    return DataLoader(images, batch_size, **options)


# %%
# Evaluation
# ----------
# A kNN classifier on frozen features tells whether the representation improves, without training
# anything: each validation image takes the class that its k most similar training images vote for,
# weighted by exp(cosine similarity / 0.1), on the online encoder's features.


def knn_predict(query, bank, bank_labels, num_classes: int, k: int, t: float = 0.1) -> torch.Tensor:
    """Weighted kNN: the class of each L2-normalised query feature, from its k nearest bank features.
    Queries go in chunks, so that a matrix of similarities holds about 2**26 numbers (256 MB) at most."""
    predictions = []
    for chunk in query.split(max(1, 2**26 // len(bank))):
        similarity, neighbours = (chunk @ bank.T).topk(min(k, len(bank)), dim=1)
        votes = torch.zeros(len(chunk), num_classes, device=chunk.device)
        predictions.append(votes.scatter_add_(1, bank_labels[neighbours], (similarity / t).exp()).argmax(1))
    return torch.cat(predictions)


@torch.no_grad()
def knn_accuracy(encoder: nn.Module, bank: Dataset, val: Dataset, args, mean_std, device) -> float:
    """The kNN monitor's top-1 accuracy; the images resized and centre-cropped to the input size."""
    encoder.eval()
    features, labels = [[], []], [[], []]  # of the memory bank, then of the queries
    for index, images in enumerate((bank, val)):
        for batch, batch_labels in loader(images, args, 512):
            x = T.CenterCrop(args.input_size)(T.Resize(args.input_size)(batch.to(device)))
            with torch.autocast(device.type, torch.bfloat16, enabled=args.precision == "bf16"):
                features[index].append(F.normalize(encoder(T.Normalize(*mean_std)(x / 255)).float(), dim=1))
            labels[index].append(batch_labels.to(device))
    encoder.train()
    bank_features, query, bank_labels, query_labels = (torch.cat(part) for part in (*features, *labels))
    predicted = knn_predict(query, bank_features, bank_labels, len(bank.classes), args.knn_k)
    return (predicted == query_labels).float().mean().item()


# %%
# Training
# --------
# ``BYOLModule``, a LightningModule, holds the networks and the step: it augments both views on the
# device once Lightning has moved the batch there, returns the loss, and moves the target after each
# optimiser step. The Trainer runs the rest: the loop, bf16, the learning-rate schedule, the logs and
# progress bar, and a checkpoint after every epoch, written atomically. Each epoch seeds its own random
# draws, so that a run resumed from an epoch's end goes on exactly as if never stopped. Ctrl-C or
# SIGTERM stop the run between two steps with a checkpoint; resumed from it, Lightning restarts the
# epoch's loader, so its remaining steps see the start of its order again.

CHECKPOINT, METRICS, BACKBONE, LOCK = "checkpoint-last.pt", "metrics.jsonl", "backbone.pt", ".lock"
# The settings that change what is learned: a run resumes only with the same ones.
RECIPE = "data synthetic_images input_size backbone hidden_dim proj_dim optimizer epochs batch_size lr"
RECIPE = [*RECIPE.split(), "weight_decay", "warmup_epochs", "tau_base", "seed", "train_images"]


def seed_epoch(seed: int, epoch: int, generators: tuple, rank: int = 0) -> None:
    """Seeds torch (kornia draws from it) and the loader's generators (the order, the workers' seeds) from
    the seed, the epoch and the process: a run resumed at an epoch's start needs no saved random state."""
    # one seed per run, epoch and process, in 32 bits: torch's CPU generator ignores a seed's higher bits
    torch.manual_seed(hash((seed, epoch, rank)) % 2**32)  # a tuple of ints hashes alike in every process
    for generator in generators:
        generator.manual_seed(torch.initial_seed())


def prepare_output_dir(args: argparse.Namespace):
    """Refuses a run in --output-dir that this one may neither continue nor replace; then makes the
    directory and locks it while this process runs (a second run refuses it), and checks it can write."""
    output_dir = Path(args.output_dir)
    found = [output_dir / name for name in (CHECKPOINT, METRICS, BACKBONE) if (output_dir / name).exists()]
    replace = found and not (args.resume and (output_dir / CHECKPOINT).exists())
    if replace and not args.overwrite:
        run = f"a run without {CHECKPOINT}" if args.resume else "a run"
        raise RunError(f"{output_dir} holds {run}: pass --resume, --overwrite or another --output-dir")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        lock = open(output_dir / LOCK, "a")  # noqa: SIM115 (the lock lasts as long as the file is open)
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for path in found if replace else []:  # --overwrite, once no other run uses the directory
            path.unlink()
        lock.truncate(0)
        lock.write(f"process {os.getpid()}\n")
        lock.flush()  # a full disk fails here, not after an epoch of training
    except BlockingIOError:
        owner = (output_dir / LOCK).read_text().strip() or "another run"
        raise RunError(f"{output_dir} is in use by {owner}: wait, or pass another --output-dir") from None
    except OSError as error:
        raise RunError(f"cannot write to --output-dir {output_dir}: {error.strerror}") from None
    return lock


def load_checkpoint(path: Path, settings: dict, key: str, **options) -> dict:
    """The checkpoint, if it is whole, holds only tensors and numbers (no code), and has this recipe;
    the metrics of later epochs, which a crash may have left, are forgotten."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, **options)
    except Exception:
        raise RunError(f"refusing to load {path}: damaged, or not a checkpoint of this script") from None
    if key not in checkpoint:
        raise RunError(f"cannot resume: {path} is not a checkpoint of this script")
    for name in (name for name in RECIPE if checkpoint[key].get(name) != settings[name]):
        raise RunError(f"cannot resume: the checkpoint was made with {name} {checkpoint[key].get(name)}")
    step, metrics = checkpoint.get("step", checkpoint.get("global_step")), path.parent / METRICS
    rows = metrics.read_text().splitlines() if metrics.exists() else []  # the last may be cut short
    rows = [row for row in rows if row.endswith("}") and json.loads(row)["step"] <= step]
    metrics.write_text("".join(f"{row}\n" for row in rows))
    return checkpoint


def save_atomically(state: dict, path: Path, weights: dict) -> None:
    """torch.save to a temporary file beside `path`, then a rename: a crash leaves the last one whole;
    and weights that are not all numbers (a divergence) do not replace good ones."""
    if not all(tensor.isfinite().all() for tensor in weights.values() if tensor.is_floating_point()):
        sys.exit(f"error: the weights diverged: {path} keeps the last good ones; try a lower --lr")
    try:
        torch.save(state, path.with_suffix(".tmp"))
        os.replace(path.with_suffix(".tmp"), path)
    except (OSError, RuntimeError) as error:  # torch's writer raises RuntimeError, naming no cause
        path.with_suffix(".tmp").unlink(missing_ok=True)
        reason = error.strerror if isinstance(error, OSError) else "torch's writer failed; is the disk full?"
        raise RunError(f"cannot write {path}: {reason}") from None


class BYOLModule(pl.LightningModule):
    def __init__(self, args: argparse.Namespace, data: tuple) -> None:
        super().__init__()
        self.args, (self.images, self.bank, self.val, self.mean_std) = args, data
        self.save_hyperparameters({**vars(args), "train_images": len(self.images)})  # saved in checkpoints
        self.model = BYOL(args.backbone, args.input_size <= 64, args.hidden_dim, args.proj_dim)
        self.model.to(memory_format=torch.channels_last)  # as the fastest convolutions like it
        in_memory = isinstance(self.images, TensorDataset)  # cropped on the device
        self.memory = self.images.tensors[0] if in_memory else None
        self.views = [augmentation(args.input_size, v, self.mean_std, in_memory) for v in (VIEW_1, VIEW_2)]
        self.generators = torch.Generator(), torch.Generator()  # the order, the workers' seeds

    def configure_optimizers(self) -> dict:
        peak_lr = self.args.lr * self.args.batch_size * self.trainer.world_size / 256  # the global batch
        optimizer = make_optimizer(self.model, self.args, peak_lr)
        total_steps = self.trainer.estimated_stepping_batches
        warmup_steps = round(self.args.warmup_epochs * total_steps / self.args.epochs)
        schedule = LambdaLR(optimizer, lambda step: lr_factor(step, total_steps, warmup_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def train_dataloader(self) -> DataLoader:
        self.on_train_epoch_start()  # Lightning draws the first epoch's workers' seeds here, before the hook
        indices = range(len(self.images))  # in memory: batches of indices
        options = {"sampler": RandomSampler(indices, generator=self.generators[0]), "drop_last": True}
        images = indices if self.memory is not None else self.images
        return loader(images, self.args, self.args.batch_size, generator=self.generators[1], **options)

    def on_fit_start(self) -> None:  # on the device; the views are no submodules, not in the checkpoint
        self.memory = self.memory.to(self.device) if self.memory is not None else None
        self.views = [view.to(self.device) for view in self.views]  # kornia draws on the device of its module
        self.seen, self.start = 0, time.perf_counter()
        self.epoch_start = self.start  # a resume in mid-epoch skips on_train_epoch_start

    def on_train_epoch_start(self) -> None:
        seed_epoch(self.args.seed, self.current_epoch, self.generators, self.global_rank)
        self.seen, self.epoch_start = 0, time.perf_counter()

    def on_after_batch_transfer(self, batch, dataloader_idx: int) -> list[torch.Tensor]:
        return two_views(batch, self.views, self.memory, self.device)

    def training_step(self, views: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, projections = self.model(*views)
        if batch_idx % 20 == 0 and not torch.isfinite(loss):  # reading the GPU waits for it: not every step
            sys.exit(f"error: the loss diverged by step {self.global_step}: try a --lr below {self.args.lr}")
        self.seen += len(views[0]) * self.trainer.world_size
        projection_std = F.normalize(projections.float(), dim=1).std(dim=0).mean()  # 0: a collapse
        self.log("loss", loss, prog_bar=True)  # this process's, for the progress bar
        metrics = {"loss_epoch": loss, "projection_std": projection_std}
        self.log_dict(metrics, on_step=False, on_epoch=True, sync_dist=True)  # averaged at the epoch's end
        return loss

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer, closure) -> None:
        self.lr = optimizer.param_groups[0]["lr"]
        super().optimizer_step(epoch, batch_idx, optimizer, closure)  # training_step, backward, the step
        self.tau = tau_at(self.global_step, self.trainer.estimated_stepping_batches, self.args.tau_base)
        update_target(self.model, self.tau)  # after every optimiser step, the target moves

    def on_train_epoch_end(self) -> None:  # before the epoch's checkpoint
        epoch, metrics = self.current_epoch + 1, self.trainer.callback_metrics
        seconds = time.perf_counter() - self.epoch_start
        loss, projection_std = metrics["loss_epoch"].item(), metrics["projection_std"].item()
        if not math.isfinite(loss):
            sys.exit(f"error: the loss diverged by step {self.global_step}: try a --lr below {self.args.lr}")
        row = dict(epoch=epoch, step=self.global_step, loss=loss, lr=self.lr, tau=self.tau)
        row |= dict(projection_std=projection_std, images_per_s=self.seen / seconds, epoch_time_s=seconds)
        if self.val is not None and epoch % self.args.eval_every == 0:  # in every process: they stay in step
            knn = knn_accuracy(self.model.encoder, self.bank, self.val, self.args, self.mean_std, self.device)
            row["knn_top1"] = knn
            self.log("knn_top1", knn, rank_zero_only=True)
        row["elapsed_s"] = time.perf_counter() - self.start
        self.print("  ".join(f"{key} {value:.4g}" for key, value in row.items()))
        if projection_std < 0.25 / math.sqrt(self.args.proj_dim):  # healthy: about 1 / sqrt(proj_dim)
            self.print(f"warning: the projections' std fell to {projection_std:.4f}: collapsing? Lower --lr")
        if self.trainer.is_global_zero:
            with open(Path(self.args.output_dir) / METRICS, "a") as metrics_file:
                metrics_file.write(json.dumps(row) + "\n")
        self.row = row


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, through save_atomically (Lightning's own copies across file systems)."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        save_atomically(checkpoint, Path(path), checkpoint.get("state_dict", checkpoint))  # or weights alone


class StopBetweenSteps(pl.Callback):
    """Ctrl-C or SIGTERM stop the run after the current step, target update included, and save a
    checkpoint (Lightning's own handling of Ctrl-C stops anywhere, also between step and update); in an
    epoch's last step, after that epoch's checkpoint."""

    def on_train_start(self, trainer: pl.Trainer, module: BYOLModule) -> None:
        self.signal, self.handlers = 0, {}  # the signal that asked to stop, and the handlers to put back
        if threading.current_thread() is threading.main_thread():  # only the main thread receives signals
            for sig in (signal.SIGINT, signal.SIGTERM):  # replacing Lightning's handler of SIGTERM
                self.handlers[sig] = signal.signal(sig, lambda signum, frame: setattr(self, "signal", signum))

    def on_train_batch_end(self, trainer: pl.Trainer, module, outputs, batch, batch_idx: int) -> None:
        if self.signal and batch_idx + 1 < trainer.num_training_batches:  # the last: after the epoch's end
            raise SIGTERMException(self.signal)

    def on_train_epoch_end(self, trainer: pl.Trainer, module: BYOLModule) -> None:
        if self.signal and trainer.current_epoch + 1 < trainer.max_epochs:  # not after the run's last epoch
            trainer.should_stop = True  # Lightning stops after this epoch's checkpoint

    def on_train_end(self, trainer: pl.Trainer, module: BYOLModule) -> None:
        for sig, handler in self.handlers.items():
            signal.signal(sig, handler)

    def on_exception(self, trainer: pl.Trainer, module: BYOLModule, exception: BaseException) -> None:
        self.on_train_end(trainer, module)
        if isinstance(exception, SIGTERMException):
            trainer.save_checkpoint(Path(module.args.output_dir) / CHECKPOINT)


def train(args: argparse.Namespace) -> dict:
    """Train BYOL as the settings say; returns the last epoch's metrics."""
    data, output_dir = load_data(args), Path(args.output_dir)  # checked before --overwrite deletes
    with prepare_output_dir(args):  # locked for as long as this run trains
        resume = output_dir / CHECKPOINT if args.resume and (output_dir / CHECKPOINT).exists() else None
        settings = {**vars(args), "train_images": len(data[0])}
        if resume:  # refused now, before Lightning starts (mmap: it reads only what the check needs)
            load_checkpoint(resume, settings, "hyper_parameters", mmap=True)
        pl.seed_everything(args.seed, verbose=False)  # the initial weights
        module = BYOLModule(args, data)
        every_epoch = {"save_on_train_epoch_end": True, "enable_version_counter": False}  # not kNN's only
        checkpoint = ModelCheckpoint(output_dir, CHECKPOINT.removesuffix(".pt"), **every_epoch)
        checkpoint.FILE_EXTENSION = ".pt"  # each epoch's replaces the last one
        stop = StopBetweenSteps()
        trainer = pl.Trainer(
            accelerator=args.accelerator,
            # the progress bar reads numbers back from the GPU, which waits for them: every 20 steps only
            callbacks=[checkpoint, stop, TQDMProgressBar(refresh_rate=20)],
            plugins=[AtomicCheckpointIO()],
            devices=1,
            precision="bf16-mixed" if args.precision == "bf16" else "32-true",
            benchmark=True,  # cuDNN picks its fastest convolutions for the fixed image size
            max_epochs=args.epochs,
            # each epoch's loader made after seed_epoch: a resumed run's too (Lightning makes the first
            # one before it restores the epoch from the checkpoint, so with epoch 1's seeds)
            reload_dataloaders_every_n_epochs=1,
            num_sanity_val_steps=0,
            logger=CSVLogger(output_dir),
        )
        trainer.fit(module, ckpt_path=resume, weights_only=True)
        if trainer.should_stop and stop.signal:  # at an epoch's end
            raise SIGTERMException(stop.signal)
        if trainer.is_global_zero:
            backbone = {name: tensor.cpu() for name, tensor in module.model.encoder.state_dict().items()}
            save_atomically(backbone, output_dir / BACKBONE, backbone)
            print(f"saved the online encoder to {output_dir / BACKBONE}")
        return getattr(module, "row", {})  # none: --resume of a run that had finished


def main(argv: list[str] | None = None) -> dict:
    try:
        return train(parse_args(argv))
    except RunError as error:
        print(f"byol.py: error: {error}", file=sys.stderr)
        sys.exit(2)
    except SIGTERMException as stopped:
        name = signal.Signals(stopped.code).name
        message = f"stopped by {name}: checkpoint saved; continue with --resume\n"
        sys.stderr.write(message)  # in one write: the processes of a run share stderr
        sys.exit(128 + stopped.code)


# %%
# Run
# ---
# In a notebook, a bare ``main()`` trains with the defaults (CIFAR-10); give it flags to change them,
# e.g. ``main(["--data", "synthetic", "--epochs", "3"])``.
if __name__ == "__main__":
    main()
