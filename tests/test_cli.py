"""Bad input ends with one line that names the problem and a non-zero exit status, no traceback."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import PYTORCH_SCRIPT, run_script

TINY = ["--input-size", "8", "--hidden-dim", "16", "--proj-dim", "8", "--num-workers", "0", "--epochs", "1"]


def write_image_folder(root: Path, classes=("cats", "dogs"), per_class=6, size=12) -> Path:
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def assert_fails_with(result, *phrases: str, status: int | None = None) -> None:
    assert result.returncode != 0
    if status is not None:
        assert result.returncode == status
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


def test_missing_data_folder(tmp_path):
    missing = tmp_path / "nowhere"
    result = run_script(PYTORCH_SCRIPT, "--data", str(missing), "--output-dir", str(tmp_path / "out"), *TINY)
    assert_fails_with(result, "not found", str(missing))


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_script(
        PYTORCH_SCRIPT, "--data", str(tmp_path / "empty"), "--output-dir", str(tmp_path / "o")
    )
    assert_fails_with(result, "no readable image", "empty")


def test_folder_without_a_readable_image(tmp_path):
    folder = tmp_path / "broken" / "class_a"
    folder.mkdir(parents=True)
    (folder / "zero.png").write_bytes(b"")
    (folder / "text.jpg").write_text("this is not a JPEG")
    result = run_script(
        PYTORCH_SCRIPT, "--data", str(tmp_path / "broken"), "--output-dir", str(tmp_path / "o")
    )
    assert_fails_with(result, "no readable image")
    assert "zero.png" in result.stdout and "text.jpg" in result.stdout  # each bad file is named


def test_missing_validation_folder(tmp_path):
    data = write_image_folder(tmp_path / "train")
    result = run_script(
        PYTORCH_SCRIPT,
        "--data",
        str(data),
        "--val",
        str(tmp_path / "val"),
        "--output-dir",
        str(tmp_path / "o"),
        *TINY,
    )
    assert_fails_with(result, "not found", "val")


def test_batch_larger_than_the_dataset(tmp_path):
    result = run_script(
        PYTORCH_SCRIPT,
        "--data",
        "synthetic",
        "--synthetic-images",
        "32",
        "--batch-size",
        "64",
        "--output-dir",
        str(tmp_path / "o"),
        *TINY,
    )
    assert_fails_with(result, "--batch-size 64", "32 training images")


def test_more_training_images_asked_for_than_the_data_has(tmp_path):
    result = run_script(
        PYTORCH_SCRIPT,
        "--data",
        "synthetic",
        "--synthetic-images",
        "32",
        "--train-images",
        "50",
        "--output-dir",
        str(tmp_path / "o"),
        *TINY,
    )
    assert_fails_with(result, "--train-images 50", "only 32")


def test_flat_training_folder_cannot_serve_a_validation_folder(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for image in write_image_folder(tmp_path / "labelled").rglob("*.png"):
        (flat / f"{image.parent.name}-{image.name}").write_bytes(image.read_bytes())
    result = run_script(
        PYTORCH_SCRIPT,
        "--data",
        str(flat),
        "--val",
        str(tmp_path / "labelled"),
        "--output-dir",
        str(tmp_path / "o"),
        *TINY,
    )
    assert_fails_with(result, "has no class subfolders", "memory bank")


def test_synthetic_data_with_a_validation_folder_of_other_classes(tmp_path):
    val = write_image_folder(tmp_path / "val")
    result = run_script(
        PYTORCH_SCRIPT, "--data", "synthetic", "--val", str(val), "--output-dir", str(tmp_path / "o"), *TINY
    )
    assert_fails_with(result, "classes of --data and --val differ", "cats")


@pytest.mark.parametrize("name", ["gpu", "cuda:x"])
def test_unknown_device_name(tmp_path, name):
    result = run_script(
        PYTORCH_SCRIPT, "--data", "synthetic", "--device", name, "--output-dir", str(tmp_path)
    )
    assert_fails_with(result, f"--device {name}", "not a device name")


@pytest.mark.skipif(torch.cuda.device_count() > 1, reason="a machine with several GPUs has a cuda:1")
def test_gpu_beyond_those_present(tmp_path):
    result = run_script(
        PYTORCH_SCRIPT, "--data", "synthetic", "--device", "cuda:1", "--output-dir", str(tmp_path)
    )
    assert_fails_with(result, "--device cuda:1", f"sees {torch.cuda.device_count()} CUDA GPU(s)")


def test_resume_after_the_training_folder_changed_size(tmp_path):
    data = write_image_folder(tmp_path / "train", per_class=8)
    args = ["--data", str(data), "--batch-size", "4", "--output-dir", str(tmp_path / "o"), *TINY]
    assert run_script(PYTORCH_SCRIPT, *args).returncode == 0  # 16 images: 4 steps per epoch
    write_image_folder(tmp_path / "more", per_class=4)
    for image in (tmp_path / "more").rglob("*.png"):  # 24 images: 6 steps per epoch
        image.rename(data / image.parent.name / f"new-{image.name}")
    result = run_script(PYTORCH_SCRIPT, *args, "--resume")
    assert_fails_with(result, "cannot resume", "4 steps", "6", "number of training images changed")


def test_unknown_option(tmp_path):
    result = run_script(PYTORCH_SCRIPT, "--epoch", "3", "--output-dir", str(tmp_path))
    assert_fails_with(result, "unrecognized arguments", "--epoch", status=2)


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--epochs", "0"),
        ("--batch-size", "-4"),
        ("--lr", "0"),
        ("--input-size", "0"),
        ("--knn-t", "-1"),
        ("--synthetic-images", "zero"),
        ("--tau-base", "1.5"),
        ("--batch-size", "1"),  # BatchNorm needs two images: a batch of one would skip every step
        ("--seed", "-1"),
        ("--seed", "99999999999999999999"),  # beyond what torch.manual_seed takes
    ],
)
def test_non_positive_or_malformed_numbers(tmp_path, flag, value):
    result = run_script(PYTORCH_SCRIPT, flag, value, "--output-dir", str(tmp_path))
    assert_fails_with(result, flag, value, status=2)


def test_existing_run_is_not_overwritten(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1, "step": 1}\n')
    result = run_script(PYTORCH_SCRIPT, "--data", "synthetic", "--output-dir", str(tmp_path), *TINY)
    assert_fails_with(result, "already holds a run", "--resume", "--overwrite")
    assert (tmp_path / "metrics.jsonl").read_text() == '{"epoch": 1, "step": 1}\n'


def test_overwrite_with_a_mistyped_data_folder_keeps_the_old_run(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1, "step": 1}\n')
    result = run_script(
        PYTORCH_SCRIPT, "--data", str(tmp_path / "tarin"), "--output-dir", str(tmp_path), "--overwrite", *TINY
    )
    assert_fails_with(result, "not found", "tarin")
    assert (tmp_path / "metrics.jsonl").read_text() == '{"epoch": 1, "step": 1}\n'


def test_help_explains_every_flag():
    result = run_script(PYTORCH_SCRIPT, "--help")
    assert result.returncode == 0
    parser_flags = [word for word in result.stdout.split() if word.startswith("--")]
    for flag in (
        "--data",
        "--val",
        "--input-size",
        "--backbone",
        "--epochs",
        "--lr",
        "--tau-base",
        "--output-dir",
        "--resume",
        "--eval-every",
        "--seed",
        "--checkpoint-every",
    ):
        assert flag in parser_flags
    # every option line has a help text after it (argparse prints the default too)
    assert result.stdout.count("(default:") >= 25


def test_unreadable_file_in_a_good_folder_is_skipped_and_named(tmp_path):
    data = write_image_folder(tmp_path / "train", per_class=8)
    (data / "cats" / "truncated.png").write_bytes((data / "cats" / "0.png").read_bytes()[:60])
    result = run_script(
        PYTORCH_SCRIPT,
        "--data",
        str(data),
        "--val",
        str(data),
        "--batch-size",
        "8",
        "--output-dir",
        str(tmp_path / "o"),
        *TINY,
    )
    assert result.returncode == 0, result.stderr
    assert "truncated.png" in result.stdout
    assert (tmp_path / "o" / "backbone.pt").exists()
