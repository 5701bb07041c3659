"""xlm_hf.training: recipes, data building (directions, tags, alpha-sampling, streaming, determinism), clear errors
for bad data / pairs / recipes, per-row target tags in generation, and checkpoint discovery."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoModelForSeq2SeqLM, Seq2SeqTrainingArguments

import xlm_hf
from xlm_hf.training import (
    DataArguments,
    EpochSampler,
    LoopArguments,
    ModelArguments,
    RecipeError,
    TranslationTrainer,
    TranslationTrainingArguments,
    build_datasets,
    create_model,
    find_last_checkpoint,
    load_tokenizer,
    make_data_collator,
    model_inputs,
    parse_args,
    parse_config_overrides,
    resolve_resume,
    target_prefix,
    weights_digest,
)

LOOP_ARGS = (ModelArguments, DataArguments, LoopArguments)
REPO = Path(__file__).resolve().parents[2]


def tag(tokenizer, lang):
    return tokenizer.lang_token_id(lang)


def small_data(**overrides) -> DataArguments:
    fields = {"pairs": ["en-fr"], "max_train_samples": 20, "max_eval_samples": 6, "max_source_length": 24,
              "max_target_length": 24}
    return DataArguments(**{**fields, **overrides})


# --- recipes ------------------------------------------------------------------------------------------------------------


def test_recipe_by_name_and_command_line_overrides():
    model_args, data_args, args = parse_args(LOOP_ARGS, ["tiny", "--max_steps", "3", "--pairs", "en-de", "de-fr"])
    assert model_args.preset == "tiny"  # from the recipe
    assert data_args.both_directions is True and data_args.max_train_samples == 48
    assert args.max_steps == 3 and data_args.pairs == ["en-de", "de-fr"]  # the command line wins


def test_a_missing_checkpoint_or_tokenizer_folder_is_named_by_its_option(tmp_path):
    with pytest.raises(FileNotFoundError, match="--model_name_or_path .*nope.* does not exist.*save_pretrained"):
        load_tokenizer(ModelArguments(model_name_or_path=str(tmp_path / "nope")))
    with pytest.raises(FileNotFoundError, match="Tokenizer folder .*tok.* does not exist.*train_tokenizer"):
        load_tokenizer(ModelArguments(model_name_or_path=str(tmp_path / "nope"),
                                      tokenizer_name_or_path=str(tmp_path / "tok")))


def test_a_checkpoint_on_the_command_line_replaces_the_recipes_preset():
    """`run_translation.py small-en-fr --model_name_or_path CKPT` (or `--pretrained_lm LM`) fine-tunes that model with
    the recipe's settings; it was refused ("either --model_name_or_path or --preset") as the recipe names a preset."""
    for given in (["--model_name_or_path", "ckpt"], ["--model_name_or_path=ckpt"], ["--pretrained_lm", "ckpt"]):
        model_args, _, args = parse_args(LOOP_ARGS, ["small-en-fr", *given])
        assert "ckpt" in (model_args.model_name_or_path, model_args.pretrained_lm) and model_args.preset is None
        assert args.learning_rate == 1e-3  # the recipe's other fields stay
    model_args, _, _ = parse_args(LOOP_ARGS, ["small-en-fr", "--model_name_or_path", "ckpt", "--preset", "tiny"])
    assert model_args.preset == "tiny"  # both given by the user: create_model refuses the pair, as before
    with pytest.raises(ValueError, match="either --model_name_or_path"):
        create_model(model_args, None)


def test_recipe_file_serves_the_trainer_script_too(tmp_path):
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"preset": "tiny", "max_steps": 4, "learning_rate": 0.01, "use_cpu": True,
                                  "output_dir": str(tmp_path / "out"), "_comment": "ignored"}))
    _, _, args = parse_args((ModelArguments, DataArguments, TranslationTrainingArguments), [str(recipe)])
    assert isinstance(args, Seq2SeqTrainingArguments)
    assert args.max_steps == 4 and args.learning_rate == 0.01 and args.predict_with_generate


def test_unknown_recipe_field_is_named_with_a_suggestion(tmp_path):
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"preset": "tiny", "learning_rat": 0.1}))
    with pytest.raises(RecipeError, match=r"unknown field 'learning_rat' \(did you mean 'learning_rate'\?\)"):
        parse_args(LOOP_ARGS, [str(recipe)])


@pytest.mark.parametrize("field, value, message", [
    ("max_steps", "many", "must be a number"),
    ("max_steps", 2.5, "must be an integer"),
    ("both_directions", "yes", "must be true or false"),
    ("pairs", "en-fr", "must be a JSON list"),
    ("eval_strategy", "sometimes", "must be one of"),
    ("output_dir", 3, "must be a string"),
])
def test_bad_recipe_values_are_named(tmp_path, field, value, message):
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({field: value}))
    with pytest.raises(RecipeError, match=f"field '{field}' {message}"):
        parse_args(LOOP_ARGS, [str(recipe)])


def test_missing_recipe_and_invalid_json(tmp_path):
    with pytest.raises(RecipeError, match="No recipe 'no-such-recipe'.*tiny"):
        parse_args(LOOP_ARGS, ["no-such-recipe"])
    broken = tmp_path / "broken.json"
    broken.write_text("{\"preset\": ")
    with pytest.raises(RecipeError, match="not valid JSON"):
        parse_args(LOOP_ARGS, [str(broken)])


def test_argument_validation_names_the_fix():
    with pytest.raises(ValueError, match="'src-tgt'"):
        DataArguments(pairs=["en_fr"])
    with pytest.raises(ValueError, match="--eval_steps"):
        LoopArguments(eval_strategy="steps")
    with pytest.raises(ValueError, match="load_best_model_at_end"):
        TranslationTrainingArguments(output_dir="x", early_stopping_patience=2, use_cpu=True)
    assert parse_config_overrides("dropout=0.2, encoder_layers=3,activation_function=relu") == {
        "dropout": 0.2, "encoder_layers": 3, "activation_function": "relu"}
    with pytest.raises(ValueError, match="dropout=0.2"):
        parse_config_overrides("dropout")


@pytest.mark.parametrize("argument, value", [("learning_rate", "-1"), ("adam_epsilon", "0"), ("weight_decay", "-0.1"),
                                              ("adam_beta2", "1.5"), ("per_device_train_batch_size", "0"),
                                              ("warmup_steps", "-3"), ("logging_steps", "0")])
@pytest.mark.parametrize("script", ["trainer", "loop"])
def test_bad_optimisation_values_are_refused_before_anything_is_written(script, argument, value, tmp_path):
    """Values the optimizer or scheduler would refuse only once training starts, after the output folder exists:
    refused when the arguments are parsed, with the option's name; no folder is created."""
    out = tmp_path / "run"
    types = LOOP_ARGS if script == "loop" else (ModelArguments, DataArguments, TranslationTrainingArguments)
    with pytest.raises(ValueError, match=f"--{argument} must be"):
        parse_args(types, ["tiny", "--output_dir", str(out), f"--{argument}", value])
    assert not out.exists()


def test_lengths_beyond_the_model_positions_are_refused_before_training(tokenizer, tmp_path):
    """A --max_source_length above max_position_embeddings crashed mid-run (in the first batch long enough)."""
    from xlm_hf.training import check_lengths

    config = xlm_hf.config_from_preset("tiny", tokenizer=tokenizer)
    check_lengths(config, small_data(max_source_length=config.max_position_embeddings))  # at the limit: fine
    with pytest.raises(ValueError, match="--max_source_length 1000 exceeds the model's max_position_embeddings"):
        check_lengths(config, small_data(max_source_length=1000))
    with pytest.raises(ValueError, match="--max_target_length"):
        check_lengths(config, small_data(max_target_length=config.max_position_embeddings + 1))
    with pytest.raises(ValueError, match="--generation_max_length"):
        check_lengths(config, small_data(), max_new_tokens=config.max_position_embeddings)


@pytest.mark.parametrize("script", ["run_translation", "run_translation_no_trainer"])
def test_the_scripts_check_lengths_before_training(script, tokenizer, tmp_path):
    tokenizer_dir = tmp_path / "tokenizer"
    tokenizer.save_pretrained(tokenizer_dir)
    result = subprocess.run(
        [sys.executable, f"examples/{script}.py", "tiny", "--tokenizer_name_or_path", str(tokenizer_dir),
         "--output_dir", str(tmp_path / "run"), "--max_source_length", "1000"],
        capture_output=True, text=True, cwd=REPO, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode != 0 and "exceeds the model's max_position_embeddings" in result.stderr
    assert not (tmp_path / "run" / "model.safetensors").exists()


# --- data ---------------------------------------------------------------------------------------------------------------


def test_the_tokenizer_keeps_the_first_direction_after_tokenizing_both(tokenizer):
    """Tokenizing en-fr in both directions used to leave the tokenizer at fr -> en (the last batch's), and the saved
    tokenizer then tagged English input as French. The first direction asked for is what it keeps."""
    tokenizer.src_lang, tokenizer.tgt_lang = "de", "es"
    try:
        build_datasets(small_data(both_directions=True), tokenizer, seed=0)
        assert (tokenizer.src_lang, tokenizer.tgt_lang) == ("en", "fr")
        build_datasets(small_data(pairs=["fr-en"], both_directions=True), tokenizer, seed=0)
        assert (tokenizer.src_lang, tokenizer.tgt_lang) == ("fr", "en")
    finally:
        tokenizer.src_lang, tokenizer.tgt_lang = "en", "fr"



def test_directions_carry_their_own_language_tags(tokenizer):
    data = build_datasets(small_data(both_directions=True), tokenizer, seed=0, predict=True)
    assert data.directions == ["en-fr", "fr-en"]
    for dataset in (data.train, data.eval, data.test):
        for row in dataset:
            src, tgt = row["direction"].split("-")
            assert row["input_ids"][0] == tag(tokenizer, src) and row["input_ids"][-1] == tokenizer.eos_token_id
            assert row["labels"][0] == tag(tokenizer, tgt) and row["labels"][-1] == tokenizer.eos_token_id
            assert len(row["input_ids"]) <= 24 and len(row["labels"]) <= 24
    assert data.eval["direction"] == ["en-fr"] * 6 + ["fr-en"] * 6  # in direction order, for per-direction metrics
    assert set(data.train["direction"]) == {"en-fr", "fr-en"}
    assert model_inputs(data.eval).column_names == ["input_ids", "attention_mask", "labels"]


def test_alpha_sampling_across_pairs(tokenizer, bundled_pairs):
    data_args = DataArguments(pairs=["en-fr", "en-de"], sampling_alpha=0.5, max_eval_samples=2)
    data = build_datasets(data_args, tokenizer, seed=0, evaluate=False)
    sizes = {pair: len(bundled_pairs[pair]["train"]) for pair in ("en-fr", "en-de")}
    weights = {d: (n / sum(sizes.values())) ** 0.5 for d, n in sizes.items()}
    expected = {d: w / sum(weights.values()) for d, w in weights.items()}
    assert data.sampling_probabilities == pytest.approx(expected)
    counts = {d: data.train["direction"].count(d) for d in expected}
    share = counts["en-de"] / sum(counts.values())
    assert share == pytest.approx(expected["en-de"], abs=0.02)
    assert counts["en-fr"] >= sizes["en-fr"]  # all_exhausted: every pair is seen at least once


def test_training_order_is_a_function_of_the_seed(tokenizer):
    data_args = small_data(pairs=["en-fr", "en-de"], both_directions=True)
    first = build_datasets(data_args, tokenizer, seed=1, evaluate=False).train
    again = build_datasets(data_args, tokenizer, seed=1, evaluate=False).train
    other = build_datasets(data_args, tokenizer, seed=2, evaluate=False).train
    assert first["input_ids"] == again["input_ids"]
    assert first["input_ids"] != other["input_ids"]
    sampler = EpochSampler(50, seed=3)
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert sorted(epoch1) == list(range(50)) and epoch1 == list(sampler)
    sampler.set_epoch(2)
    assert list(sampler) != epoch1


def test_streaming_reads_lazily_with_the_same_tags(tokenizer):
    from datasets import IterableDataset

    data_args = small_data(streaming=True, both_directions=True, shuffle_buffer_size=8)
    train = build_datasets(data_args, tokenizer, seed=0, evaluate=False).train
    assert isinstance(train, IterableDataset)
    rows = list(train)
    assert len(rows) >= 40 and {r["direction"] for r in rows} == {"en-fr", "fr-en"}
    for row in rows:
        src, tgt = row["direction"].split("-")
        assert row["input_ids"][0] == tag(tokenizer, src) and row["labels"][0] == tag(tokenizer, tgt)
    assert [r["input_ids"] for r in build_datasets(data_args, tokenizer, seed=0, evaluate=False).train] == \
        [r["input_ids"] for r in rows]


def test_trainer_trains_on_a_stream(tokenizer, tmp_path):
    model = create_model(ModelArguments(preset="tiny"), tokenizer)
    data = build_datasets(small_data(streaming=True, both_directions=True), tokenizer, seed=0, evaluate=False)
    args = TranslationTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", max_steps=3,
                                        per_device_train_batch_size=4, save_strategy="no", logging_steps=1)
    trainer = TranslationTrainer(model=model, args=args, train_dataset=model_inputs(data.train),
                                 processing_class=tokenizer, data_collator=make_data_collator(tokenizer, model))
    assert trainer.train().global_step == 3


def test_missing_language_pair_is_a_clear_error(tokenizer):
    # The tokenizer knows fr and de; the bundled corpus pairs English with each language only.
    with pytest.raises(ValueError, match="No data for the pair 'fr-de'.*en-fr"):
        build_datasets(small_data(pairs=["fr-de"]), tokenizer, seed=0)
    with pytest.raises(ValueError, match="No data for the pair 'fr-de'.*en-fr"):
        build_datasets(small_data(pairs=["fr-de"], streaming=True), tokenizer, seed=0, evaluate=False)


def test_language_missing_from_the_tokenizer_is_a_clear_error(tokenizer):
    with pytest.raises(ValueError, match=r"pair 'en-it' needs the language\(s\) \['it'\].*train a tokenizer"):
        build_datasets(small_data(pairs=["en-it"]), tokenizer, seed=0)


def write_corpus(folder, train_lines):
    folder.mkdir()
    (folder / "en-fr.train.tsv").write_text("\n".join(train_lines) + "\n", encoding="utf-8")
    (folder / "en-fr.valid.tsv").write_text("Hello\tBonjour\nFile\tFichier\n", encoding="utf-8")
    return folder


@pytest.mark.parametrize("streaming", [False, True])
def test_malformed_data_files(tokenizer, tmp_path, streaming):
    folder = write_corpus(tmp_path / "corpus", ["Open\tOuvrir", "no tab here", "Close\tFermer", "a\tb\tc", "Save\t"])
    fail = small_data(dataset=str(folder), on_error="fail", streaming=streaming)
    with pytest.raises(ValueError, match="line 2: no tab"):
        data = build_datasets(fail, tokenizer, seed=0, evaluate=False)
        list(data.train)  # a stream meets its lines when read
    skip = small_data(dataset=str(folder), streaming=streaming)
    train = build_datasets(skip, tokenizer, seed=0, evaluate=False).train
    assert len(list(train)) == 2  # the two valid lines
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "en-fr.train.tsv").write_text("")
    with pytest.raises(ValueError, match="is empty"):
        build_datasets(small_data(dataset=str(empty)), tokenizer, seed=0, evaluate=False)
    with pytest.raises(ValueError, match="has no 'validation' split|has no split"):
        build_datasets(small_data(dataset=str(empty)), tokenizer, seed=0, train=False)


# --- model and generation -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tokenizer):
    torch.manual_seed(0)
    return create_model(ModelArguments(preset="tiny"), tokenizer)


def test_create_model_from_preset_and_from_checkpoint(tokenizer, tiny_model, tmp_path):
    assert tiny_model.config.lang_token_ids == [tag(tokenizer, lang) for lang in tokenizer.languages]
    assert tiny_model.config.vocab_size == len(tokenizer)
    tiny_model.save_pretrained(tmp_path / "ckpt")
    reloaded = create_model(ModelArguments(model_name_or_path=str(tmp_path / "ckpt")), tokenizer)
    assert weights_digest(reloaded) == weights_digest(tiny_model)
    with pytest.raises(ValueError, match="either --model_name_or_path"):
        create_model(ModelArguments(model_name_or_path=str(tmp_path / "ckpt"), preset="tiny"), tokenizer)
    with pytest.raises(ValueError, match="--preset NAME"):
        create_model(ModelArguments(), tokenizer)
    overridden = create_model(ModelArguments(preset="tiny", config_overrides="dropout=0.3"), tokenizer)
    assert overridden.config.dropout == 0.3
    lm = create_model(ModelArguments(preset="tiny"), tokenizer, auto_class=AutoModelForMaskedLM)
    assert isinstance(lm, xlm_hf.XLMForPreTraining)


def test_generation_forces_each_rows_target_language(tokenizer, tiny_model, tmp_path):
    data = build_datasets(small_data(pairs=["en-fr", "en-de"], both_directions=True, max_eval_samples=2), tokenizer,
                          seed=0, train=False)
    batch = make_data_collator(tokenizer, tiny_model)(list(model_inputs(data.eval)))
    prefix = target_prefix(batch["labels"], tiny_model.config)
    expected_tags = [tag(tokenizer, d.split("-")[1]) for d in data.eval["direction"]]
    assert prefix[:, 0].tolist() == [tokenizer.eos_token_id] * 8 and prefix[:, 1].tolist() == expected_tags

    args = TranslationTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none",
                                        per_device_eval_batch_size=8, generation_num_beams=1)
    trainer = TranslationTrainer(model=tiny_model, args=args, processing_class=tokenizer,
                                 data_collator=make_data_collator(tokenizer, tiny_model))
    tiny_model.generation_config.max_new_tokens = 4
    output = trainer.predict(model_inputs(data.eval))
    assert output.predictions[:, 0].tolist() == [tokenizer.eos_token_id] * 8
    assert output.predictions[:, 1].tolist() == expected_tags  # one batch, four target languages
    assert tiny_model.generation_config.forced_bos_token_id is None

    bad = batch["labels"].clone()
    bad[:, 0] = 100
    with pytest.raises(ValueError, match="must start with a language tag"):
        target_prefix(bad, tiny_model.config)


# --- checkpoints --------------------------------------------------------------------------------------------------------


def test_resume_finds_the_newest_complete_checkpoint(tmp_path):
    out = tmp_path / "run"
    assert resolve_resume(None, out) is None
    with pytest.raises(ValueError, match="no complete checkpoint"):
        resolve_resume("latest", out)
    for step in (4, 8):
        (out / f"checkpoint-{step}").mkdir(parents=True)
        (out / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (out / "checkpoint-12").mkdir()  # killed while saving: no trainer_state.json yet
    (out / "checkpoint-16").mkdir()
    (out / "checkpoint-16" / "trainer_state.json").write_text('{"global_st')  # killed while writing it
    assert find_last_checkpoint(out) == out / "checkpoint-8"
    assert resolve_resume("latest", out) == str(out / "checkpoint-8")
    with pytest.raises(ValueError, match="already holds checkpoints.*--resume_from_checkpoint latest"):
        resolve_resume(None, out)
    with pytest.raises(ValueError, match="not a complete checkpoint"):
        resolve_resume(str(out / "checkpoint-12"), out)


def test_weights_digest_sees_any_change(tiny_model):
    model = AutoModelForSeq2SeqLM.from_config(tiny_model.config)
    model.load_state_dict(tiny_model.state_dict())
    assert weights_digest(model) == weights_digest(tiny_model)
    with torch.no_grad():
        model.lm_head.bias[0] += 1e-3
    assert weights_digest(model) != weights_digest(tiny_model)
    assert xlm_hf.XLMForSeq2SeqLM is type(model)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_reuse_freed_memory_takes_away_the_page_faults_of_repeated_large_tensors():
    """`reuse_freed_memory` (on by default in the training scripts): a large tensor allocated and freed again and
    again, as a training step does with its logits and gradients, stops costing fresh pages (minor page faults) at
    every allocation. In a fresh process: the setting is process-wide."""
    code = textwrap.dedent("""
        import resource, torch
        from xlm_hf.training import reuse_freed_memory

        def faults():
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(5):
                torch.ones(16 << 20)  # 64 MiB, freed at once
            return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

        plain = faults()
        took = reuse_freed_memory()
        faults()  # the heap grows, once
        print(took, plain, faults())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    took, plain, reused = out[0] == "True", int(out[1]), int(out[2])
    pages = 5 * (64 << 20) // 4096
    assert took
    assert plain > pages // 2, plain  # fresh pages at every allocation (huge pages would show far fewer)
    assert reused < pages // 20, (plain, reused)


def test_a_checkpoint_folder_that_is_not_ours_is_refused_without_a_prompt(tokenizer, tmp_path):
    """`--model_name_or_path` of a folder whose config names other code: transformers would ask "run the custom
    code? [y/N]" on stdin; the scripts refuse it with the fix instead (and never pass trust_remote_code=True)."""
    folder = tmp_path / "foreign"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "evil", "auto_map": {
        "AutoModelForSeq2SeqLM": "modeling_evil.EvilModel"}}))
    (folder / "modeling_evil.py").write_text("raise SystemExit('the folder code ran')\n")
    for args in (ModelArguments(model_name_or_path=str(folder)), ModelArguments(pretrained_lm=str(folder))):
        with pytest.raises(ValueError, match="is not an xlm-hf model.*--trust-remote-code"):
            create_model(args, tokenizer)


def test_a_full_disk_while_checkpointing_names_the_cause_and_leaves_no_partial_checkpoint(tmp_path, monkeypatch):
    """torch's zip writer reports a full disk as "inline_container.cc ... unexpected pos": the training state save
    turns it into one OSError naming the disk and the fix, and removes the partial folder."""
    from accelerate import Accelerator

    from xlm_hf.training import save_training_state

    accelerator = Accelerator(cpu=True)
    accelerator.prepare(torch.nn.Linear(2, 2))

    def full_disk(path, **kwargs):
        (Path(path) / "model.safetensors").write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 1024 vs 996")

    monkeypatch.setattr(accelerator, "save_state", full_disk)
    with pytest.raises(OSError, match="The disk is full while writing the checkpoint .*--resume_from_checkpoint latest"):
        save_training_state(accelerator, tmp_path, {"completed_steps": 3})
    assert not list((tmp_path / "checkpoints").iterdir())
    monkeypatch.undo()


# --- issue 34, item 13: what the training scripts accepted silently, crashed on, or answered with a traceback -----------


def test_round_3_argument_mistakes_are_refused_with_their_fix(tmp_path):
    from xlm_hf.training.pretraining import PretrainingDataArguments, check_objectives, read_monolingual_file

    with pytest.raises(ValueError, match="CLM is causal"):
        check_objectives(["clm", "tlm"])  # it trained CLM on one side of each pair
    with pytest.raises(ValueError, match="CLM is causal"):
        PretrainingDataArguments(objectives=["clm", "tlm"])
    with pytest.raises(ValueError, match="--num_examples must be a positive number"):
        PretrainingDataArguments(num_examples=0)  # it left an empty folder
    for ratio in ("nan", "inf", "-1"):
        with pytest.raises(ValueError, match="synthetic_ratio must be > 0 and finite"):
            DataArguments(synthetic_ratio=float(ratio))  # nan and inf crashed
    with pytest.raises(ValueError, match="--token_batch_order sampled needs the training data in memory"):
        DataArguments(streaming=True, max_tokens_per_batch=256, token_batch_order="sampled")
    with pytest.raises(ValueError, match="give --max_tokens_per_batch N too"):
        DataArguments(token_batch_order="sampled")  # it trained on sentence batches, silently
    with pytest.raises(IsADirectoryError, match="is a folder"):
        read_monolingual_file("en", tmp_path)  # it said "no such file"
    utf16 = tmp_path / "mono.en.txt"
    utf16.write_bytes("Save the file\nOpen the folder\n".encode("utf-16-le"))
    with pytest.raises(ValueError, match="is UTF-16"):
        read_monolingual_file("en", utf16)  # it was read as NUL-riddled "UTF-8"


def test_lora_with_a_negative_alpha_or_a_rank_above_d_model_is_refused(tokenizer):
    pytest.importorskip("peft")
    from xlm_hf.training.lora import apply_lora, lora_config

    with pytest.raises(ValueError, match="--lora_alpha must be a positive number"):
        lora_config(8, alpha=-16)
    model = xlm_hf.XLMForSeq2SeqLM(xlm_hf.config_from_preset("tiny", tokenizer=tokenizer))
    with pytest.raises(ValueError, match="above the model's d_model 32"):
        apply_lora(model, r=64)  # a 464 MB adapter on d_model 32


def test_a_scripts_argument_mistake_is_one_line_without_a_traceback(tokenizer, tmp_path):
    tokenizer_dir = tmp_path / "tokenizer"
    tokenizer.save_pretrained(tokenizer_dir)
    result = subprocess.run(
        [sys.executable, "examples/run_translation.py", "tiny", "--tokenizer_name_or_path", str(tokenizer_dir),
         "--output_dir", str(tmp_path / "run"), "--synthetic_ratio", "nan"],
        capture_output=True, text=True, cwd=REPO, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("run_translation.py: error: synthetic_ratio must be > 0")
    assert not (tmp_path / "run").exists()
