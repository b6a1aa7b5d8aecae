"""Draw the augmentation figures of the "How BYOL works" page with the example script's own augmentations.

    python docs/make_augmentation_figure.py --cifar10-train CIFAR10_DIR/train  # docs/figures/*.png

It takes a few CIFAR-10 training images from --cifar10-train, an image folder of CIFAR-10, when given
(else from the script's synthetic set), and draws, with the kornia modules that the script's
`augmentation` builds:

- augmentation-steps.png: what each step does on its own, at 96 px (where the scaled blur is visible):
  each module of a view given the end of its range for every image;
- augmentation-views.png: pairs of views as training makes them at the default 32 px, by the script's
  `two_views` from images in memory (as for --data cifar10), without the normalisation.

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
UNNORMALISED = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # a mean and std that leave the images as they are


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
        images = [TF.pil_to_tensor(Image.open(path).convert("RGB")) for path in paths]
        return torch.stack(images), "CIFAR-10 training images"
    return byol.synthetic_images(len(CLASSES), SEED).tensors[0], "synthetic images (no CIFAR-10 folder given)"


def as_image(x: torch.Tensor):
    """(3, H, W) in [0, 1] or uint8 -> (H, W, 3) float array for imshow."""
    if x.dtype == torch.uint8:
        x = x.float() / 255
    return x.clamp(0, 1).permute(1, 2, 0).contiguous().numpy()


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


def alone(module, x: torch.Tensor, **values: float) -> torch.Tensor:
    """A kornia module applied to every image of x, with the named parameters set to the given values
    (the others as drawn): one step alone, at a chosen point of its range."""
    params = module.forward_parameters(x.shape)
    params["batch_prob"] = torch.ones_like(params["batch_prob"])  # every image, whatever the module's p
    for name, value in values.items():
        params[name] = torch.full_like(params[name], value)
    return module(x, params=params)


def steps_figure(byol, images: torch.Tensor, origin: str, path: Path, size: int = 96) -> None:
    """Each step of view 1 alone, at the end of its range, on one crop of each image."""
    steps = byol.augmentation(size, byol.VIEW_1, UNNORMALISED, crop=True)
    crop, flip, jitter, grayscale, blur = steps[:5]
    solarize = byol.augmentation(size, byol.VIEW_2, UNNORMALISED, crop=False)[5]  # view 1 never solarizes
    x = flip(crop(images.float() / 255))  # as drawn
    neutral = {"brightness_factor": 1.0, "contrast_factor": 1.0, "saturation_factor": 1.0, "hue_factor": 0.0}
    brightness, contrast = 1 + jitter.brightness, 1 - jitter.contrast
    saturation, hue = 1 - jitter.saturation, jitter.hue
    sigma = blur._param_generator.sigma[1]  # the largest sigma it draws (kornia keeps the range there)
    columns = [
        ("original", TF.center_crop(TF.resize(images, size), size)),  # what the kNN monitor sees
        ("crop + flip", x),
        (f"brightness x{brightness:g}", alone(jitter, x, **neutral | {"brightness_factor": brightness})),
        (f"contrast x{contrast:g}", alone(jitter, x, **neutral | {"contrast_factor": contrast})),
        (f"saturation x{saturation:g}", alone(jitter, x, **neutral | {"saturation_factor": saturation})),
        (f"hue {hue:+g}", alone(jitter, x, **neutral | {"hue_factor": hue})),
        ("grayscale", alone(grayscale, x)),
        (f"blur, sigma {sigma:.2g}", alone(blur, x, sigma=sigma)),
        ("solarize", alone(solarize, x)),
    ]
    rows = [[column[i] for _, column in columns] for i in range(len(x))]
    note = f"{origin}; each step alone on the same {size}x{size} crop, at the end of its range"
    draw_grid(rows, [title for title, _ in columns], path, note)


def views_figure(byol, images: torch.Tensor, origin: str, path: Path, size: int = 32, pairs: int = 3) -> None:
    """Pairs of views as training makes them from images in memory: crops and the rest by two_views."""
    views = [byol.augmentation(size, view, UNNORMALISED, crop=True) for view in (byol.VIEW_1, byol.VIEW_2)]
    memory, indices = (
        TF.resize(images, size) if images.shape[-1] != size else images,
        torch.arange(len(images)),
    )
    columns = [("original", memory)]
    for pair in range(pairs):
        view_1, view_2 = byol.two_views(indices, views, memory, torch.device("cpu"))
        columns += [(f"pair {pair + 1}: view 1", view_1), (f"pair {pair + 1}: view 2", view_2)]
    rows = [[column[i] for _, column in columns] for i in range(len(images))]
    note = f"{origin}; {size}x{size} views as training makes them, before the normalisation"
    draw_grid(rows, [title for title, _ in columns], path, note)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cifar10-train", type=Path, default=Path("no-cifar10"), help="CIFAR-10 image folder"
    )
    parser.add_argument("--output-dir", type=Path, default=DOCS / "figures", help="where the PNGs go")
    args = parser.parse_args(argv)
    byol = load_example()
    images, origin = load_images(byol, args.cifar10_train)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)  # kornia draws from torch's generator
    steps_figure(byol, images, origin, args.output_dir / "augmentation-steps.png")
    torch.manual_seed(SEED)
    views_figure(byol, images, origin, args.output_dir / "augmentation-views.png")


if __name__ == "__main__":
    main()
