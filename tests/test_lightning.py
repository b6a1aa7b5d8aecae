"""The Lightning script computes what the plain-PyTorch script computes, step by step; it writes the
same outputs, resumes at the saved step with the same schedules, and stops cleanly."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import LIGHTNING_SCRIPT, ROOT, signal_at, torch_threads

# Tiny, so that both scripts train in seconds: 4 steps per epoch, in float32 (in bf16 the two would
# agree to bf16's rounding only, which a few steps amplify).
RUN = (
    "--data synthetic --synthetic-images 64 --input-size 8 --batch-size 16 --hidden-dim 32 --proj-dim 16 "
    "--eval-every 1 --knn-k 10 --precision fp32 --num-workers 1"
).split()
TIMING_KEYS = {"images_per_s", "epoch_time_s", "elapsed_s"}


def read_metrics(output_dir) -> list[dict]:
    rows = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in rows]


def train(script, output_dir, *extra: str) -> list[float]:
    """Train in this process; the loss of each step, recorded from the model's forward."""
    losses, original = [], script.BYOL.forward

    def recording(self, *views):
        loss, projections = original(self, *views)
        losses.append(loss.item())
        return loss, projections

    with pytest.MonkeyPatch.context() as patch, torch_threads(1):  # both add up floats alike
        patch.setattr(script.BYOL, "forward", recording)
        script.main([*RUN, "--output-dir", str(output_dir), *extra])
    return losses


@pytest.fixture(scope="module", params=["memory", "folder"], ids=["crops on the device", "crops in workers"])
def data(request, tmp_path_factory) -> list[str]:
    if request.param == "memory":
        return []
    from PIL import Image

    from conftest import PYTORCH_SCRIPT, load_script

    images, labels = load_script(PYTORCH_SCRIPT, "byol_pytorch").synthetic_images(64, seed=0).tensors
    folder = tmp_path_factory.mktemp("images")
    for i, (image, label) in enumerate(zip(images, labels)):
        (folder / str(int(label))).mkdir(exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / str(int(label)) / f"{i}.png")
    return ["--data", str(folder), "--val", str(folder)]


@pytest.fixture(scope="module")
def runs(byol, lightning, data, tmp_path_factory):
    """One epoch of each script, and the loss of each step."""
    plain, ours = tmp_path_factory.mktemp("plain"), tmp_path_factory.mktemp("lightning")
    return (
        plain,
        train(byol, plain, *data, "--epochs", "1"),
        ours,
        train(lightning, ours, *data, "--epochs", "1"),
    )


def test_same_first_steps_as_plain_pytorch(runs):
    plain, plain_losses, ours, our_losses = runs
    assert len(plain_losses) == len(our_losses) == 4
    torch.testing.assert_close(torch.tensor(our_losses), torch.tensor(plain_losses))
    expected = torch.load(plain / "checkpoint-last.pt", weights_only=True)
    checkpoint = torch.load(ours / "checkpoint-last.pt", weights_only=True)
    weights = {name.removeprefix("model."): tensor for name, tensor in checkpoint["state_dict"].items()}
    assert weights.keys() == expected["model"].keys()  # online, target, predictor, BatchNorm statistics
    for name, tensor in expected["model"].items():
        torch.testing.assert_close(weights[name], tensor, msg=name)
    momentum = checkpoint["optimizer_states"][0]["state"]
    for index, state in expected["optimizer"]["state"].items():
        torch.testing.assert_close(momentum[index]["momentum_buffer"], state["momentum_buffer"])
    assert read_metrics(ours) == [pytest.approx(row, rel=1e-5) for row in read_metrics(plain)]


def test_outputs(lightning, runs):
    ours = runs[2]
    state = torch.load(ours / "backbone.pt", weights_only=True)
    encoder, _ = lightning.resnet_encoder("resnet18", small_images=True)
    encoder.load_state_dict(state)
    checkpoint = torch.load(ours / "checkpoint-last.pt", weights_only=True)
    assert all(
        torch.equal(tensor, checkpoint["state_dict"][f"model.encoder.{k}"]) for k, tensor in state.items()
    )
    assert checkpoint["hyper_parameters"]["batch_size"] == 16 and checkpoint["global_step"] == 4
    assert sorted(path.name for path in ours.iterdir()) == [
        "backbone.pt",
        "checkpoint-last.pt",
        "lightning_logs",
        "metrics.jsonl",
    ]
    [log] = (ours / "lightning_logs").glob("version_*/metrics.csv")
    assert {"loss_epoch", "projection_std", "knn_top1"} <= set(log.read_text().splitlines()[0].split(","))


def start(output_dir, *extra: str) -> subprocess.Popen:
    command = [sys.executable, str(LIGHTNING_SCRIPT), *RUN, "--output-dir", str(output_dir), *extra]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env
    )


def test_sigterm_saves_a_checkpoint_and_resume_keeps_the_schedules(tmp_path):
    process = start(tmp_path / "stopped", "--epochs", "10", "--eval-every", "0", "--num-workers", "0")
    try:
        for line in process.stdout:
            if line.startswith("epoch 1 "):
                break
        time.sleep(0.3)  # into the second epoch
        process.send_signal(signal.SIGTERM)  # Lightning stops after the step it is in
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM
    assert "stopped by a signal" in stderr.strip().splitlines()[-1]
    step = torch.load(tmp_path / "stopped" / "checkpoint-last.pt", weights_only=True)["global_step"]
    assert 4 <= step < 40
    resumed = start(
        tmp_path / "stopped", "--epochs", "10", "--eval-every", "0", "--num-workers", "0", "--resume"
    )
    assert resumed.wait(timeout=600) == 0, resumed.communicate()[1][-3000:]
    straight = start(tmp_path / "straight", "--epochs", "10", "--eval-every", "0", "--num-workers", "0")
    assert straight.wait(timeout=600) == 0
    last, expected = read_metrics(tmp_path / "stopped")[-1], read_metrics(tmp_path / "straight")[-1]
    assert (last["epoch"], last["step"]) == (expected["epoch"], expected["step"]) == (10, 40)
    assert (last["lr"], last["tau"]) == (expected["lr"], expected["tau"])  # the schedules' end, on time
    assert torch.load(tmp_path / "stopped" / "checkpoint-last.pt", weights_only=True)["global_step"] == 40


def test_ctrl_c_saves_a_checkpoint_and_exits_non_zero(lightning, tmp_path, monkeypatch):
    handler = signal.getsignal(signal.SIGINT)
    try:
        with monkeypatch.context() as patch:
            signal_at(lightning, patch, 6)  # in the second epoch
            with pytest.raises(SystemExit) as stopped:
                train(lightning, tmp_path, "--epochs", "3")
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning leaves Ctrl-C ignored after catching it
    assert stopped.value.code != 0
    assert 4 < torch.load(tmp_path / "checkpoint-last.pt", weights_only=True)["global_step"] < 8
    assert not (tmp_path / "backbone.pt").exists()
    train(lightning, tmp_path, "--epochs", "3", "--resume")  # in mid-epoch
    assert [(row["epoch"], row["step"]) for row in read_metrics(tmp_path)] == [(1, 4), (2, 8), (3, 12)]


def test_a_diverged_loss_stops_the_run_and_keeps_the_last_good_checkpoint(lightning, tmp_path, monkeypatch):
    original, calls = lightning.BYOL.forward, iter(range(10**6))

    def diverging(self, *views):
        loss, projections = original(self, *views)
        return (loss * float("nan") if next(calls) >= 5 else loss), projections

    monkeypatch.setattr(lightning.BYOL, "forward", diverging)
    with pytest.raises(SystemExit) as stopped:
        lightning.main([*RUN, "--epochs", "3", "--output-dir", str(tmp_path)])
    assert "the loss diverged" in str(stopped.value.code)
    checkpoint = torch.load(tmp_path / "checkpoint-last.pt", weights_only=True)
    assert checkpoint["global_step"] == 4  # after the first epoch, before the loss diverged
    assert all(torch.isfinite(tensor).all() for tensor in checkpoint["state_dict"].values())


def test_resume_refuses_changed_settings(lightning, runs, data, tmp_path, capsys):
    (tmp_path / "checkpoint-last.pt").write_bytes((runs[2] / "checkpoint-last.pt").read_bytes())
    with pytest.raises(SystemExit) as error:
        lightning.main(
            [*RUN, *data, "--epochs", "1", "--output-dir", str(tmp_path), "--resume", "--lr", "0.5"]
        )
    assert error.value.code == 2
    assert "cannot resume: the checkpoint was made with lr 0.2, not 0.5" in capsys.readouterr().err


def test_resume_refuses_a_checkpoint_holding_pickled_objects(lightning, tmp_path, capsys):
    torch.save({"state_dict": {}, "object": object()}, tmp_path / "checkpoint-last.pt")
    with pytest.raises(SystemExit) as error:
        lightning.main([*RUN, "--epochs", "1", "--output-dir", str(tmp_path), "--resume"])
    assert error.value.code == 2 and "refusing to load" in capsys.readouterr().err


def test_an_existing_run_is_not_replaced(lightning, runs, capsys):
    with pytest.raises(SystemExit) as error:
        lightning.main([*RUN, "--epochs", "1", "--output-dir", str(runs[2])])
    assert error.value.code == 2 and "--overwrite" in capsys.readouterr().err


def test_overwrite_replaces_a_finished_run(lightning, runs, tmp_path):
    shutil.copytree(runs[2], tmp_path / "run")  # with its lightning_logs/version_0
    before = {path.name for path in (tmp_path / "run" / "lightning_logs").iterdir()}
    lightning.main([*RUN, "--epochs", "2", "--output-dir", str(tmp_path / "run"), "--overwrite"])
    assert [row["epoch"] for row in read_metrics(tmp_path / "run")] == [1, 2]
    after = {path.name for path in (tmp_path / "run" / "lightning_logs").iterdir()}
    assert "version_0" in before and len(after - before) == 1  # Lightning's CSV logger: a version per run


def test_the_plain_script_refuses_a_lightning_checkpoint(byol, runs, tmp_path, capsys):
    (tmp_path / "checkpoint-last.pt").write_bytes((runs[2] / "checkpoint-last.pt").read_bytes())
    with pytest.raises(SystemExit):
        byol.main([*RUN, "--epochs", "1", "--output-dir", str(tmp_path), "--resume"])
    assert "not a checkpoint of this script" in capsys.readouterr().err


def test_same_settings_and_defaults_as_plain_pytorch(byol, lightning, distributed):
    plain, ours, ddp = (vars(script.parse_args([])) for script in (byol, lightning, distributed))
    for settings in (plain, ours, ddp):
        del settings["output_dir"]
    assert ours == {**{k: v for k, v in plain.items() if k != "device"}, "accelerator": "auto"}
    assert ddp == {**ours, "devices": "auto", "num_nodes": 1}
