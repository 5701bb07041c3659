"""The package's layout: imports go down the layers only, remote code imports only remote code, a saved folder carries
exactly the remote-code files, and no tracked file names one machine's paths."""

import ast
import subprocess
from pathlib import Path

import pytest
import torch

import xlm_hf
from xlm_hf.configuration_xlm_hf import REMOTE_CODE_FILES

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "xlm_hf"

# A module may import only modules of earlier layers (modules of one layer do not import each other).
LAYERS = [
    ["_moved", "configuration_xlm_hf", "hardware", "atomic", "resources", "sampling", "placeholders", "gettext_catalogs"],
    ["inference", "plotting", "documents"],
    ["generation_xlm_hf"],
    ["modeling_xlm_hf", "tokenization_xlm_hf"],
    ["pipeline_translation", "data", "presets", "evaluation", "collators", "denoising"],
    ["serving.options", "serving.folders"],
    ["tokenizer_training", "convert", "export_ctranslate2", "hub", "lora"],
    ["serving.decoders", "serving.batcher"],
    ["serving.translator"],
    ["serving"],
    ["training.arguments", "training.recipes", "training.process", "training.checkpoints",
     "training.publish"],
    ["training.datasets", "training.models", "training.loop"],
    ["training.evaluation"],
    ["training.trainer"],
    ["training"],
    ["pretraining", "back_translation"],
    ["unsupervised"],
    ["serving.app"],
    ["", "commands", "folders", "server"],  # the package's __init__ (registration), and the commands package
    ["cli"],
    ["commands.*", "__main__"],
]


def module_name(path: Path) -> str:
    """'xlm_hf/training/datasets.py' -> 'training.datasets'; a package's __init__ -> its name ('' for xlm_hf)."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, relative_only: bool = False) -> set[str]:
    """The xlm_hf modules a file imports (anywhere in it, function-level imports included), as `module_name`s; with
    `relative_only`, only its single-dot imports (those a saved folder must carry)."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    package = [p for p in package if p]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)]
            if node.module:
                found.add(".".join(base + [node.module]))
            else:  # from . import x: a module, or a name of the package
                for alias in node.names:
                    candidate = ".".join(base + [alias.name])
                    found.add(candidate if layer_of(candidate) is not None else ".".join(base))
        elif relative_only:
            continue
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("xlm_hf"):
            found.add(node.module.removeprefix("xlm_hf").lstrip("."))
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("xlm_hf").lstrip(".") for a in node.names if a.name.startswith("xlm_hf")}
    found.discard(name)
    return found


def layer_of(name: str) -> int | None:
    for index, layer in enumerate(LAYERS):
        for entry in layer:
            if name == entry or (entry.endswith(".*") and name.startswith(entry[:-1])):
                return index
    return None


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "metrics" not in p.relative_to(PACKAGE).parts)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_down_the_layers_only(path):
    name = module_name(path)
    layer = layer_of(name)
    assert layer is not None, f"{name or 'xlm_hf'} has no layer: add it to LAYERS in tests/test_layout.py"
    upward = {m: layer_of(m) for m in imports_of(path) if layer_of(m) is None or layer_of(m) >= layer}
    assert not upward, f"{name or 'xlm_hf'} (layer {layer}) imports from its own layer or above: {upward}"


def test_the_model_does_not_import_the_pipeline_and_data_knows_nothing_of_training():
    assert "pipeline_translation" not in imports_of(PACKAGE / "modeling_xlm_hf.py")
    assert not {m for m in imports_of(PACKAGE / "data.py") if m.startswith("training")}


@pytest.mark.parametrize("name", REMOTE_CODE_FILES)
def test_remote_code_imports_only_remote_code(name):
    """Relative imports must resolve in a saved folder; an absolute `xlm_hf` import is the installed package's,
    optional there (modeling's atomic save falls back to a plain one without it)."""
    shipped = {Path(f).stem for f in REMOTE_CODE_FILES}
    assert imports_of(PACKAGE / name, relative_only=True) <= shipped, f"{name} imports a file a folder lacks"


def test_a_saved_folder_carries_exactly_the_remote_code_files(tmp_path):
    tokenizer = xlm_hf.train_tokenizer({"en": ["Save the file"] * 3, "fr": ["Enregistrer le fichier"] * 3},
                                       vocab_size=300, languages=["en", "fr"], min_frequency=1, show_progress=False)
    torch.manual_seed(0)
    model = xlm_hf.XLMForSeq2SeqLM(xlm_hf.config_from_preset("tiny", tokenizer=tokenizer))
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.glob("*.py")) == sorted(REMOTE_CODE_FILES)


def test_no_tracked_file_names_a_machine_path():
    tracked = subprocess.run(["git", "grep", "-n", "-I", "-E", "(^|[^.])/(work|root|home)/", "--", "."], cwd=REPO,
                             capture_output=True, text=True).stdout
    assert not tracked, f"paths are relative to the checkout, or arguments:\n{tracked}"
