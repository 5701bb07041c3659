"""transformers' own common tests (`ModelTesterMixin`, `ConfigTester`), fetched at test time.

They are third-party files, so they are not committed: the sdist of the *installed* transformers version is
downloaded once with pip (`pip download --no-binary :all: --no-deps transformers==X`, the package registry only),
into `$XLM_HF_UPSTREAM_TESTS` (default `~/.cache/xlm-hf-tests`), and its `tests/` tree is extracted next to it as
the package `upstream_tests_<version>`. `load()` returns that package's `test_modeling_common` and
`test_configuration_common` modules, or raises `Unavailable` (the test file then skips, with the reason).

The sdist ships `tests/test_modeling_common.py` and `tests/test_configuration_common.py` but not three files they
import; these get small stand-ins, written here and never mistaken for the real ones:
- `exporters/test_export.py`: `ExportTesterMixin` (torch.export tests) -> an empty mixin (no export tests run);
- `generation/test_utils.py`: `GenerationTesterMixin` -> an empty mixin: the sdist has no `tests/generation/` (see
  NOTES/README: the generation contract is covered by our own tests, `tests/model/test_model.py`, and not by upstream's);
- `utils/test_configuration_utils.py`: `config_common_kwargs`, a non-default value for every field of the installed
  `PreTrainedConfig` (upstream's list is the same idea, kept in a file the sdist lacks).
"""

import importlib
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import transformers


class Unavailable(RuntimeError):
    pass


_STUBS = {
    "exporters/__init__.py": "",
    "exporters/test_export.py": (
        "# Stand-in written by xlm-hf's tests/upstream_mixins.py: the sdist lacks tests/exporters/.\n"
        "class ExportTesterMixin:\n    pass\n"
    ),
    "generation/__init__.py": "",
    "generation/test_utils.py": (
        "# Stand-in written by xlm-hf's tests/upstream_mixins.py: the sdist lacks tests/generation/.\n"
        "class GenerationTesterMixin:\n    pass\n"
    ),
    "utils/__init__.py": "",
    "utils/test_configuration_utils.py": (
        "# Stand-in written by xlm-hf's tests/upstream_mixins.py: the sdist lacks tests/utils/.\n"
        "config_common_kwargs = {\n"
        "    'return_dict': False,\n"
        "    'output_hidden_states': True,\n"
        "    'output_attentions': True,\n"
        "    'dtype': 'float16',\n"
        "    'chunk_size_feed_forward': 5,\n"
        "    'architectures': ['BertModel'],\n"
        "    'id2label': {0: 'label'},\n"
        "    'label2id': {'label': '0'},\n"
        "    'problem_type': 'regression',\n"
        "}\n"
    ),
}
_WANTED = ("tests/test_modeling_common.py", "tests/test_configuration_common.py")


def cache_dir() -> Path:
    return Path(os.environ.get("XLM_HF_UPSTREAM_TESTS", Path.home() / ".cache" / "xlm-hf-tests"))


def _extract(version: str) -> Path:
    """The extracted tests of `version`, fetched and extracted once: test workers running side by side (pytest-xdist)
    take turns through a file lock, and the later ones find the files in place."""
    import fcntl

    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _extract_locked(root, version)


def _extract_locked(root: Path, version: str) -> Path:
    package = root / f"upstream_tests_{version.replace('.', '_')}"
    if all((package / Path(w).name).exists() for w in _WANTED) and (package / "__init__.py").exists():
        return package
    sdist = root / f"transformers-{version}.tar.gz"
    if not sdist.exists():
        cmd = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
               "-q", "-d", str(root), f"transformers=={version}"]
        try:
            subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
        except (subprocess.SubprocessError, OSError) as err:
            detail = getattr(err, "stderr", "") or err
            raise Unavailable(f"cannot download the transformers {version} sdist ({str(detail).strip()[-300:]})")
        if not sdist.exists():
            raise Unavailable(f"pip download left no {sdist.name} in {root}")
    prefix = f"transformers-{version}/tests/"
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix) and m.isfile()
                   and m.name.count("/") == 2 and m.name.endswith(".py")]  # the top level of tests/
        if not {f"transformers-{version}/{w}" for w in _WANTED} <= {m.name for m in members}:
            raise Unavailable(f"the transformers {version} sdist lacks {', '.join(_WANTED)}")
        package.mkdir(parents=True, exist_ok=True)
        for member in members:
            (package / Path(member.name).name).write_bytes(tar.extractfile(member).read())
    (package / "__init__.py").write_text("")
    for relative, text in _STUBS.items():
        path = package / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_text(text)
    return package


def load():
    """`(test_modeling_common, test_configuration_common)` of the installed transformers version."""
    version = transformers.__version__
    package = _extract(version)
    if str(package.parent) not in sys.path:
        sys.path.insert(0, str(package.parent))
    try:
        modeling = importlib.import_module(f"{package.name}.test_modeling_common")
        configuration = importlib.import_module(f"{package.name}.test_configuration_common")
    except ImportError as err:
        raise Unavailable(f"transformers {version}'s common tests do not import here: {err}") from err
    return modeling, configuration


def generation_stand_in():
    """The `GenerationTesterMixin` of the loaded package (the stand-in: see the module docstring)."""
    package = _extract(transformers.__version__)
    return importlib.import_module(f"{package.name}.generation.test_utils").GenerationTesterMixin
