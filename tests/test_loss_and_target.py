"""The BYOL loss, the target network's moving average and the schedules."""

import itertools
import math

import pytest
import torch


def test_loss_of_hand_computed_cases(byol):
    p = torch.tensor([[1.0, 0.0], [3.0, 4.0], [2.0, 0.0]])
    z = torch.tensor([[0.0, 1.0], [4.0, 3.0], [-5.0, 0.0]])
    # cosines 0, 24/25, -1: per-pair losses 2, 0.08, 4
    assert byol.regression_loss(p, z).item() == pytest.approx((2 + 0.08 + 4) / 3, abs=1e-6)
    assert byol.regression_loss(p[1:2], p[1:2] * 7).item() == pytest.approx(0.0, abs=1e-6)


def test_loss_gradient_is_hand_computed_value(byol):
    # d/dp (2 - 2 p.z / |p||z|) at p = (1, 0), z = (0, 1): -2 (z - (p.z) p) / |p| = (0, -2)
    p = torch.tensor([[1.0, 0.0]], requires_grad=True)
    z = torch.tensor([[0.0, 1.0]], requires_grad=True)
    byol.regression_loss(p, z).backward()
    assert torch.allclose(p.grad, torch.tensor([[0.0, -2.0]]))
    assert z.grad is None  # stop-gradient on the target


def test_loss_ignores_scale_and_target_is_detached(byol):
    p, z = torch.randn(8, 16), torch.randn(8, 16)
    assert byol.regression_loss(3 * p, 0.5 * z).item() == pytest.approx(
        byol.regression_loss(p, z).item(), rel=1e-5
    )


def small_model(byol):
    torch.manual_seed(0)
    return byol.BYOL("resnet18", small_images=True, hidden_dim=32, proj_dim=16)


def test_symmetrised_loss_is_the_sum_of_both_directions_and_symmetric(byol):
    model = small_model(byol)
    v1, v2 = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)
    loss_12, _ = model(v1, v2)
    loss_21, _ = model(v2, v1)
    assert loss_12.item() == pytest.approx(loss_21.item(), rel=1e-5)
    # the sum of two terms in [0, 4]: a mean of the two would stay in [0, 4]
    with torch.no_grad():
        model.train()
        p1 = model.predictor(model.projector(model.encoder(v1)))
        p2 = model.predictor(model.projector(model.encoder(v2)))
        z1 = model.target_projector(model.target_encoder(v1))
        z2 = model.target_projector(model.target_encoder(v2))
    expected = byol.regression_loss(p1, z2) + byol.regression_loss(p2, z1)
    assert loss_12.item() == pytest.approx(expected.item(), rel=1e-4)


def test_target_receives_no_gradient(byol):
    model = small_model(byol)
    loss, _ = model(torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16))
    loss.backward()
    assert all(not p.requires_grad and p.grad is None for p in model.target_parameters())
    assert all(p.grad is not None for p in model.online_parameters())
    assert all(p.grad is not None for p in model.predictor.parameters())


def test_target_starts_as_a_copy_without_predictor(byol):
    model = small_model(byol)
    for online, target in zip(model.online_parameters(), model.target_parameters(), strict=True):
        assert online.shape == target.shape and torch.equal(online, target)
        assert online.data_ptr() != target.data_ptr()
    target_names = [n for n, _ in model.named_parameters() if n.startswith("target_")]
    assert not any("predictor" in n for n in target_names)


def test_one_target_update_equals_the_formula(byol):
    model = small_model(byol)
    with torch.no_grad():
        for p in model.online_parameters():
            p.add_(torch.randn_like(p))
    online = [p.detach().clone() for p in model.online_parameters()]
    target = [p.detach().clone() for p in model.target_parameters()]
    byol.update_target(model, tau=0.9)
    for o, t, new in zip(online, target, model.target_parameters(), strict=True):
        assert torch.allclose(new, 0.9 * t + 0.1 * o, atol=1e-6)
    # online weights are untouched
    assert all(torch.equal(a, b) for a, b in zip(online, model.online_parameters()))


def test_target_batchnorm_statistics_are_not_averaged(byol):
    model = small_model(byol)
    model.encoder.bn1.running_mean.fill_(5.0)
    byol.update_target(model, tau=0.5)
    assert torch.equal(model.target_encoder.bn1.running_mean, torch.zeros(64))


def test_tau_schedule_end_points_and_monotonic(byol):
    total = 1000
    taus = [byol.tau_at(step, total, 0.99) for step in range(total + 1)]
    assert taus[0] == pytest.approx(0.99)
    assert taus[-1] == pytest.approx(1.0)
    assert taus[total // 2] == pytest.approx(0.995)
    assert all(a <= b for a, b in itertools.pairwise(taus))


def test_learning_rate_warms_up_then_decays_to_zero(byol):
    total, warmup, peak = 100, 10, 0.4
    lrs = [byol.learning_rate_at(s, total, warmup, peak) for s in range(total)]
    assert lrs[0] == pytest.approx(peak / warmup)
    assert lrs[warmup - 1] == pytest.approx(peak) and lrs[warmup] == pytest.approx(peak)
    assert all(a < b for a, b in itertools.pairwise(lrs[:warmup]))
    assert all(a >= b for a, b in itertools.pairwise(lrs[warmup:]))
    assert byol.learning_rate_at(total, total, warmup, peak) == pytest.approx(0.0, abs=1e-12)
    assert lrs[(total + warmup) // 2] == pytest.approx(peak / 2, rel=1e-6)
    assert math.isclose(byol.learning_rate_at(0, total, 0, peak), peak)
