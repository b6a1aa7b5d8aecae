"""Where a measurement comes from, recorded in every result file: the date, the machine, the versions,
and the commit and contents of the script measured (so that the Results page can tell a measurement of
an earlier version of a script)."""

import datetime
import hashlib
import os
import platform
import subprocess
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"cpu ({os.cpu_count()} cores, {platform.machine()})"


def provenance(script: str) -> dict:
    """date, machine, torch version, commit (with '+changes' if the script differs from it) and the
    script's SHA-256."""
    path = ROOT / script
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip()
        changed = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", script], cwd=ROOT).returncode != 0
    except OSError:  # no git
        commit, changed = "", False
    return {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "torch_version": torch.__version__,
        "script": script,
        "commit": commit + ("+changes" if changed else ""),
        "script_sha256": hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None,
    }
