"""Each Lightning script is standalone, so it copies the plain-PyTorch script's augmentations, model,
loss, data and evaluation. The copies must stay copies: a change to the plain script that is not made to
the others fails here, naming what to copy over."""

import ast
import difflib
from pathlib import Path

import pytest

from conftest import DISTRIBUTED_SCRIPT, LIGHTNING_SCRIPT, PYTORCH_SCRIPT

# The plain script's loop; in the Lightning scripts, the Trainer's loop, checkpoint writer and stop.
PLAIN_ONLY = {"training_step"}
LIGHTNING_ONLY = {"BYOLModule", "AtomicCheckpointIO", "StopBetweenSteps"}
CHANGED = {"parse_args", "train", "main"}  # their own flags and loop
DIFFERENCES = {
    LIGHTNING_SCRIPT: {"left out": PLAIN_ONLY, "added": LIGHTNING_ONLY, "changed": CHANGED},
    DISTRIBUTED_SCRIPT: {"left out": PLAIN_ONLY, "added": LIGHTNING_ONLY, "changed": CHANGED},
}


def top_level_definitions(path: Path) -> dict[str, str]:
    """The source of each top-level function, class and assignment, by name."""
    text = path.read_text()
    definitions = {}
    for node in ast.parse(text).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            definitions[node.name] = ast.get_source_segment(text, node)
        elif isinstance(node, ast.Assign):
            definitions[" = ".join(ast.unparse(target) for target in node.targets)] = ast.get_source_segment(
                text, node
            )
    return definitions


@pytest.mark.parametrize("script", DIFFERENCES, ids=lambda path: path.parent.name)
def test_shared_sections_are_copies_of_the_plain_script(script):
    plain, copy = top_level_definitions(PYTORCH_SCRIPT), top_level_definitions(script)
    assert plain.keys() - copy.keys() == DIFFERENCES[script]["left out"]
    assert copy.keys() - plain.keys() == DIFFERENCES[script]["added"]
    changed = {name for name in plain.keys() & copy.keys() if plain[name] != copy[name]}
    assert changed == DIFFERENCES[script]["changed"], f"copy these from {PYTORCH_SCRIPT.name} into {script}"


def test_the_distributed_script_is_the_lightning_one_with_ddp():
    lightning, distributed = (
        top_level_definitions(LIGHTNING_SCRIPT),
        top_level_definitions(DISTRIBUTED_SCRIPT),
    )
    changed = {name for name in lightning.keys() & distributed.keys() if lightning[name] != distributed[name]}
    assert changed == {"parse_args", "StopBetweenSteps", "train"}


def test_the_distributed_script_is_the_lightning_one_plus_what_ddp_needs():
    """Its readers learn DDP from the diff on its docs tab: at most 60 changed lines, those that `diff`
    prints with < or >."""
    lightning, distributed = (
        LIGHTNING_SCRIPT.read_text().splitlines(),
        DISTRIBUTED_SCRIPT.read_text().splitlines(),
    )
    changed = [line for line in difflib.ndiff(lightning, distributed) if line.startswith(("+ ", "- "))]
    assert len(changed) <= 60, "\n".join(changed)
