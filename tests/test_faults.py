"""Crashes, signals, divergence, damaged checkpoints, busy or full output directories and bad files: each
script keeps its work, and says what happened in one line."""

import fcntl
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import LIGHTNING_SCRIPT, PYTORCH_SCRIPT, ROOT

RUN = (
    "--data synthetic --synthetic-images 128 --input-size 16 --batch-size 16 --hidden-dim 64 "
    "--proj-dim 32 --eval-every 0 --num-workers 1"
).split()
SCRIPTS = [PYTORCH_SCRIPT, LIGHTNING_SCRIPT]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def start(output_dir: Path, *extra: str, script: Path = PYTORCH_SCRIPT, **options) -> subprocess.Popen:
    command = [sys.executable, str(script), *RUN, "--output-dir", str(output_dir), *extra]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=ENV, **options
    )


def checkpoint_step(output_dir: Path) -> int:
    try:
        state = torch.load(output_dir / "checkpoint-last.pt", weights_only=True)
    except Exception:  # not written yet
        return -1
    return state.get("step", state.get("global_step"))


def wait_for_step(process: subprocess.Popen, output_dir: Path, step: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while checkpoint_step(output_dir) < step:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run saved no checkpoint in time"
        time.sleep(0.05)


def error_line(stderr: str) -> str:
    """The one line a refusal prints (a Lightning run that started may have logged before it)."""
    assert "Traceback" not in stderr, stderr
    return stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    output_dir = tmp_path_factory.mktemp("uninterrupted")
    process = start(output_dir, "--epochs", "3")
    assert process.wait(timeout=300) == 0, process.communicate()
    return output_dir


def test_sigkill_then_resume_equals_the_uninterrupted_run(uninterrupted, tmp_path):
    process = start(tmp_path, "--epochs", "3")
    wait_for_step(process, tmp_path, 8)  # the first epoch's checkpoint (8 steps an epoch)
    time.sleep(0.5)  # well into the second epoch
    process.kill()
    process.wait()
    resumed = start(tmp_path, "--epochs", "3", "--resume")
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    assert "resumed from" in stdout
    straight = torch.load(uninterrupted / "checkpoint-last.pt", weights_only=True)["model"]
    ours = torch.load(tmp_path / "checkpoint-last.pt", weights_only=True)["model"]
    assert all(torch.equal(tensor, straight[name]) for name, tensor in ours.items())
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2, 3]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_a_checkpoint_and_exits_non_zero(tmp_path, sig):
    process = start(tmp_path, "--epochs", "20")
    wait_for_step(process, tmp_path, 8)
    process.send_signal(sig)
    stderr = process.communicate(timeout=120)[1]
    assert process.returncode == 128 + sig
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"stopped by {signal.Signals(sig).name}" in lines[0] and "--resume" in lines[0]
    assert checkpoint_step(tmp_path) == int(lines[0].split(" at step ")[1].split(":")[0]) >= 8
    assert not (tmp_path / "backbone.pt").exists()


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(byol, tmp_path, monkeypatch):
    original = byol.BYOL.forward
    calls = iter(range(10**6))

    def diverging(self, *views):
        loss, projections = original(self, *views)
        return (loss * float("nan") if next(calls) >= 11 else loss), projections

    monkeypatch.setattr(byol.BYOL, "forward", diverging)
    with pytest.raises(SystemExit) as stopped:
        byol.main([*RUN, "--epochs", "3", "--num-workers", "0", "--output-dir", str(tmp_path)])
    assert "diverged by step 16" in str(stopped.value.code) and "--lr" in str(stopped.value.code)
    checkpoint = torch.load(tmp_path / "checkpoint-last.pt", weights_only=True)
    assert checkpoint["step"] == 8  # the end of epoch 1: nothing after the divergence was saved
    assert all(torch.isfinite(t).all() for t in checkpoint["model"].values() if t.is_floating_point())


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.parent.name)
def test_a_real_divergence_never_replaces_a_good_checkpoint(script, tmp_path):
    """--lr 1e6: the loss can stay finite while BatchNorm's statistics are already inf (the run used to
    save such a checkpoint, then stop)."""
    process = start(tmp_path, "--epochs", "2", "--lr", "1e6", script=script)
    stderr = process.communicate(timeout=300)[1]
    assert process.returncode == 1 and "diverged" in error_line(stderr)
    if (tmp_path / "checkpoint-last.pt").exists():
        state = torch.load(tmp_path / "checkpoint-last.pt", weights_only=True)
        weights = state.get("model") or state["state_dict"]
        assert all(tensor.isfinite().all() for tensor in weights.values() if tensor.is_floating_point())


class Payload:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.path}",))


DAMAGE = {
    "pickled code": lambda path: torch.save({"model": Payload(path.parent / "pwned")}, path),
    "truncated": lambda path: path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2]),
    "random bytes": lambda path: path.write_bytes(np.random.default_rng(0).bytes(4096)),
    "empty": lambda path: path.write_bytes(b""),
}


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("script", ["byol", "lightning"])
def test_a_damaged_checkpoint_is_named_in_one_line(request, uninterrupted, tmp_path, capsys, script, damage):
    """Never torch's advice to load it with weights_only=False, the one thing not to do; no code runs."""
    (tmp_path / "checkpoint-last.pt").write_bytes((uninterrupted / "checkpoint-last.pt").read_bytes())
    DAMAGE[damage](tmp_path / "checkpoint-last.pt")
    with pytest.raises(SystemExit) as error:
        request.getfixturevalue(script).main(
            [*RUN, "--epochs", "3", "--output-dir", str(tmp_path), "--resume"]
        )
    [line] = capsys.readouterr().err.strip().splitlines()
    assert error.value.code == 2 and "weights_only" not in line
    path = tmp_path / "checkpoint-last.pt"
    assert line == f"byol.py: error: refusing to load {path}: damaged, or not a checkpoint of this script"
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("second", SCRIPTS, ids=lambda path: path.parent.name)
def test_a_second_run_on_a_busy_output_dir_refuses_at_once(tmp_path, second):
    first = start(tmp_path, "--epochs", "50")
    try:
        assert "images" in first.stdout.readline()  # it holds the directory and trains
        started = time.monotonic()
        refused = start(tmp_path, "--epochs", "50", "--overwrite", script=second)
        stderr = refused.communicate(timeout=120)[1]
        assert refused.returncode == 2 and time.monotonic() - started < 60
        assert error_line(stderr) == (
            f"byol.py: error: {tmp_path} is in use by process {first.pid}: wait, or pass another --output-dir"
        )
        assert first.poll() is None  # the first run goes on, its files untouched
    finally:
        first.kill()
        first.wait()


def file_size_limit(size: int):
    """A full disk, as a process sees it: writing past `size` bytes fails with EFBIG (Python ignores
    SIGXFSZ)."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.parent.name)
def test_a_full_disk_is_refused_before_training(tmp_path, script):
    process = start(tmp_path, "--epochs", "3", script=script, preexec_fn=file_size_limit(8))  # Python needs 4
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 2 and "epoch" not in stdout.lower()  # not after an epoch of training
    assert stderr.strip().splitlines() == [
        f"byol.py: error: cannot write to --output-dir {tmp_path}: File too large"
    ]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.parent.name)
def test_a_disk_that_fills_up_ends_the_run_in_one_line_and_leaves_no_temporary_file(tmp_path, script):
    process = start(tmp_path, "--epochs", "3", script=script, preexec_fn=file_size_limit(2**20))
    stderr = process.communicate(timeout=300)[1]
    assert process.returncode == 2
    assert error_line(stderr).startswith(f"byol.py: error: cannot write {tmp_path / 'checkpoint-last.pt'}: ")
    assert not list(tmp_path.glob("*.tmp")) and not (tmp_path / "checkpoint-last.pt").exists()


def write_folder(folder: Path, per_class: int = 8, size: int = 20) -> Path:
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
                folder / name / f"{i}.jpg"
            )
    return folder


def test_bad_and_unusual_files_in_an_image_folder(tmp_path):
    folder = write_folder(tmp_path / "data")
    rng = np.random.default_rng(0)
    a = folder / "a"
    Image.fromarray(rng.integers(0, 256, (20, 20), dtype=np.uint8)).save(a / "grey.png")  # read as RGB
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).convert("P").save(a / "palette.gif")
    Image.fromarray(rng.integers(0, 256, (20, 20, 4), dtype=np.uint8), "RGBA").save(a / "alpha.png")
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).convert("CMYK").save(a / "cmyk.jpg")
    (a / "empty.png").write_bytes(b"")
    (a / "text.jpg").write_text("not an image")
    whole = (a / "0.jpg").read_bytes()
    (a / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (a / "notes.txt").write_text("not an image file: ignored")
    command = ["--data", str(folder), "--val", str(folder), "--input-size", "16", "--batch-size", "4"]
    command += ["--epochs", "2", "--hidden-dim", "32", "--proj-dim", "16", "--num-workers", "1"]
    command += ["--knn-k", "5", "--eval-every", "1", "--output-dir", str(tmp_path / "out")]
    result = subprocess.run(
        [sys.executable, str(PYTORCH_SCRIPT), *command], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    for name in ("empty.png", "text.jpg", "truncated.jpg"):  # named when met, and the next file read instead
        assert f"skipped unreadable image {a / name}" in result.stdout, name
    for name in ("grey.png", "palette.gif", "alpha.png", "cmyk.jpg", "notes.txt"):
        assert name not in result.stdout
    rows = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2] and all(0 <= row["knn_top1"] <= 1 for row in rows)


def test_pillows_pixel_limit_off_reads_every_image(byol, tmp_path, monkeypatch):
    # Image.MAX_IMAGE_PIXELS = None is the usual way to read very large images
    monkeypatch.setattr(byol.torchvision.datasets.folder.Image, "MAX_IMAGE_PIXELS", None)
    folder = write_folder(tmp_path / "data", per_class=4)
    images = byol.ImageFiles(str(folder), byol.T.PILToTensor())
    assert [images[i][1] for i in range(len(images))] == [label for _, label in images.samples]


def test_main_runs_outside_the_main_thread(byol, tmp_path):
    result = {}
    worker = threading.Thread(
        target=lambda: result.update(
            byol.main([*RUN, "--epochs", "1", "--num-workers", "0", "--output-dir", str(tmp_path)])
        )
    )
    worker.start()
    worker.join(timeout=300)
    assert result["epoch"] == 1 and (tmp_path / "backbone.pt").exists()


def test_processes_started_together_download_cifar10_one_after_the_other(byol, tmp_path, monkeypatch):
    """torchrun starts every process at once; each writing the same download would corrupt it. A process
    waits for the one that holds the data folder's lock, then finds the files."""
    downloads = []

    class CIFAR10:  # torchvision's, offline: records when it is asked to download
        def __init__(self, root: str, train: bool, download: bool) -> None:
            downloads.append(root)
            self.data, self.targets, self.classes = np.zeros((2, 32, 32, 3), np.uint8), [0, 1], ["a", "b"]

    monkeypatch.setattr(byol.torchvision.datasets, "CIFAR10", CIFAR10)
    with open(tmp_path / "cifar-10.lock", "a") as lock:  # another process is downloading
        fcntl.flock(lock, fcntl.LOCK_EX)
        process = threading.Thread(target=byol.cifar10, args=(str(tmp_path), True))
        process.start()
        process.join(timeout=1)
        assert process.is_alive() and downloads == []  # it waits
    process.join(timeout=30)
    assert downloads == [str(tmp_path)]
