"""examples/train_unsupervised.py: the classic sanity check (a tiny model learns, from monolingual text only, to
translate between two toy languages, one a transposition cipher of the other), kill and resume to the same weights,
two-process DDP, the XLM lambda schedules and the argument errors."""

import sys

import pytest

from toy_languages import cipher, toy_tokenizer, write_toy_corpus
from training_scripts import (
    REPO, TINY_RUN, first_divergence, kill_point, kill_when, logged, read_json, resumes_like_reference, run,
    run_script, same_state, saved_weights_digest,
)
from xlm_hf.training import find_last_state
from xlm_hf.training.unsupervised import LambdaSchedule, UnsupervisedArguments

SCRIPT = REPO / "examples" / "train_unsupervised.py"


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    folder = tmp_path_factory.mktemp("toy")
    paths = write_toy_corpus(folder / "data")
    toy_tokenizer(paths).save_pretrained(folder / "tokenizer")
    return folder


def mono_args(toy):
    data = toy / "data"
    return ["--monolingual_files", f"en={data / 'mono.en.txt'}", f"fr={data / 'mono.fr.txt'}"]


def test_tiny_unsupervised_run_learns_the_cipher(toy, tmp_path):
    """DAE + online BT from scratch, no parallel pair seen: the translations of the held-out parallel pairs go from
    nothing to nearly exact (chrF), far above copying the source, which has every word in the wrong order."""
    from xlm_hf.evaluation import compute_translation_metrics

    out = tmp_path / "run"
    # fp32: at d 32, bf16's casts cost more than they save (30 s here, not 42, on an AMX CPU)
    run([sys.executable, SCRIPT, "unsupervised-tiny", "--tokenizer_name_or_path", toy / "tokenizer", "--dataset",
         toy / "data", *mono_args(toy), "--output_dir", out, "--max_steps", "200", "--learning_rate", "0.006",
         "--eval_strategy", "steps", "--eval_steps", "100", "--eval_on_start", "--save_steps", "200",
         "--do_predict", "--precision", "fp32"], threads=1)
    curve = [(e["step"], e["eval_chrf"]) for e in read_json(out / "trainer_state.json")["log_history"]
             if "eval_chrf" in e]
    assert [step for step, _ in curve] == [0, 100, 200]
    assert curve[0][1] < 10 < curve[1][1] < curve[2][1]
    test = read_json(out / "test_results.json")
    rows = [line.split("\t") for line in (toy / "data" / "en-fr.test.tsv").read_text().splitlines()]
    copy = compute_translation_metrics([en for en, _ in rows], [fr for _, fr in rows])
    assert all(" ".join(cipher(en.split())) == fr for en, fr in rows)
    for direction in ("en-fr", "fr-en"):
        assert test[f"test_chrf_{direction}"] > 85 > copy["chrf"] + 10, (test, copy)


def test_lambda_schedules_are_xlms():
    schedule = LambdaSchedule("0:1,100:0.1")
    assert schedule(0) == 1 and schedule(50) == pytest.approx(0.55) and schedule(100) == schedule(10**6) == 0.1
    assert LambdaSchedule("0.5")(12345) == 0.5
    assert LambdaSchedule("10:0,20:1")(5) == 0  # constant before the first point
    with pytest.raises(ValueError, match="step:value points"):
        LambdaSchedule("0:1,x")
    with pytest.raises(ValueError, match="steps must increase"):
        LambdaSchedule("10:1,5:0")


def test_objectives_and_their_errors(tmp_path):
    args = UnsupervisedArguments(monolingual_files=["en=a.txt", "fr=b.txt"], ae_steps=["en,fr"],
                                 bt_steps=["en-fr-en,fr-en-fr"], mt_steps=["en-fr"])
    assert args.objectives() == [("ae", "en"), ("ae", "fr"), ("bt", "en-fr-en"), ("bt", "fr-en-fr"), ("mt", "en-fr")]
    with pytest.raises(ValueError, match="No objective"):
        UnsupervisedArguments()
    with pytest.raises(ValueError, match="src-mid-src, e.g. en-fr-en"):
        UnsupervisedArguments(monolingual_files=["en=a.txt"], bt_steps=["en-fr"])
    with pytest.raises(ValueError, match="--monolingual_files fr=FILE"):
        UnsupervisedArguments(monolingual_files=["en=a.txt"], ae_steps=["en", "fr"])


# The kill/resume and DDP runs: the `tiny` recipe (TINY_RUN, dropout on) with AE + BT on the toy monolingual text.
def unsupervised_args(toy, out):
    return ["--tokenizer_name_or_path", toy / "tokenizer", *mono_args(toy), "--ae_steps", "en,fr", "--bt_steps",
            "en-fr-en", "--lambda_bt", "0:0.5,8:1", "--output_dir", out]


@pytest.fixture(scope="module")
def reference(toy, tmp_path_factory):
    out = tmp_path_factory.mktemp("unsupervised") / "reference"
    run_script(SCRIPT, *unsupervised_args(toy, out), "--save_steps", "1", "--do_eval", "false")
    return out


def kill_and_resume(toy, reference, out, log) -> tuple[bool, bool, str]:
    step, delay, how = kill_point([2, 4])
    args = [*unsupervised_args(toy, out), "--save_steps", "2", "--do_eval", "false"]
    kill_when(SCRIPT, *args, appears=out / "checkpoints" / f"step_{step}", delay=delay, log=log)
    assert not (out / "rank0.json").exists(), how
    last = find_last_state(out)
    assert last is not None and read_json(last / "loop_state.json")["completed_steps"] >= step, how
    differed = not same_state(last, reference / "checkpoints" / last.name)
    run_script(SCRIPT, *args, "--resume_from_checkpoint", "latest")
    history = read_json(out / "trainer_state.json")["log_history"]
    assert [s for s, _ in logged(history)] == list(range(1, 9)), how
    how += f"; resumed from {last.name}; " + first_divergence(history, read_json(reference / "trainer_state.json")
                                                              ["log_history"])[1]
    return read_json(out / "rank0.json")["weights_sha256"] == read_json(reference / "rank0.json")["weights_sha256"], \
        differed, how


def test_killed_run_resumes_to_the_same_weights(toy, reference, tmp_path):
    report = read_json(reference / "rank0.json")
    assert report["steps"] == 8 and saved_weights_digest(reference) == report["weights_sha256"]
    entry = logged(read_json(reference / "trainer_state.json")["log_history"], "loss_bt_en-fr-en")
    assert len(entry) == 8  # every step trained BT
    equal, how = resumes_like_reference(
        lambda ref, out, log: kill_and_resume(toy, ref, out, log), reference,
        lambda out: run_script(SCRIPT, *unsupervised_args(toy, out), "--save_steps", "1", "--do_eval", "false"),
        tmp_path)
    assert equal, how


def test_a_run_refuses_an_output_dir_holding_a_run(toy, reference, tmp_path):
    import subprocess

    result = subprocess.run([sys.executable, SCRIPT, *TINY_RUN, *unsupervised_args(toy, reference)],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode != 0 and "--resume_from_checkpoint latest" in result.stderr


def test_two_process_ddp_has_world_size_2_and_identical_weights(toy, tmp_path):
    out = tmp_path / "ddp"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]
    run([*launch, SCRIPT, *TINY_RUN, *unsupervised_args(toy, out), "--use_cpu", "--max_steps", "3",
         "--max_eval_samples", "3", "--per_device_eval_batch_size", "2"], threads=1)
    reports = [read_json(out / f"rank{rank}.json") for rank in (0, 1)]
    assert [r["world_size"] for r in reports] == [2, 2] and [r["steps"] for r in reports] == [3, 3]
    assert reports[0]["weights_sha256"] == reports[1]["weights_sha256"]
    assert read_json(out / "eval_results.json")["eval_samples"] == 6
