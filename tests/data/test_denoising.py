"""xlm_hf.data.denoising: XLM's noise functions honour their rates, keep words whole and bound the shuffle's moves; the DAE
collator noises sources only, and trains through Seq2SeqTrainer."""

import pytest
import torch

from xlm_hf.data.denoising import DenoisingCollator, split_words, word_blank, word_dropout, word_shuffle, word_start_table

SENTENCE = ("The quick brown fox jumps over the lazy dog while unbelievably sleepy programmers recompile "
            "their configuration files and reinstall dependencies")


def words_of(n):
    return [[10 * i, 10 * i + 1] if i % 2 else [10 * i] for i in range(n)]  # odd words have two subwords


@pytest.mark.parametrize("k", [2, 3, 5])
def test_shuffle_moves_every_word_by_less_than_k(k):
    generator = torch.Generator().manual_seed(0)
    words = words_of(30)
    moved = 0
    for _ in range(200):
        shuffled = word_shuffle(words, k, generator)
        assert sorted(map(tuple, shuffled)) == sorted(map(tuple, words))  # a permutation of whole words
        for new, word in enumerate(shuffled):
            old = words.index(word)
            assert abs(new - old) < k
            moved += new != old
    assert moved > 0


def test_shuffle_with_k_at_most_1_keeps_the_order():
    words = words_of(10)
    assert word_shuffle(words, 1) == words and word_shuffle(words, 0) == words


@pytest.mark.parametrize("p", [0.1, 0.3])
def test_dropout_and_blank_honour_their_rates_on_whole_words(p):
    generator = torch.Generator().manual_seed(0)
    words = words_of(50)
    kept = blanked = 0
    trials = 400
    for _ in range(trials):
        out = word_dropout(words, p, generator)
        assert all(word in words for word in out)  # whole words, in order
        assert [words.index(w) for w in out] == sorted(words.index(w) for w in out)
        kept += len(out)
        out = word_blank(words, p, blank_id=-1, generator=generator)
        assert len(out) == len(words)
        assert all(new == [-1] or new == old for new, old in zip(out, words))  # a blank replaces a whole word
        blanked += sum(new == [-1] for new in out)
    total = trials * len(words)
    assert abs(1 - kept / total - p) < 0.02
    assert abs(blanked / total - p) < 0.02


def test_dropout_keeps_one_word():
    generator = torch.Generator().manual_seed(0)
    assert all(len(word_dropout(words_of(3), 0.99, generator)) >= 1 for _ in range(50))


def test_collator_noises_whole_words_between_tag_and_eos(tokenizer):
    collator = DenoisingCollator(tokenizer, word_shuffle=3, word_dropout=0.2, word_blank=0.2, seed=0)
    ids = tokenizer(SENTENCE, src_lang="en")["input_ids"]
    starts = word_start_table(tokenizer)
    clean = split_words(ids[1:-1], starts)
    assert any(len(word) > 1 for word in clean)  # the sentence has multi-token words
    changed = 0
    for _ in range(20):
        noised = collator.noise(ids)
        assert noised[0] == ids[0] == tokenizer.lang_token_id("en") and noised[-1] == ids[-1] == tokenizer.eos_token_id
        for word in split_words(noised[1:-1], starts):
            assert word == [tokenizer.mask_token_id] or word in clean
        changed += noised != ids
    assert changed > 0
    batch = collator([{"input_ids": ids}, {"input_ids": ids[:5] + ids[-1:]}])
    assert batch["labels"][0].tolist() == ids  # the target is the clean sentence
    assert (batch["labels"][1, 6:] == -100).all() and batch["attention_mask"].shape == batch["input_ids"].shape


def test_bad_rates_are_refused_with_the_fix(tokenizer):
    with pytest.raises(ValueError, match=r"word_dropout must be in \[0, 1\)"):
        DenoisingCollator(tokenizer, word_dropout=1.5)
    with pytest.raises(ValueError, match="word_shuffle must be >= 0"):
        DenoisingCollator(tokenizer, word_shuffle=-1)


def test_dae_trains_through_seq2seq_trainer(tokenizer, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForSeq2SeqLM, Seq2SeqTrainingArguments

    from xlm_hf.presets import config_from_preset
    from xlm_hf.training import TranslationTrainer

    torch.manual_seed(0)
    model = AutoModelForSeq2SeqLM.from_config(config_from_preset("tiny", tokenizer=tokenizer))
    sentences = ["the file was not found", "cannot open the directory", "the user name is invalid"] * 6
    train = Dataset.from_dict({"input_ids": tokenizer(sentences, src_lang="en")["input_ids"]})
    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path), max_steps=6, per_device_train_batch_size=6,
                                    learning_rate=3e-3, use_cpu=True, report_to="none", logging_steps=1,
                                    save_strategy="no", remove_unused_columns=False)
    trainer = TranslationTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer,
                                 data_collator=DenoisingCollator(tokenizer, model, seed=0))
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 6 and losses[-1] < losses[0]
