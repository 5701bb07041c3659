"""The built wheel, installed the normal way (not editable) into a fresh virtual environment, used from a folder
outside the checkout: presets, recipes, the bundled corpus, `xlm-hf info` and `xlm-hf push --dry-run` all work.

The environment reuses the test run's installed dependencies (a `.pth` line to their site-packages: the `.pth`
files there, such as the editable install's finder, are not run), so nothing is downloaded.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parent.parent


def run(cmd, cwd, env=None, timeout=600):
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{cmd} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory):
    """`(python, xlm-hf script, env, outside folder)` of a fresh venv with the wheel of this checkout installed."""
    root = tmp_path_factory.mktemp("wheel")
    # Build from a copy of the checkout's tracked and untracked files, so the build leaves nothing in the checkout.
    source = root / "source"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (REPO / name).is_symlink():
            target.symlink_to(os.readlink(REPO / name))
        elif (REPO / name).is_file():
            shutil.copy2(REPO / name, target)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(source), "-w",
         str(root / "dist")], cwd=root)
    wheel = next((root / "dist").glob("xlm_hf-*.whl"))

    venv = root / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=root)
    python = venv / "bin" / "python"
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=root)
                .stdout.strip())
    (site / "_test_run_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)], cwd=root)

    outside = root / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               HF_MODULES_CACHE=str(root / "modules"), PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    return python, venv / "bin" / "xlm-hf", env, outside


def test_the_installed_wheel_has_its_presets_recipes_corpus_and_card(wheel_env):
    python, _, env, outside = wheel_env
    script = textwrap.dedent(
        """
        import json, sys
        from pathlib import Path
        import xlm_hf
        from xlm_hf import data, hub, training
        from xlm_hf.training import ModelArguments, DataArguments, TranslationTrainingArguments, parse_args

        presets = xlm_hf.list_presets()
        configs = {name: xlm_hf.config_from_preset(name).d_model for name in presets}
        recipe = training.resolve_recipe("tiny")
        _, data_args, train_args = parse_args(
            (ModelArguments, DataArguments, TranslationTrainingArguments), ["tiny", "--output_dir", "out"])
        pairs = data.load_translation_datasets("bundled", pairs=["en-fr"], splits=["validation"])
        print(json.dumps({
            "package": xlm_hf.__file__, "presets": presets, "d_model": configs, "recipes": training.list_recipes(),
            "recipe": str(recipe), "recipe_pairs": data_args.pairs, "card": hub.TEMPLATE.is_file(),
            "validation_rows": len(pairs["en-fr"]["validation"]),
        }))
        """
    )
    found = json.loads(run([str(python), "-c", script], cwd=outside, env=env).stdout.strip().splitlines()[-1])
    assert Path(found["package"]).is_relative_to(python.parent.parent), "the checkout, not the wheel, was imported"
    assert not Path(found["package"]).is_relative_to(REPO)
    assert found["presets"] == sorted(p.stem for p in (REPO / "configuration" / "models").glob("*.json"))
    assert found["d_model"]["tiny"] > 0 and found["d_model"]["base"] == 512
    assert found["recipes"] == sorted(p.stem for p in (REPO / "configuration" / "recipes").glob("*.json"))
    assert Path(found["recipe"]).is_relative_to(python.parent.parent) and found["recipe_pairs"]
    assert found["card"] and found["validation_rows"] > 0


def test_the_installed_cli_shows_a_model_and_stages_it_for_the_hub(wheel_env):
    python, cli, env, outside = wheel_env
    make_model = textwrap.dedent(
        """
        import json, torch, xlm_hf
        from xlm_hf import XLMForSeq2SeqLM, train_tokenizer
        tok = train_tokenizer({"en": ["Save the file", "Open"] * 3, "fr": ["Enregistrer le fichier", "Ouvrir"] * 3},
                              vocab_size=300, languages=["en", "fr"], min_frequency=1, show_progress=False)
        torch.manual_seed(0)
        model = XLMForSeq2SeqLM(xlm_hf.config_from_preset("tiny", tokenizer=tok))
        model.save_pretrained("model"); tok.save_pretrained("model")
        history = [{"step": s, "loss": 5.0 / s} for s in range(1, 4)]
        open("model/trainer_state.json", "w").write(json.dumps({"log_history": history}))
        """
    )
    run([str(python), "-c", make_model], cwd=outside, env=env)
    info = json.loads(run([str(cli), "info", "model", "--json"], cwd=outside, env=env).stdout)
    assert info["model_type"] == "xlm_hf" and info["languages"] == ["en", "fr"] and info["parameters"] > 0, info
    pushed = run([str(cli), "push", "model", "--repo-id", "someone/xlm-tiny", "--dry-run",
                  "--staging-dir", str(outside / "staged")], cwd=outside, env=env)
    card = (outside / "staged" / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n") and "someone/xlm-tiny" in card, pushed.stdout
    assert "{{" not in card and "{%" not in card  # the template was rendered
