"""Draw the augmentation figures of the "How BYOL works" page with the example script's own functions.

    python docs/make_augmentation_figure.py            # writes docs/figures/augmentation-*.png

It takes a few CIFAR-10 training images from ../shared/data/cifar10/train when that folder exists
(else from the script's synthetic set), and draws:

- augmentation-steps.png: what each step does on its own, at 96 px (where the blur is on);
- augmentation-views.png: pairs of views exactly as training makes them at the default 32 px.

The PNGs are committed, so the docs build needs neither the data nor PyTorch. Every random draw is
seeded: re-running the script on the same data and library versions redraws the same figures."""

import argparse
import importlib.util
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
SCRIPT = ROOT / "examples" / "pytorch" / "byol.py"
CIFAR10_TRAIN = ROOT.parent / "shared" / "data" / "cifar10" / "train"
CLASSES = ["airplane", "bird", "cat", "horse", "ship", "truck"]
SEED = 0


def load_example():
    """examples/pytorch/byol.py as a module (its main() does not run)."""
    spec = importlib.util.spec_from_file_location("byol_example", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def load_images(byol, cifar10_train: Path):
    """A few images as the script's in-memory source, and a description of where they come from."""
    if cifar10_train.is_dir():
        paths = [cifar10_train / name / "0000.jpg" for name in CLASSES]
        tensor = torch.stack([byol.TF.pil_to_tensor(byol.open_rgb(str(p))) for p in paths])
        return byol.TensorSource(tensor, list(range(len(CLASSES))), CLASSES), "CIFAR-10 training images"
    synthetic = byol.synthetic_images(len(CLASSES), SEED)
    return synthetic, "synthetic images (../shared/data/cifar10 not found)"


def as_image(x: torch.Tensor):
    """(3, H, W) in [0, 1] or uint8 -> (H, W, 3) float array for imshow."""
    if x.dtype == torch.uint8:
        x = x.float() / 255
    return x.clamp(0, 1).permute(1, 2, 0).numpy()


def draw_grid(rows: list[list[torch.Tensor]], titles: list[str], path: Path, note: str) -> None:
    fig, axes = plt.subplots(
        len(rows), len(titles), figsize=(1.25 * len(titles), 1.3 * len(rows) + 0.5), squeeze=False
    )
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            axis = axes[r][c]
            axis.imshow(as_image(image), interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if r == 0:
                axis.set_title(titles[c], fontsize=8)
    fig.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=7, color="#555555")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def steps_figure(byol, source, origin: str, path: Path, size: int = 96) -> None:
    """Each step alone, at the strongest setting it can draw, on the first crop of each image."""
    crops = torch.stack([byol.TwoViewDataset(source, size, SEED)[(0, i)][0] for i in range(len(source))])
    x = crops.float() / 255
    n = len(x)

    def factor(value: float) -> torch.Tensor:
        return torch.full((n,), value)

    aug = byol.VIEW_1
    originals = [
        byol.EvalDataset(source, size)[i][0] for i in range(len(source))
    ]  # resized, centre-cropped: what the kNN monitor sees
    columns = [
        ("original", torch.stack(originals).float() / 255),
        ("crop + flip", x),
        (f"brightness x{1 + aug.brightness:g}", byol.adjust_brightness(x, factor(1 + aug.brightness))),
        (f"contrast x{1 - aug.contrast:g}", byol.adjust_contrast(x, factor(1 - aug.contrast))),
        (f"saturation x{1 - aug.saturation:g}", byol.adjust_saturation(x, factor(1 - aug.saturation))),
        (f"hue {aug.hue:+g}", byol.adjust_hue(x, factor(aug.hue))),
        ("grayscale", byol.grayscale(x).expand_as(x)),
        (
            f"blur, sigma {2.0 * size / 224:.2g}",
            byol.gaussian_blur(x, factor(2.0 * size / 224), byol.blur_kernel_size(size)),
        ),
        ("solarize", byol.solarize(x)),
    ]
    rows = [[images[i] for _, images in columns] for i in range(n)]
    note = (
        f"{origin}; steps applied one at a time to the same {size}x{size} crop, each at the end of its "
        "range (examples/pytorch/byol.py)"
    )
    draw_grid(rows, [title for title, _ in columns], path, note)


def views_figure(byol, source, origin: str, path: Path, size: int = 32, pairs: int = 3) -> None:
    """Pairs of views as one training step makes them: crops in the workers, then augment()."""
    dataset = byol.TwoViewDataset(source, size, SEED)
    n = len(source)
    identity_mean, identity_std = torch.zeros(3), torch.ones(3)  # keep [0, 1] pixels for display
    generator = torch.Generator().manual_seed(SEED)
    blur = size > 32  # the script's default
    columns = [("original", torch.stack([byol.EvalDataset(source, size)[i][0] for i in range(n)]))]
    for epoch in range(pairs):
        crops = [dataset[(epoch, i)] for i in range(n)]
        view_1 = byol.augment(
            torch.stack([c[0] for c in crops]), byol.VIEW_1, generator, identity_mean, identity_std, blur
        )
        view_2 = byol.augment(
            torch.stack([c[1] for c in crops]), byol.VIEW_2, generator, identity_mean, identity_std, blur
        )
        columns += [(f"epoch {epoch + 1}: view 1", view_1), (f"epoch {epoch + 1}: view 2", view_2)]
    rows = [[images[i] for _, images in columns] for i in range(n)]
    note = (
        f"{origin}; {size}x{size} views as training makes them (blur {'on' if blur else 'off'}, "
        "as the script's default at this size), before normalisation"
    )
    draw_grid(rows, [title for title, _ in columns], path, note)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar10-train", type=Path, default=CIFAR10_TRAIN, help="CIFAR-10 image folder")
    parser.add_argument("--output-dir", type=Path, default=DOCS / "figures", help="where the PNGs go")
    args = parser.parse_args(argv)
    torch.manual_seed(SEED)
    byol = load_example()
    source, origin = load_images(byol, args.cifar10_train)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    steps_figure(byol, source, origin, args.output_dir / "augmentation-steps.png")
    views_figure(byol, source, origin, args.output_dir / "augmentation-views.png")


if __name__ == "__main__":
    main()
