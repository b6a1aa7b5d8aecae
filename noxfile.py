"""Project sessions. `nox` runs lint, examples, tests and docs; `nox -s bench` the benchmarks.

Every session that needs PyTorch shares one virtualenv, .nox/torch: torch and torchvision take 5.5 GB
and about a minute and a half to install, so they are installed once, not once per session."""

import runpy
import sys
from pathlib import Path

import nox

nox.options.sessions = ["lint", "examples", "tests", "docs"]

ROOT = Path(__file__).parent
TORCH_ENV = ROOT / ".nox" / "torch"
SMOKE_ARGS = runpy.run_path(str(ROOT / "tests" / "smoke_settings.py"))["SMOKE_ARGS"]
EXAMPLES = sorted(ROOT.glob("examples/*/byol.py"))
# What each script needs beyond the shared smoke settings.
EXTRA_SMOKE_ARGS = {"pytorch_lightning_distributed": ["--devices", "2", "--accelerator", "cpu"]}


def torch_python(session: nox.Session, extras: str) -> str:
    """The shared virtualenv's python, with the project and the given extras installed."""
    python = TORCH_ENV / "bin" / "python"
    if not python.exists():
        session.run(sys.executable, "-m", "venv", str(TORCH_ENV), external=True)
        session.run(str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip", external=True)
    session.run(str(python), "-m", "pip", "install", "--quiet", "-e", f".[{extras}]", external=True)
    return str(python)


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff: lint and format check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(venv_backend="none")
def examples(session: nox.Session) -> None:
    """Run every example script on a tiny synthetic dataset, on the CPU."""
    python = torch_python(session, "test")
    for script in EXAMPLES:
        output_dir = session.create_tmp() + f"/{script.parent.name}"
        args = [*SMOKE_ARGS, *EXTRA_SMOKE_ARGS.get(script.parent.name, []), "--output-dir", output_dir]
        session.log(f"smoke run of {script.relative_to(ROOT)}")
        session.run(
            python, str(script), *args, "--overwrite", env={"CUDA_VISIBLE_DEVICES": ""}, external=True
        )


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """The test suite (pytest), apart from the docs tests, which `docs` runs on its build."""
    python = torch_python(session, "test")
    # the ten slowest tests printed at the end: where to look when the suite grows slower
    session.run(
        python, "-m", "pytest", "--ignore=tests/docs", "--durations=10", *session.posargs, external=True
    )


@nox.session(venv_backend="none")
def docs(session: nox.Session) -> None:
    """Build the site into docs/_build/html with warnings as errors, then test it."""
    python = torch_python(session, "docs")
    build = ROOT / "docs" / "_build" / "html"
    session.run(python, "docs/make_results.py", external=True)  # the Results page from benchmarks/results
    # the doctrees (pickles that hold this machine's paths) apart from the pages that get published
    doctrees = ["-d", str(build.parent / "doctrees")]
    session.run(
        python,
        "-m",
        "sphinx",
        "-W",
        "--keep-going",
        *doctrees,
        "-b",
        "html",
        "docs",
        str(build),
        external=True,
    )
    session.run(python, "-m", "pytest", "tests/docs", *session.posargs, external=True)


@nox.session(venv_backend="none", default=False)
def bench(session: nox.Session) -> None:
    """Throughput of the reference example against ours, side by side (benchmarks/throughput.py)."""
    python = torch_python(session, "bench")
    session.run(python, "benchmarks/throughput.py", *session.posargs, external=True)
