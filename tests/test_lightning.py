"""The Lightning script computes what the plain-PyTorch script computes, step by step and epoch by epoch;
it writes the same outputs, a checkpoint after every epoch, written atomically; it resumes from an
epoch's end exactly, and stops cleanly between two steps."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import LIGHTNING_SCRIPT, ROOT, torch_threads

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


def checkpoint(output_dir) -> dict:
    return torch.load(output_dir / "checkpoint-last.pt", weights_only=True)


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
    """Three epochs of each script, and the loss of each step."""
    plain, ours = tmp_path_factory.mktemp("plain"), tmp_path_factory.mktemp("lightning")
    plain_losses = train(byol, plain, *data, "--epochs", "3")
    return plain, plain_losses, ours, train(lightning, ours, *data, "--epochs", "3")


def assert_same_weights(ours: dict, plain: dict) -> None:
    weights = {name.removeprefix("model."): tensor for name, tensor in ours["state_dict"].items()}
    assert weights.keys() == plain["model"].keys()  # online, target, predictor, BatchNorm statistics
    for name, tensor in plain["model"].items():
        torch.testing.assert_close(weights[name], tensor, msg=name)


def test_same_steps_as_plain_pytorch_in_every_epoch(runs):
    """Each epoch seeds its own draws in both scripts: the same crops, order and steps in every epoch."""
    plain, plain_losses, ours, our_losses = runs
    assert len(plain_losses) == len(our_losses) == 12
    torch.testing.assert_close(torch.tensor(our_losses), torch.tensor(plain_losses))
    expected, saved = torch.load(plain / "checkpoint-last.pt", weights_only=True), checkpoint(ours)
    assert_same_weights(saved, expected)
    momentum = saved["optimizer_states"][0]["state"]
    for index, state in expected["optimizer"]["state"].items():
        torch.testing.assert_close(momentum[index]["momentum_buffer"], state["momentum_buffer"])
    assert read_metrics(ours) == [pytest.approx(row, rel=1e-5) for row in read_metrics(plain)]


def test_outputs(lightning, runs):
    ours = runs[2]
    state = torch.load(ours / "backbone.pt", weights_only=True)
    lightning.BYOL("resnet18", True, 32, 16).encoder.load_state_dict(state)  # exactly the encoder's weights
    saved = checkpoint(ours)
    assert all(torch.equal(tensor, saved["state_dict"][f"model.encoder.{k}"]) for k, tensor in state.items())
    assert saved["hyper_parameters"]["batch_size"] == 16 and saved["global_step"] == 12
    names = sorted(path.name for path in ours.iterdir())
    assert names == [".lock", "backbone.pt", "checkpoint-last.pt", "lightning_logs", "metrics.jsonl"]
    [log] = (ours / "lightning_logs").glob("version_*/metrics.csv")
    assert {"loss_epoch", "projection_std", "knn_top1"} <= set(log.read_text().splitlines()[0].split(","))


def test_a_crash_after_an_epoch_resumes_exactly(lightning, runs, data, tmp_path, monkeypatch):
    """No kNN epoch (--eval-every 5): Lightning 2.6 used to save only at the end of validation, so no
    checkpoint at all. Each checkpoint goes to a temporary file beside it, then is renamed into place.
    Resumed, the run draws as the uninterrupted one did (it used to re-seed and replay epoch 1's draws)."""
    replaced, original_replace, original_step = [], os.replace, lightning.BYOLModule.training_step
    monkeypatch.setattr(
        os, "replace", lambda src, dst: replaced.append((src, dst)) or original_replace(src, dst)
    )

    def crash_in_epoch_3(self, views, batch_idx):
        if self.global_step == 8:
            raise RuntimeError("the machine went away")
        return original_step(self, views, batch_idx)

    with monkeypatch.context() as patch:
        patch.setattr(lightning.BYOLModule, "training_step", crash_in_epoch_3)
        with pytest.raises(RuntimeError, match="went away"):
            train(lightning, tmp_path, *data, "--epochs", "3", "--eval-every", "5")
    assert checkpoint(tmp_path)["global_step"] == 8
    assert [(src.name, dst.name) for src, dst in replaced] == [
        ("checkpoint-last.tmp", "checkpoint-last.pt")
    ] * 2
    assert all(src.parent == dst.parent == tmp_path for src, dst in replaced)
    train(lightning, tmp_path, *data, "--epochs", "3", "--eval-every", "5", "--resume")
    assert_same_weights(checkpoint(tmp_path), torch.load(runs[0] / "checkpoint-last.pt", weights_only=True))
    assert [row["loss"] for row in read_metrics(tmp_path)] == [row["loss"] for row in read_metrics(runs[2])]
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("at_step", [6, 4], ids=["mid-epoch", "in an epoch's last step"])
def test_ctrl_c_stops_between_two_steps_with_a_checkpoint(lightning, tmp_path, monkeypatch, at_step):
    """Ctrl-C right after an optimiser step: the run stops after that step's target update (Lightning's
    own handling raised KeyboardInterrupt there, and saved a target one update behind). In an epoch's
    last step (4 steps an epoch), it stops after that epoch's checkpoint (it used to take one more step)."""
    counts, original_step, original_update = (
        {"steps": 0, "updates": 0},
        torch.optim.SGD.step,
        lightning.update_target,
    )

    def step_then_ctrl_c(self, *args, **kwargs):
        loss = original_step(self, *args, **kwargs)
        counts["steps"] += 1
        if counts["steps"] == at_step:
            signal.raise_signal(signal.SIGINT)
        return loss

    def counted_update(*args):
        original_update(*args)
        counts["updates"] += 1

    original_save = lightning.save_atomically
    saved_at = []

    def recording_save(state, path, weights):
        saved_at.append((dict(counts), state.get("global_step")))
        original_save(state, path, weights)

    handler = signal.getsignal(signal.SIGINT)
    try:
        with monkeypatch.context() as patch:
            patch.setattr(torch.optim.SGD, "step", step_then_ctrl_c)
            patch.setattr(lightning, "update_target", counted_update)
            patch.setattr(lightning, "save_atomically", recording_save)
            with pytest.raises(SystemExit) as stopped:
                train(lightning, tmp_path, "--epochs", "3")
        assert signal.getsignal(signal.SIGINT) is handler  # put back
    finally:
        signal.signal(signal.SIGINT, handler)
    assert stopped.value.code == 128 + signal.SIGINT
    assert saved_at[-1] == ({"steps": at_step, "updates": at_step}, at_step)  # step and update done
    assert not (tmp_path / "backbone.pt").exists()
    assert [row["epoch"] for row in read_metrics(tmp_path)] == list(range(1, 1 + at_step // 4))
    train(lightning, tmp_path, "--epochs", "3", "--resume")
    assert [(row["epoch"], row["step"]) for row in read_metrics(tmp_path)] == [(1, 4), (2, 8), (3, 12)]


def start(output_dir, *extra: str) -> subprocess.Popen:
    command = [sys.executable, str(LIGHTNING_SCRIPT), *RUN, "--output-dir", str(output_dir), *extra]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env
    )


def test_sigterm_saves_a_checkpoint_and_resume_keeps_the_schedules(lightning, tmp_path):
    process = start(tmp_path, "--epochs", "6", "--eval-every", "0", "--num-workers", "0")
    try:
        for line in process.stdout:
            if line.startswith("epoch 1 "):
                break
        time.sleep(0.3)  # into the second epoch
        process.send_signal(signal.SIGTERM)  # the run stops after the step it is in
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM
    assert stderr.strip().splitlines()[-1] == "stopped by SIGTERM: checkpoint saved; continue with --resume"
    assert 4 < checkpoint(tmp_path)["global_step"] < 24
    train(lightning, tmp_path, "--epochs", "6", "--eval-every", "0", "--num-workers", "0", "--resume")
    rows = read_metrics(tmp_path)
    assert [(row["epoch"], row["step"]) for row in rows] == [(epoch, 4 * epoch) for epoch in range(1, 7)]
    peak_lr, warmup_steps = 0.2 * 16 / 256, round(0.6 * 4)  # warm-up: a tenth of the epochs
    assert rows[-1]["lr"] == pytest.approx(peak_lr * lightning.lr_factor(23, 24, warmup_steps))  # on time
    assert rows[-1]["tau"] == pytest.approx(lightning.tau_at(23, 24, 0.99))


def test_a_diverged_loss_stops_the_run_and_keeps_the_last_good_checkpoint(lightning, tmp_path, monkeypatch):
    original, calls = lightning.BYOL.forward, iter(range(10**6))

    def diverging(self, *views):
        loss, projections = original(self, *views)
        return (loss * float("nan") if next(calls) >= 5 else loss), projections

    monkeypatch.setattr(lightning.BYOL, "forward", diverging)
    with pytest.raises(SystemExit) as stopped:
        lightning.main([*RUN, "--epochs", "3", "--output-dir", str(tmp_path)])
    assert "diverged" in str(stopped.value.code)
    assert checkpoint(tmp_path)["global_step"] == 4  # after the first epoch, before the loss diverged
    assert all(torch.isfinite(tensor).all() for tensor in checkpoint(tmp_path)["state_dict"].values())


def test_resume_refuses_changed_settings(lightning, runs, data, tmp_path, capsys):
    (tmp_path / "checkpoint-last.pt").write_bytes((runs[2] / "checkpoint-last.pt").read_bytes())
    with pytest.raises(SystemExit) as error:
        lightning.main(
            [*RUN, *data, "--epochs", "3", "--output-dir", str(tmp_path), "--resume", "--lr", "0.5"]
        )
    assert error.value.code == 2
    assert "cannot resume: the checkpoint was made with lr 0.2" in capsys.readouterr().err


def test_an_existing_run_is_refused_in_one_line_and_left_as_it_is(runs, tmp_path):
    """Refused before Lightning starts: no start-up chatter, no new lightning_logs/version_N folder."""
    shutil.copytree(runs[2], tmp_path / "run")
    before = sorted(path.name for path in (tmp_path / "run").rglob("*"))
    result = subprocess.run(
        [sys.executable, str(LIGHTNING_SCRIPT), *RUN, "--epochs", "3", "--output-dir", str(tmp_path / "run")],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"byol.py: error: {tmp_path / 'run'} holds a run: pass --resume, --overwrite or another --output-dir"
    ]
    assert sorted(path.name for path in (tmp_path / "run").rglob("*")) == before


def test_overwrite_replaces_a_finished_run(lightning, runs, tmp_path):
    shutil.copytree(runs[2], tmp_path / "run")  # with its lightning_logs/version_0
    before = {path.name for path in (tmp_path / "run" / "lightning_logs").iterdir()}
    lightning.main([*RUN, "--epochs", "1", "--output-dir", str(tmp_path / "run"), "--overwrite"])
    assert [row["epoch"] for row in read_metrics(tmp_path / "run")] == [1]
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
