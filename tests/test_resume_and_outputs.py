"""What a run leaves behind, and that a stopped run resumes exactly where it stopped."""

import json
import signal

import pytest
import torch

from conftest import signal_at

SMALL_RUN = (
    "--data synthetic --synthetic-images 64 --input-size 16 --batch-size 16 --epochs 3 "
    "--hidden-dim 64 --proj-dim 32 --eval-every 1 --knn-k 10 --num-workers 2"
).split()
TIMING_KEYS = {"images_per_s", "epoch_time_s", "elapsed_s"}
METRICS_KEYS = {"epoch", "step", "loss", "lr", "tau", "projection_std", "knn_top1"}


def train(byol, output_dir, *extra: str) -> dict:
    return byol.main([*SMALL_RUN, "--output-dir", str(output_dir), *extra])


def read_metrics(output_dir) -> list[dict]:
    rows = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in rows]


@pytest.fixture(scope="module", params=["memory", "folder"], ids=["crops on the device", "crops in workers"])
def data(request, tmp_path_factory) -> list[str]:
    """Both ways to make the crops: the synthetic images, in memory, are cropped on the device; the same
    images written to a folder are cropped by the DataLoader workers."""
    if request.param == "memory":
        return []
    from PIL import Image

    from conftest import PYTORCH_SCRIPT, load_script

    byol = load_script(PYTORCH_SCRIPT, "byol_pytorch")
    folder = tmp_path_factory.mktemp("images")
    images, labels = byol.synthetic_images(64, seed=0).tensors
    for i, (image, label) in enumerate(zip(images, labels)):
        (folder / str(int(label))).mkdir(exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / str(int(label)) / f"{i}.png")
    return ["--data", str(folder), "--val", str(folder)]


@pytest.fixture(scope="module")
def finished_run(byol, tmp_path_factory, data):
    output_dir = tmp_path_factory.mktemp("straight")
    train(byol, output_dir, *data)
    return output_dir


def test_metrics_file_has_one_row_per_epoch(finished_run):
    rows = [json.loads(line) for line in (finished_run / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2, 3] and [row["step"] for row in rows] == [4, 8, 12]
    for row in rows:
        assert set(row) == METRICS_KEYS | TIMING_KEYS
        assert 0 <= row["knn_top1"] <= 1 and row["images_per_s"] > 0 and 0 < row["loss"] < 8
    assert rows[-1]["tau"] > rows[0]["tau"]


def test_backbone_is_the_online_encoder_and_loads_with_weights_only(byol, finished_run):
    state = torch.load(finished_run / "backbone.pt", weights_only=True)
    byol.BYOL("resnet18", True, 64, 32).encoder.load_state_dict(
        state
    )  # strict: exactly the encoder's weights
    checkpoint = torch.load(finished_run / "checkpoint-last.pt", weights_only=True)
    assert all(torch.equal(state[k], checkpoint["model"][f"encoder.{k}"]) for k in state)
    assert not all(torch.equal(state[k], checkpoint["model"][f"target_encoder.{k}"]) for k in state)
    assert checkpoint["step"] == 12 and checkpoint["optimizer"]["state"]  # with momentum
    assert not list(finished_run.glob("*.tmp"))


@pytest.mark.parametrize("stop_step", [5, 3], ids=["mid-epoch", "in an epoch's last step"])
def test_stopped_and_resumed_run_equals_uninterrupted(
    byol, finished_run, data, tmp_path, monkeypatch, stop_step
):
    with monkeypatch.context() as patch:
        signal_at(byol, patch, stop_step)
        with pytest.raises(SystemExit) as stopped:
            train(byol, tmp_path, *data)
    assert stopped.value.code == 128 + signal.SIGINT
    assert torch.load(tmp_path / "checkpoint-last.pt", weights_only=True)["step"] == stop_step + 1
    assert not (tmp_path / "backbone.pt").exists()
    train(byol, tmp_path, *data, "--resume")
    resumed = torch.load(tmp_path / "checkpoint-last.pt", weights_only=True)
    straight = torch.load(finished_run / "checkpoint-last.pt", weights_only=True)
    for name, tensor in straight["model"].items():
        assert torch.equal(resumed["model"][name], tensor), name
    for index, state in straight["optimizer"]["state"].items():
        assert torch.equal(resumed["optimizer"]["state"][index]["momentum_buffer"], state["momentum_buffer"])
    assert read_metrics(tmp_path) == read_metrics(finished_run)
    assert [signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)] == [
        signal.default_int_handler,
        signal.SIG_DFL,
    ]


@pytest.mark.parametrize(
    ("flags", "name"),
    [(["--lr", "0.5"], "lr"), (["--epochs", "4"], "epochs"), (["--seed", "1"], "seed"),
     (["--optimizer", "lars"], "optimizer"), (["--warmup-epochs", "1"], "warmup_epochs")],
)  # fmt: skip
def test_resume_refuses_changed_settings(byol, finished_run, data, tmp_path, capsys, flags, name):
    (tmp_path / "checkpoint-last.pt").write_bytes((finished_run / "checkpoint-last.pt").read_bytes())
    with pytest.raises(SystemExit) as error:
        train(byol, tmp_path, *data, "--resume", *flags)
    assert error.value.code == 2
    assert f"cannot resume: the checkpoint was made with {name} " in capsys.readouterr().err


def test_resume_of_a_finished_run_trains_nothing_more(byol, finished_run, data, tmp_path):
    for name in ("checkpoint-last.pt", "metrics.jsonl"):
        (tmp_path / name).write_bytes((finished_run / name).read_bytes())
    train(byol, tmp_path, *data, "--resume")
    assert read_metrics(tmp_path) == read_metrics(finished_run)
    assert (tmp_path / "backbone.pt").exists()


def test_an_existing_run_is_not_replaced_without_resume_or_overwrite(byol, finished_run, tmp_path, capsys):
    (tmp_path / "metrics.jsonl").write_bytes((finished_run / "metrics.jsonl").read_bytes())
    for flags in ([], ["--resume"]):  # --resume, with metrics but no checkpoint: nothing to resume
        with pytest.raises(SystemExit) as error:
            train(byol, tmp_path, *flags)
        assert error.value.code == 2 and "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "metrics.jsonl").read_bytes() == (finished_run / "metrics.jsonl").read_bytes()
    train(byol, tmp_path, "--overwrite", "--epochs", "1")
    assert len(read_metrics(tmp_path)) == 1
