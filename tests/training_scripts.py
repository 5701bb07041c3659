"""Helpers of the training-script tests (test_run_translation.py, test_no_trainer.py, ...): run a script in a fresh
process on the bundled corpus with the session tokenizer, read what it wrote."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
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


def kill_when(script, *args, appears: Path, delay: float = 0.0, timeout: float = 300, log: Path,
              recipe: list[str] = TINY_RUN) -> None:
    """Run `script` (`recipe` + args, TINY_RUN by default) and SIGKILL it `delay` seconds after the path `appears`
    exists; the test fails if the run ends before (the kill would have proved nothing)."""
    with open(log, "w", encoding="utf-8") as out:
        process = subprocess.Popen([sys.executable, str(script), *recipe, *map(str, args)], stdout=out,
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
    """A random kill point: up to 0.1 s after the checkpoint of one of `steps` (a tiny step takes 20 ms unloaded,
    over a second on a busy machine: the kill lands in one of the next steps or in the middle of a save). Seeded
    from XLM_HF_KILL_SEED when set, so a failure can be replayed; XLM_HF_KILL_WINDOW widens the window for stress
    runs. The description names both.

    History: one CI run (XLM_HF_KILL_SEED=2746317213) and one stress run (1574429011) failed, and the window was
    narrowed to 0.02 s while the cause was unknown. The stress failure showed it: the *uninterrupted reference* run
    differed from every other run from its first step (loss 7.6083293 against 7.6083159, learning rate still 0),
    while the killed-and-resumed run matched the other runs bitwise at every step. So it is rare run-to-run
    nondeterminism of one process, not the kill or the resume; the kill tests now tell the two apart (see
    `first_divergence`) and re-check once against a fresh reference when the difference predates the resume."""
    seed = int(os.environ.get("XLM_HF_KILL_SEED", random.randrange(2**32)))
    window = float(os.environ.get("XLM_HF_KILL_WINDOW", 0.1))
    rng = random.Random(seed)
    step, delay = rng.choice(steps), rng.uniform(0.0, window)
    return step, delay, (f"killed {delay:.2f} s after the checkpoint of step {step} (XLM_HF_KILL_SEED={seed} "
                         f"XLM_HF_KILL_WINDOW={window})")


def first_divergence(history, reference) -> tuple[int | None, str]:
    """The first step whose logged training loss differs between two runs (None if none), and a description: tells
    a kill-and-resume failure that began before the kill (the killed run) from one that began after it (the resume)."""
    ours, theirs = dict(logged(history)), dict(logged(reference))
    differ = [step for step in sorted(theirs) if ours.get(step) != theirs[step]]
    if not differ:
        return None, "the logged losses of every step are equal (the runs differ below the logged precision)"
    step = differ[0]
    return step, f"losses first differ at step {step}: {ours.get(step)} against {theirs[step]} in the reference"


def resumes_like_reference(kill_and_resume: Callable, reference: Path, run_reference: Callable[[Path], None],
                           tmp_path: Path) -> tuple[bool, str]:
    """The kill-and-resume check of both scripts: `kill_and_resume(reference, out, log)` -> (equal final weights,
    whether the killed run already differed from `reference` before the state it resumed from, description).

    A run on this CPU stack can, rarely (once in a few hundred runs), differ in the last bits of one step from another
    run with the same seed, and Adam amplifies it (seen in a reference run: its step-1 loss differed by 1e-5 while
    the killed-and-resumed run matched every other run bitwise). A difference already there before the resume is not
    the resume's doing: then the whole check runs once more, against a fresh reference made by `run_reference(out)`.
    A difference that appears after the resume fails at once."""
    equal, killed_run_differed, how = kill_and_resume(reference, tmp_path / "killed", tmp_path / "killed.log")
    if not equal and killed_run_differed:
        fresh = tmp_path / "reference"
        run_reference(fresh)
        equal, _, again = kill_and_resume(fresh, tmp_path / "again", tmp_path / "again.log")
        how = f"first try: {how}; second try: {again}"
    return equal, how


def same_state(state, reference) -> bool:
    import torch
    from safetensors.torch import load_file

    """Two saved training states hold the same weights, torch RNG state and accumulation counter (the files
    themselves differ: torch.save writes a unique id)."""
    weights, expected = load_file(state / "model.safetensors"), load_file(reference / "model.safetensors")
    rng, expected_rng = (torch.load(s / "random_states_0.pkl", weights_only=False) for s in (state, reference))
    return (weights.keys() == expected.keys() and all(torch.equal(weights[k], expected[k]) for k in weights)
            and torch.equal(rng["torch_manual_seed"], expected_rng["torch_manual_seed"]) and rng["step"] == expected_rng["step"])


def read_json(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def logged(history, key="loss"):
    """(step, value) of the training-loss entries of a log history."""
    return [(entry["step"], entry[key]) for entry in history if key in entry]


def saved_weights_digest(folder):
    from transformers import AutoModelForSeq2SeqLM

    from xlm_hf.training import weights_digest

    return weights_digest(AutoModelForSeq2SeqLM.from_pretrained(folder))
