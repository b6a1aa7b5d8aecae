"""The encoder stems and the projection and prediction heads, through BYOL(...)."""

import pytest
import torch
from torch import nn


def model(byol, backbone="resnet18", small_images=True, hidden_dim=64, proj_dim=16):
    torch.manual_seed(0)
    return byol.BYOL(backbone, small_images, hidden_dim, proj_dim)


def stem_output(encoder, x):
    return encoder.maxpool(encoder.relu(encoder.bn1(encoder.conv1(x))))


def test_small_image_stem_keeps_the_resolution(byol):
    encoder = model(byol).encoder
    conv = encoder.conv1
    assert (conv.in_channels, conv.out_channels, conv.kernel_size) == (3, 64, (3, 3))
    assert conv.stride == (1, 1) and conv.padding == (1, 1) and conv.bias is None
    assert isinstance(encoder.maxpool, nn.Identity) and isinstance(encoder.fc, nn.Identity)
    x = torch.randn(2, 3, 32, 32)
    assert stem_output(encoder, x).shape == (2, 64, 32, 32)  # ImageNet's stem: 8 x 8
    assert (
        encoder.layer4(encoder.layer3(encoder.layer2(encoder.layer1(stem_output(encoder, x))))).shape[-1] == 4
    )
    assert encoder(x).shape == (2, 512)


def test_imagenet_stem_for_large_images(byol):
    byol_model = model(byol, "resnet50", small_images=False)
    encoder = byol_model.encoder
    assert encoder.conv1.kernel_size == (7, 7) and encoder.conv1.stride == (2, 2)
    assert isinstance(encoder.maxpool, nn.MaxPool2d) and isinstance(encoder.fc, nn.Identity)
    x = torch.randn(2, 3, 64, 64)
    assert stem_output(encoder, x).shape == (2, 64, 16, 16)  # a quarter of the side
    assert encoder(x).shape == (2, 2048)  # features, not the 1000 ImageNet logits
    assert byol_model.projector[0].in_features == 2048
    assert isinstance(byol_model.target_encoder.maxpool, nn.MaxPool2d)


@pytest.mark.parametrize(("backbone", "features"), [("resnet18", 512), ("resnet34", 512)])
def test_heads_follow_the_paper(byol, backbone, features):
    byol_model = model(byol, backbone, hidden_dim=4096, proj_dim=256)  # the paper's widths
    for head, in_dim in ((byol_model.projector, features), (byol_model.predictor, 256)):
        linear_1, norm, relu, linear_2 = head
        assert (linear_1.in_features, linear_1.out_features) == (in_dim, 4096)
        assert isinstance(norm, nn.BatchNorm1d) and norm.num_features == 4096 and isinstance(relu, nn.ReLU)
        assert (linear_2.in_features, linear_2.out_features) == (4096, 256)
    byol_model.eval()
    with torch.no_grad():
        features_out = byol_model.encoder(torch.randn(3, 3, 32, 32))
        assert features_out.shape == (3, features)
        assert byol_model.predictor(byol_model.projector(features_out)).shape == (3, 256)


def test_the_target_is_a_frozen_copy_without_a_predictor(byol):
    byol_model = model(byol)
    assert not hasattr(byol_model, "target_predictor")
    pairs = [
        (byol_model.encoder, byol_model.target_encoder),
        (byol_model.projector, byol_model.target_projector),
    ]
    for online, target in pairs:
        assert online is not target and type(online) is type(target)
        for (name, o), (target_name, t) in zip(online.state_dict().items(), target.state_dict().items()):
            assert name == target_name and torch.equal(o, t)
        assert all(p.requires_grad for p in online.parameters())
        assert not any(p.requires_grad for p in target.parameters())
    assert isinstance(byol_model.target_encoder.maxpool, nn.Identity)  # the small-image stem too


def test_forward_gives_the_loss_and_the_online_projections_of_view_1(byol):
    byol_model = model(byol)
    v1, v2 = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)
    loss, projections = byol_model(v1, v2)
    assert loss.shape == () and 0 <= loss.item() <= 8  # two terms, each in [0, 4]
    assert projections.shape == (4, 16) and not projections.requires_grad
    assert torch.allclose(projections, byol_model.projector(byol_model.encoder(v1)), atol=1e-5)
