"""xlm_hf.training.back_translation: the generation pass leaves no gradient and restores train mode, the synthetic pairs run in
the right direction (synthetic tgt-language source, real labels), and the options reach generate."""

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM

from serve_helpers import TEXTS
from xlm_hf.presets import config_from_preset
from xlm_hf.training.back_translation import BackTranslationStep

SENTENCES = ["the file was not found", "cannot open the directory %s"]


@pytest.fixture
def model(tokenizer):
    torch.manual_seed(0)
    model = AutoModelForSeq2SeqLM.from_config(config_from_preset("tiny", tokenizer=tokenizer, dropout=0.1))
    return model.train()


def english_batch(tokenizer):
    return tokenizer(SENTENCES, src_lang="en", padding=True, return_tensors="pt")


def test_generation_pass_has_no_gradient_and_restores_train_mode(model, tokenizer):
    batch = english_batch(tokenizer)
    seen = []
    hook = model.register_forward_hook(lambda module, args, output: seen.append((module.training,
                                                                                 torch.is_grad_enabled())))
    synthetic = BackTranslationStep(max_new_tokens=8).translate(model, batch["input_ids"], batch["attention_mask"], "fr")
    hook.remove()
    assert seen and all(not training and not grad for training, grad in seen)  # eval mode, no autograd graph
    assert model.training and not synthetic.requires_grad
    assert all(p.grad is None for p in model.parameters())


def test_synthetic_pairs_run_back_to_the_source_language(model, tokenizer):
    batch = english_batch(tokenizer)
    step = BackTranslationStep(max_new_tokens=8)
    pair = step(model, batch, "fr")
    fr, en = tokenizer.lang_token_id("fr"), tokenizer.lang_token_id("en")
    assert (pair["input_ids"][:, 0] == fr).all()  # synthetic French sources ...
    assert (pair["labels"][:, 0] == en).all()  # ... learn to give back the real English sentences
    real = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    assert torch.equal(pair["labels"], real)
    assert torch.equal(pair["attention_mask"].bool(), (pair["input_ids"] != tokenizer.pad_token_id) |
                       (torch.arange(pair["input_ids"].shape[1]) == 0))
    assert torch.equal(pair["decoder_input_ids"], model.prepare_decoder_input_ids_from_labels(labels=pair["labels"]))
    loss = model(**pair).loss
    loss.backward()  # the training pass, unlike the generation pass, has gradients
    assert loss.requires_grad and any(p.grad is not None for p in model.parameters())


def test_generation_options_and_their_errors():
    assert BackTranslationStep().generation_options(10) == {"num_beams": 1, "do_sample": False, "max_new_tokens": 18}
    assert BackTranslationStep(max_new_tokens=8).generation_options(10)["max_new_tokens"] == 8
    sampled = BackTranslationStep(do_sample=True, top_k=5, top_p=0.9).generation_options(4)
    assert sampled["do_sample"] and sampled["top_k"] == 5 and sampled["top_p"] == 0.9
    with pytest.raises(ValueError, match="do_sample=True"):
        BackTranslationStep(top_k=5)
    with pytest.raises(ValueError, match="num_beams must be >= 1"):
        BackTranslationStep(num_beams=0)


@pytest.mark.parametrize("options", [{"num_beams": 2}, {"do_sample": True, "top_k": 4}])
def test_beam_and_sampling_back_translations(model, tokenizer, options):
    batch = english_batch(tokenizer)
    pair = BackTranslationStep(max_new_tokens=6, **options)(model, batch, "de")
    assert (pair["input_ids"][:, 0] == tokenizer.lang_token_id("de")).all() and model.training


def test_unknown_language_is_refused(model, tokenizer):
    batch = english_batch(tokenizer)
    with pytest.raises(ValueError, match="the model knows"):
        BackTranslationStep().translate(model, batch["input_ids"], batch["attention_mask"], "xx")


# --- offline back-translation: run_translation.py --synthetic_dataset ------------------------------------------------

def synthetic_folder(tmp_path, name="fr-en"):
    """Real French and its (synthetic) English, named fr-en as `translate --src fr --tgt en --format tsv` writes it:
    it trains en->fr."""
    folder = tmp_path / "synthetic"
    folder.mkdir()
    lines = ["le fichier %d est introuvable\tthe synthetic file %d was not found" % (i, i) for i in range(4)]
    (folder / f"{name}.train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.mark.parametrize("tagged", [False, True])
def test_synthetic_pairs_are_mixed_at_the_ratio_into_their_direction_only(tokenizer, tmp_path, tagged):
    from xlm_hf.training import DataArguments, build_datasets

    folder = synthetic_folder(tmp_path)
    args = DataArguments(pairs=["en-fr"], both_directions=True, max_train_samples=10, synthetic_dataset=str(folder),
                         synthetic_ratio=0.5, tagged_back_translation=tagged, sampling_alpha=1.0,
                         sampling_stopping_strategy="all_exhausted_without_replacement")
    train = build_datasets(args, tokenizer, seed=0, evaluate=False).train
    rows = list(train)
    en, fr, bos = tokenizer.lang_token_id("en"), tokenizer.lang_token_id("fr"), tokenizer.bos_token_id
    by_direction = {d: [r for r in rows if r["direction"] == d] for d in ("en-fr", "fr-en")}
    assert len(by_direction["en-fr"]) == 15 and len(by_direction["fr-en"]) == 10  # 10 real + 0.5 x 10 synthetic
    synthetic = [r for r in by_direction["en-fr"] if "synthetic" in tokenizer.decode(r["input_ids"])]
    assert len(synthetic) == 5  # 4 files rows, one repeated
    assert all(r["input_ids"][0] == en and r["labels"][0] == fr for r in by_direction["en-fr"])
    assert all((r["input_ids"][1] == bos) == tagged for r in synthetic)
    assert not any(r["input_ids"][1] == bos for r in rows if r not in synthetic)


def test_synthetic_file_of_an_untrained_direction_is_refused(tokenizer, tmp_path):
    from xlm_hf.training import DataArguments, build_datasets

    args = DataArguments(pairs=["en-fr"], max_train_samples=4, synthetic_dataset=str(synthetic_folder(tmp_path, "en-fr")))
    with pytest.raises(ValueError, match=r"would train \['fr-en'\], not trained directions"):
        build_datasets(args, tokenizer, seed=0, evaluate=False)
    with pytest.raises(ValueError, match="synthetic_ratio must be > 0"):
        DataArguments(synthetic_ratio=0)


def test_translate_tsv_output_trains_the_reverse_direction_as_the_readme_says(memorised_model, tmp_path):
    """`xlm-hf translate --src en --tgt fr --format tsv -o synthetic/en-fr.train.tsv`, then --synthetic_dataset
    synthetic: the rows of fr->en hold the machine French as source and the real English as target."""
    from xlm_hf import XLMTokenizerFast
    from xlm_hf.cli import main
    from xlm_hf.training import DataArguments, build_datasets

    folder, EN = memorised_model, TEXTS["en"]
    tokenizer = XLMTokenizerFast.from_pretrained(folder)
    (tmp_path / "mono.en.txt").write_text("\n".join(EN) + "\n", encoding="utf-8")
    synthetic = tmp_path / "synthetic"
    synthetic.mkdir()
    assert main(["translate", str(folder), "--src", "en", "--tgt", "fr", "-i", str(tmp_path / "mono.en.txt"),
                 "--format", "tsv", "-o", str(synthetic / "en-fr.train.tsv")]) == 0
    written = [line.split("\t") for line in (synthetic / "en-fr.train.tsv").read_text(encoding="utf-8").splitlines()]
    assert [real for real, _ in written] == EN
    args = DataArguments(pairs=["fr-en"], max_train_samples=4, synthetic_dataset=str(synthetic),
                         synthetic_ratio=len(EN) / 4)
    rows = [r for r in build_datasets(args, tokenizer, seed=0, evaluate=False).train if r["direction"] == "fr-en"]
    pairs = {(tuple(r["input_ids"]), tuple(r["labels"])) for r in rows}
    for real, machine in written:
        source = tokenizer(machine, src_lang="fr")["input_ids"]
        target = tokenizer(text_target=real, tgt_lang="en")["input_ids"]
        assert (tuple(source), tuple(target)) in pairs, (real, machine)
