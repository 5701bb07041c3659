"""Recipes: JSON files of a script's arguments, by name (`configuration/recipes/`, shipped in the package) or path.

A first argument that is not an option is a recipe: `run_translation.py tiny --max_steps 5`.
"""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import resources

RECIPE_FOLDER = "recipes"
MODEL_OPTIONS = ("--model_name_or_path", "--pretrained_lm")  # where the model comes from, instead of a preset


class RecipeError(ValueError):
    """A training recipe (JSON arguments file) that cannot be used; the message names the field and the fix."""


def list_recipes() -> list[str]:
    return resources.names(RECIPE_FOLDER)


def resolve_recipe(name_or_path: str) -> Path:
    """A recipe file: a `.json` path, or a name from `configuration/recipes/`."""
    path = Path(name_or_path)
    if path.suffix == ".json" and path.is_file():
        return path
    shipped = resources.resource_path(RECIPE_FOLDER, f"{name_or_path}.json")
    if path.suffix != ".json" and shipped.is_file():
        return shipped
    raise RecipeError(
        f"No recipe {name_or_path!r}: give the path of a .json arguments file or one of {list_recipes()} "
        f"(configuration/recipes/)."
    )


def parse_args(dataclass_types: Sequence[type], argv: Sequence[str] | None = None) -> tuple:
    """Parse arguments into `dataclass_types` with `HfArgumentParser`.

    A first argument that is not an option is a recipe (`recipe.json` or a recipe name): its fields become the
    defaults, and options after it override them, e.g. `run_translation.py tiny --max_steps 5`. Recipe keys
    starting with `_` are comments. A `--model_name_or_path` or `--pretrained_lm` on the command line replaces the
    recipe's `preset` (fine-tune that model with the recipe's other settings), as any option replaces a recipe's value.
    """
    from transformers import HfArgumentParser

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(dataclass_types)
    if argv and not argv[0].startswith("-"):
        path = resolve_recipe(argv.pop(0))
        recipe = read_recipe(path, parser)
        if any(arg.split("=")[0] in MODEL_OPTIONS for arg in argv):
            recipe.pop("preset", None)  # the given model is the architecture; a preset would describe another one
        parser.set_defaults(**recipe)
        for action in parser._actions:
            if action.dest in recipe:
                action.required = False
    return parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)


def read_recipe(path: Path, parser) -> dict[str, Any]:
    """The fields of a recipe file, checked against the parser's options (names and value types)."""
    try:
        recipe = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise RecipeError(f"Recipe {path} is not valid JSON ({err}): fix the file.") from err
    if not isinstance(recipe, dict):
        raise RecipeError(f"Recipe {path} must hold a JSON object of argument names and values.")
    recipe = {k: v for k, v in recipe.items() if not k.startswith("_")}
    actions = {a.dest: a for a in parser._actions if a.dest != "help"}
    for key, value in recipe.items():
        if key not in actions:
            close = difflib.get_close_matches(key, list(actions), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise RecipeError(
                f"Recipe {path}: unknown field {key!r}{hint}. A recipe holds the script's options (see --help); "
                f"remove or rename the field."
            )
        problem = _recipe_value_problem(value, actions[key])
        if problem:
            raise RecipeError(f"Recipe {path}: field {key!r} {problem}; got {value!r}.")
    return recipe


def _recipe_value_problem(value: Any, action, *, item: bool = False) -> str | None:
    """Why `value` (an item of a list field with `item=True`) does not fit the argparse `action` of a dataclass
    field, or None."""
    from transformers.hf_argparser import string_to_bool

    if value is None:
        return None
    if action.nargs == "+" and not item:
        if not isinstance(value, list):
            return "must be a JSON list"
        return next((p for p in (_recipe_value_problem(v, action, item=True) for v in value) if p), None)
    if action.type is string_to_bool:
        return None if isinstance(value, bool) else "must be true or false"
    if action.choices:
        values = [getattr(c, "value", c) for c in action.choices]
        return None if value in values or str(value) in map(str, values) else f"must be one of {values}"
    if action.type in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number ({action.type.__name__})"
        if action.type is int and value != int(value):
            return "must be an integer"
    if action.type is str and isinstance(value, (bool, int, float)):
        return "must be a string"
    return None
