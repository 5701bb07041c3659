"""The pretraining objectives as collators: masking rates, what is never masked, TLM layout, CLM shift, and an MLM
loss that falls through the collator and the Trainer."""

import pytest
import torch

from xlm_hf.data.collators import IGNORE_INDEX, CLMCollator, MLMCollator, TLMCollator, XLMPretrainingCollator


SENTENCES = {
    "en": ["Cannot open the file %s for reading.", "Show the version and exit.", "Invalid option -- '%c'",
           "Print the help message.", "The archive is damaged.", "Copy the files to the directory."],
    "fr": ["Impossible d'ouvrir le fichier %s en lecture.", "Afficher la version et quitter.", "Option invalide -- « %c »",
           "Afficher le message d'aide.", "L'archive est endommagée.", "Copier les fichiers dans le répertoire."],
}


def encode(tokenizer, lang, text):
    tokenizer.src_lang = lang
    try:
        return tokenizer(text)["input_ids"]
    finally:
        tokenizer.src_lang = "en"


@pytest.fixture(scope="module")
def streams(tokenizer):
    """Monolingual examples: each a stream of the six sentences of one language."""
    return {lang: [i for s in texts for i in encode(tokenizer, lang, s)] for lang, texts in SENTENCES.items()}


@pytest.fixture(scope="module")
def pairs(tokenizer):
    return [{"input_ids": encode(tokenizer, "en", en), "lang": "en", "pair_input_ids": encode(tokenizer, "fr", fr), "pair_lang": "fr"}
            for en, fr in zip(SENTENCES["en"], SENTENCES["fr"])]


def special_mask(tokenizer, ids):
    return torch.isin(ids, torch.tensor(tokenizer.all_special_ids))


def test_mlm_masks_15_percent_80_10_10_and_never_special_tokens(tokenizer, streams):
    collator = MLMCollator(tokenizer, seed=0)
    # uneven lengths, so the batch has padding
    examples = [{"input_ids": streams["en"][: 20 + i % 40], "lang": "en"} for i in range(400)]
    batch = collator(examples)
    original = collator.pad(examples)["input_ids"]
    predicted = batch["labels"] != IGNORE_INDEX
    special = special_mask(tokenizer, original)
    assert special.any() and (original == tokenizer.pad_token_id).any()

    assert not predicted[special].any()  # no special or pad token is ever a target
    assert torch.equal(batch["input_ids"][special], original[special])  # ... nor changed
    assert torch.equal(batch["labels"][predicted], original[predicted])  # labels are the original tokens
    assert not (batch["input_ids"] != original)[~predicted].any()  # only predicted positions change
    rate = predicted.sum() / (~special).sum()
    assert abs(rate - 0.15) < 0.01

    inputs = batch["input_ids"][predicted]
    masked = (inputs == tokenizer.mask_token_id).float().mean()
    kept = (inputs == original[predicted]).float().mean()
    assert abs(masked - 0.8) < 0.03 and abs(kept - 0.1) < 0.03 and abs(1 - masked - kept - 0.1) < 0.03
    replaced = inputs[(inputs != tokenizer.mask_token_id) & (inputs != original[predicted])]
    assert not special_mask(tokenizer, replaced).any()  # random replacements are regular tokens
    assert (batch["langs"][batch["attention_mask"].bool()] == 0).all()  # "en" is language 0 of the tokenizer
    assert torch.equal(batch["position_ids"][0, :5], torch.arange(5))


def test_frequency_smoothing_masks_exactly_15_percent_and_prefers_rare_tokens(tokenizer, streams):
    examples = [{"input_ids": streams["en"], "lang": "en"}] * 64
    ids = torch.tensor(streams["en"])
    regular = [int(i) for i in ids if int(i) not in tokenizer.all_special_ids]
    frequent = max(set(regular), key=regular.count)
    counts = torch.bincount(ids, minlength=len(tokenizer))
    counts[frequent] = 10_000  # one very frequent token; the others stay rare

    collator = MLMCollator(tokenizer, frequency_smoothing=0.5, token_counts=counts, seed=0)
    batch = collator(examples)
    predicted = batch["labels"] != IGNORE_INDEX
    tokens = collator.pad(examples)["input_ids"]
    maskable = ~special_mask(tokenizer, tokens)
    assert predicted.sum() == round(0.15 * int(maskable.sum()))
    assert not predicted[~maskable].any()
    rate_frequent = predicted[tokens == frequent].float().mean()
    rate_others = predicted[maskable & (tokens != frequent)].float().mean()
    assert rate_frequent < 0.25 * rate_others

    uniform = MLMCollator(tokenizer, seed=0)(examples)["labels"] != IGNORE_INDEX
    assert uniform[tokens == frequent].float().mean() > 0.08  # without smoothing it is masked like any other


def test_tlm_concatenates_with_restarting_positions_and_per_side_languages(tokenizer, pairs):
    collator = TLMCollator(tokenizer, seed=0)
    batch = collator(pairs)
    lang_en, lang_fr = tokenizer.languages.index("en"), tokenizer.languages.index("fr")
    for row, example in enumerate(pairs):
        n_en, n_fr = len(example["input_ids"]), len(example["pair_input_ids"])
        n = n_en + n_fr
        assert batch["position_ids"][row, :n].tolist() == list(range(n_en)) + list(range(n_fr))
        assert batch["langs"][row, :n].tolist() == [lang_en] * n_en + [lang_fr] * n_fr
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (batch["input_ids"].shape[1] - n)
        tokens = batch["input_ids"][row].clone()
        labels = batch["labels"][row]
        tokens[labels != IGNORE_INDEX] = labels[labels != IGNORE_INDEX]
        assert tokens[:n].tolist() == example["input_ids"] + example["pair_input_ids"]
        assert tokens[0] == tokenizer.lang_token_id("en") and tokens[n_en] == tokenizer.lang_token_id("fr")

    # masking on both sides, over many batches
    sides = torch.zeros(2)
    for seed in range(20):
        batch = TLMCollator(tokenizer, seed=seed)(pairs)
        predicted = batch["labels"] != IGNORE_INDEX
        second = batch["langs"] == lang_fr
        sides += torch.stack([(predicted & ~second & batch["attention_mask"].bool()).sum(), (predicted & second).sum()])
        assert not predicted[special_mask(tokenizer, collator.pad(pairs)["input_ids"])].any()
    assert (sides > 0).all()


def test_mixed_batches_lay_out_each_example_by_its_kind(tokenizer, streams, pairs):
    examples = [{"input_ids": streams["fr"][:30], "lang": 1}, pairs[0], {**pairs[1], "pair_input_ids": None}]
    batch = XLMPretrainingCollator(tokenizer, seed=0)(examples)
    n0 = 30
    assert batch["langs"][0, :n0].tolist() == [1] * n0 and batch["position_ids"][0, :n0].tolist() == list(range(n0))
    n_en, n_fr = len(pairs[0]["input_ids"]), len(pairs[0]["pair_input_ids"])
    assert batch["position_ids"][1, : n_en + n_fr].tolist() == list(range(n_en)) + list(range(n_fr))
    assert batch["attention_mask"][2].sum() == len(pairs[1]["input_ids"])  # a row without a pair is MLM


def test_clm_labels_are_the_next_token_and_padding_is_ignored(tokenizer, streams):
    examples = [{"input_ids": streams["en"][:10], "lang": "en"}, {"input_ids": streams["en"][:6], "lang": "en"}]
    batch = CLMCollator(tokenizer)(examples)
    assert batch["causal"] is True
    assert batch["labels"][0].tolist() == streams["en"][1:10] + [IGNORE_INDEX]
    assert batch["labels"][1].tolist() == streams["en"][1:6] + [IGNORE_INDEX] * 5
    assert torch.equal(batch["input_ids"][0], torch.tensor(streams["en"][:10]))  # nothing masked


def test_pad_to_multiple_of(tokenizer, pairs):
    batch = MLMCollator(tokenizer, pad_to_multiple_of=8)(pairs[:2])
    assert batch["input_ids"].shape[1] % 8 == 0


def test_user_mistakes_get_errors_that_name_the_fix(tokenizer, streams):
    with pytest.raises(ValueError, match="token_counts"):
        MLMCollator(tokenizer, frequency_smoothing=0.5)
    with pytest.raises(ValueError, match="same tokenizer"):
        MLMCollator(tokenizer, frequency_smoothing=0.5, token_counts=[1, 2, 3])
    with pytest.raises(ValueError, match="sum to at most 1"):
        MLMCollator(tokenizer, mask_probability=0.9, random_probability=0.2)
    with pytest.raises(ValueError, match="Unknown language 'xx'"):
        MLMCollator(tokenizer)([{"input_ids": streams["en"][:5], "lang": "xx"}])
    with pytest.raises(ValueError, match="vocabulary"):
        MLMCollator(tokenizer)([{"input_ids": [5, 10**6, 1], "lang": "en"}])


def test_mlm_loss_decreases_through_the_collator_and_trainer(tokenizer, streams, tmp_path):
    from transformers import Trainer, TrainingArguments

    import xlm_hf

    torch.manual_seed(0)
    config = xlm_hf.config_from_preset("tiny", tokenizer=tokenizer)
    model = xlm_hf.XLMForPreTraining(config)
    data = [{"input_ids": streams[lang][i:i + 24], "lang": lang} for lang in streams for i in range(0, 40, 4)]
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=30, per_device_train_batch_size=8, learning_rate=3e-3,
        lr_scheduler_type="constant",
        logging_steps=5, save_strategy="no", report_to=[], use_cpu=True, remove_unused_columns=False,
        disable_tqdm=True, seed=0,
    )
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=MLMCollator(tokenizer, seed=0))
    trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert losses[-1] < losses[0] - 1.0, losses  # from ln(2000) = 7.6 nats
