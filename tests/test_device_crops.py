"""The in-memory fast path: crops and flips made on the device, a batch at a time. They follow the
same distribution as the per-image crops of the DataLoader workers, cut out the same pixels, and
make a resumed epoch see the batches of an uninterrupted one."""

import random

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.v2.functional as TF
from PIL import Image


def crop_statistics(boxes: torch.Tensor, height: int, width: int) -> dict[str, float]:
    """Mean and quartiles of the area fraction, mean log aspect ratio, share of whole-image crops."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    area = (w * h / (height * width)).double()
    return {
        "area": area.mean().item(),
        **{f"area_q{q}": area.quantile(q / 4).item() for q in (1, 2, 3)},
        "log_ratio": (w / h).log().mean().item(),
        "whole": ((w == width) & (h == height)).double().mean().item(),
        "centre_x": ((boxes[:, 0] + boxes[:, 2]) / 2 / width).mean().item(),
        "centre_y": ((boxes[:, 1] + boxes[:, 3]) / 2 / height).mean().item(),
    }


def as_boxes(crops) -> torch.Tensor:
    """(top, left, height, width) crops, as the (left, top, right, bottom) boxes of the batched path."""
    return torch.tensor([[left, top, left + w, top + h] for top, left, h, w in crops], dtype=torch.float)


@pytest.mark.parametrize(("height", "width"), [(32, 32), (24, 40), (8, 64)])
def test_boxes_follow_torchvisions_random_resized_crop(byol, height, width):
    """(8, 64): the aspect ratio is out of range, so many crops fall back to the central one."""
    n = 40_000
    boxes = byol.random_resized_crop_boxes(n, height, width, torch.Generator().manual_seed(0))
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
    assert (boxes[:, 2:] > boxes[:, :2]).all() and torch.equal(boxes, boxes.round())
    torch.manual_seed(0)
    image = torch.zeros(3, height, width)
    torchvision_boxes = as_boxes(
        T.RandomResizedCrop.get_params(image, [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(n)
    )
    ours = crop_statistics(boxes, height, width)
    assert ours == pytest.approx(crop_statistics(torchvision_boxes, height, width), abs=0.01)
    # the per-image crops of the DataLoader workers draw from the same distribution
    rng = random.Random(0)
    python_boxes = as_boxes(byol.random_resized_crop_box(height, width, rng) for _ in range(n))
    assert ours == pytest.approx(crop_statistics(python_boxes, height, width), abs=0.01)


def test_crops_reach_every_position_from_edge_to_edge(byol):
    """A crop of height h starts anywhere from row 0 to row H - h, both included (likewise across)."""
    boxes = byol.random_resized_crop_boxes(100_000, 32, 32, torch.Generator().manual_seed(0))
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    for size in (12, 20, 28):
        tops, lefts = boxes[h == size, 1], boxes[w == size, 0]
        assert set(tops.int().tolist()) == set(range(32 - size + 1))
        assert set(lefts.int().tolist()) == set(range(32 - size + 1))


def crops_and_flips(byol, images: torch.Tensor, size: int, seed: int):
    """crop_and_flip_batch's views, and the boxes and flips it drew (replayed from the same seed)."""
    views = byol.crop_and_flip_batch(images, size, torch.Generator().manual_seed(seed))
    generator = torch.Generator().manual_seed(seed)
    boxes = byol.random_resized_crop_boxes(len(images), *images.shape[-2:], generator)
    flips = torch.rand(len(images), generator=generator) < 0.5
    return views, boxes.int().tolist(), flips.tolist()


def test_crops_cut_out_the_box_and_resize_it_bilinearly(byol):
    """Inside the view, what torchvision's resized_crop (bilinear) gives for the same box; at its edge
    roi_align blends in the pixels just outside the box where resized_crop repeats the edge."""
    images = torch.randint(0, 256, (64, 3, 32, 32), generator=torch.Generator().manual_seed(1))
    images = images.to(torch.uint8)
    views, boxes, flips = crops_and_flips(byol, images, 32, seed=0)
    assert views.shape == (64, 3, 32, 32) and views.dtype == torch.uint8
    for image, view, (left, top, right, bottom), flip in zip(images, views, boxes, flips):
        expected = TF.resized_crop(
            image.float(), top, left, bottom - top, right - left, [32, 32], antialias=False
        )
        expected = (expected.flip(-1) if flip else expected).round()
        margin = 4  # where resized_crop repeats the box's edge: up to half an upscaled pixel, 4 at most
        inside = (slice(None), slice(margin, -margin), slice(margin, -margin))
        assert (view.float()[inside] - expected[inside]).abs().max() <= 1


def test_whole_image_box_and_shrinking_crops(byol, monkeypatch):
    images = torch.randint(0, 256, (4, 3, 16, 16), generator=torch.Generator().manual_seed(2))
    images = images.to(torch.uint8)
    whole = torch.tensor([[0.0, 0.0, 16.0, 16.0]]).repeat(4, 1)
    monkeypatch.setattr(byol, "random_resized_crop_boxes", lambda n, *args: whole)
    views = byol.crop_and_flip_batch(images, 16, torch.Generator().manual_seed(0))
    assert all(torch.equal(v, i) or torch.equal(v, i.flip(-1)) for v, i in zip(views, images))
    # shrinking 16 px to 8: each output pixel averages its 2x2 block
    halves = byol.crop_and_flip_batch(images, 8, torch.Generator().manual_seed(0))
    pooled = torch.nn.functional.avg_pool2d(images.float(), 2)
    assert all(
        (v.float() - p).abs().max() <= 0.5 or (v.float() - p.flip(-1)).abs().max() <= 0.5
        for v, p in zip(halves, pooled)
    )


def test_every_image_draws_its_own_crop_and_flip(byol):
    image = torch.randint(0, 256, (3, 32, 32), generator=torch.Generator().manual_seed(3))
    images = image.to(torch.uint8).expand(512, 3, 32, 32)
    views, boxes, flips = crops_and_flips(byol, images, 32, seed=0)
    assert len({tuple(box) for box in boxes}) > 400  # one image, copied: the crops still differ
    assert 0.45 < np.mean(flips) < 0.55
    again = byol.crop_and_flip_batch(images, 32, torch.Generator().manual_seed(0))
    assert torch.equal(views, again)  # a function of the generator's seed


def test_device_crops_resume_mid_epoch_with_the_same_batches(byol):
    source = byol.synthetic_images(40, seed=0)
    sampler = byol.EpochSampler(len(source), 8, seed=0)
    crops = byol.DeviceCrops(source, sampler, 8, 16, seed=0, device=torch.device("cpu"))
    sampler.set_epoch(1)
    epoch = list(crops)
    assert len(epoch) == len(crops) == 5
    assert all(a.shape == (8, 3, 16, 16) and a.dtype == torch.uint8 and u == [] for a, _, u in epoch)
    assert not torch.equal(epoch[0][0], epoch[0][1])  # two views of each image
    sampler.set_epoch(1, start_batch=3)
    resumed = list(crops)
    assert len(resumed) == len(crops) == 2
    for (a1, a2, _), (b1, b2, _) in zip(epoch[3:], resumed):
        assert torch.equal(a1, b1) and torch.equal(a2, b2)
    sampler.set_epoch(2)
    assert not torch.equal(next(iter(crops))[0], epoch[0][0])  # a new epoch draws anew


def write_pngs(folder, sizes, seed=0):
    rng = np.random.default_rng(seed)
    for i, (w, h) in enumerate(sizes):
        (folder / f"class{i % 2}").mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"class{i % 2}" / f"{i}.png")


def test_a_folder_of_small_images_goes_to_memory(byol, tmp_path, capsys):
    write_pngs(tmp_path / "small", [(12, 10)] * 20)
    (tmp_path / "small" / "class0" / "broken.png").write_bytes(
        (tmp_path / "small" / "class0" / "0.png").read_bytes()[:60]  # header only: decoding fails
    )
    args = byol.parse_args(["--data", str(tmp_path / "small"), "--batch-size", "4"])
    data = byol.load_data(args)
    assert "skipped unreadable image" in capsys.readouterr().out and args.crops_on_device is True
    assert isinstance(data.train, byol.TensorSource) and data.train.images.shape == (20, 3, 10, 12)
    first = np.array(Image.open(tmp_path / "small" / "class0" / "0.png"))
    assert torch.equal(data.train.images[0], torch.from_numpy(first).permute(2, 0, 1))
    assert data.train.labels == [0] * 10 + [1] * 10 and data.train.classes == ["class0", "class1"]


def test_mixed_or_large_images_stay_with_the_workers(byol, tmp_path):
    write_pngs(tmp_path / "mixed", [(12, 10), (10, 12)] * 4)
    write_pngs(tmp_path / "large", [(80, 80)] * 4)
    for folder in ("mixed", "large"):
        args = byol.parse_args(["--data", str(tmp_path / folder), "--batch-size", "4"])
        assert isinstance(byol.load_data(args).train, byol.FolderSource) and not args.crops_on_device
    forced = byol.parse_args(["--data", str(tmp_path / "mixed"), "--batch-size", "4", "--crops-on-device"])
    with pytest.raises(byol.DataError, match="one size; found 10x12, 12x10"):
        byol.load_data(forced)
    cifar_like = byol.parse_args(["--data", "synthetic", "--train-images", "100", "--batch-size", "4"])
    data = byol.load_data(cifar_like)
    assert cifar_like.crops_on_device and len(data.train) == 100
