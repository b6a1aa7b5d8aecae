"""The BYOL loss, the target network's moving average, the schedules and LARS, on hand-computed cases."""

import itertools

import pytest
import torch


def test_loss_of_hand_computed_cases(byol):
    p = torch.tensor([[1.0, 0.0], [3.0, 4.0], [2.0, 0.0]])
    z = torch.tensor([[0.0, 1.0], [4.0, 3.0], [-5.0, 0.0]])
    # cosines 0, 24/25, -1: per-pair losses 2, 0.08, 4
    assert byol.regression_loss(p, z).item() == pytest.approx((2 + 0.08 + 4) / 3, abs=1e-6)
    assert byol.regression_loss(p[1:2], p[1:2] * 7).item() == pytest.approx(0.0, abs=1e-6)


def test_loss_gradient_is_hand_computed_value_and_stops_at_the_target(byol):
    # d/dp (2 - 2 p.z / |p||z|) at p = (1, 0), z = (0, 1): -2 (z - (p.z) p) / |p| = (0, -2)
    p = torch.tensor([[1.0, 0.0]], requires_grad=True)
    z = torch.tensor([[0.0, 1.0]], requires_grad=True)
    byol.regression_loss(p, z).backward()
    assert torch.allclose(p.grad, torch.tensor([[0.0, -2.0]]))
    assert z.grad is None  # stop-gradient on the target


def small_model(byol):
    torch.manual_seed(0)
    return byol.BYOL("resnet18", small_images=True, hidden_dim=32, proj_dim=16)


def online_and_target(model):
    online = [*model.encoder.parameters(), *model.projector.parameters()]
    return online, [*model.target_encoder.parameters(), *model.target_projector.parameters()]


def test_symmetrised_loss_is_the_sum_of_both_directions(byol):
    model = small_model(byol)
    v1, v2 = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)
    loss_12, _ = model(v1, v2)
    loss_21, _ = model(v2, v1)
    assert loss_12.item() == pytest.approx(loss_21.item(), rel=1e-5)
    with torch.no_grad():
        p1 = model.predictor(model.projector(model.encoder(v1)))
        p2 = model.predictor(model.projector(model.encoder(v2)))
        z1 = model.target_projector(model.target_encoder(v1))
        z2 = model.target_projector(model.target_encoder(v2))
    expected = byol.regression_loss(p1, z2) + byol.regression_loss(p2, z1)  # a sum, not a mean
    assert loss_12.item() == pytest.approx(expected.item(), rel=1e-4)


def test_only_the_online_network_learns_and_only_it_has_a_predictor(byol):
    model = small_model(byol)
    loss, _ = model(torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16))
    loss.backward()
    online, target = online_and_target(model)
    assert all(not p.requires_grad and p.grad is None for p in target)
    assert all(p.grad is not None for p in [*online, *model.predictor.parameters()])
    assert not any("predictor" in name for name, _ in model.named_parameters() if name.startswith("target_"))
    for o, t in zip(online, target, strict=True):  # the target starts as a copy
        assert torch.equal(o, t) and o.data_ptr() != t.data_ptr()


def test_one_target_update_equals_the_formula(byol):
    model = small_model(byol)
    online, target = online_and_target(model)
    with torch.no_grad():
        for p in online:
            p.add_(torch.randn_like(p))
    before = [(o.detach().clone(), t.detach().clone()) for o, t in zip(online, target)]
    model.encoder.bn1.running_mean.fill_(5.0)
    byol.update_target(model, tau=0.9)
    for (o, t), new_target, same_online in zip(before, target, online, strict=True):
        assert torch.allclose(new_target, 0.9 * t + 0.1 * o, atol=1e-6)
        assert torch.equal(same_online, o)
    assert torch.equal(model.target_encoder.bn1.running_mean, torch.zeros(64))  # statistics: not averaged


def test_tau_rises_from_its_base_to_one_on_a_cosine(byol):
    taus = [byol.tau_at(step, 1000, 0.99) for step in range(1001)]
    assert taus[0] == pytest.approx(0.99) and taus[-1] == pytest.approx(1.0)
    assert taus[500] == pytest.approx(0.995)
    assert all(a <= b for a, b in itertools.pairwise(taus))


def test_learning_rate_warms_up_then_decays_to_zero(byol):
    total, warmup = 100, 10
    factors = [byol.lr_factor(s, total, warmup) for s in range(total)]
    assert factors[0] == pytest.approx(0.1) and factors[warmup - 1] == pytest.approx(1.0)
    assert factors[warmup] == pytest.approx(1.0)
    assert all(a < b for a, b in itertools.pairwise(factors[:warmup]))
    assert all(a >= b for a, b in itertools.pairwise(factors[warmup:]))
    assert factors[(total + warmup) // 2] == pytest.approx(0.5)
    assert byol.lr_factor(total, total, warmup) == pytest.approx(0.0, abs=1e-12)
    assert byol.lr_factor(0, total, 0) == 1.0


def test_lars_step_of_a_hand_computed_case(byol):
    weight = torch.nn.Parameter(torch.tensor([3.0, 4.0]))  # |w| = 5
    bias = torch.nn.Parameter(torch.tensor([1.0]))
    groups = [
        {"params": [weight], "weight_decay": 0.5, "lars": True},
        {"params": [bias], "weight_decay": 0.0, "lars": False},
    ]
    optimizer = byol.LARS(groups, lr=2.0, momentum=0.9)
    assert optimizer.defaults == {"lr": 2.0, "momentum": 0.9}
    weight.grad, bias.grad = torch.tensor([0.5, -2.0]), torch.tensor([0.25])
    optimizer.step()
    # update = g + 0.5 w = (2, 0), |update| = 2; ratio = 0.02 * 5 / 2 / lr = 0.025 (below 1: it scales)
    # velocity = 0.025 * (2, 0) = (0.05, 0); w = (3, 4) - lr * velocity = (2.9, 4)
    assert torch.allclose(weight, torch.tensor([2.9, 4.0]))
    assert torch.allclose(bias, torch.tensor([1.0 - 2.0 * 0.25]))  # no adaptation, no decay: SGD
    weight.grad, bias.grad = torch.zeros(2), torch.zeros(1)
    optimizer.step()
    # update = 0.5 w = (1.45, 2), half of |w|: ratio = 0.02 * 2 / 2 = 0.02, scaled update (0.029, 0.04);
    # velocity = 0.9 * (0.05, 0) + (0.029, 0.04) = (0.074, 0.04); w = (2.9, 4) - 2 * velocity
    assert torch.allclose(weight, torch.tensor([2.752, 3.92]), atol=1e-6)
    assert torch.allclose(bias, torch.tensor([0.5 - 2.0 * 0.9 * 0.25]))  # momentum alone
    state = optimizer.state[weight]["momentum_buffer"]
    assert torch.allclose(state, torch.tensor([0.074, 0.04]), atol=1e-7)


def test_lars_ratio_is_capped_at_one(byol):
    weight = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    optimizer = byol.LARS([{"params": [weight], "weight_decay": 0.0, "lars": True}], lr=0.1, momentum=0.0)
    weight.grad = torch.tensor([0.01, 0.0])
    optimizer.step()  # ratio 0.02 * 5 / 0.01 / 0.1 = 100, capped: the plain step lr * g
    assert torch.allclose(weight, torch.tensor([3.0 - 0.1 * 0.01, 4.0]))
    weight.grad = torch.tensor([0.0, 2.5])
    before = weight.detach().clone()
    optimizer.step()  # ratio 0.02 * |w| / 2.5 / 0.1 = 0.4: the step shrinks to 0.4 of SGD's
    ratio = 0.02 * before.norm() / 2.5 / 0.1
    assert torch.allclose(weight, before - 0.1 * ratio * torch.tensor([0.0, 2.5]))


def test_lars_step_of_a_zero_weight_is_plain(byol):
    weight = torch.nn.Parameter(torch.zeros(3))
    optimizer = byol.LARS([{"params": [weight], "weight_decay": 0.1, "lars": True}], lr=0.1, momentum=0.0)
    weight.grad = torch.ones(3)
    optimizer.step()  # |w| = 0 would make the ratio 0 and the weight stuck: it steps as SGD does
    assert torch.allclose(weight, torch.full((3,), -0.1))
    with torch.no_grad():
        weight.zero_()
    weight.grad = torch.zeros(3)
    optimizer.step()  # a zero weight and a zero update: 0 / 0, which must not give NaN
    assert torch.equal(weight, torch.zeros(3))


def test_lars_with_a_zero_update_keeps_its_momentum(byol):
    weight = torch.nn.Parameter(torch.tensor([1.0, 0.0]))
    optimizer = byol.LARS([{"params": [weight], "weight_decay": 0.0, "lars": True}], lr=1.0, momentum=0.5)
    weight.grad = torch.tensor([0.0, 1.0])
    optimizer.step()  # ratio 0.02 * 1 / 1 / 1 = 0.02: velocity (0, 0.02)
    assert torch.allclose(weight, torch.tensor([1.0, -0.02]))
    weight.grad = torch.zeros(2)
    optimizer.step()  # update 0: the ratio is infinite; the velocity halves to (0, 0.01), all finite
    assert torch.allclose(weight, torch.tensor([1.0, -0.03]))


def test_lars_skips_weights_without_gradients(byol):
    used, unused = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    group = {"params": [used, unused], "weight_decay": 0.5, "lars": True}
    optimizer = byol.LARS([group], lr=1.0)
    used.grad = torch.ones(2)
    optimizer.step()
    assert torch.equal(unused, torch.ones(2)) and unused not in optimizer.state
    assert not torch.equal(used, torch.ones(2))


@pytest.mark.parametrize(("name", "default_decay"), [("sgd", 5e-4), ("lars", 1e-5)])
def test_optimiser_groups_leave_biases_and_norms_alone(byol, name, default_decay):
    model = small_model(byol)
    args = byol.parse_args(["--optimizer", name, "--weight-decay", "1e-3"])
    optimizer = byol.make_optimizer(model, args, peak_lr=0.4)
    decay, plain = optimizer.param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 1e-3 and decay["lars"] is True
    assert plain["weight_decay"] == 0 and plain["lars"] is False
    online = {n for n in names.values() if not n.startswith("target_")}
    assert {names[id(p)] for p in plain["params"]} == {n for n in online if model.get_parameter(n).ndim == 1}
    assert {names[id(p)] for p in decay["params"]} == {n for n in online if model.get_parameter(n).ndim > 1}
    assert {"encoder.conv1.weight", "predictor.3.weight"} <= {names[id(p)] for p in decay["params"]}
    assert {"encoder.bn1.weight", "projector.0.bias"} <= {names[id(p)] for p in plain["params"]}
    assert all(group["lr"] == 0.4 and group["momentum"] == 0.9 for group in optimizer.param_groups)
    assert type(optimizer) is (byol.LARS if name == "lars" else torch.optim.SGD)
    default = byol.make_optimizer(model, byol.parse_args(["--optimizer", name]), peak_lr=0.4)
    assert [group["weight_decay"] for group in default.param_groups] == [default_decay, 0.0]


def test_lars_and_sgd_agree_where_lars_does_not_adapt(byol):
    torch.manual_seed(0)
    start = torch.randn(5)
    sgd_weight, plain_weight, lars_weight = (torch.nn.Parameter(start.clone()) for _ in range(3))
    sgd = torch.optim.SGD([{"params": [sgd_weight], "weight_decay": 0.1}], lr=0.3, momentum=0.9)
    groups = [
        {"params": [plain_weight], "weight_decay": 0.1, "lars": False},
        {"params": [lars_weight], "weight_decay": 0.1, "lars": True},
    ]
    lars = byol.LARS(groups, lr=0.3, momentum=0.9)
    for _ in range(3):
        gradient = torch.randn(5)
        sgd_weight.grad, plain_weight.grad, lars_weight.grad = gradient.clone(), gradient.clone(), gradient
        sgd.step()
        lars.step()
    assert torch.allclose(sgd_weight, plain_weight, atol=1e-6)
    assert not torch.allclose(sgd_weight, lars_weight, atol=1e-3)  # the lars group's steps are scaled
    assert (lars_weight - start).norm() < (sgd_weight - start).norm()
