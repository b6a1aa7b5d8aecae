"""The reference: lightly 1.6.0's BYOL example, as its docs page shows it, for side-by-side runs.

Only the data source, the number of epochs and workers, the device and the output are parameters;
the model, augmentations, loss, optimiser and loop are the example's own (see ../shared/REFERENCE.md).
It needs `pip install lightly==1.6.0` (the `bench` extra); the project's examples never import it.

    python benchmarks/reference_byol.py --data CIFAR10_DIR/train --epochs 20 --output-dir runs/reference
"""

import argparse
import copy
import json
import time
from pathlib import Path

import torch
import torchvision
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.transforms.byol_transform import BYOLTransform, BYOLView1Transform, BYOLView2Transform
from lightly.utils.scheduler import cosine_schedule
from PIL import Image
from plain_example import load_example
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset


class BYOL(nn.Module):  # lightly's example, unchanged
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.projection_head = BYOLProjectionHead(512, 1024, 256)
        self.prediction_head = BYOLPredictionHead(256, 1024, 256)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)

    def forward(self, x):
        y = self.backbone(x).flatten(start_dim=1)
        z = self.projection_head(y)
        p = self.prediction_head(z)
        return p

    def forward_momentum(self, x):
        y = self.backbone_momentum(x).flatten(start_dim=1)
        z = self.projection_head_momentum(y)
        z = z.detach()
        return z


def reference_model() -> BYOL:
    resnet = torchvision.models.resnet18()
    backbone = nn.Sequential(*list(resnet.children())[:-1])
    return BYOL(backbone)


def reference_transform() -> BYOLTransform:
    return BYOLTransform(
        view_1_transform=BYOLView1Transform(input_size=32, gaussian_blur=0.0),
        view_2_transform=BYOLView2Transform(input_size=32, gaussian_blur=0.0),
    )


class PILDataset(Dataset):
    """Images from a tensor dataset (the examples' synthetic images) as (transformed PIL image, label)."""

    def __init__(self, images: TensorDataset, transform) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image, label = self.images[index]
        return self.transform(Image.fromarray(image.permute(1, 2, 0).numpy())), int(label)


def image_source(data: str, transform=None, seed: int = 0) -> Dataset:
    """'synthetic' (the examples' generated images) or an image folder, as PIL images."""
    if data == "synthetic":
        return PILDataset(load_example().synthetic_images(1024, seed), transform)
    return torchvision.datasets.ImageFolder(data, transform=transform)


def reference_loader(data: str, batch_size: int, num_workers: int) -> DataLoader:
    return DataLoader(
        image_source(data, reference_transform()),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=num_workers,
    )


def reference_step(model, criterion, optimizer, batch, momentum_val, device) -> torch.Tensor:
    """One iteration of the example's loop, as written."""
    x0, x1 = batch[0]
    update_momentum(model.backbone, model.backbone_momentum, m=momentum_val)
    update_momentum(model.projection_head, model.projection_head_momentum, m=momentum_val)
    x0 = x0.to(device)
    x1 = x1.to(device)
    p0 = model(x0)
    z0 = model.forward_momentum(x0)
    p1 = model(x1)
    z1 = model.forward_momentum(x1)
    loss = 0.5 * (criterion(p0, z1) + criterion(p1, z0))
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return loss.detach()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="synthetic", help="'synthetic' or an image folder")
    parser.add_argument("--epochs", type=int, default=10, help="the example's own: 10")
    parser.add_argument("--batch-size", type=int, default=256, help="the example's own: 256")
    parser.add_argument("--num-workers", type=int, default=8, help="the example's own: 8")
    parser.add_argument("--output-dir", default="runs/reference", help="metrics.jsonl and backbone.pt")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "metrics.jsonl").write_text("")
    model = reference_model().to(device)
    dataloader = reference_loader(args.data, args.batch_size, args.num_workers)
    criterion = NegativeCosineSimilarity()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.06)
    start, step = time.perf_counter(), 0
    for epoch in range(args.epochs):
        total_loss, epoch_start = 0.0, time.perf_counter()
        momentum_val = cosine_schedule(epoch, args.epochs, 0.996, 1)
        for batch in dataloader:
            total_loss += reference_step(model, criterion, optimizer, batch, momentum_val, device)
            step += 1
        avg_loss = float(total_loss) / len(dataloader)
        epoch_time = time.perf_counter() - epoch_start
        row = {
            "epoch": epoch + 1,
            "step": step,
            "loss": avg_loss,
            "lr": 0.06,
            "tau": momentum_val,
            "images_per_s": len(dataloader) * args.batch_size / epoch_time,
            "epoch_time_s": epoch_time,
            "elapsed_s": time.perf_counter() - start,
        }
        with open(output_dir / "metrics.jsonl", "a") as file:
            file.write(json.dumps(row) + "\n")
        print(f"epoch: {epoch:>02}, loss: {avg_loss:.5f}, {row['images_per_s']:.0f} img/s")
    # The backbone under torchvision's ResNet names, as ours saves it, so that benchmarks/accuracy.py
    # evaluates both the same way (the example's Sequential numbers the ResNet's children).
    names = [name for name, _ in torchvision.models.resnet18().named_children()]
    state = {
        f"{names[int(key.split('.')[0])]}.{key.split('.', 1)[1]}": value
        for key, value in model.backbone.state_dict().items()
    }
    torch.save(state, output_dir / "backbone.pt")


if __name__ == "__main__":
    main()
