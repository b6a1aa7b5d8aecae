"""Shared fixtures: the example scripts loaded as modules, and a way to run them as programs."""

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).parent
PYTORCH_SCRIPT = ROOT / "examples" / "pytorch" / "byol.py"


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


def run_script(script: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a script in a fresh Python process and capture its output."""
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )
