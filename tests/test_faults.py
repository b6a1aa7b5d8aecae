"""Crashes, signals, divergence and bad files: the plain script keeps the work and says what happened."""

import json
import os
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

from conftest import PYTORCH_SCRIPT, ROOT

RUN = (
    "--data synthetic --synthetic-images 128 --input-size 16 --batch-size 16 --hidden-dim 64 "
    "--proj-dim 32 --eval-every 0 --num-workers 1"
).split()


def start(output_dir: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, str(PYTORCH_SCRIPT), *RUN, "--output-dir", str(output_dir), *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def checkpoint_step(output_dir: Path) -> int:
    try:
        return torch.load(output_dir / "checkpoint-last.pt", weights_only=True)["step"]
    except Exception:  # not written yet
        return -1


def wait_for_step(process: subprocess.Popen, output_dir: Path, step: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while checkpoint_step(output_dir) < step:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run saved no checkpoint in time"
        time.sleep(0.05)


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


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(byol, tmp_path, monkeypatch, capsys):
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


def test_a_real_divergence_is_caught(tmp_path):
    process = start(tmp_path, "--epochs", "2", "--lr", "1e30")
    stderr = process.communicate(timeout=300)[1]
    assert process.returncode == 1 and "the loss diverged" in stderr and "Traceback" not in stderr


def test_a_checkpoint_with_pickled_code_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    (tmp_path / "run").mkdir()
    torch.save({"model": Payload()}, tmp_path / "run" / "checkpoint-last.pt")
    process = start(tmp_path / "run", "--epochs", "1", "--resume")
    stderr = process.communicate(timeout=120)[1]
    assert process.returncode == 2 and "Traceback" not in stderr and "refusing to load" in stderr
    assert not (tmp_path / "pwned").exists()


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
    command = [
        "--data",
        str(folder),
        "--val",
        str(folder),
        "--input-size",
        "16",
        "--batch-size",
        "4",
        "--epochs",
        "2",
    ]
    command += [
        "--hidden-dim",
        "32",
        "--proj-dim",
        "16",
        "--num-workers",
        "1",
        "--knn-k",
        "5",
        "--eval-every",
        "1",
    ]
    result = subprocess.run(
        [sys.executable, str(PYTORCH_SCRIPT), *command, "--output-dir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for name in ("empty.png", "text.jpg", "truncated.jpg"):
        assert result.stdout.count(f"skipped unreadable image {a / name}") == 1, name  # once, not each epoch
    for name in ("grey.png", "palette.gif", "alpha.png", "cmyk.jpg", "notes.txt"):
        assert name not in result.stdout
    rows = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [row["skipped_images"] for row in rows] == [3, 3]


def test_pillows_pixel_limit_off_reads_every_image(byol, tmp_path, monkeypatch):
    # Image.MAX_IMAGE_PIXELS = None is the usual way to read very large images
    monkeypatch.setattr(byol.torchvision.datasets.folder.Image, "MAX_IMAGE_PIXELS", None)
    folder = write_folder(tmp_path / "data", per_class=4)
    images = byol.image_folder(str(folder), byol.T.PILToTensor())
    assert all(not isinstance(images[i], str) for i in range(len(images)))


def test_a_batch_without_a_readable_image_does_not_count_in_the_mean_loss(byol, tmp_path, monkeypatch):
    losses, original_views, original_forward = [], byol.two_views, byol.BYOL.forward
    calls = iter(range(10**6))
    monkeypatch.setattr(byol, "two_views", lambda *a: None if next(calls) == 1 else original_views(*a))

    def recording(self, *views):
        loss, projections = original_forward(self, *views)
        losses.append(loss.item())
        return loss, projections

    monkeypatch.setattr(byol.BYOL, "forward", recording)
    row = byol.main([*RUN, "--epochs", "1", "--num-workers", "0", "--output-dir", str(tmp_path)])
    assert len(losses) == 7 and row["loss"] == pytest.approx(sum(losses) / 7, rel=1e-6)


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
