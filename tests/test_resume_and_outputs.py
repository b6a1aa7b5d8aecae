"""What a run leaves behind, and that an interrupted run resumes exactly where it stopped."""

import json
import signal

import pytest
import torch

from conftest import interrupt_at

SMALL_RUN = (
    "--data synthetic --synthetic-images 64 --input-size 16 --batch-size 16 --epochs 3 "
    "--hidden-dim 64 --proj-dim 32 --eval-every 1 --knn-k 10"
).split()
TIMING_KEYS = {"images_per_s", "epoch_time_s", "elapsed_s"}


def train(byol, output_dir, *extra: str) -> dict:
    return byol.main([*SMALL_RUN, "--output-dir", str(output_dir), *extra])


def read_metrics(output_dir) -> list[dict]:
    rows = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in rows]


@pytest.fixture(
    scope="module",
    params=["--crops-on-device", "--no-crops-on-device"],
    ids=["crops on the device", "crops in workers"],
)
def data_path(request) -> str:
    """Both ways to make the crops: batched on the device (the default for in-memory data such as
    this), and per image in DataLoader workers."""
    return request.param


@pytest.fixture(scope="module")
def finished_run(byol, tmp_path_factory, data_path):
    output_dir = tmp_path_factory.mktemp("straight")
    train(byol, output_dir, "--num-workers", "0", data_path)
    return output_dir


def test_metrics_file_has_one_row_per_epoch(finished_run):
    rows = [json.loads(line) for line in (finished_run / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    assert [row["step"] for row in rows] == [4, 8, 12]
    for row in rows:
        assert {"epoch", "step", "loss", "lr", "tau", "images_per_s", "knn_top1", "projection_std"} <= set(
            row
        )
        assert 0 <= row["knn_top1"] <= 1 and row["images_per_s"] > 0 and 0 < row["loss"] < 8
    assert rows[-1]["tau"] > rows[0]["tau"]


def test_backbone_loads_with_weights_only(byol, finished_run):
    state = torch.load(finished_run / "backbone.pt", weights_only=True)
    encoder, _ = byol.resnet_encoder("resnet18", small_images=True)
    encoder.load_state_dict(state)  # strict: exactly the encoder's weights
    checkpoint = torch.load(finished_run / "checkpoint-last.pt", weights_only=True)
    online = {
        k.removeprefix("encoder."): v for k, v in checkpoint["model"].items() if k.startswith("encoder.")
    }
    assert all(torch.equal(state[k], online[k]) for k in state)  # the online encoder, not the target


def test_checkpoint_holds_what_resuming_needs(finished_run):
    checkpoint = torch.load(finished_run / "checkpoint-last.pt", weights_only=True)
    assert {"model", "optimizer", "step", "epoch", "args", "rng_cpu"} <= set(checkpoint)
    assert checkpoint["step"] == 12 and checkpoint["epoch"] == 3
    assert any(k.startswith("target_encoder.") for k in checkpoint["model"])
    assert any(k.startswith("predictor.") for k in checkpoint["model"])
    assert checkpoint["optimizer"]["state"]  # momentum buffers


@pytest.mark.parametrize(
    "interrupted_step, saved_step, epochs_written",
    [(5, 6, 1), (3, 4, 1)],  # in the middle of the second epoch; in the first epoch's last step
    ids=["mid-epoch", "epoch's last step"],
)
def test_interrupted_and_resumed_run_equals_uninterrupted(
    byol, finished_run, data_path, tmp_path, monkeypatch, interrupted_step, saved_step, epochs_written
):
    with monkeypatch.context() as patch:
        interrupt_at(byol, patch, interrupted_step)
        with pytest.raises(SystemExit) as stopped:
            train(byol, tmp_path, "--num-workers", "1", data_path)
    assert stopped.value.code == 128 + signal.SIGINT
    assert torch.load(tmp_path / "checkpoint-last.pt", weights_only=True)["step"] == saved_step
    assert len(read_metrics(tmp_path)) == epochs_written  # a finished epoch keeps its metrics and kNN
    assert not (tmp_path / "backbone.pt").exists()

    # any number of workers gives the same data
    train(byol, tmp_path, "--num-workers", "2", "--resume", data_path)

    resumed = torch.load(tmp_path / "checkpoint-last.pt", weights_only=True)
    straight = torch.load(finished_run / "checkpoint-last.pt", weights_only=True)
    for name, tensor in straight["model"].items():
        assert torch.equal(resumed["model"][name], tensor), name
    for index, state in straight["optimizer"]["state"].items():
        assert torch.equal(resumed["optimizer"]["state"][index]["momentum_buffer"], state["momentum_buffer"])
    assert read_metrics(tmp_path) == read_metrics(finished_run)


def test_resume_refuses_changed_settings(byol, finished_run, tmp_path, capsys):
    (tmp_path / "checkpoint-last.pt").write_bytes((finished_run / "checkpoint-last.pt").read_bytes())
    with pytest.raises(SystemExit) as error:
        byol.main([*SMALL_RUN, "--output-dir", str(tmp_path), "--resume", "--lr", "0.5"])
    assert "--lr" in str(error.value.code) and "cannot resume" in str(error.value.code)


def test_resume_without_a_checkpoint_does_not_start_over_an_old_run(byol, finished_run, tmp_path):
    for name in ("metrics.jsonl", "backbone.pt"):  # a run whose checkpoint was deleted
        (tmp_path / name).write_bytes((finished_run / name).read_bytes())
    with pytest.raises(SystemExit) as error:
        train(byol, tmp_path, "--resume")
    assert "without checkpoint-last.pt" in str(error.value.code) and "--overwrite" in str(error.value.code)
    assert (tmp_path / "metrics.jsonl").read_bytes() == (finished_run / "metrics.jsonl").read_bytes()


def test_resume_drops_a_metrics_line_cut_short_by_a_crash(byol, finished_run, data_path, tmp_path, capsys):
    for name in ("metrics.jsonl", "checkpoint-last.pt"):
        (tmp_path / name).write_bytes((finished_run / name).read_bytes())
    with open(tmp_path / "metrics.jsonl", "a") as metrics:
        metrics.write('{"epoch": 4, "step": 1')
    train(byol, tmp_path, "--num-workers", "0", data_path, "--resume")  # the run had ended: nothing to train
    assert "dropped an incomplete line" in capsys.readouterr().out
    assert read_metrics(tmp_path) == read_metrics(finished_run)


def test_stop_request_in_the_last_step_lets_the_run_finish(byol, tmp_path, monkeypatch):
    interrupt_at(byol, monkeypatch, 11)  # the 12th and last step
    train(byol, tmp_path, "--num-workers", "0")  # no SystemExit: nothing is left to resume
    assert (tmp_path / "backbone.pt").exists() and len(read_metrics(tmp_path)) == 3
    state = torch.load(tmp_path / "backbone.pt", weights_only=True)
    assert all(tensor.device.type == "cpu" for tensor in state.values())
