"""Helpers of the training-script tests (test_run_translation.py, test_no_trainer.py): run a script in a fresh
process on the bundled corpus with the session tokenizer, read what it wrote."""

import json
import os
import random
import signal
import subprocess
import sys
import time
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


def _env(threads=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def run(argv, *, timeout=600, threads=None):
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=_env(threads), cwd=REPO,
                            timeout=timeout)
    assert result.returncode == 0, f"{' '.join(map(str, argv))} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


def run_script(script, *args, **kwargs):
    return run([sys.executable, script, *TINY_RUN, *args], **kwargs)


def kill_when(script, *args, appears: Path, delay: float = 0.0, timeout: float = 300, log: Path) -> None:
    """Run `script` (TINY_RUN + args) and SIGKILL it `delay` seconds after the path `appears` exists; the test fails
    if the run ends before (the kill would have proved nothing)."""
    with open(log, "w", encoding="utf-8") as out:
        process = subprocess.Popen([sys.executable, str(script), *TINY_RUN, *map(str, args)], stdout=out,
                                   stderr=subprocess.STDOUT, env=_env(), cwd=REPO)
        try:
            deadline = time.monotonic() + timeout
            while not appears.exists():
                assert process.poll() is None, f"the run ended before {appears} appeared:\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"{appears} did not appear within {timeout} s"
                time.sleep(0.002)
            time.sleep(delay)
            alive = process.poll() is None
            process.send_signal(signal.SIGKILL)
        finally:
            process.kill()
            process.wait()
    assert alive and process.returncode == -signal.SIGKILL, f"the run ended before the kill:\n{log.read_text()[-3000:]}"


def kill_point(steps: list[int]) -> tuple[int, float, str]:
    """A random kill point: after the checkpoint of one of `steps`, plus up to 0.02 s (in the next step: a tiny step
    takes 20 ms unloaded, over a second on a busy machine). Seeded from XLM_HF_KILL_SEED when set, so a failure can be
    replayed; the description names the seed.

    Known issue, still unexplained: once in CI (/tmp/ci6, XLM_HF_KILL_SEED=2746317213 with the older 0.1 s window, a
    kill 0.04 s after the state of step 2) an Accelerate resume ended with other weights. Not reproduced here:
    resuming from each state of an uninterrupted run (steps 1-7), kills as each file of the next save appeared, and
    ~25 kills 0-0.8 s after steps 2 and 4 (landing in steps 3-8, in saves, after the last save) all gave bitwise equal
    weights, so the window stays at the step after a state. The Accelerate kill test now says whether the state it
    resumed from already differed from the uninterrupted run's (the killed run diverged) or not (the resume did)."""
    seed = int(os.environ.get("XLM_HF_KILL_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    step, delay = rng.choice(steps), rng.uniform(0.0, 0.02)
    return step, delay, f"killed {delay:.2f} s after the checkpoint of step {step} (XLM_HF_KILL_SEED={seed})"


def read_json(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def logged(history, key="loss"):
    """(step, value) of the training-loss entries of a log history."""
    return [(entry["step"], entry[key]) for entry in history if key in entry]


def saved_weights_digest(folder):
    from transformers import AutoModelForSeq2SeqLM

    from xlm_hf.training import weights_digest

    return weights_digest(AutoModelForSeq2SeqLM.from_pretrained(folder))
