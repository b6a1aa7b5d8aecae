"""The Lightning script computes what the plain-PyTorch script computes, step by step; it writes the
same outputs, resumes exactly, and stops cleanly on a signal or a diverged loss."""

import argparse
import csv
import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from conftest import LIGHTNING_SCRIPT, ROOT, interrupt_at, torch_threads

# Tiny, so that both scripts train in seconds: 4 steps per epoch. --log-every 1 makes Lightning's
# CSV log hold the loss of every step. In float32: in bf16 the two scripts' steps agree to bf16's
# rounding (about 0.4 %), which a few SGD steps amplify, so they could not be compared to 1e-5.
RUN = (
    "--data synthetic --synthetic-images 64 --input-size 8 --batch-size 16 --epochs 2 "
    "--hidden-dim 32 --proj-dim 16 --eval-every 1 --knn-k 10 --log-every 1 --precision fp32"
).split()
TIMING_KEYS = {"images_per_s", "epoch_time_s", "elapsed_s"}


def train(script, output_dir, *extra: str) -> dict:
    with torch_threads(1):  # the same for both scripts, so that they add up floats alike
        return script.main([*RUN, "--output-dir", str(output_dir), *extra])


def read_metrics(output_dir) -> list[dict]:
    rows = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in rows]


def logged_losses(output_dir) -> list[float]:
    """The per-step losses in Lightning's CSV log, in step order."""
    [log] = (output_dir / "lightning_logs").glob("version_*/metrics.csv")
    with open(log) as file:
        rows = [row for row in csv.DictReader(file) if row.get("loss")]
    return [float(row["loss"]) for row in sorted(rows, key=lambda row: int(row["step"]))]


def train_recording_losses(byol, output_dir, *extra: str) -> list[float]:
    """Train with the plain script; the loss of each of its steps (recorded from its training_step)."""
    losses = []
    original = byol.training_step

    def recording_training_step(*args, **kwargs):
        loss, projection_std = original(*args, **kwargs)
        losses.append(loss.item())
        return loss, projection_std

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(byol, "training_step", recording_training_step)
        train(byol, output_dir, *extra)
    return losses


@pytest.fixture(scope="module")
def plain_run(byol, tmp_path_factory):
    """The plain script's run, and the loss of each of its steps."""
    output_dir = tmp_path_factory.mktemp("plain")
    return output_dir, train_recording_losses(byol, output_dir, "--num-workers", "0")


@pytest.fixture(scope="module")
def lightning_run(lightning, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("lightning")
    train(lightning, output_dir, "--num-workers", "0")
    return output_dir


def test_same_loss_at_every_step_as_plain_pytorch(plain_run, lightning_run):
    _, plain_losses = plain_run
    assert len(plain_losses) == 8  # 2 epochs of 64 // 16 steps
    torch.testing.assert_close(torch.tensor(logged_losses(lightning_run)), torch.tensor(plain_losses))


def test_same_losses_as_plain_pytorch_with_crops_in_workers(byol, lightning, tmp_path):
    """The fixtures' runs crop on the device (their images are in memory); here the workers crop."""
    losses = train_recording_losses(byol, tmp_path / "plain", "--num-workers", "1", "--no-crops-on-device")
    train(lightning, tmp_path / "lightning", "--num-workers", "1", "--no-crops-on-device")
    assert len(losses) == 8
    torch.testing.assert_close(torch.tensor(logged_losses(tmp_path / "lightning")), torch.tensor(losses))


def test_same_weights_and_momentum_as_plain_pytorch(plain_run, lightning_run):
    plain = torch.load(plain_run[0] / "checkpoint-last.pt", weights_only=True)
    ours = torch.load(lightning_run / "checkpoint-last.pt", weights_only=True)
    assert plain["step"] == ours["step"] == 8
    weights = {name.removeprefix("model."): tensor for name, tensor in ours["state_dict"].items()}
    assert weights.keys() == plain["model"].keys()  # online, target and predictor, BatchNorm statistics
    for name, tensor in plain["model"].items():
        torch.testing.assert_close(weights[name], tensor, msg=name)
    momentum = ours["optimizer_states"][0]["state"]
    assert momentum.keys() == plain["optimizer"]["state"].keys()
    for index, state in plain["optimizer"]["state"].items():
        torch.testing.assert_close(momentum[index]["momentum_buffer"], state["momentum_buffer"])


def test_same_metrics_file_as_plain_pytorch(plain_run, lightning_run):
    plain, ours = read_metrics(plain_run[0]), read_metrics(lightning_run)
    assert [row.keys() for row in ours] == [row.keys() for row in plain]
    assert ours == [pytest.approx(row, rel=1e-5) for row in plain]
    raw = json.loads((lightning_run / "metrics.jsonl").read_text().splitlines()[-1])
    assert raw.keys() >= TIMING_KEYS and raw["images_per_s"] > 0


def test_outputs(lightning, lightning_run):
    state = torch.load(lightning_run / "backbone.pt", weights_only=True)
    encoder, _ = lightning.resnet_encoder("resnet18", small_images=True)
    encoder.load_state_dict(state)  # strict: exactly the encoder's weights
    checkpoint = torch.load(lightning_run / "checkpoint-last.pt", weights_only=True)
    online = checkpoint["state_dict"]
    assert all(torch.equal(tensor, online[f"model.encoder.{name}"]) for name, tensor in state.items())
    assert not all(
        torch.equal(tensor, online[f"model.target_encoder.{name}"]) for name, tensor in state.items()
    )
    assert checkpoint["args"]["batch_size"] == 16 and checkpoint["optimizer_states"][0]["state"]
    [log] = (lightning_run / "lightning_logs").glob("version_*/metrics.csv")
    columns = set(log.read_text().splitlines()[0].split(","))
    assert {"loss", "lr", "tau", "img_s", "projection_std", "knn_top1"} <= columns


@pytest.mark.parametrize(
    ("interrupted_step", "epochs_done"),
    [(5, 1), (3, 1)],  # in the middle of the second epoch; in the first epoch's last step
)
def test_interrupted_and_resumed_run_equals_uninterrupted(
    lightning, lightning_run, tmp_path, monkeypatch, capsys, interrupted_step, epochs_done
):
    handlers = [signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)]
    with monkeypatch.context() as patch:
        interrupt_at(lightning, patch, interrupted_step)
        with pytest.raises(SystemExit) as stopped:
            train(lightning, tmp_path, "--num-workers", "1")
    assert stopped.value.code == 128 + signal.SIGINT
    assert f"stopped by SIGINT at step {interrupted_step + 1}" in capsys.readouterr().err
    assert torch.load(tmp_path / "checkpoint-last.pt", weights_only=True)["step"] == interrupted_step + 1
    assert [row["epoch"] for row in read_metrics(tmp_path)] == list(range(1, epochs_done + 1))
    assert not (tmp_path / "backbone.pt").exists()

    train(lightning, tmp_path, "--num-workers", "2", "--resume")

    resumed = torch.load(tmp_path / "checkpoint-last.pt", weights_only=True)
    straight = torch.load(lightning_run / "checkpoint-last.pt", weights_only=True)
    for name, tensor in straight["state_dict"].items():
        assert torch.equal(resumed["state_dict"][name], tensor), name
    for index, state in straight["optimizer_states"][0]["state"].items():
        assert torch.equal(
            resumed["optimizer_states"][0]["state"][index]["momentum_buffer"], state["momentum_buffer"]
        )
    assert read_metrics(tmp_path) == read_metrics(lightning_run)
    assert (tmp_path / "backbone.pt").exists()
    assert [signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)] == handlers  # put back


def test_mid_epoch_resume_with_crops_in_workers(lightning, tmp_path, monkeypatch):
    """As above, with the crops made per image in DataLoader workers rather than on the device."""
    train(lightning, tmp_path / "straight", "--num-workers", "1", "--no-crops-on-device")
    with monkeypatch.context() as patch:
        interrupt_at(lightning, patch, 5)
        with pytest.raises(SystemExit):
            train(lightning, tmp_path / "resumed", "--num-workers", "1", "--no-crops-on-device")
    train(lightning, tmp_path / "resumed", "--num-workers", "2", "--no-crops-on-device", "--resume")
    resumed = torch.load(tmp_path / "resumed" / "checkpoint-last.pt", weights_only=True)
    straight = torch.load(tmp_path / "straight" / "checkpoint-last.pt", weights_only=True)
    for name, tensor in straight["state_dict"].items():
        assert torch.equal(resumed["state_dict"][name], tensor), name
    assert read_metrics(tmp_path / "resumed") == read_metrics(tmp_path / "straight")


def test_sigterm_saves_a_checkpoint_and_exits_with_128_plus_15(tmp_path):
    command = [sys.executable, str(LIGHTNING_SCRIPT), *RUN, "--epochs", "1000", "--eval-every", "0"]
    process = subprocess.Popen(
        [*command, "--num-workers", "0", "--output-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"},
    )
    try:
        for line in process.stdout:
            if line.startswith("epoch 1/"):
                break
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM
    [message] = [line for line in stderr.splitlines() if "stopped by SIGTERM" in line]
    step = int(message.split("at step ")[1].split(":")[0])
    assert torch.load(tmp_path / "checkpoint-last.pt", weights_only=True)["step"] == step >= 4


def test_diverged_loss_stops_the_run_and_keeps_the_last_good_checkpoint(lightning, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        train(lightning, tmp_path, "--lr", "1e30", "--checkpoint-every", "1", "--num-workers", "0")
    assert stopped.value.code == 1
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert "the loss became" in message and "--lr" in message
    bad_step = int(message.split("at step ")[1].split(" ")[0])
    checkpoint = torch.load(tmp_path / "checkpoint-last.pt", weights_only=True)
    assert checkpoint["step"] == bad_step  # saved after the last good step, not after the bad one
    assert all(torch.isfinite(tensor).all() for tensor in checkpoint["state_dict"].values())


def test_resume_refuses_a_checkpoint_holding_pickled_objects(lightning, tmp_path):
    torch.save({"step": 4, "args": {}, "object": argparse.Namespace(x=1)}, tmp_path / "checkpoint-last.pt")
    with pytest.raises(SystemExit) as error:
        lightning.main([*RUN, "--output-dir", str(tmp_path), "--resume"])
    assert "refusing to load" in str(error.value.code)


def test_resume_refuses_changed_settings(lightning, lightning_run, tmp_path):
    (tmp_path / "checkpoint-last.pt").write_bytes((lightning_run / "checkpoint-last.pt").read_bytes())
    with pytest.raises(SystemExit) as error:
        lightning.main([*RUN, "--output-dir", str(tmp_path), "--resume", "--lr", "0.5"])
    assert "cannot resume" in str(error.value.code) and "--lr" in str(error.value.code)


def test_existing_run_needs_resume_or_overwrite(lightning, lightning_run, tmp_path):
    with pytest.raises(SystemExit) as error:
        lightning.main([*RUN, "--output-dir", str(lightning_run)])
    assert "already holds a run" in str(error.value.code)


def test_resume_without_a_checkpoint_does_not_start_over_an_old_run(lightning, lightning_run, tmp_path):
    (tmp_path / "metrics.jsonl").write_bytes((lightning_run / "metrics.jsonl").read_bytes())
    with pytest.raises(SystemExit) as error:
        lightning.main([*RUN, "--output-dir", str(tmp_path), "--resume"])
    assert "without checkpoint-last.pt" in str(error.value.code)
    assert (tmp_path / "metrics.jsonl").read_bytes() == (lightning_run / "metrics.jsonl").read_bytes()


def test_plain_script_refuses_a_lightning_checkpoint(byol, lightning_run, tmp_path):
    (tmp_path / "checkpoint-last.pt").write_bytes((lightning_run / "checkpoint-last.pt").read_bytes())
    with pytest.raises(SystemExit) as error:
        byol.main([*RUN, "--output-dir", str(tmp_path), "--resume"])
    assert "not a checkpoint of this script" in str(error.value.code)


def test_resume_refuses_a_checkpoint_with_other_steps_per_epoch(lightning, lightning_run):
    """As after images were added to the training folder: the epoch's buffers would not fit."""
    path = lightning_run / "checkpoint-last.pt"
    args = lightning.parse_args([*RUN, "--crops-on-device"])  # as the run settled it for its data
    steps_per_epoch = len(torch.load(path, weights_only=True)["epoch_losses"])
    assert lightning.check_checkpoint(path, args, steps_per_epoch) > 0
    with pytest.raises(lightning.DataError, match=f"have {steps_per_epoch} steps, this run's 7: the number"):
        lightning.check_checkpoint(path, args, 7)


def test_same_settings_and_defaults_as_plain_pytorch(byol, lightning, distributed):
    plain = vars(byol.parse_args([]))
    assert vars(lightning.parse_args([])) == {**plain, "output_dir": "runs/pytorch_lightning"}
    ddp = vars(distributed.parse_args([]))
    del plain["device"]  # replaced by Lightning's --accelerator, --devices and --num-nodes
    only_ddp = {"accelerator", "devices", "num_nodes", "sync_batchnorm", "dist_timeout"}
    assert ddp.keys() == plain.keys() | only_ddp
    changed = {"output_dir", "num_workers"}  # num_workers: per process, resolved at run time
    assert {k: v for k, v in ddp.items() if k not in only_ddp | changed} == {
        k: v for k, v in plain.items() if k not in changed
    }
