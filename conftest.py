"""Shared fixtures: the example scripts loaded as modules, and a way to run them as programs."""

import importlib.util
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).parent
PYTORCH_SCRIPT = ROOT / "examples" / "pytorch" / "byol.py"
LIGHTNING_SCRIPT = ROOT / "examples" / "pytorch_lightning" / "byol.py"
DISTRIBUTED_SCRIPT = ROOT / "examples" / "pytorch_lightning_distributed" / "byol.py"


def load_script(path: Path, name: str) -> ModuleType:
    """Import a standalone script as a module, without running its main()."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def byol() -> ModuleType:
    """examples/pytorch/byol.py as a module."""
    return load_script(PYTORCH_SCRIPT, "byol_pytorch")


@pytest.fixture(scope="session")
def lightning() -> ModuleType:
    """examples/pytorch_lightning/byol.py as a module."""
    return load_script(LIGHTNING_SCRIPT, "byol_lightning")


@pytest.fixture(scope="session")
def distributed() -> ModuleType:
    """examples/pytorch_lightning_distributed/byol.py as a module."""
    return load_script(DISTRIBUTED_SCRIPT, "byol_distributed")


@contextmanager
def torch_threads(count: int):
    """Run in-process training with this many intra-op threads, then restore the setting: on a
    small, busy machine several threads contend, and a tiny run gets many times slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def run_script(script: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a script in a fresh Python process and capture its output."""
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def signal_at(
    script: ModuleType, monkeypatch: pytest.MonkeyPatch, step: int, sig: int = signal.SIGINT
) -> None:
    """Deliver a signal to a script run in this process while it computes the given step's learning
    rate (both scripts compute it once per step, from the step)."""
    original = script.lr_factor

    def lr_factor(at_step, *args):
        if at_step == step:
            signal.raise_signal(sig)
        return original(at_step, *args)

    monkeypatch.setattr(script, "lr_factor", lr_factor)
