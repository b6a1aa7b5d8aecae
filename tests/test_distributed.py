"""The distributed script on the CPU: two processes train in step, whether Lightning starts them or
torchrun starts them as two machines; a signal stops all of them at one step, a dead process stops
the others, and bad input ends with one clear line."""

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
    result = run_script(
        PROBE, *RUN, "--devices", "2", "--epochs", "3", "--eval-every", "1", "--output-dir", str(output_dir)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return output_dir, result


def test_both_processes_finish_with_identical_weights(two_processes):
    output_dir, _ = two_processes
    rank_0 = torch.load(output_dir / "rank-0.pt", weights_only=True)
    rank_1 = torch.load(output_dir / "rank-1.pt", weights_only=True)
    assert rank_0.keys() == rank_1.keys()
    for name, tensor in rank_0.items():  # parameters, and BatchNorm statistics (averaged each epoch)
        assert torch.equal(tensor, rank_1[name]), name
    backbone = torch.load(output_dir / "backbone.pt", weights_only=True)
    assert all(torch.equal(tensor, rank_0[f"encoder.{name}"]) for name, tensor in backbone.items())


def test_loss_falls_and_the_global_batch_sets_the_schedule(two_processes, distributed):
    output_dir, _ = two_processes
    rows = read_metrics(output_dir)
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    assert [row["step"] for row in rows] == [4, 8, 12]  # 64 images // (8 x 2 processes)
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert all(0 <= row["knn_top1"] <= 1 for row in rows)
    peak_lr = 0.2 * 8 * 2 / 256  # --lr for a global batch of 256, scaled to 8 x 2
    assert rows[0]["lr"] == pytest.approx(distributed.learning_rate_at(3, 12, 1, peak_lr))


def test_one_report_for_all_processes(two_processes):
    _, result = two_processes
    assert result.stdout.count("SyncBatchNorm is off") == 1
    assert result.stdout.count("epoch 3/3") == 1
    assert "batch 8 x 2 processes" in result.stdout


def test_sampler_gives_each_process_its_share_of_the_global_batch(distributed):
    one_process = distributed.ResumableEpochSampler(40, 8, seed=3)
    shares = [distributed.DistributedEpochSampler(40, 4, seed=3, rank=rank, world_size=2) for rank in (0, 1)]
    assert len(one_process) == 40 and all(len(share) == 20 for share in shares)
    for epoch in (0, 1):
        for sampler in (one_process, *shares):
            sampler.set_epoch(epoch)
        keys = list(one_process)
        share_0, share_1 = (list(share) for share in shares)
        for step in range(5):
            batch_0, batch_1 = set(share_0[4 * step : 4 * step + 4]), set(share_1[4 * step : 4 * step + 4])
            assert not batch_0 & batch_1
            assert batch_0 | batch_1 == set(keys[8 * step : 8 * step + 8])  # one step of one process
    shares[1].set_epoch(1, start_batch=2)  # resuming: the batches already trained on are skipped
    shares[1].set_epoch(1)  # as Lightning calls it before the epoch
    assert list(shares[1]) == share_1[8:]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_machines_joined_over_loopback(tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1"]
    torchrun += ["--master-addr", "127.0.0.1", "--master-port", str(free_port())]
    arguments = [*RUN, "--epochs", "2", "--eval-every", "1", "--output-dir", str(tmp_path)]
    arguments += ["--no-crops-on-device", "--num-workers", "1"]  # the other tests crop on the device
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
    assert "on 2 machine(s) x 1 CPU processes\n" in outputs[0][0]  # not "(crops on the device)"
    assert outputs[1][0] == ""  # only rank 0 reports
    assert [row["step"] for row in read_metrics(tmp_path)] == [4, 8]
    assert (tmp_path / "backbone.pt").exists()


def start_run(output_dir: Path, *arguments: str) -> subprocess.Popen:
    """Two processes started by Lightning; returns once the first epoch is done."""
    process = subprocess.Popen(
        [
            sys.executable,
            str(DISTRIBUTED_SCRIPT),
            *RUN,
            "--devices",
            "2",
            *arguments,
            "--output-dir",
            str(output_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=UNBUFFERED,
    )
    for line in process.stdout:
        if line.startswith("epoch 1/"):
            break
    return process


PROC = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the processes in /proc")


def children(pid: int) -> list[int]:
    """The processes whose parent is pid (Linux)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@PROC
def test_a_dead_process_stops_the_other(tmp_path):
    process = start_run(tmp_path, "--epochs", "1000", "--eval-every", "0")
    try:
        [other] = children(process.pid)  # the second process; --num-workers 0: no DataLoader workers
        os.kill(other, signal.SIGKILL)
        _, stderr = process.communicate(timeout=120)  # it must not wait forever for the dead one
    finally:
        process.kill()
    assert process.returncode != 0
    if process.returncode > 0:  # else Lightning's launcher killed it, having seen its child die
        assert "another process failed" in stderr.strip().splitlines()[-1]


@PROC
def test_sigterm_to_the_first_process_stops_both_at_one_step_and_resume_continues(two_processes, tmp_path):
    arguments = ["--epochs", "3", "--eval-every", "1"]  # as two_processes: 12 steps, 8 after the first epoch
    process = start_run(tmp_path, *arguments)
    try:
        other = children(process.pid)
        process.send_signal(signal.SIGTERM)  # only the first process hears it
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM
    [message] = [line for line in stderr.splitlines() if "stopped by SIGTERM" in line]  # once
    step = int(message.split("at step ")[1].split(":")[0])
    assert torch.load(tmp_path / "checkpoint-last.pt", weights_only=True)["step"] == step < 12
    assert other and not any(running(pid) for pid in other)  # the second process stopped too

    result = run_script(
        DISTRIBUTED_SCRIPT, *RUN, "--devices", "2", *arguments, "--output-dir", str(tmp_path), "--resume"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = torch.load(tmp_path / "checkpoint-last.pt", weights_only=True)["state_dict"]
    straight = torch.load(two_processes[0] / "checkpoint-last.pt", weights_only=True)["state_dict"]
    for name, tensor in straight.items():
        if "running_" not in name:  # BatchNorm statistics restart from rank 0's (see the script)
            assert torch.equal(resumed[name], tensor), name
    assert [row["loss"] for row in read_metrics(tmp_path)] == [
        row["loss"] for row in read_metrics(two_processes[0])
    ]


def running(pid: int, patience: float = 30) -> bool:
    """Whether the process still runs (neither gone nor a zombie) after up to `patience` seconds."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        if state in "ZX":
            return False
        time.sleep(0.2)
    return True


def assert_fails_with(result: subprocess.CompletedProcess, *phrases: str) -> None:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


@pytest.mark.parametrize(
    ("arguments", "phrases"),
    [
        (["--devices", str((os.cpu_count() or 1) + 1)], ["--devices", "this machine has only"]),
        (["--devices", "two"], ["--devices", "positive integer or 'auto'"]),
        (["--sync-batchnorm"], ["--sync-batchnorm needs GPUs"]),
        (["--devices", "2", "--batch-size", "40"], ["--batch-size 40 x 2 processes", "64 training images"]),
    ],
)
def test_bad_input_ends_with_one_clear_line(tmp_path, arguments, phrases):
    result = run_script(DISTRIBUTED_SCRIPT, *RUN, "--epochs", "1", "--output-dir", str(tmp_path), *arguments)
    assert_fails_with(result, *phrases)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_asking_for_a_gpu_without_one(tmp_path):
    result = run_script(DISTRIBUTED_SCRIPT, *RUN, "--accelerator", "gpu", "--output-dir", str(tmp_path))
    assert_fails_with(result, "--accelerator gpu", "no CUDA GPU")


LAUNCHERS = {
    "torchrun": {"TORCHELASTIC_RUN_ID": "test", "LOCAL_WORLD_SIZE": "2", "WORLD_SIZE": "4"},
    "srun": {
        "SLURM_NTASKS": "4",
        "SLURM_NNODES": "2",
        "SLURM_NTASKS_PER_NODE": "2",
        "SLURM_JOB_NAME": "byol",
    },
}


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_devices_and_nodes_default_to_what_the_launcher_started(distributed, monkeypatch, launcher):
    for name in (*LAUNCHERS["torchrun"], *LAUNCHERS["srun"]):
        monkeypatch.delenv(name, raising=False)
    for name, value in LAUNCHERS[launcher].items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    args = distributed.parse_args(["--accelerator", "cpu"])
    assert distributed.resolve_launch(args) == ("cpu", 2, 2)  # 2 processes on each of 2 machines
    with pytest.raises(distributed.DataError, match="do not match the launcher"):
        distributed.resolve_launch(distributed.parse_args(["--accelerator", "cpu", "--devices", "4"]))


@pytest.fixture
def two_process_args(distributed):
    """The two-process run's settings, with what its data decides (--crops-on-device) settled."""
    args = distributed.parse_args([*RUN, "--epochs", "3", "--eval-every", "1"])
    distributed.load_data(args)
    return args


def test_resume_refuses_another_number_of_processes(distributed, two_processes, two_process_args):
    checkpoint = two_processes[0] / "checkpoint-last.pt"
    assert distributed.check_checkpoint(checkpoint, two_process_args, world_size=2, steps_per_epoch=4) == 12
    with pytest.raises(distributed.DataError, match="made by 2 processes, this run has 1"):
        distributed.check_checkpoint(checkpoint, two_process_args, world_size=1, steps_per_epoch=4)


def test_resume_refuses_another_number_of_steps_per_epoch(distributed, two_processes, two_process_args):
    """As after images were added to the training folder: the epoch's buffers would not fit."""
    checkpoint = two_processes[0] / "checkpoint-last.pt"
    with pytest.raises(distributed.DataError, match="have 4 steps, this run's 5: the number of training"):
        distributed.check_checkpoint(checkpoint, two_process_args, world_size=2, steps_per_epoch=5)
