"""The two views of the paper's Table 6, made by kornia: the probabilities and ranges of each step
measured over many draws, each image's own parameters, the crops against torchvision's
RandomResizedCrop, the blur kernel, solarisation, the normalisation, and two_views.

kornia keeps the parameters of a module's last call in ``module._params``: ``batch_prob`` (1: the step
was applied to that image), the colour factors, the blur's sigma, the crop's corners (``src``)."""

import math

import kornia.augmentation as K
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.v2.functional as TF
from torch import nn

GREY_MEAN_STD = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))  # the same for every channel: greys stay grey
ORDER = [
    K.RandomResizedCrop,
    K.RandomHorizontalFlip,
    K.ColorJitter,
    K.RandomGrayscale,
    K.RandomGaussianBlur,
    K.RandomSolarize,
    K.Normalize,
]
VIEWS = pytest.mark.parametrize("name", ["VIEW_1", "VIEW_2"])


def images(n, size, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def view(byol, name, size=8, mean_std=GREY_MEAN_STD, crop=True):
    return byol.augmentation(size, getattr(byol, name), mean_std, crop)


def applied(module) -> torch.Tensor:
    """Which images of the module's last batch it applied its step to."""
    return module._params["batch_prob"] > 0.5


def share_within(share: float, p: float, n: int) -> bool:
    return abs(share - p) <= 4 * math.sqrt(p * (1 - p) / n) + 1e-9  # 4 standard errors; 0 and 1: exact


def test_the_steps_come_in_table_6_order(byol):
    for name in ("VIEW_1", "VIEW_2"):
        assert [type(step) for step in view(byol, name)] == ORDER
    assert byol.VIEW_1 == {"blur": 1.0, "solarize": 0.0} and byol.VIEW_2 == {"blur": 0.1, "solarize": 0.2}


@VIEWS
def test_probabilities_of_each_step_follow_table_6(byol, name):
    n, augment = 8000, view(byol, name)
    torch.manual_seed(0)
    out = augment(images(n, 8))
    crop, flip, jitter, grey, blur, solarize, _ = augment
    expected = {
        flip: 0.5,
        jitter: 0.8,
        grey: 0.2,
        **dict(zip((blur, solarize), getattr(byol, name).values())),
    }
    expected[crop] = 1.0
    for module, p in expected.items():
        share = applied(module).float().mean().item()
        assert share_within(share, p, n), (type(module).__name__, share, p)
    # what was recorded is what was done: with one mean and std for all channels, exactly the images
    # drawn for grayscale come out grey (jitter's saturation of at least 0.8 keeps the others coloured)
    grey_out = (out.std(dim=1) < 1e-5).flatten(1).all(dim=1)
    assert torch.equal(grey_out, applied(grey))


@VIEWS
def test_ranges_of_the_colour_factors_and_the_blur(byol, name):
    n, augment = 8000, view(byol, name)
    torch.manual_seed(1)
    augment(images(n, 8))
    jitter, blur = augment[2]._params, augment[4]._params
    ranges = {
        "brightness_factor": (jitter, 0.6, 1.4),
        "contrast_factor": (jitter, 0.6, 1.4),
        "saturation_factor": (jitter, 0.8, 1.2),
        "hue_factor": (jitter, -0.1, 0.1),  # of a full turn of the hue circle (torchvision's unit)
        "sigma": (blur, 0.1 * 8 / 224, 2.0 * 8 / 224),  # 0.1 to 2 px at 224 px, scaled to the side
    }
    for key, (params, low, high) in ranges.items():
        values, width = params[key].double(), high - low
        assert values.shape == (n,)
        assert low - 1e-6 <= values.min() and values.max() <= high + 1e-6, key
        assert values.min() < low + 0.01 * width and values.max() > high - 0.01 * width, key  # all of it
        quartiles = values.quantile(torch.tensor([0.25, 0.5, 0.75], dtype=torch.double))
        uniform = low + width * torch.tensor([0.25, 0.5, 0.75], dtype=torch.double)
        assert torch.allclose(quartiles, uniform, atol=0.03 * width), key


def test_colour_jitter_is_torchvisions_with_the_drawn_factors(byol):
    """The units match the paper's (torchvision's): hue 0.1 is a tenth of a turn, not 0.1 radians."""
    x = images(32, 8, seed=2)
    jitter = view(byol, "VIEW_2")[2]
    torch.manual_seed(2)
    out = jitter(x)
    params = jitter._params
    adjust = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    keys = ["brightness_factor", "contrast_factor", "saturation_factor", "hue_factor"]
    assert sorted(params["order"].tolist()) == [0, 1, 2, 3]  # kornia: one order for the batch
    assert applied(jitter).any() and not applied(jitter).all()
    for i in range(len(x)):
        expected = x[i]
        for op in params["order"].tolist() if applied(jitter)[i] else []:
            expected = adjust[op](expected, params[keys[op]][i].item())
        assert torch.allclose(out[i], expected, atol=2e-4), i


def test_each_step_changes_exactly_the_images_it_drew(byol):
    x = images(400, 32, seed=3)
    _, flip, jitter, grey, blur, solarize, _ = view(byol, "VIEW_2", size=32)
    torch.manual_seed(3)
    out = flip(x)
    assert torch.equal(out, torch.where(applied(flip).view(-1, 1, 1, 1), x.flip(-1), x))
    out = jitter(x)
    assert torch.equal(out[~applied(jitter)], x[~applied(jitter)])
    assert (out[applied(jitter)] - x[applied(jitter)]).flatten(1).abs().amax(dim=1).min() > 1e-3
    out = grey(x)
    grey_out = (out.std(dim=1) < 1e-6).flatten(1).all(dim=1)
    assert torch.equal(grey_out, applied(grey)) and torch.equal(out[~grey_out], x[~grey_out])
    out, k = blur(x), blur.flags["kernel_size"]
    for i, sigma in enumerate(blur._params["sigma"].tolist()):
        expected = TF.gaussian_blur(x[i], [k, k], [sigma, sigma]) if applied(blur)[i] else x[i]
        assert torch.allclose(out[i], expected, atol=1e-6), i
    out = solarize(x)
    assert torch.equal(out, torch.where(applied(solarize).view(-1, 1, 1, 1), solarize_at_half(x), x))


def solarize_at_half(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0.5, 1 - x, x)


def test_solarize_inverts_the_pixels_above_one_half(byol):
    solarize = view(byol, "VIEW_2")[5]
    x = torch.tensor([0.0, 0.2, 0.49, 0.51, 0.8, 1.0]).view(1, 1, 1, 6).expand(2000, 3, 1, 6)
    torch.manual_seed(4)
    out = solarize(x)
    assert torch.equal(solarize._params["thresholds"], torch.full((2000,), 0.5))
    assert torch.equal(solarize._params["additions"], torch.zeros(2000))
    inverted = torch.tensor([0.0, 0.2, 0.49, 0.49, 0.2, 0.0]).view(1, 6)
    assert torch.allclose(out[applied(solarize)], inverted.expand_as(out[applied(solarize)]))
    assert torch.equal(out[~applied(solarize)], x[~applied(solarize)])
    assert applied(solarize).any()


@pytest.mark.parametrize("size", [8, 16, 32, 64, 96, 160, 224, 256])
def test_blur_kernel_is_odd_and_about_a_tenth_of_the_side(byol, size):
    kernel = view(byol, "VIEW_1", size=size)[4].flags["kernel_size"]
    assert kernel % 2 == 1 and kernel >= 3
    assert abs(kernel - size / 10) <= 1.5 or kernel == 3
    if size == 224:
        assert kernel == 23  # the paper's


def test_two_images_of_a_batch_draw_their_own_parameters(byol):
    augment = view(byol, "VIEW_2")
    torch.manual_seed(5)
    augment(images(1, 32, seed=5).expand(64, 3, 32, 32))
    crop, flip, jitter, grey, blur, _, _ = augment
    for key in ("brightness_factor", "contrast_factor", "saturation_factor", "hue_factor"):
        assert len(jitter._params[key].unique()) == 64, key
    assert len(blur._params["sigma"].unique()) == 64
    boxes = crop._params["src"].flatten(1)
    assert len(boxes.unique(dim=0)) > 48  # 64 crops of a 32 px image: few coincide
    for module in (flip, jitter, grey):
        assert 0 < applied(module).sum() < 64, type(module).__name__


@VIEWS
def test_identical_images_come_out_different(byol, name):
    n = 256
    same = images(1, 16, seed=6).expand(n, 3, 16, 16)
    torch.manual_seed(6)
    cropped = view(byol, name)(same)  # crops of 16 px images, to 8 px
    assert cropped.shape == (n, 3, 8, 8)
    assert len(cropped.flatten(1).round(decimals=4).unique(dim=0)) > 0.9 * n
    # without crops, the images that jitter leaves alone (a fifth) can only be flipped or greyed
    uncropped = view(byol, name, crop=False)(same[:, :, :8, :8])
    assert len(uncropped.flatten(1).round(decimals=4).unique(dim=0)) > 0.75 * n


def crop_statistics(boxes: torch.Tensor, height: int, width: int) -> dict[str, float]:
    """Statistics of (left, top, width, height) boxes: area fraction and log aspect ratio."""
    w, h = boxes[:, 2].double(), boxes[:, 3].double()
    area, log_ratio = w * h / (height * width), (w / h).log()
    quartiles = torch.tensor([0.25, 0.5, 0.75], dtype=torch.double)
    return {
        "area": area.mean().item(),
        "area_min": area.min().item(),
        "area_q05": area.quantile(0.05).item(),
        **{f"area_q{i + 1}": q.item() for i, q in enumerate(area.quantile(quartiles))},
        "log_ratio": log_ratio.mean().item(),
        **{f"log_ratio_q{i + 1}": q.item() for i, q in enumerate(log_ratio.quantile(quartiles))},
        "centre_x": ((boxes[:, 0] + w / 2) / width).mean().item(),
        "centre_y": ((boxes[:, 1] + h / 2) / height).mean().item(),
    }


def torchvision_crops(n: int, height: int, width: int) -> dict[str, float]:
    torch.manual_seed(7)
    image = torch.zeros(3, height, width)
    draws = [T.RandomResizedCrop.get_params(image, [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(n)]
    return crop_statistics(torch.tensor([[x, y, w, h] for y, x, h, w in draws]), height, width)


def kornia_boxes(corners: torch.Tensor) -> torch.Tensor:
    """(left, top, width, height) of kornia's (n, 4, 2) crop corners, (x, y) clockwise from the top left."""
    left, top, right, bottom = corners[:, 0, 0], corners[:, 0, 1], corners[:, 2, 0], corners[:, 2, 1]
    return torch.stack([left, top, right - left + 1, bottom - top + 1], dim=1)


@pytest.mark.parametrize(("height", "width"), [(32, 32), (24, 40)])
def test_crops_follow_torchvisions_random_resized_crop(byol, height, width):
    n = 20_000
    crop = view(byol, "VIEW_1")[0]
    torch.manual_seed(7)
    assert crop(torch.zeros(n, 3, height, width)).shape == (n, 3, 8, 8)
    boxes = kornia_boxes(crop._params["src"])
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] >= 1).all()
    assert (boxes[:, 0] + boxes[:, 2] <= width).all() and (boxes[:, 1] + boxes[:, 3] <= height).all()
    ours = crop_statistics(boxes, height, width)
    assert ours == pytest.approx(torchvision_crops(n, height, width), abs=0.02)
    assert abs(ours["log_ratio"]) < 0.05 and ours["area_q3"] <= 1


@pytest.mark.parametrize(("height", "width"), [(224, 224), (160, 256)])
def test_crops_of_large_images_reach_down_to_8_percent(byol, height, width):
    """Closer, on large images where whole pixels matter little; cropping them all would take a minute,
    so the crop module only draws its boxes (what its forward does first)."""
    n = 20_000
    torch.manual_seed(7)
    corners = view(byol, "VIEW_1")[0].forward_parameters((n, 3, height, width))["src"]
    ours = crop_statistics(kornia_boxes(corners), height, width)
    assert ours == pytest.approx(torchvision_crops(n, height, width), abs=0.01)
    assert 0.075 < ours["area_min"] < 0.085


def test_crop_false_gives_no_crop(byol):
    augment = view(byol, "VIEW_1", crop=False)
    assert isinstance(augment[0], nn.Identity)
    assert not any(isinstance(step, K.RandomResizedCrop) for step in augment)
    assert [type(step) for step in augment[1:]] == ORDER[1:]
    torch.manual_seed(8)
    assert augment(images(4, 12)).shape == (4, 3, 12, 12)  # what comes in is not resized to 8 px
    assert view(byol, "VIEW_1")(images(4, 12)).shape == (4, 3, 8, 8)


def test_output_is_normalised_with_the_given_mean_and_std(byol):
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.4, 0.8)
    augment = view(byol, "VIEW_2", mean_std=(mean, std))
    seen = []
    augment[-1].register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    torch.manual_seed(9)
    out = augment(images(64, 8, seed=9))
    (before,) = seen
    assert before.min() >= 0 and before.max() <= 1  # the steps before work on images in [0, 1]
    expected = (before - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(out, expected, atol=1e-6)
    assert augment[-1] is augment[len(ORDER) - 1]  # the last step


def test_two_views_of_images_in_memory_and_of_a_loaders_crops(byol):
    memory = torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8)
    identity = [nn.Identity(), nn.Identity()]
    batch = torch.tensor([3, 7, 1])
    first, second = byol.two_views(batch, identity, memory, torch.device("cpu"))
    for out in (first, second):
        assert out.dtype == torch.float32 and out.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(out, memory[batch].float() / 255)
    crops = [memory[:2], memory[2:4]]  # a folder's batch: the pair of crops, and the labels
    first, second = byol.two_views([crops, torch.zeros(2)], identity, None, torch.device("cpu"))
    assert torch.equal(first, crops[0].float() / 255) and torch.equal(second, crops[1].float() / 255)
    views = [view(byol, "VIEW_1", size=4), view(byol, "VIEW_2", size=4)]
    torch.manual_seed(10)
    first, second = byol.two_views(batch, views, memory, torch.device("cpu"))
    assert first.shape == second.shape == (3, 3, 4, 4) and not torch.allclose(first, second)
    assert applied(views[0][4]).all() and not applied(views[0][5]).any()  # view 1: always blurred


def test_each_epoch_and_each_process_draws_its_own_views_and_order(byol):
    """seed_epoch seeds an epoch's draws; torch's CPU generator keeps only a seed's low 32 bits, so
    seeds that differed above them (the epoch times 2**32, as once here) gave every epoch the same
    order, crops and jitter: the network learned 10,000 fixed pairs of views by heart, its training
    loss falling to 1.1 where fresh views gave 1.6, and its linear probe lost 2 to 4 points."""
    augment = view(byol, "VIEW_2", size=16)

    def draws(seed: int, epoch: int, rank: int) -> tuple:
        generators = (torch.Generator(), torch.Generator())  # the loader's: its order, its workers' seeds
        byol.seed_epoch(seed, epoch, generators, rank)
        views, order = augment(images(4, 16)), torch.randperm(64, generator=generators[0])
        return views, order, generators[1].initial_seed()

    runs = [(0, 0, 0), (0, 1, 0), (0, 2, 0), (0, 0, 1), (0, 1, 1), (1, 0, 0)]
    drawn = [draws(*run) for run in runs]
    for index, (views, order, worker_seed) in enumerate(drawn):
        for other_views, other_order, other_seed in drawn[index + 1 :]:
            assert not torch.equal(views, other_views) and not torch.equal(order, other_order)
            assert worker_seed != other_seed
    again = draws(0, 1, 0)  # the same epoch again, as after a resume: the same draws
    assert all(torch.equal(a, b) for a, b in zip(again[:2], drawn[1][:2])) and again[2] == drawn[1][2]
