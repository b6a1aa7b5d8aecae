"""bf16 mixed precision (--precision): the step computes in bf16, keeps float32 weights, and lands
close to the float32 step."""

import copy

import pytest
import torch


def one_step(byol, model, bf16: bool):
    optimizer = torch.optim.SGD(byol.parameter_groups(model, 5e-4), lr=0.0, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    view_1, view_2 = (torch.randn(8, 3, 16, 16, generator=generator) for _ in range(2))
    view_1, view_2 = byol.channels_last(view_1), byol.channels_last(view_2)
    loss, _ = byol.training_step(model, optimizer, view_1, view_2, 0.1, 0.99, torch.device("cpu"), bf16)
    return loss.item()


def test_bf16_step_is_bf16_and_close_to_float32(byol):
    torch.manual_seed(0)
    model = byol.BYOL("resnet18", small_images=True, hidden_dim=64, proj_dim=32)
    model = model.to(memory_format=torch.channels_last)
    in_bf16, in_fp32 = copy.deepcopy(model), copy.deepcopy(model)

    activations = []
    in_bf16.encoder.conv1.register_forward_hook(lambda module, inputs, output: activations.append(output))
    loss_bf16, loss_fp32 = one_step(byol, in_bf16, True), one_step(byol, in_fp32, False)

    assert activations[0].dtype == torch.bfloat16  # the convolutions ran in bf16
    assert loss_bf16 != loss_fp32  # so the two steps differ, by bf16's rounding only
    assert loss_bf16 == pytest.approx(loss_fp32, rel=0.02)
    # Both steps move the online weights the same way (unrelated updates would have a cosine near 0).
    start = torch.cat([p.detach().flatten() for p in model.online_parameters()])
    moved, moved_fp32 = (
        torch.cat([p.detach().flatten() for p in m.online_parameters()]) - start for m in (in_bf16, in_fp32)
    )
    assert torch.cosine_similarity(moved, moved_fp32, dim=0) > 0.8


def test_fp32_step_has_no_bf16(byol):
    torch.manual_seed(0)
    model = byol.BYOL("resnet18", small_images=True, hidden_dim=64, proj_dim=32)
    activations = []
    model.encoder.conv1.register_forward_hook(lambda module, inputs, output: activations.append(output))
    one_step(byol, model, False)
    assert activations[0].dtype == torch.float32


@pytest.mark.parametrize(("precision", "lightnings"), [("bf16", "bf16-mixed"), ("fp32", "32-true")])
def test_lightning_trains_in_the_precision_asked_for(lightning, tmp_path, precision, lightnings):
    args = lightning.parse_args(["--precision", precision])
    trainer = lightning.make_trainer(args, torch.device("cpu"), tmp_path, lightning.StopRequest())
    assert trainer.precision == lightnings


def test_auto_precision_is_settled_before_training(byol, tmp_path):
    args = byol.parse_args(["--data", "synthetic", "--synthetic-images", "16", "--batch-size", "8"])
    args.output_dir, args.epochs, args.eval_every, args.num_workers = str(tmp_path), 1, 0, 0
    args.hidden_dim, args.proj_dim, args.input_size = 16, 8, 8
    byol.train(args)
    expected = "bf16" if byol.has_fast_bf16(torch.device("cpu")) else "fp32"
    saved = torch.load(tmp_path / "checkpoint-last.pt", weights_only=True)["args"]["precision"]
    assert args.precision == saved == expected
