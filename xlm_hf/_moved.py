"""Old import paths kept for one release after the package was laid out in layers (issue 33): each old module is a
shim that warns once and re-exports its new home."""

import importlib
import sys
import warnings


def moved(old: str, new: str) -> None:
    """Make module `old` (a shim being imported) the public names of `new`, with a DeprecationWarning naming it."""
    warnings.warn(f"{old} moved to {new}: import it from there ({old} goes away in the next release)",
                  DeprecationWarning, stacklevel=3)
    module, target = sys.modules[old], importlib.import_module(new)
    names = getattr(target, "__all__", [n for n in vars(target) if not n.startswith("_")])
    module.__dict__.update({name: getattr(target, name) for name in names})
    module.__all__ = list(names)
