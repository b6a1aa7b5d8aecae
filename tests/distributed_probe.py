"""Runs examples/pytorch_lightning_distributed/byol.py with the given arguments, and has every process
save its own final weights as rank-<rank>.pt in --output-dir: the script writes only rank 0's, and the
tests compare all of them. Not a test module: tests run it as a program. Lightning's launcher starts the
other processes by running this file again, so they are patched too."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1]))
from conftest import DISTRIBUTED_SCRIPT, load_script

byol = load_script(DISTRIBUTED_SCRIPT, "byol_distributed")


def save_own_weights(module) -> None:
    """A LightningModule hook that the script does not define: Lightning calls it when training ends."""
    torch.save(module.model.state_dict(), Path(module.args.output_dir) / f"rank-{module.global_rank}.pt")


byol.BYOLModule.on_train_end = save_own_weights

if __name__ == "__main__":
    byol.main()
