"""The two views: per-image crops in the workers, batched colour operations on the device."""

import dataclasses
import math
import random

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image

NO_NORMALISATION = (torch.zeros(3), torch.ones(3))


def random_images(batch=6, size=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=g)


def uniform(batch, low, high, seed):
    return low + (high - low) * torch.rand(batch, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "name, reference, low, high",
    [
        ("adjust_brightness", TF.adjust_brightness, 0.6, 1.4),
        ("adjust_contrast", TF.adjust_contrast, 0.6, 1.4),
        ("adjust_saturation", TF.adjust_saturation, 0.8, 1.2),
        ("adjust_hue", TF.adjust_hue, -0.1, 0.1),
    ],
)
def test_batched_colour_ops_match_torchvision_per_image(byol, name, reference, low, high):
    images = random_images()
    factors = uniform(len(images), low, high, seed=1)
    batched = getattr(byol, name)(images, factors)
    for image, factor, result in zip(images, factors, batched):
        assert torch.allclose(result, reference(image, factor.item()), atol=1e-5)


def test_hue_of_greys_and_pure_colours(byol):
    images = torch.tensor([[0.5, 0.5, 0.5], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.2, 0.9, 0.4]]).view(
        4, 3, 1, 1
    )
    shift = torch.tensor([0.3, 0.5, -0.2, -0.45])
    for image, factor, result in zip(images, shift, byol.adjust_hue(images, shift)):
        assert torch.allclose(result, TF.adjust_hue(image, factor.item()), atol=1e-6)


def test_grayscale_solarize_and_blur_match_torchvision(byol):
    images = random_images(size=20)
    assert torch.allclose(byol.grayscale(images), TF.rgb_to_grayscale(images), atol=1e-6)
    assert torch.equal(byol.solarize(images), TF.solarize(images, threshold=0.5))
    sigma = uniform(len(images), 0.1, 2.0, seed=2)
    blurred = byol.gaussian_blur(images, sigma, kernel_size=7)
    for image, s, result in zip(images, sigma, blurred):
        assert torch.allclose(result, TF.gaussian_blur(image, [7, 7], [s.item(), s.item()]), atol=1e-5)


def jitter_parameters(batch: int) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """Which images to jitter, the four factors of each, and each one's random order of the four."""
    apply = torch.arange(batch) % 5 != 0
    factors = [
        uniform(batch, 0.6, 1.4, 3),
        uniform(batch, 0.6, 1.4, 4),
        uniform(batch, 0.8, 1.2, 5),
        uniform(batch, -0.1, 0.1, 6),
    ]
    order = torch.rand(batch, 4, generator=torch.Generator().manual_seed(7)).argsort(dim=1)
    return apply, factors, order


def test_colour_jitter_applies_each_images_own_order(byol):
    images = random_images(batch=24)
    apply, factors, order = jitter_parameters(24)
    jittered = byol.color_jitter(images, apply, factors, order)
    reference_ops = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    for i in range(24):
        expected = images[i]
        if apply[i]:
            for op in order[i].tolist():
                expected = reference_ops[op](expected, factors[op][i].item())
        assert torch.allclose(jittered[i], expected, atol=1e-5), i
    # the order matters: another order gives another image
    assert not torch.allclose(byol.color_jitter(images, apply, factors, order.flip(1)), jittered, atol=1e-4)


def augment(byol, images, view, seed=0, blur=True, mean_std=NO_NORMALISATION):
    generator = torch.Generator().manual_seed(seed)
    return byol.augment(images, view, generator, *mean_std, blur=blur)


def test_augment_shapes_dtypes_and_normalisation(byol):
    images = (random_images(batch=8, size=16) * 255).to(torch.uint8)
    mean, std = torch.tensor([0.5, 0.4, 0.3]), torch.tensor([0.2, 0.25, 0.3])
    out = augment(byol, images, byol.VIEW_2, mean_std=(mean, std))
    assert out.shape == (8, 3, 16, 16) and out.dtype == torch.float32
    unnormalised = out * std.view(1, 3, 1, 1) + mean.view(1, 3, 1, 1)
    assert unnormalised.min() >= -1e-5 and unnormalised.max() <= 1 + 1e-5


def test_every_image_draws_its_own_parameters(byol):
    same_image = (random_images(batch=1, size=8) * 255).to(torch.uint8).expand(200, 3, 8, 8)
    out = augment(byol, same_image, byol.VIEW_2)
    distinct = torch.unique(out.flatten(1).round(decimals=4), dim=0)
    assert len(distinct) > 150  # 20 % of them are untouched by jitter and grayscale, some coincide
    # and the same seed reproduces the same views
    assert torch.equal(out, augment(byol, same_image, byol.VIEW_2))
    assert not torch.equal(out, augment(byol, same_image, byol.VIEW_2, seed=1))


def selection_frequency(byol, monkeypatch, op_name, view, draws=20000):
    """How often augment() picks an op, found by replacing it with one that marks its images."""
    monkeypatch.setattr(byol, op_name, lambda images, *args: torch.full_like(images, 7.0))
    images = torch.full((draws, 3, 4, 4), 100, dtype=torch.uint8)
    out = augment(byol, images, view)
    return ((out - 7.0).abs() < 1e-6).all(dim=(1, 2, 3)).float().mean().item()


@pytest.mark.parametrize(
    "op_name, view, expected",
    [
        ("gaussian_blur", "VIEW_1", 1.0),
        ("gaussian_blur", "VIEW_2", 0.1),
        ("solarize", "VIEW_1", 0.0),
        ("solarize", "VIEW_2", 0.2),
        ("grayscale", "VIEW_1", 0.2),
        ("grayscale", "VIEW_2", 0.2),
    ],
)
def test_views_are_asymmetric_as_in_the_paper(byol, monkeypatch, op_name, view, expected):
    view = getattr(byol, view)
    if op_name == "gaussian_blur":  # solarize would turn the marker into 1 - 7
        view = dataclasses.replace(view, solarize_prob=0.0)
    if op_name == "grayscale":  # colour jitter uses grayscale too; count only the grayscale step
        view = dataclasses.replace(view, jitter_prob=0.0, solarize_prob=0.0)
        monkeypatch.setattr(byol, "gaussian_blur", lambda images, *args: images)
    frequency = selection_frequency(byol, monkeypatch, op_name, view)
    tolerance = 4 * math.sqrt(expected * (1 - expected) / 20000) + 1e-9
    assert abs(frequency - expected) <= tolerance


def test_colour_jitter_probability(byol):
    same = torch.full((20000, 3, 2, 2), 120, dtype=torch.uint8)
    view = dataclasses.replace(byol.VIEW_1, grayscale_prob=0.0, blur_prob=0.0)
    out = augment(byol, same, view, blur=False)
    untouched = ((out - 120 / 255).abs() < 1e-6).all(dim=(1, 2, 3)).float().mean().item()
    assert abs(untouched - 0.2) < 0.012


def test_scaled_blur_barely_changes_cifar_sized_views(byol):
    # what --blur's help says: the paper's largest sigma (2 px at 224 px), scaled to the input size
    changes = {}
    for size in (16, 32, 224):
        images = random_images(batch=4, size=size)
        sigma = torch.full((4,), 2.0 * size / 224)
        blurred = byol.gaussian_blur(images, sigma, byol.blur_kernel_size(size))
        changes[size] = (blurred - images).abs().max().item()
    assert changes[16] < 1e-6 and 1e-3 < changes[32] < 0.01 and changes[224] > 0.1


def test_blur_is_off_at_32_px_by_default_and_scaled_above(byol):
    assert byol.parse_args(["--input-size", "32"]).blur is None  # decided in train(): off at 32 px
    assert byol.blur_kernel_size(224) == 23
    assert byol.blur_kernel_size(96) % 2 == 1 and byol.blur_kernel_size(32) == 3


def test_crop_box_follows_random_resized_crop(byol):
    rng = random.Random(0)
    for _ in range(500):
        top, left, h, w = byol.random_resized_crop_box(40, 60, rng)
        assert top >= 0 and top + h <= 40 and left >= 0 and left + w <= 60
        assert 0.08 * 2400 * 0.8 <= h * w <= 2400
        assert 3 / 4 * 0.8 <= w / h <= 4 / 3 * 1.25


@pytest.mark.parametrize("as_pil", [False, True])
def test_crop_and_flip_gives_uint8_views(byol, as_pil):
    image = (random_images(batch=1, size=40)[0] * 255).to(torch.uint8)
    if as_pil:
        image = Image.fromarray(image.permute(1, 2, 0).numpy())
    view = byol.crop_and_flip(image, 16, random.Random(0))
    assert view.shape == (3, 16, 16) and view.dtype == torch.uint8


def test_views_depend_only_on_seed_epoch_and_index(byol):
    source = byol.synthetic_images(8, seed=0)
    dataset = byol.TwoViewDataset(source, 16, seed=0)
    v1, v2 = dataset[(0, 3)]
    assert not torch.equal(v1, v2)  # two independent crops
    assert all(torch.equal(a, b) for a, b in zip(dataset[(0, 3)], (v1, v2)))
    assert not torch.equal(dataset[(1, 3)][0], v1)  # a new epoch draws new crops
    assert not torch.equal(byol.TwoViewDataset(source, 16, seed=1)[(0, 3)][0], v1)


@pytest.mark.slow
def test_compiled_colour_jitter_computes_the_same(byol):
    images = random_images(batch=16)
    eager = byol.color_jitter(images, *jitter_parameters(16))
    assert torch.allclose(byol.compiled_color_jitter(images, *jitter_parameters(16)), eager, atol=1e-5)
