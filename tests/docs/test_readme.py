"""What the README and the pages promise a new user about time, disk and a first folder: figures that were
measured (and say where and when), commands that run."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from docs_support import DOCS, ROOT, script_path

from conftest import load_script

README = ROOT / "README.md"
RESULTS = ROOT / "benchmarks" / "results"


def text_of(path: Path) -> str:
    """A page's text with its line breaks and indentation folded into single spaces."""
    return " ".join(path.read_text().split())


def paragraphs(path: Path) -> list[str]:
    return [" ".join(block.split()) for block in re.split(r"\n\s*\n", path.read_text())]


def machine_words(machine: str) -> str:
    """'cpu (2 cores, x86_64)', as benchmarks/provenance.py records a CPU, reads '2-core x86_64 CPU'."""
    cpu = re.fullmatch(r"cpu \((\d+) cores, (\S+)\)", machine)
    return f"{cpu.group(1)}-core {cpu.group(2)} CPU" if cpu else machine


def test_quick_check_time_names_its_machine_and_date_and_says_it_varies():
    """The README's time for its main job is the measured one, with the machine and date it was measured
    on, and says that it varies (a loaded machine took several times longer)."""
    quick = json.loads((RESULTS / "quick-check.json").read_text())
    took = f"it took {quick['seconds']:.0f} seconds"
    [paragraph] = [p for p in paragraphs(README) if took in p]
    assert machine_words(quick["machine"]) in paragraph
    assert quick["date"] in paragraph
    assert "varies" in paragraph


def test_nox_gives_its_disk_and_its_duration():
    """The README says how much disk nox's virtualenv takes (measured with du, held to the real one where
    it exists) and how long each session took, and under what conditions."""
    readme = text_of(README)
    disk = re.search(r"([\d.]+) GB on disk \(`du -sh \.nox/torch`, (\d{4}-\d\d-\d\d)\)", readme)
    assert disk, "the README gives the disk of .nox/torch, measured with du, and when"
    assert "a CUDA build of about 5.5 GB" in readme  # the first command's copy
    for session in ["lint", "examples", "tests", "docs"]:
        assert re.search(rf"\b{session} \d+ (s|min)\b", readme), session
    assert "under load" in readme and "quiet run" in readme
    landing = text_of(DOCS / "index.rst")  # the landing page says the same, in short
    assert f"{disk.group(1)} GB on disk in ``.nox/torch``" in landing and "under load" in landing
    venv = ROOT / ".nox" / "torch"
    if venv.is_dir():  # the real one, where nox has made it: within a quarter of the README's figure
        kib = int(subprocess.run(["du", "-sk", str(venv)], capture_output=True, text=True).stdout.split()[0])
        assert abs(kib / 2**20 - float(disk.group(1))) < 0.25 * float(disk.group(1)), kib / 2**20


def test_gpu_timing_is_the_measured_one():
    """No unmeasured promise of what a GPU does; what the README says of a GPU is a result file's."""
    for page in (README, DOCS / "index.rst"):
        assert not re.search(r"default epochs (take|in) minutes", text_of(page)), page.name
    runs = [json.loads(path.read_text()) for path in RESULTS.glob("accuracy-*.json")]
    gpu = [run for run in runs if not run["device"].startswith("cpu")]
    readme = text_of(README)
    if not gpu:
        assert "GPU" not in readme or "not been timed" in readme
        return
    run = max(gpu, key=lambda r: (r.get("train_images") or 0, r.get("date") or ""))
    for figure in [
        run["device"],
        run["date"],
        f"commit {run['commit']}",
        f"{run['epochs']} epochs of the {run['train_images']:,} images, batch {run['batch_size']}",
        f"in {run['train_wall_s'] / 60:.1f} minutes ({run['images_per_s']:,.0f} images/s)",
    ]:
        assert figure in readme, figure


def bash_commands(path: Path) -> list[str]:
    """The commands of a page's bash blocks (README: ```bash; RST: .. code-block:: bash), continuation
    lines joined."""
    text = path.read_text()
    if path.suffix == ".md":
        blocks = [block.split("```")[0] for block in text.split("```bash\n")[1:]]
    else:
        blocks = []
        for block in text.split(".. code-block:: bash\n\n")[1:]:
            lines = []
            for line in block.splitlines():
                if line and not line.startswith("   "):
                    break
                lines.append(line.strip())
            blocks.append("\n".join(lines))
    joined = "\n".join(blocks).replace("\\\n", " ")
    return [" ".join(line.split()) for line in joined.splitlines() if line.strip().startswith("python")]


def fake_folder(path: Path, classes: int = 3, per_class: int = 4) -> Path:
    from PIL import Image

    for c in range(classes):
        (path / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (8, 8), (40 * c, 20 * i, 0)).save(path / f"class{c}" / f"{i}.png")
    return path


@pytest.mark.parametrize("page", [README, DOCS / "own_data.rst"], ids=lambda p: p.name)
def test_a_quick_try_of_a_folder_runs_as_written(page, tmp_path, monkeypatch):
    """README and Your own data show how to try a folder quickly: benchmarks/subset.py's commands, as
    written (on a small folder here), make the subsets, and the training command that uses them parses."""
    commands = bash_commands(page)
    subsets = [c for c in commands if c.startswith("python benchmarks/subset.py ")]
    assert len(subsets) >= 2, "a training and a validation subset"
    source = fake_folder(tmp_path / "source")
    subset = load_script(ROOT / "benchmarks" / "subset.py", "subset_for_docs")
    made = {}
    for command in subsets:
        words = command.split()[2:]
        source_arg, target = words[0], words[1]
        images = int(words[words.index("--images") + 1])
        words[0] = str(source)
        words[1] = str(tmp_path / target)
        words[words.index("--images") + 1] = str(min(images, 6))
        monkeypatch.setattr(sys, "argv", ["subset.py", *words])
        subset.main()  # as its command line runs it, without a second start of Python and torch
        links = [p for p in (tmp_path / target).rglob("*") if p.is_symlink()]
        assert len(links) == min(images, 6), command
        made[target] = source_arg
    training = [c for c in commands if c.startswith("python examples/") and any(t in c for t in made)]
    assert training, "a training command on the subsets"
    byol = load_script(script_path("pytorch"), "byol_readme_subset")
    for command in training:
        args = byol.parse_args(command.split()[2:])
        assert args.data in made and args.val in made, command


@pytest.mark.parametrize("page", [README, DOCS / "own_data.rst"], ids=lambda p: p.name)
def test_folder_on_a_cpu_and_its_mid_epoch_resume_are_explained(page):
    text = text_of(page)
    assert "benchmarks/subset.py" in text
    assert "about an hour" in text  # one epoch of the CIFAR-10 folders on a 2-core CPU
    # what a mid-epoch --resume costs on a folder, for each kind of script
    assert "decodes and augments again every batch that the epoch had finished" in text
    assert "restart the epoch's loader" in text


def test_the_subset_time_is_a_measured_one():
    """Your own data's time for a subset on a CPU is a tuning run's: its images/s, and minutes an epoch."""
    text = text_of(DOCS / "own_data.rst")
    quoted = re.search(
        r"trained ([\d,]+) CIFAR-10 images at (\d+) px on a 2-core CPU at about (\d+) images/s in float32 "
        r"\(an earlier version of the plain script, on (\S+)\), about (\d+) minutes an epoch",
        text,
    )
    assert quoted, "own_data.rst quotes a tuning run's speed"
    images, size, speed, date, minutes = quoted.groups()
    runs = [json.loads(path.read_text()) for path in (RESULTS / "tuning").glob("accuracy-*.json")]
    matching = [
        run
        for run in runs
        if run.get("train_images") == int(images.replace(",", ""))
        and run.get("recipe", {}).get("input_size") == int(size)
        and run.get("precision") == "fp32"
        and run.get("date") == date.rstrip("),")
        and round(run["images_per_s"]) == int(speed)
        and round(run["train_wall_s"] / run["epochs"] / 60) == int(minutes)
    ]
    assert matching, (images, size, speed, date, minutes)
