"""examples/run_translation_no_trainer.py (Accelerate): a few-step run learns, saves its state atomically, a run
killed after a saved state resumes, skipping the consumed batches, to the same weights; with `accelerate launch` on
two CPU processes it really runs DDP (world size 2) and both ranks end with identical weights."""

import shutil
import sys

import pytest

from training_scripts import (  # noqa: F401 (tokenizer_dir: a fixture)
    LOOP_SCRIPT, TINY_RUN, first_divergence, kill_point, kill_when, logged, read_json, resumes_like_reference, run,
    run_script, same_state, saved_weights_digest, tokenizer_dir,
)
from xlm_hf.training import find_last_state

# Gradient accumulation over 2 batches of 4, on about 2 x 16 pairs: an epoch is 4 or 5 optimizer steps, so the run
# crosses an epoch boundary (9 batches: step 5 ends the first epoch) and the state saved at step 6 is in the middle
# of the second epoch.
LOOP_ARGS = ["--gradient_accumulation_steps", "2"]


@pytest.fixture(scope="module")
def first_run(tokenizer_dir, tmp_path_factory):
    """The uninterrupted reference run, a state after every step (so a resumed run can be compared state by state)."""
    out = tmp_path_factory.mktemp("loop") / "run"
    run_script(LOOP_SCRIPT, *LOOP_ARGS, "--tokenizer_name_or_path", tokenizer_dir, "--output_dir", out,
               "--save_steps", "1")
    return out


def test_few_steps_learn_save_state_and_evaluate(first_run):
    report = read_json(first_run / "rank0.json")
    assert report["world_size"] == 1 and report["steps"] == 8
    losses = logged(read_json(first_run / "trainer_state.json")["log_history"])
    assert [step for step, _ in losses] == list(range(1, 9))
    assert sum(v for _, v in losses[-3:]) < sum(v for _, v in losses[:3])  # the loss goes down
    for step in (3, 6):
        state = first_run / "checkpoints" / f"step_{step}"
        assert (state / "model.safetensors").is_file() and (state / "random_states_0.pkl").is_file()
        assert read_json(state / "loop_state.json")["completed_steps"] == step
    assert read_json(first_run / "checkpoints" / "step_6" / "loop_state.json")["epoch"] == 1
    end_of_epoch = read_json(first_run / "checkpoints" / "step_5" / "loop_state.json")  # a resume starts epoch 1
    assert (end_of_epoch["epoch"], end_of_epoch["batches_in_epoch"]) == (1, 0)
    assert not list(first_run.rglob(".tmp*"))
    results = read_json(first_run / "eval_results.json")
    assert results["eval_samples"] == 6 and {"eval_bleu_en-fr", "eval_chrf_fr-en", "eval_chrf"} <= set(results)
    assert saved_weights_digest(first_run) == report["weights_sha256"]
    assert read_json(first_run / "config.json")["trained_directions"] == ["en-fr", "fr-en"]  # issue 22, item 6


def kill_and_resume(reference, tokenizer_dir, out, log) -> tuple[bool, bool, str]:
    """SIGKILL a run at a random point after a saved state, resume it from the newest complete state, and compare
    with `reference` (an uninterrupted run saving every step): (equal final weights, whether the state resumed from
    already differed from the reference's state of that step, description)."""
    step, delay, how = kill_point([2, 4])
    args = [*LOOP_ARGS, "--tokenizer_name_or_path", tokenizer_dir, "--output_dir", out, "--save_steps", "2",
            "--do_eval", "false"]
    kill_when(LOOP_SCRIPT, *args, appears=out / "checkpoints" / f"step_{step}", delay=delay, log=log)
    assert not (out / "rank0.json").exists() and not (out / "checkpoints" / "step_8").exists(), how
    last = find_last_state(out)
    assert last is not None and read_json(last / "loop_state.json")["completed_steps"] >= step, how
    killed_run_differed = not same_state(last, reference / "checkpoints" / last.name)
    how += f"; resumed from {last.name}, {'DIFFERENT from' if killed_run_differed else 'equal to'} the reference's"

    run_script(LOOP_SCRIPT, *args, "--resume_from_checkpoint", "latest")
    report = read_json(out / "rank0.json")
    assert report["steps"] == 8, how
    history = read_json(out / "trainer_state.json")["log_history"]
    assert [s for s, _ in logged(history)] == list(range(1, 9)), how
    assert not list(out.rglob(".tmp*")), how
    how += "; " + first_divergence(history, read_json(reference / "trainer_state.json")["log_history"])[1]
    return report["weights_sha256"] == read_json(reference / "rank0.json")["weights_sha256"], killed_run_differed, how


def test_killed_run_resumes_to_the_same_weights(first_run, tokenizer_dir, tmp_path):
    """SIGKILL at a random point after a saved state (during a step or a save; states every 2 steps, so the kill
    lands mid-epoch or at an epoch boundary), resume from the newest complete state: the consumed batches are
    skipped, each step is logged once, and the final weights are bitwise those of the uninterrupted run (a rare
    difference that predates the resume is re-checked once: `training_scripts.resumes_like_reference`)."""
    equal, how = resumes_like_reference(
        lambda reference, out, log: kill_and_resume(reference, tokenizer_dir, out, log), first_run,
        lambda out: run_script(LOOP_SCRIPT, *LOOP_ARGS, "--tokenizer_name_or_path", tokenizer_dir, "--output_dir", out,
                               "--save_steps", "1", "--do_eval", "false"),
        tmp_path)
    assert equal, how


@pytest.mark.parametrize("step", [3, 5])
def test_resume_from_a_saved_state_of_the_first_run(first_run, tokenizer_dir, tmp_path, step):
    """Deterministic kill-and-resume: the states of the uninterrupted run up to `step` (3: six batches into the first
    epoch; 5: the end of the first epoch), resumed, give its final weights bitwise."""
    out = tmp_path / "resumed"
    for saved in range(1, step + 1):
        shutil.copytree(first_run / "checkpoints" / f"step_{saved}", out / "checkpoints" / f"step_{saved}")
    run_script(LOOP_SCRIPT, *LOOP_ARGS, "--tokenizer_name_or_path", tokenizer_dir, "--output_dir", out,
               "--save_steps", "1", "--do_eval", "false", "--resume_from_checkpoint", "latest")
    assert read_json(out / "rank0.json")["weights_sha256"] == read_json(first_run / "rank0.json")["weights_sha256"]
    assert all(same_state(out / "checkpoints" / f"step_{s}", first_run / "checkpoints" / f"step_{s}")
               for s in range(step + 1, 9))


@pytest.mark.parametrize("batches", ["sentences-streamed", pytest.param("tokens", marks=pytest.mark.slow)])
def test_two_process_ddp_has_world_size_2_and_identical_weights(tokenizer_dir, tmp_path, batches):
    """Streamed sentence batches (each rank reads the stream and keeps its share of every global batch), and (slow)
    token batches in memory (--max_tokens_per_batch: each rank its own batches, as many as the other; the data of
    both ranks is checked in test_token_batches.py)."""
    out = tmp_path / "ddp"
    data = ["--streaming"] if batches == "sentences-streamed" else ["--max_tokens_per_batch", "96"]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]
    # 5 evaluation pairs per direction, batches of 4 on 2 ranks: the gathered tail holds duplicates to drop.
    result = run([*launch, LOOP_SCRIPT, *TINY_RUN, "--use_cpu", "--tokenizer_name_or_path", tokenizer_dir, "--output_dir",
                  out, "--max_steps", "4", "--max_eval_samples", "5", "--per_device_eval_batch_size", "4", *data],
                 threads=1)
    assert batches == "sentences-streamed" or "Token-budget batches of at most 96" in result.stdout + result.stderr
    reports = [read_json(out / f"rank{rank}.json") for rank in (0, 1)]
    assert [r["world_size"] for r in reports] == [2, 2] and [r["rank"] for r in reports] == [0, 1]
    assert [r["steps"] for r in reports] == [4, 4]
    assert reports[0]["weights_sha256"] == reports[1]["weights_sha256"]
    assert saved_weights_digest(out) == reports[0]["weights_sha256"]
    results = read_json(out / "eval_results.json")
    assert results["eval_samples"] == 10 and "eval_bleu_fr-en" in results
