"""--precision: bf16 mixed precision computes the convolutions in bf16 and keeps float32 weights; auto
picks bf16 only on GPUs that compute in it natively."""

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
    seen, original = [], module.resnet_encoder

    def encoder_that_reports(*args):
        encoder, dim = original(*args)
        encoder.conv1.register_forward_hook(lambda layer, inputs, output: seen.append(output.dtype))
        return encoder, dim

    monkeypatch.setattr(module, "resnet_encoder", encoder_that_reports)
    module.main([*TINY, "--precision", precision, "--output-dir", str(tmp_path)])
    assert seen and set(seen) == {dtype}
    state = torch.load(tmp_path / "backbone.pt", weights_only=True)
    assert all(tensor.dtype in (torch.float32, torch.int64) for tensor in state.values())  # float32 weights


def test_auto_is_bf16_only_on_gpus_that_have_it(byol, lightning, monkeypatch):
    assert byol.parse_args(["--device", "cpu"]).precision == "fp32"
    assert lightning.parse_args(["--accelerator", "cpu"]).precision == "fp32"
    for native in (True, False):
        monkeypatch.setattr(
            torch.cuda, "is_bf16_supported", lambda including_emulation=True, native=native: native
        )
        expected = "bf16" if native else "fp32"
        assert byol.parse_args(["--device", "cuda"]).precision == expected
        assert lightning.parse_args(["--accelerator", "gpu"]).precision == expected
    assert byol.parse_args(["--device", "cpu", "--precision", "bf16"]).precision == "bf16"  # asked for
