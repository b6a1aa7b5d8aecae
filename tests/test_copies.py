"""Each Lightning script is standalone, so it copies the plain-PyTorch script's augmentations, model,
loss, data and evaluation. The copies must stay copies: a change to the plain script that is not
made to the others fails here, naming the function to copy over."""

import ast
from pathlib import Path

import pytest

from conftest import DISTRIBUTED_SCRIPT, LIGHTNING_SCRIPT, PYTORCH_SCRIPT

# Top-level functions and classes of the plain script that a Lightning script leaves out (its
# training section replaces them) or changes on purpose.
DIFFERENCES = {
    LIGHTNING_SCRIPT: {
        "left out": {"training_step", "save_checkpoint", "resume", "stopped_by"},
        "changed": {
            "build_parser",  # the --output-dir default (test_lightning checks every default)
            "prepare_output_dir",  # also clears Lightning's logs
            "train",
        },
    },
    DISTRIBUTED_SCRIPT: {
        "left out": {"training_step", "save_checkpoint", "resume", "pick_device", "stopped_by"},
        "changed": {
            "build_parser",  # --devices, --num-nodes... instead of --device
            "default_num_workers",  # shared out between the processes of a machine
            "knn_accuracy",  # shared out between the processes
            "prepare_output_dir",  # also clears Lightning's logs; only rank 0 deletes
            "train",
            "main",  # one report for all processes
        },
    },
}


def top_level_definitions(path: Path) -> dict[str, str]:
    """The source of each top-level function, class and assignment, by name."""
    text = path.read_text()
    definitions = {}
    for node in ast.parse(text).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            definitions[node.name] = ast.get_source_segment(text, node)
        elif isinstance(node, ast.Assign):
            names = [ast.unparse(target) for target in node.targets]
            definitions[" = ".join(names)] = ast.get_source_segment(text, node)
    return definitions


@pytest.mark.parametrize("script", DIFFERENCES, ids=lambda path: path.parent.name)
def test_shared_sections_are_copies_of_the_plain_script(script):
    plain, copy = top_level_definitions(PYTORCH_SCRIPT), top_level_definitions(script)
    assert plain.keys() - copy.keys() == DIFFERENCES[script]["left out"]
    changed = {name for name in plain.keys() & copy.keys() if plain[name] != copy[name]}
    assert changed == DIFFERENCES[script]["changed"], f"copy these from {PYTORCH_SCRIPT.name} into {script}"
