"""examples/pytorch/byol.py as a module, for the benchmarks: its data sources, encoder and kNN."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "pytorch" / "byol.py"


def load_example() -> ModuleType:
    """Import the script once (without running its main) and return it."""
    if "byol_example" not in sys.modules:
        spec = importlib.util.spec_from_file_location("byol_example", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules["byol_example"] = module
        spec.loader.exec_module(module)
    return sys.modules["byol_example"]
