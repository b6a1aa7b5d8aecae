"""The distributed script on the CPU: two processes train in step, whether Lightning starts them or
torchrun starts them as two machines; a signal stops them with a checkpoint; resuming needs as many."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import DISTRIBUTED_SCRIPT, ROOT, run_script

# 64 images, 8 per process and step: 4 steps per epoch with two processes.
RUN = (
    "--data synthetic --synthetic-images 64 --input-size 8 --batch-size 8 --hidden-dim 32 "
    "--proj-dim 16 --knn-k 10 --num-workers 0 --accelerator cpu"
).split()
PROBE = Path(__file__).parent / "distributed_probe.py"
UNBUFFERED = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def read_metrics(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """A 3-epoch run of two processes started by Lightning, each saving its final weights."""
    output_dir = tmp_path_factory.mktemp("two_processes")
    arguments = [
        *RUN,
        "--devices",
        "2",
        "--epochs",
        "3",
        "--eval-every",
        "1",
        "--output-dir",
        str(output_dir),
    ]
    result = run_script(PROBE, *arguments)
    assert result.returncode == 0, result.stderr[-3000:]
    return output_dir, result


def test_both_processes_finish_with_the_same_weights(two_processes):
    output_dir, _ = two_processes
    rank_0 = torch.load(output_dir / "rank-0.pt", weights_only=True)
    rank_1 = torch.load(output_dir / "rank-1.pt", weights_only=True)
    assert rank_0.keys() == rank_1.keys()
    for name, tensor in rank_0.items():
        if "running_" not in name and "num_batches" not in name:  # BatchNorm statistics: each its own batch
            assert torch.equal(tensor, rank_1[name]), name
    backbone = torch.load(output_dir / "backbone.pt", weights_only=True)
    assert all(torch.equal(tensor, rank_0[f"encoder.{name}"]) for name, tensor in backbone.items())


def test_the_global_batch_sets_the_schedule_and_one_process_reports(two_processes, distributed):
    output_dir, result = two_processes
    rows = read_metrics(output_dir)
    assert [row["epoch"] for row in rows] == [1, 2, 3] and [row["step"] for row in rows] == [4, 8, 12]
    assert all(0 <= row["knn_top1"] <= 1 for row in rows)
    peak_lr = 0.2 * 8 * 2 / 256  # --lr for a batch of 256, scaled to the global batch of 8 x 2
    assert rows[0]["lr"] == pytest.approx(peak_lr * distributed.lr_factor(3, 12, 1))
    assert result.stdout.count("epoch 3 ") == 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_machines_joined_over_loopback(tmp_path):
    """torchrun starts one process on each of two 'machines'; Lightning finds them. Here the crops are
    made by DataLoader workers, from a folder (the other tests crop images held in memory)."""
    from PIL import Image

    from conftest import PYTORCH_SCRIPT, load_script

    images, labels = load_script(PYTORCH_SCRIPT, "byol_pytorch").synthetic_images(64, seed=0).tensors
    for i, (image, label) in enumerate(zip(images, labels)):
        (tmp_path / "data" / str(int(label))).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(tmp_path / "data" / str(int(label)) / f"{i}.png")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1"]
    torchrun += ["--master-addr", "127.0.0.1", "--master-port", str(free_port())]
    arguments = [*RUN, "--epochs", "2", "--eval-every", "1", "--output-dir", str(tmp_path / "out")]
    arguments += ["--data", str(tmp_path / "data"), "--val", str(tmp_path / "data"), "--num-workers", "1"]
    arguments += ["--devices", "1", "--num-nodes", "2"]
    machines = [
        subprocess.Popen(
            [*torchrun, "--node-rank", str(rank), str(DISTRIBUTED_SCRIPT), *arguments],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=UNBUFFERED,
        )
        for rank in (0, 1)
    ]
    try:
        outputs = [machine.communicate(timeout=300) for machine in machines]
    finally:
        for machine in machines:
            machine.kill()
    assert [machine.returncode for machine in machines] == [0, 0], (
        outputs[0][1][-3000:] + outputs[1][1][-3000:]
    )
    assert "epoch 2 " in outputs[0][0] and "epoch" not in outputs[1][0]  # only the first process reports
    assert [row["step"] for row in read_metrics(tmp_path / "out")] == [4, 8]
    assert (tmp_path / "out" / "backbone.pt").exists()


def test_sigterm_stops_both_processes_with_a_checkpoint(tmp_path):
    command = [sys.executable, str(DISTRIBUTED_SCRIPT), *RUN, "--devices", "2", "--epochs", "1000"]
    process = subprocess.Popen(
        [*command, "--eval-every", "0", "--output-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=UNBUFFERED,
    )  # fmt: skip
    try:
        for line in process.stdout:
            if line.startswith("epoch 1 "):
                break
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)  # Lightning passes it on to the other process
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM
    assert stderr.strip().splitlines()[-1] == "stopped by SIGTERM: checkpoint saved; continue with --resume"
    assert torch.load(tmp_path / "checkpoint-last.pt", weights_only=True)["global_step"] >= 4


def test_resume_needs_as_many_processes(two_processes, tmp_path):
    (tmp_path / "checkpoint-last.pt").write_bytes((two_processes[0] / "checkpoint-last.pt").read_bytes())
    arguments = [*RUN, "--devices", "1", "--epochs", "3", "--eval-every", "1", "--output-dir", str(tmp_path)]
    result = run_script(DISTRIBUTED_SCRIPT, *arguments, "--resume")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "byol.py: error: cannot resume: the checkpoint was made with devices 2"
    ]


def test_a_batch_larger_than_each_processs_share_is_refused(distributed, tmp_path, capsys):
    """48 images for 2 processes of 32: each would get 24, no batch at all (Lightning trained nothing)."""
    arguments = [*RUN, "--devices", "2", "--synthetic-images", "48", "--batch-size", "32"]
    with pytest.raises(SystemExit) as error:
        distributed.main([*arguments, "--output-dir", str(tmp_path / "out")])
    assert error.value.code == 2
    assert (
        capsys.readouterr().err.splitlines()[-1]
        == "byol.py: error: 2 processes x --batch-size 32 > 48 images"
    )
    assert not (tmp_path / "out" / "backbone.pt").exists()
