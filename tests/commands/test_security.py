"""Security: the project never loads pickle, saves and loads safetensors only, and the code it ships into model folders
for `trust_remote_code` is model, tokenizer and pipeline code only: no network, no exec/eval, no subprocess.

Checks read the syntax tree (`ast`), so comments, docstrings and names that merely contain a word do not count.
"""

import ast
from pathlib import Path

import pytest
import torch

import xlm_hf
from xlm_hf import XLMForSeq2SeqLM, train_tokenizer
from xlm_hf.model.configuration_xlm_hf import REMOTE_CODE_FILES
from xlm_hf.model.pipeline_translation import translation_pipeline


ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIRS = [ROOT / "xlm_hf", ROOT / "examples"]

PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "marshal", "shelve"}


def dotted(node) -> str:
    """`torch.load` for the expression `torch.load`; '' for anything that is not a plain dotted name."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def keyword_is(call: ast.Call, name: str, value) -> bool:
    return any(k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is value for k in call.keywords)


def imported_modules(tree) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, node.module)] + [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def pickle_problems(source: str) -> list[str]:
    """Unsafe (de)serialisation in `source`: pickle-family imports, `torch.load` without `weights_only=True`,
    `use_safetensors=False`, `safe_serialization=False`, `allow_pickle=True`."""
    tree = ast.parse(source)
    problems = [f"line {line}: imports {name}" for line, name in imported_modules(tree)
                if name.split(".")[0] in PICKLE_MODULES]
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = dotted(node.func)
        if name.endswith("torch.load") or name == "load" and _imported_from(tree, "torch", "load"):
            if not keyword_is(node, "weights_only", True):
                problems.append(f"line {node.lineno}: {name} without weights_only=True")
        for keyword, bad in (("use_safetensors", False), ("safe_serialization", False), ("allow_pickle", True)):
            if keyword_is(node, keyword, bad):
                problems.append(f"line {node.lineno}: {keyword}={bad}")
    return problems


def _imported_from(tree, module: str, name: str) -> bool:
    return any(isinstance(n, ast.ImportFrom) and n.module == module and any(a.name == name for a in n.names)
               for n in ast.walk(tree))


def python_files():
    files = [path for folder in PACKAGE_DIRS for path in sorted(folder.rglob("*.py"))]
    assert len(files) > 10
    return files


def test_the_package_never_loads_or_writes_pickle():
    problems = {str(path.relative_to(ROOT)): found for path in python_files()
                if (found := pickle_problems(path.read_text(encoding="utf-8")))}
    assert not problems, problems


@pytest.mark.parametrize(
    "source, expected",
    [
        ("import torch\nstate = torch.load(path)\n", "torch.load without weights_only=True"),
        ("import torch\nstate = torch.load(path, weights_only=False)\n", "torch.load without weights_only=True"),
        ("from torch import load\nstate = load(path)\n", "load without weights_only=True"),
        ("import pickle\n", "imports pickle"),
        ("from dill import loads\n", "imports dill"),
        ("model = M.from_pretrained(p, use_safetensors=False)\n", "use_safetensors=False"),
        ("model.save_pretrained(p, safe_serialization=False)\n", "safe_serialization=False"),
        ("a = numpy.load(p, allow_pickle=True)\n", "allow_pickle=True"),
    ],
)
def test_the_pickle_check_catches_each_pattern(source, expected):
    assert any(expected in problem for problem in pickle_problems(source)), pickle_problems(source)


def test_the_pickle_check_ignores_safe_code_and_mere_words():
    safe = '"""Never torch.load(path) or pickle here."""\nimport torch\n# torch.load(x)\n' \
           'state = torch.load(path, weights_only=True, map_location="cpu")\nuse_pickle = False\n'
    assert pickle_problems(safe) == []


# --- the code shipped for trust_remote_code ---------------------------------------------------------------------------

NETWORK_MODULES = {"requests", "urllib", "urllib3", "http", "httpx", "aiohttp", "socket", "ssl", "ftplib", "smtplib",
                   "telnetlib", "xmlrpc", "websocket", "websockets", "paramiko"}
PROCESS_MODULES = {"subprocess", "pty", "multiprocessing", "ctypes", "importlib", "runpy", "code", "codeop"}
# huggingface_hub is allowed only for its dataclass validators (configuration: @strict).
HUB_ALLOWED = {"huggingface_hub.dataclasses", "huggingface_hub.dataclasses.strict"}
DOWNLOAD_NAMES = {"hf_hub_download", "snapshot_download", "HfApi", "HfFileSystem", "upload_file", "upload_folder",
                  "create_repo", "cached_file", "cached_files", "download_url", "http_get", "get_session", "urlopen"}
DANGEROUS_CALLS = {"exec", "eval", "compile", "__import__", "breakpoint", "os.system", "os.popen", "os.startfile",
                   "os.fork", "os.kill"}
DANGEROUS_PREFIXES = ("os.exec", "os.spawn", "os.posix_spawn")


def remote_code_problems(source: str) -> list[str]:
    """What must not be in a file shipped for trust_remote_code."""
    tree = ast.parse(source)
    problems = []
    for line, name in imported_modules(tree):
        root = name.split(".")[0]
        if root in NETWORK_MODULES:
            problems.append(f"line {line}: network module {name}")
        elif root in PROCESS_MODULES or root in PICKLE_MODULES:
            problems.append(f"line {line}: imports {name}")
        elif root == "huggingface_hub" and name not in HUB_ALLOWED:
            problems.append(f"line {line}: imports {name} (Hub access)")
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = dotted(node.func)
            if name in DANGEROUS_CALLS or name.startswith(DANGEROUS_PREFIXES):
                problems.append(f"line {node.lineno}: calls {name}")
            if keyword_is(node, "trust_remote_code", True) and name.split(".")[-1] in ("pipeline", "from_pretrained"):
                problems.append(f"line {node.lineno}: {name}(trust_remote_code=True) runs other folders' code")
        if isinstance(node, (ast.Name, ast.Attribute, ast.alias)):
            word = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else node.name
            if word.split(".")[-1] in DOWNLOAD_NAMES:
                problems.append(f"line {node.lineno}: uses {word} (downloads)")
    return problems + pickle_problems(source)


@pytest.fixture(scope="module")
def shipped_files(tmp_path_factory):
    """The .py files `save_pretrained` of a model, its tokenizer and its pipeline copy into a folder."""
    tokenizer = train_tokenizer({"en": ["Open the file"] * 3, "fr": ["Ouvrir le fichier"] * 3}, vocab_size=280,
                                languages=["en", "fr"], min_frequency=1, show_progress=False)
    torch.manual_seed(0)
    model = XLMForSeq2SeqLM(xlm_hf.config_from_preset("tiny", tokenizer=tokenizer))
    folder = tmp_path_factory.mktemp("shipped")
    translation_pipeline(model, tokenizer, src_lang="en", tgt_lang="fr").save_pretrained(folder)
    return sorted(folder.glob("*.py"))


def test_shipped_files_are_the_model_tokenizer_and_pipeline_code(shipped_files):
    # The explicit list of the config module (tests/test_layout.py checks a saved folder holds exactly it).
    assert {path.name for path in shipped_files} == set(REMOTE_CODE_FILES)


def test_shipped_files_make_no_network_call_no_exec_and_no_subprocess(shipped_files):
    problems = {path.name: found for path in shipped_files if (found := remote_code_problems(path.read_text()))}
    assert not problems, problems


@pytest.mark.parametrize(
    "source, expected",
    [
        ("import requests\n", "network module requests"),
        ("from urllib.request import urlopen\n", "network module urllib.request"),
        ("import http.client\n", "network module http.client"),
        ("import socket\n", "network module socket"),
        ("from huggingface_hub import hf_hub_download\n", "imports huggingface_hub.hf_hub_download"),
        ("from transformers.utils import cached_file\n", "uses cached_file"),
        ("import huggingface_hub\nhuggingface_hub.snapshot_download('x')\n", "uses snapshot_download"),
        ("eval('1')\n", "calls eval"),
        ("exec(code)\n", "calls exec"),
        ("__import__('os')\n", "calls __import__"),
        ("import subprocess\n", "imports subprocess"),
        ("import os\nos.system('ls')\n", "calls os.system"),
        ("import os\nos.execv('/bin/sh', [])\n", "calls os.execv"),
        ("import importlib\n", "imports importlib"),
        ("pipe = pipeline('translation', model=m, trust_remote_code=True)\n", "trust_remote_code=True"),
    ],
)
def test_the_remote_code_check_catches_each_pattern(source, expected):
    assert any(expected in problem for problem in remote_code_problems(source)), remote_code_problems(source)


def test_the_remote_code_check_ignores_words_in_strings_and_comments():
    source = ('"""No eval(), exec(), subprocess or requests here; see http://example.org."""\n'
              '# import socket\nmessage = "eval this: os.system"\nfrom huggingface_hub.dataclasses import strict\n'
              'evaluation = 1\n')
    assert remote_code_problems(source) == []
