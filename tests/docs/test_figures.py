"""The figure generator of the "How BYOL works" page runs again, with or without CIFAR-10."""

import subprocess
import sys

from docs_support import DOCS
from PIL import Image


def test_augmentation_figures_are_redrawn_from_synthetic_images(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(DOCS / "make_augmentation_figure.py"),
            "--cifar10-train",
            str(tmp_path / "no-cifar10"),  # absent: the script's synthetic images instead
            "--output-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    for name in ["augmentation-steps.png", "augmentation-views.png"]:
        with Image.open(tmp_path / name) as image:
            assert image.format == "PNG" and image.width > 500 and image.height > 300, name
        # the committed figures, which the page shows, exist too
        assert (DOCS / "figures" / name).exists(), name
