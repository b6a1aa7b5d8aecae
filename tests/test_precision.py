"""--precision: bf16 mixed precision computes the convolutions in bf16 and keeps float32 weights; auto
picks bf16 only on GPUs that compute in it natively (compute capability 8.0, Ampere, or later)."""

import pytest
import torch

TINY = (
    "--data synthetic --synthetic-images 32 --input-size 8 --batch-size 16 --epochs 1 --hidden-dim 16 "
    "--proj-dim 8 --eval-every 0 --num-workers 0"
).split()


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp32", torch.float32)])
@pytest.mark.parametrize("script", ["byol", "lightning"])
def test_the_step_computes_in_the_precision_asked_for(
    request, script, precision, dtype, tmp_path, monkeypatch
):
    module = request.getfixturevalue(script)
    seen = {"conv1": [], "loss": []}

    class ReportingBYOL(module.BYOL):
        """The script's model, reporting the dtype of its first convolution's output and of its loss."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.encoder.conv1.register_forward_hook(
                lambda conv, inputs, out: seen["conv1"].append(out.dtype)
            )

        def forward(self, *views):
            loss, projections = super().forward(*views)
            seen["loss"].append(loss.dtype)
            return loss, projections

    monkeypatch.setattr(module, "BYOL", ReportingBYOL)
    module.main([*TINY, "--precision", precision, "--output-dir", str(tmp_path)])
    assert len(seen["loss"]) == 2  # the epoch's two steps
    assert len(seen["conv1"]) == 4 and set(seen["conv1"]) == {dtype}  # two views a step
    assert set(seen["loss"]) == {torch.float32}  # the loss is computed in float32 either way
    state = torch.load(tmp_path / "backbone.pt", weights_only=True)
    assert state["conv1.weight"].dtype == torch.float32
    assert all(tensor.dtype in (torch.float32, torch.int64) for tensor in state.values())  # float32 weights


class FakeGPUs:
    """torch.cuda as a machine with these GPUs' compute capabilities would answer it."""

    def __init__(self, monkeypatch, *capabilities):
        self.capabilities, self.asked = capabilities, []
        monkeypatch.setattr(torch.cuda, "is_available", lambda: bool(capabilities))
        monkeypatch.setattr(torch.cuda, "device_count", lambda: len(capabilities))
        monkeypatch.setattr(torch.cuda, "get_device_capability", self.capability)

    def capability(self, device=None):
        self.asked.append(device)
        if not self.capabilities:
            raise RuntimeError("Found no NVIDIA driver on your system")
        device = torch.device("cuda" if device is None else device)
        if device.type != "cuda":
            raise ValueError(f"Expected a cuda device, but got: {device}")  # as torch.cuda says it
        return self.capabilities[device.index or 0]


def test_auto_follows_the_gpu_that_device_names(byol, monkeypatch):
    FakeGPUs(monkeypatch, (8, 0), (7, 5), (9, 0))
    assert byol.parse_args([]).device == "cuda"  # the default, where a GPU is
    assert byol.parse_args([]).precision == "bf16"
    expected = {"cuda": "bf16", "cuda:0": "bf16", "cuda:1": "fp32", "cuda:2": "bf16", "cpu": "fp32"}
    for device, precision in expected.items():
        assert byol.parse_args(["--device", device]).precision == precision, device
    for asked in ("bf16", "fp32"):  # what is asked for is kept, wherever
        assert byol.parse_args(["--device", "cuda:1", "--precision", asked]).precision == asked
        assert byol.parse_args(["--device", "cpu", "--precision", asked]).precision == asked
    FakeGPUs(monkeypatch, (7, 0))
    assert byol.parse_args(["--device", "cuda"]).precision == "fp32"  # Volta: emulated bf16, slower


def test_auto_is_fp32_on_a_machine_without_gpus(byol, lightning, monkeypatch):
    gpus = FakeGPUs(monkeypatch)
    assert byol.parse_args([]).device == "cpu" and byol.parse_args([]).precision == "fp32"
    assert lightning.parse_args([]).precision == "fp32"  # --accelerator auto finds no GPU
    assert lightning.parse_args(["--accelerator", "cpu"]).precision == "fp32"
    assert byol.parse_args(["--precision", "bf16"]).precision == "bf16"
    assert lightning.parse_args(["--precision", "bf16"]).precision == "bf16"
    assert gpus.asked == []  # no GPU to ask


@pytest.mark.parametrize(("capability", "native"), [((8, 0), True), ((9, 0), True), ((7, 5), False)])
def test_lightning_auto_follows_the_accelerator(lightning, monkeypatch, capability, native):
    FakeGPUs(monkeypatch, capability)
    expected = "bf16" if native else "fp32"
    for accelerator in ("auto", "gpu", "cuda"):
        assert lightning.parse_args(["--accelerator", accelerator]).precision == expected, accelerator
    assert lightning.parse_args([]).precision == expected  # auto, the default
    assert lightning.parse_args(["--accelerator", "cpu"]).precision == "fp32"  # a GPU, but not used
    assert lightning.parse_args(["--accelerator", "gpu", "--precision", "fp32"]).precision == "fp32"
