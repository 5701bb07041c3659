"""Helpers of the training-script tests (test_run_translation.py, test_no_trainer.py): run a script in a fresh
process on the bundled corpus with the session tokenizer, read what it wrote."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TRAINER_SCRIPT = REPO / "examples" / "run_translation.py"
LOOP_SCRIPT = REPO / "examples" / "run_translation_no_trainer.py"
# The `tiny` recipe, shortened: 8 optimizer steps, a state every 4, dropout on (so a resume must restore the RNG).
TINY_RUN = ["tiny", "--max_steps", "8", "--save_steps", "4", "--logging_steps", "1", "--max_train_samples", "16",
            "--max_eval_samples", "3", "--per_device_train_batch_size", "4", "--config_overrides", "dropout=0.1"]


@pytest.fixture(scope="session")
def tokenizer_dir(tokenizer, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tokenizer")
    tokenizer.save_pretrained(folder)
    return str(folder)


def run(argv, *, timeout=600, threads=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(map(str, argv))} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


def run_script(script, *args, **kwargs):
    return run([sys.executable, script, *TINY_RUN, *args], **kwargs)


def read_json(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def logged(history, key="loss"):
    """(step, value) of the training-loss entries of a log history."""
    return [(entry["step"], entry[key]) for entry in history if key in entry]


def saved_weights_digest(folder):
    from transformers import AutoModelForSeq2SeqLM

    from xlm_hf.training import weights_digest

    return weights_digest(AutoModelForSeq2SeqLM.from_pretrained(folder))
