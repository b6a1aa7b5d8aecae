"""A random subset of an image folder, as a folder of symbolic links with the same class subfolders: the
benchmarks train and evaluate on subsets, which the example scripts take as any other folder.

    python benchmarks/subset.py CIFAR10_DIR/train runs/subsets/train-10k --images 10000

The subset is the one the scripts' former --train-images flag chose: the folder's image files sorted by
path, permuted with torch.randperm seeded with --seed, the first N kept. A subset that already exists
with the same files is left as it is.
"""

import argparse
import os
from pathlib import Path

import torch
from torchvision.datasets.folder import IMG_EXTENSIONS


def make_subset(source: Path, target: Path, images: int, seed: int = 0) -> Path:
    files = sorted(
        path for path in source.rglob("*") if path.is_file() and path.suffix.lower() in IMG_EXTENSIONS
    )
    if images > len(files):
        raise SystemExit(f"subset.py: error: --images {images}: {source} holds only {len(files)} images")
    chosen = [
        files[i] for i in torch.randperm(len(files), generator=torch.Generator().manual_seed(seed))[:images]
    ]
    links = {target / path.relative_to(source): path.resolve() for path in chosen}
    if target.exists() and {p for p in target.rglob("*") if p.is_symlink()} == set(links):
        return target
    for link, path in links.items():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        os.symlink(path, link)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="an image folder with one subfolder per class")
    parser.add_argument("target", type=Path, help="the folder of links to write")
    parser.add_argument("--images", type=int, required=True, help="how many images the subset holds")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random choice")
    args = parser.parse_args()
    print(make_subset(args.source, args.target, args.images, args.seed))


if __name__ == "__main__":
    main()
