"""Encoder stems and the projection and prediction heads."""

import torch
from torch import nn


def test_small_image_stem_keeps_resolution(byol):
    encoder, dim = byol.resnet_encoder("resnet18", small_images=True)
    assert dim == 512
    assert encoder.conv1.kernel_size == (3, 3) and encoder.conv1.stride == (1, 1)
    assert isinstance(encoder.maxpool, nn.Identity)
    x = torch.randn(2, 3, 32, 32)
    assert encoder.layer1(encoder.relu(encoder.bn1(encoder.conv1(x)))).shape[-1] == 32
    assert encoder(x).shape == (2, 512)


def test_imagenet_stem_for_large_images(byol):
    encoder, dim = byol.resnet_encoder("resnet50", small_images=False)
    assert dim == 2048
    assert encoder.conv1.kernel_size == (7, 7) and encoder.conv1.stride == (2, 2)
    assert isinstance(encoder.maxpool, nn.MaxPool2d)
    assert encoder(torch.randn(2, 3, 96, 96)).shape == (2, 2048)


def test_heads_follow_the_paper(byol):
    model = byol.BYOL("resnet34", small_images=True, hidden_dim=4096, proj_dim=256)
    for head, in_dim in ((model.projector, 512), (model.predictor, 256)):
        linear_1, norm, relu, linear_2 = head
        assert (linear_1.in_features, linear_1.out_features) == (in_dim, 4096)
        assert isinstance(norm, nn.BatchNorm1d) and isinstance(relu, nn.ReLU)
        assert (linear_2.in_features, linear_2.out_features) == (4096, 256)
    model.eval()
    with torch.no_grad():
        assert model.predictor(model.projector(model.encoder(torch.randn(3, 3, 32, 32)))).shape == (3, 256)
