"""Crashes, pre-emption and bad data: the plain-PyTorch script keeps the work and says what happened."""

import errno
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
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
    return subprocess.Popen(
        [sys.executable, str(PYTORCH_SCRIPT), *RUN, "--output-dir", str(output_dir), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def checkpoint_step(output_dir: Path) -> int:
    try:
        return torch.load(output_dir / "checkpoint-last.pt", weights_only=True)["step"]
    except Exception:  # not written yet, or being replaced right now
        return -1


def wait_for_step(process: subprocess.Popen, output_dir: Path, step: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while checkpoint_step(output_dir) < step:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run saved no checkpoint in time"
        time.sleep(0.05)


def final_weights(output_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(output_dir / "checkpoint-last.pt", weights_only=True)["model"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    output_dir = tmp_path_factory.mktemp("uninterrupted")
    process = start(output_dir, "--epochs", "3")
    assert process.wait(timeout=300) == 0, process.communicate()
    return output_dir


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(uninterrupted, tmp_path):
    process = start(tmp_path, "--epochs", "3", "--checkpoint-every", "3")
    wait_for_step(process, tmp_path, 9)  # epoch 2 of 3 (8 steps each)
    process.kill()
    process.wait()
    assert 9 <= checkpoint_step(tmp_path) < 24
    resumed = start(tmp_path, "--epochs", "3", "--resume")
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    assert "resumed from" in stdout
    straight = final_weights(uninterrupted)
    assert all(torch.equal(tensor, straight[name]) for name, tensor in final_weights(tmp_path).items())
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]  # no epoch lost or repeated


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_a_checkpoint_and_exits_non_zero(tmp_path, sig):
    process = start(tmp_path, "--epochs", "20")
    wait_for_step(process, tmp_path, 8)  # the first epoch's checkpoint
    process.send_signal(sig)
    stderr = process.communicate(timeout=120)[1]
    assert process.returncode == 128 + sig
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr
    assert f"stopped by {signal.Signals(sig).name}" in lines[0] and "--resume" in lines[0]
    stopped_at = int(lines[0].split(" at step ")[1].split(":")[0])
    assert checkpoint_step(tmp_path) == stopped_at >= 8
    assert not (tmp_path / "backbone.pt").exists()


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(byol, tmp_path, monkeypatch, capsys):
    original = byol.training_step
    calls = iter(range(10**6))

    def diverging_step(*args, **kwargs):
        loss, std = original(*args, **kwargs)
        return (loss * float("nan"), std) if next(calls) == 11 else (loss, std)

    monkeypatch.setattr(byol, "training_step", diverging_step)
    with pytest.raises(SystemExit) as stopped:
        byol.main([*RUN, "--epochs", "3", "--num-workers", "0", "--output-dir", str(tmp_path)])
    assert stopped.value.code == 1
    message = capsys.readouterr().err
    assert "the loss became nan at step 11 (epoch 2)" in message and "--lr" in message
    checkpoint = torch.load(tmp_path / "checkpoint-last.pt", weights_only=True)
    assert checkpoint["step"] == 8  # the end of epoch 1: nothing after the bad step was saved
    assert all(torch.isfinite(t).all() for t in checkpoint["model"].values() if t.is_floating_point())


def test_real_divergence_is_caught(tmp_path):
    process = start(tmp_path, "--epochs", "2", "--lr", "1e30", "--log-every", "1")
    stderr = process.communicate(timeout=300)[1]
    assert process.returncode == 1
    assert "the loss became" in stderr and "learning rate is probably too high" in stderr


def test_full_disk_during_a_save_keeps_the_previous_checkpoint(byol, tmp_path, monkeypatch):
    real_save = torch.save
    saves = iter(range(10**6))

    def save_until_the_disk_fills(obj, file, *args, **kwargs):
        if next(saves) == 1:  # the second checkpoint: write a little, then run out of space
            file.write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, file, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_until_the_disk_fills)
    with pytest.raises(SystemExit) as stopped:
        byol.main([*RUN, "--epochs", "3", "--num-workers", "0", "--output-dir", str(tmp_path)])
    assert "No space left on device" in str(stopped.value.code)
    assert "previous file, if any, is intact" in str(stopped.value.code)
    assert checkpoint_step(tmp_path) == 8  # the first epoch's checkpoint, whole and loadable
    assert not list(tmp_path.glob("*.tmp"))


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    tmp_path.joinpath("run").mkdir()
    torch.save({"model": Payload()}, tmp_path / "run" / "checkpoint-last.pt")
    process = start(tmp_path / "run", "--epochs", "1", "--resume")
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1 and "Traceback" not in stderr
    assert "refusing to load" in stderr and "checkpoint-last.pt" in stderr
    assert not (tmp_path / "pwned").exists()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header announces width x height pixels, with almost no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(64)))


def test_bad_and_unusual_files_in_an_image_folder(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "data"
    for name in ("a", "b"):
        (folder / name).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(
                folder / name / f"{i}.jpg"
            )
    a = folder / "a"
    # unusual but readable: converted to RGB
    Image.fromarray(rng.integers(0, 256, (20, 20), dtype=np.uint8)).save(a / "grey.png")
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).convert("P").save(a / "palette.gif")
    Image.fromarray(rng.integers(0, 256, (20, 20, 4), dtype=np.uint8), "RGBA").save(a / "alpha.png")
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).convert("CMYK").save(a / "cmyk.jpg")
    Image.fromarray(rng.integers(0, 65535, (20, 20), dtype=np.uint16)).save(a / "sixteen.png")
    # unusable: skipped and named
    (a / "empty.png").write_bytes(b"")
    (a / "text.jpg").write_text("not an image")
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "whole.jpg")
    whole = (tmp_path / "whole.jpg").read_bytes()
    (a / "truncated.jpg").write_bytes(whole[: len(whole) // 2])  # the header is intact, the pixels are not
    (a / "bomb.png").write_bytes(png_header_only(12_000, 10_000))  # over PIL's limit of 89.5 M pixels
    (a / "huge_bomb.png").write_bytes(png_header_only(20_000, 20_000))  # over twice the limit: PIL refuses
    (a / "notes.txt").write_text("a stray file")

    settings = (
        "--input-size 16 --batch-size 4 --epochs 1 --hidden-dim 32 --proj-dim 16 --num-workers 1 --knn-k 5"
    )
    output = ["--output-dir", str(tmp_path / "out")]
    result = subprocess.run(
        [
            sys.executable,
            str(PYTORCH_SCRIPT),
            "--data",
            str(folder),
            "--val",
            str(folder),
            *settings.split(),
            *output,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for name in ("empty.png", "text.jpg", "truncated.jpg", "bomb.png", "huge_bomb.png"):
        assert f"skipped unreadable image {a / name}" in out, name
    assert "decompression-bomb" in out and "notes.txt" in out
    for name in ("grey.png", "palette.gif", "alpha.png", "cmyk.jpg", "sixteen.png"):
        assert name not in out
    # the truncated file passes the header check and fails in a worker: counted in the epoch summary
    row = json.loads((tmp_path / "out" / "metrics.jsonl").read_text())
    assert row["skipped_images"] == 1 and "skipped 1" in out


def test_unusual_modes_are_converted_to_8_bit_rgb(byol, tmp_path):
    sixteen = tmp_path / "sixteen.png"
    Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16)).save(sixteen)
    assert np.asarray(byol.open_rgb(str(sixteen))).min() == 255  # white stays white, not clipped noise
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (4, 4), (0, 0, 0, 0)).save(cmyk)
    image = byol.open_rgb(str(cmyk))
    assert image.mode == "RGB" and np.asarray(image).min() > 240
