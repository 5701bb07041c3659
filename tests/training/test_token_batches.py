"""`--max_tokens_per_batch` (xlm_hf.training.token_batches) on the data path of the scripts (`build_datasets`, then
`token_budget_loader` for each rank), over a corpus split into shard files: every rank's batches stay within the
budget, the ranks read disjoint lines that together cover the corpus once per epoch, whether or not the files divide
among the ranks, and a loader that skips the batches a killed run had used gives the rest of that run's batches.
The scripts themselves are run with the budget in test_no_trainer.py and test_run_translation.py."""

import pytest
from accelerate import skip_first_batches

from xlm_hf.data.readers import load_translation_datasets
from xlm_hf.training import DataArguments, build_datasets, make_data_collator, model_inputs, token_budget_loader

BUDGET = 96


@pytest.fixture(scope="module")
def lines():
    pairs = load_translation_datasets("bundled", pairs=["en-fr"], splits=["train"])["en-fr"]["train"]["translation"]
    unique = list({(row["en"], row["fr"]): None for row in pairs if "\t" not in row["en"] + row["fr"]})
    return unique[:120]


def write_shards(folder, lines, shards: int):
    (folder / "en-fr.train").mkdir(parents=True)
    for shard in range(shards):
        with open(folder / "en-fr.train" / f"part-{shard:05d}.tsv", "w", encoding="utf-8") as handle:
            handle.writelines(f"{en}\t{fr}\n" for en, fr in lines[shard::shards])
    return folder


def loader(folder, tokenizer, *, streaming: bool, rank: int, world_size: int, epoch: int = 0, order="buckets"):
    data_args = DataArguments(dataset=str(folder), pairs=["en-fr"], streaming=streaming, max_tokens_per_batch=BUDGET,
                              bucket_buffer_size=32, shuffle_buffer_size=16, max_source_length=48,
                              max_target_length=48)
    train = model_inputs(build_datasets(data_args, tokenizer, seed=3, evaluate=False).train)
    result = token_budget_loader(train, make_data_collator(tokenizer, None), BUDGET, seed=3, rank=rank,
                                 world_size=world_size, buffer_size=data_args.bucket_buffer_size,
                                 batches_per_step=2, step_order=order)
    result.set_epoch(epoch)
    return result


def sources(batches) -> list[tuple]:
    """Each example's source ids (unique per line), padding removed."""
    return [tuple(row[mask.bool()].tolist()) for batch in batches
            for row, mask in zip(batch["input_ids"], batch["attention_mask"])]


@pytest.mark.parametrize("streaming, shards, order", [(True, 4, "buckets"), (True, 3, "buckets"), (False, 1, "buckets"),
                                                      (False, 1, "sampled")],
                         ids=["stream-files-divide", "stream-files-do-not-divide", "in-memory", "in-memory-sampled"])
def test_ranks_read_disjoint_lines_that_cover_the_corpus_once_within_the_budget(tokenizer, tmp_path, lines,
                                                                                 streaming, shards, order):
    folder = write_shards(tmp_path, lines, shards)
    ranks = [list(loader(folder, tokenizer, streaming=streaming, rank=rank, world_size=2, order=order))
             for rank in (0, 1)]
    for batches in ranks:
        for batch in batches:
            padded = max(batch["input_ids"].numel(), batch["labels"].numel())
            assert padded <= BUDGET or len(batch["input_ids"]) == 1, padded
    seen = [sources(batches) for batches in ranks]
    assert len(set(seen[0]) | set(seen[1])) == len(lines)  # every line
    if streaming:  # a stream is read once: each line on one rank only, once
        assert not set(seen[0]) & set(seen[1]) and len(seen[0]) + len(seen[1]) == len(lines)
    else:  # equal steps per rank: a short share is topped up with the first batches again
        assert len(ranks[0]) == len(ranks[1])


@pytest.mark.parametrize("streaming", [True, False], ids=["stream", "in-memory"])
def test_skipping_the_used_batches_continues_where_the_killed_run_stopped(tokenizer, tmp_path, lines, streaming):
    folder = write_shards(tmp_path, lines, 2)
    orders = []
    for epoch in (0, 1):
        whole = sources(loader(folder, tokenizer, streaming=streaming, rank=1, world_size=2, epoch=epoch))
        resumed_loader = loader(folder, tokenizer, streaming=streaming, rank=1, world_size=2, epoch=epoch)
        first = list(resumed_loader)[:3]
        rest = skip_first_batches(resumed_loader, 3)
        rest.set_epoch(epoch)
        assert sources(first) + sources(rest) == whole
        orders.append(whole)
    assert orders[0] != orders[1]  # another order every epoch
