"""Draw the augmentation figures of the "How BYOL works" page with the example script's own functions.

    python docs/make_augmentation_figure.py            # writes docs/figures/augmentation-*.png

It takes a few CIFAR-10 training images from --cifar10-train, an image folder of CIFAR-10, when given
(else from the script's synthetic set), and draws:

- augmentation-steps.png: what each step does on its own, at 96 px (where the blur is on);
- augmentation-views.png: pairs of views as training makes them at the default 32 px.

The PNGs are committed, so the docs build needs neither the data nor PyTorch. Every random draw is
seeded: re-running the script on the same data and library versions redraws the same figures."""

import argparse
import importlib.util
import sys
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
SCRIPT = ROOT / "examples" / "pytorch" / "byol.py"
CLASSES = ["airplane", "bird", "cat", "horse", "ship", "truck"]
SEED = 0


def load_example():
    """examples/pytorch/byol.py as a module (its main() does not run)."""
    spec = importlib.util.spec_from_file_location("byol_example", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def load_images(byol, cifar10_train: Path) -> tuple[torch.Tensor, str]:
    """A few images as uint8 (N, 3, H, W), and a description of where they come from."""
    if cifar10_train.is_dir():
        paths = [cifar10_train / name / "0000.jpg" for name in CLASSES]
        return torch.stack(
            [TF.pil_to_tensor(Image.open(p).convert("RGB")) for p in paths]
        ), "CIFAR-10 training images"
    return byol.synthetic_images(len(CLASSES), SEED).tensors[0], "synthetic images (no CIFAR-10 folder given)"


def as_image(x: torch.Tensor):
    """(3, H, W) in [0, 1] or uint8 -> (H, W, 3) float array for imshow."""
    if x.dtype == torch.uint8:
        x = x.float() / 255
    return x.clamp(0, 1).permute(1, 2, 0).numpy()


def draw_grid(rows: list[list[torch.Tensor]], titles: list[str], path: Path, note: str) -> None:
    fig, axes = plt.subplots(
        len(rows), len(titles), figsize=(0.95 * len(titles), 1.05 * len(rows) + 1.0), squeeze=False
    )
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            axis = axes[r][c]
            axis.imshow(as_image(image), interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if r == 0:
                axis.set_title(titles[c].replace(" ", "\n", 1), fontsize=10)  # readable as shown
    fig.text(0.5, 0.005, textwrap.fill(note, 90), ha="center", va="bottom", fontsize=10, color="#444444")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def steps_figure(byol, images: torch.Tensor, origin: str, path: Path, size: int = 96) -> None:
    """Each step alone, at the strongest setting it can draw, on one crop of each image."""
    x = byol.crop_on_device(images.float() / 255, size, torch.Generator().manual_seed(SEED))
    n, jitter = len(x), byol.JITTER

    def factor(value: float) -> torch.Tensor:
        return torch.full((n, 1, 1, 1), value)

    brightness, contrast, saturation, hue = byol.ADJUSTMENTS
    columns = [
        ("original", TF.center_crop(TF.resize(images, size), size)),  # what the kNN monitor sees
        ("crop + flip", x),
        (f"brightness x{1 + jitter['brightness']:g}", brightness(x, factor(1 + jitter["brightness"]))),
        (f"contrast x{1 - jitter['contrast']:g}", contrast(x, factor(1 - jitter["contrast"]))),
        (f"saturation x{1 - jitter['saturation']:g}", saturation(x, factor(1 - jitter["saturation"]))),
        (f"hue {jitter['hue']:+g}", hue(x, factor(jitter["hue"]))),
        ("grayscale", TF.rgb_to_grayscale(x, 3)),
        (f"blur, sigma {2.0 * size / 224:.2g}", byol.gaussian_blur(x, torch.full((n,), 2.0 * size / 224))),
        ("solarize", torch.where(x < 0.5, x, 1 - x)),
    ]
    rows = [[column[i] for _, column in columns] for i in range(n)]
    note = f"{origin}; each step alone on the same {size}x{size} crop, at the end of its range"
    draw_grid(rows, [title for title, _ in columns], path, note)


def views_figure(byol, images: torch.Tensor, origin: str, path: Path, size: int = 32, pairs: int = 3) -> None:
    """Pairs of views as training makes them from images in memory: crops on the device, then augment()."""
    generator = torch.Generator().manual_seed(SEED)
    blur = size > 32  # the script's default
    columns = [("original", TF.center_crop(TF.resize(images, size), size))]
    for pair in range(pairs):
        crops = [byol.crop_on_device(images.float() / 255, size, generator) for _ in range(2)]
        views = [
            byol.augment(crop, view, generator, blur) for crop, view in zip(crops, (byol.VIEW_1, byol.VIEW_2))
        ]
        columns += [(f"pair {pair + 1}: view 1", views[0]), (f"pair {pair + 1}: view 2", views[1])]
    rows = [[column[i] for _, column in columns] for i in range(len(images))]
    note = (
        f"{origin}; {size}x{size} views as training makes them (blur {'on' if blur else 'off'}), unnormalised"
    )
    draw_grid(rows, [title for title, _ in columns], path, note)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cifar10-train", type=Path, default=Path("no-cifar10"), help="CIFAR-10 image folder"
    )
    parser.add_argument("--output-dir", type=Path, default=DOCS / "figures", help="where the PNGs go")
    args = parser.parse_args(argv)
    torch.manual_seed(SEED)
    byol = load_example()
    images, origin = load_images(byol, args.cifar10_train)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    steps_figure(byol, images, origin, args.output_dir / "augmentation-steps.png")
    views_figure(byol, images, origin, args.output_dir / "augmentation-views.png")


if __name__ == "__main__":
    main()
