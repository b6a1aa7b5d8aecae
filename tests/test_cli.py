"""Bad input ends with one error line, exit status 2 and no traceback; --help explains every flag."""

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import DISTRIBUTED_SCRIPT, LIGHTNING_SCRIPT, PYTORCH_SCRIPT, run_script

TINY = ["--input-size", "8", "--hidden-dim", "16", "--proj-dim", "8", "--num-workers", "0", "--epochs", "1"]
SCRIPTS = ["byol", "lightning", "distributed"]  # the fixtures that load each script


def write_image_folder(root: Path, classes=("cats", "dogs"), per_class=6) -> Path:
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def assert_fails_with(result, *phrases: str) -> None:
    """Exit status 2 and one line on stderr, which says what went wrong (Lightning's start-up chatter too
    is kept out of the way of a refusal)."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("byol.py: error: "), result.stderr
    for phrase in phrases:
        assert phrase in line, line


def run(script, tmp_path, *args):
    return run_script(script, *args, "--output-dir", str(tmp_path / "out"), *TINY)


@pytest.mark.parametrize(
    "script", [PYTORCH_SCRIPT, LIGHTNING_SCRIPT, DISTRIBUTED_SCRIPT], ids=lambda p: p.parent.name
)
def test_missing_data_folder(script, tmp_path):
    result = run(script, tmp_path, "--data", str(tmp_path / "nowhere"))
    assert_fails_with(result, "no images in", "nowhere", "No such file")
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_fails_with(run(PYTORCH_SCRIPT, tmp_path, "--data", str(tmp_path / "empty")), "no images in")


@pytest.mark.parametrize(
    "script", [PYTORCH_SCRIPT, LIGHTNING_SCRIPT, DISTRIBUTED_SCRIPT], ids=lambda p: p.parent.name
)
def test_cifar10_offline_and_an_output_dir_that_is_a_file(script, tmp_path):
    """This machine is offline: the download fails, in one line (Lightning printed 85 lines of traceback).
    An --output-dir that names a file: one line too (the plain script raised FileExistsError)."""
    result = run(script, tmp_path, "--data", "cifar10", "--data-dir", str(tmp_path / "data"))
    assert_fails_with(result, "no CIFAR-10", "--data DIR --val DIR")
    (tmp_path / "file").write_text("not a directory")
    result = run_script(script, "--data", "synthetic", "--output-dir", str(tmp_path / "file"), *TINY)
    assert_fails_with(result, "cannot write to --output-dir", str(tmp_path / "file"))


def test_folder_without_a_readable_image(tmp_path):
    folder = tmp_path / "broken" / "class_a"
    folder.mkdir(parents=True)
    for name in ("zero.png", "text.jpg", "more.png", "last.png"):
        (folder / name).write_text("not an image")
    result = run(PYTORCH_SCRIPT, tmp_path, "--data", str(tmp_path / "broken"), "--batch-size", "2")
    assert_fails_with(result, "no readable image", "broken")
    assert all(name in result.stdout for name in ("zero.png", "text.jpg", "more.png", "last.png"))  # named


def test_missing_validation_folder(tmp_path):
    data = write_image_folder(tmp_path / "train")
    result = run(PYTORCH_SCRIPT, tmp_path, "--data", str(data), "--val", str(tmp_path / "val"))
    assert_fails_with(result, "no images in", "val")


@pytest.mark.parametrize("script", [PYTORCH_SCRIPT, LIGHTNING_SCRIPT], ids=lambda p: p.parent.name)
def test_batch_larger_than_the_data(script, tmp_path):
    result = run(script, tmp_path, "--data", "synthetic", "--synthetic-images", "32", "--batch-size", "64")
    assert_fails_with(result, "--batch-size 64", "32 training images")


def test_a_flat_folder_cannot_be_the_memory_bank_of_a_validation_folder(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for image in write_image_folder(tmp_path / "labelled").rglob("*.png"):
        (flat / f"{image.parent.name}-{image.name}").write_bytes(image.read_bytes())
    result = run(PYTORCH_SCRIPT, tmp_path, "--data", str(flat), "--val", str(tmp_path / "labelled"))
    assert_fails_with(result, "--val", "class subfolders of --data")
    assert (
        run(PYTORCH_SCRIPT, tmp_path, "--data", str(flat), "--batch-size", "4").returncode == 0
    )  # unlabelled
    result = run(PYTORCH_SCRIPT, tmp_path, "--data", "synthetic", "--val", str(flat))  # and in memory
    assert_fails_with(result, "--val", "class subfolders of --data")


def test_validation_classes_must_be_the_training_classes(tmp_path):
    train = write_image_folder(tmp_path / "train")
    val = write_image_folder(tmp_path / "val", classes=("cats", "birds"))
    assert_fails_with(
        run(PYTORCH_SCRIPT, tmp_path, "--data", str(train), "--val", str(val)), "class subfolders"
    )


def test_a_number_out_of_range_ends_the_command_line_with_one_line():
    result = run_script(PYTORCH_SCRIPT, "--epochs", "0")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "byol.py: error: --epochs must be at least 1"


@pytest.mark.parametrize(
    "flag, value",
    [("--epochs", "0"), ("--batch-size", "1"), ("--lr", "0"), ("--lr", "nan"), ("--input-size", "-3"),
     ("--tau-base", "1.5"), ("--synthetic-images", "zero"), ("--seed", "-1"), ("--num-workers", "-2"),
     ("--weight-decay", "-1"), ("--epoch", "3"), ("--optimizer", "adam"), ("--seed", str(2**32)),
     ("--warmup-epochs", "101")],
)  # fmt: skip
@pytest.mark.parametrize("script", SCRIPTS)
def test_nonsensical_numbers_and_unknown_flags(request, capsys, script, flag, value):
    with pytest.raises(SystemExit) as error:
        request.getfixturevalue(script).parse_args([flag, value])
    assert error.value.code == 2
    assert flag in capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("device", ["gpu", "cuda:7", "cuda", "tpu"])
def test_a_device_this_machine_lacks_is_refused(byol, capsys, device):
    with pytest.raises(SystemExit) as error:
        byol.parse_args(["--device", device])  # this machine has no CUDA GPU
    assert error.value.code == 2
    assert f"--device {device}: not cpu, nor one of the 0 CUDA GPUs here" in capsys.readouterr().err


GROUPS = {
    "data": ["--data", "--data-dir", "--val", "--synthetic-images", "--input-size", "--num-workers"],
    "model": ["--backbone", "--hidden-dim", "--proj-dim"],
    "optimisation": ["--optimizer", "--epochs", "--batch-size", "--lr", "--weight-decay", "--warmup-epochs"],
    "run": ["--eval-every", "--knn-k", "--output-dir", "--resume", "--overwrite", "--seed", "--precision"],
}
DEVICE_FLAGS = {"byol": ["--device"], "lightning": ["--accelerator"]}


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_explains_every_flag_in_groups_with_a_description_and_an_example(request, capsys, script):
    with pytest.raises(SystemExit) as done:
        request.getfixturevalue(script).parse_args(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "BYOL" in text.split("options:")[0]  # a description under the usage
    assert re.search(r"^example.*: python byol\.py --data ", text, flags=re.MULTILINE)
    groups = dict(re.findall(r"^(\w+):\n(.*?)(?=^\w+:|^example|\Z)", text, flags=re.MULTILINE | re.DOTALL))
    device_flags = DEVICE_FLAGS.get(script, ["--accelerator", "--devices", "--num-nodes"])
    for group, flags in {**GROUPS, "run": GROUPS["run"] + device_flags}.items():
        assert set(flags) <= set(re.findall(r"^  (--[a-z-]+)", groups[group], flags=re.MULTILINE)), group
    for block in re.split(r"\n(?=  -)", text.split("options:")[1])[1:]:
        block = block.split("\n\n")[0]  # not the next group's heading
        assert len(block.split(maxsplit=2)) == 3 or "--help" in block, block  # a flag and words about it
        assert "(default: None)" not in block and block.count("(default") <= 1, (
            block
        )  # one default, said once
    assert "lars" in text and "large batches" in text


def test_an_unreadable_file_in_a_good_folder_is_skipped_and_named(tmp_path):
    data = write_image_folder(tmp_path / "train", per_class=7)  # and the truncated file: 15, 3 batches of 5
    (data / "cats" / "truncated.png").write_bytes((data / "cats" / "0.png").read_bytes()[:60])
    result = run(
        PYTORCH_SCRIPT, tmp_path, "--data", str(data), "--val", str(data), "--batch-size", "5", "--knn-k", "5"
    )
    assert result.returncode == 0, result.stderr
    assert "skipped unreadable image" in result.stdout and "truncated.png" in result.stdout
    assert (tmp_path / "out" / "backbone.pt").exists()
