"""Old import paths, kept for one release after the package was laid out in layer folders (issue 33).

`import xlm_hf.modeling_xlm_hf` (or `from xlm_hf.hub import ...`) still works: a finder on `sys.meta_path` answers
for the old names with the module at its new home (the same module object, so classes keep their identity) and a
`DeprecationWarning` naming the new path. Nothing is imported until an old name is asked for.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

# old module (under xlm_hf) -> its home now
MOVED = {
    **{name: f"model.{name}" for name in ("configuration_xlm_hf", "hardware", "inference", "generation_xlm_hf",
                                          "modeling_xlm_hf", "tokenization_xlm_hf", "placeholders",
                                          "pipeline_translation")},
    "sampling": "data.sampling", "collators": "data.collators", "denoising": "data.denoising",
    "tokenizer_training": "data.tokenizer_training",
    "pretraining": "training.pretraining", "unsupervised": "training.unsupervised",
    "back_translation": "training.back_translation", "lora": "training.lora",
    "documents": "text.documents", "gettext_catalogs": "text.gettext_catalogs",
    "convert": "interop.convert", "export_ctranslate2": "interop.export_ctranslate2", "hub": "interop.hub",
    "server": "serving.app",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        old = fullname.removeprefix("xlm_hf.")
        if old == fullname or old not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        old = spec.name.removeprefix("xlm_hf.")
        new = f"xlm_hf.{MOVED[old]}"
        warnings.warn(f"{spec.name} moved to {new}: import it from there ({spec.name} goes away in the next release)",
                      DeprecationWarning, stacklevel=2)
        module = importlib.import_module(new)
        self._specs = {**getattr(self, "_specs", {}), new: module.__spec__}
        return module

    def exec_module(self, module):
        module.__spec__ = self._specs[module.__name__]  # executed already; importlib set the old name's spec on it


def install() -> None:
    """Answer the old names (once per process)."""
    if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
        sys.meta_path.append(_Alias())
