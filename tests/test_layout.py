"""The package's layout: imports go down the layers only, remote code imports only remote code, a saved folder carries
exactly the remote-code files, and no tracked file names one machine's paths."""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import xlm_hf
from xlm_hf.model.configuration_xlm_hf import REMOTE_CODE_FILES

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "xlm_hf"

# The package's layers are its folders (and a few cross-cutting modules at its top). A module imports from its own
# folder and from the layers below, never above: the folder a file sits in says what it may use.
LAYERS = [
    ["atomic", "resources", "_moved"],  # no xlm_hf imports at all
    ["model/"],  # the remote code a saved folder carries (REMOTE_CODE_FILES, nothing else)
    ["folders", "presets", "plotting", "evaluation"],  # loading folders, presets, pictures, metrics
    ["data/"],  # readers, sampling, collators, noise, tokenizer training
    ["text/"],  # documents, gettext catalogs
    ["interop/"],  # original XLM checkpoints, CTranslate2, the Hub
    ["training/"],  # translation training, pretraining, unsupervised, back-translation, LoRA
    ["serving/"],  # the translation service, its decoders, the batcher, the app
    ["", "cli", "__main__", "commands/"],  # registration, the CLI and its commands
]
FOLDERS = [entry[:-1] for layer in LAYERS for entry in layer if entry.endswith("/")]


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
    """The layer of a module name: its folder's, or its own entry's for a top-level module."""
    head = name.split(".")[0]
    for index, layer in enumerate(LAYERS):
        if f"{head}/" in layer or name in layer:
            return index
    return None


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "metrics" not in p.relative_to(PACKAGE).parts)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_down_the_layers_only(path):
    name = module_name(path)
    layer = layer_of(name)
    assert layer is not None, f"{name or 'xlm_hf'} has no layer: put it in a folder of LAYERS in tests/test_layout.py"
    upward = {m: layer_of(m) for m in imports_of(path) if layer_of(m) is None or layer_of(m) > layer}
    assert not upward, f"{name or 'xlm_hf'} (layer {layer}) imports from a layer above: {upward}"


def test_every_folder_of_the_package_is_a_layer_and_the_top_holds_only_named_modules():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()} - {"metrics"}
    assert folders == set(FOLDERS)
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert top == {entry for layer in LAYERS for entry in layer if entry and not entry.endswith("/")}


def test_the_model_folder_is_what_a_saved_model_carries():
    assert sorted(p.name for p in (PACKAGE / "model").glob("*.py") if p.name != "__init__.py") == \
        sorted(REMOTE_CODE_FILES)


def test_old_import_paths_work_for_one_release_with_a_warning():
    from xlm_hf._moved import MOVED

    for old, new in MOVED.items():
        sys.modules.pop(f"xlm_hf.{old}", None)  # imported by an earlier test: ask again
        with pytest.warns(DeprecationWarning, match=f"xlm_hf.{old} moved to xlm_hf.{new}"):
            module = importlib.import_module(f"xlm_hf.{old}")
        assert module is importlib.import_module(f"xlm_hf.{new}") and module.__spec__.name == f"xlm_hf.{new}"


def test_the_model_does_not_import_the_pipeline():
    assert "model.pipeline_translation" not in imports_of(PACKAGE / "model" / "modeling_xlm_hf.py")


@pytest.mark.parametrize("name", REMOTE_CODE_FILES)
def test_remote_code_imports_only_remote_code(name):
    """Relative imports must resolve in a saved folder; an absolute `xlm_hf` import is the installed package's,
    optional there (modeling's atomic save falls back to a plain one without it)."""
    shipped = {f"model.{Path(f).stem}" for f in REMOTE_CODE_FILES}
    assert imports_of(PACKAGE / "model" / name, relative_only=True) <= shipped, f"{name} imports a file a folder lacks"


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
