"""xlm_hf.data.readers: the bundled corpus, TSV / JSONL folders, local HF datasets, malformed lines, streaming."""

import json
import logging

import pytest
from datasets import Dataset, DatasetDict

from xlm_hf.data.readers import (
    bundled_data_dir,
    load_translation_dataset,
    load_translation_datasets,
    texts_by_language,
)


BUNDLED_PAIRS = ["en-de", "en-es", "en-fr", "en-ru", "en-zh"]


def test_bundled_corpus_is_small_licensed_and_attributed():
    folder = bundled_data_dir()
    tsv = sorted(folder.glob("*.tsv"))
    assert [p.name for p in tsv] == [f"{pair}.{split}.tsv" for pair in BUNDLED_PAIRS for split in ("test", "train", "valid")]
    assert sum(p.stat().st_size for p in tsv) < 3_000_000
    readme = (folder / "README.md").read_text()
    assert "GPL" in readme and "attribution" in readme.lower() and "po-parallel" in readme
    assert "GNU GENERAL PUBLIC LICENSE" in (folder / "COPYING").read_text()


def test_bundled_pair_loads_in_wmt_layout(bundled_pairs):
    data = load_translation_dataset("bundled", pairs="en-fr")
    assert isinstance(data, DatasetDict) and list(data) == ["train", "validation", "test"]
    assert data.column_names == {"train": ["translation"], "validation": ["translation"], "test": ["translation"]}
    row = data["train"][0]["translation"]
    assert set(row) == {"en", "fr"} and all(isinstance(v, str) and v for v in row.values())
    lines = (bundled_data_dir() / "en-fr.train.tsv").read_text(encoding="utf-8").splitlines()
    assert len(data["train"]) == len(lines) and 2000 <= len(lines) <= 10000
    assert row == dict(zip(("en", "fr"), lines[0].split("\t")))
    assert list(bundled_pairs) == BUNDLED_PAIRS
    assert all(200 <= len(d["test"]) <= 1000 for d in bundled_pairs.values())


def test_splits_are_kept_apart_across_all_pairs(bundled_pairs):
    english = {split: set() for split in ("train", "validation", "test")}
    for splits in bundled_pairs.values():
        for split, dataset in splits.items():
            english[split] |= {row["en"] for row in dataset["translation"]}
    assert not english["test"] & english["train"] and not english["validation"] & english["train"]
    assert not english["test"] & english["validation"]


def test_several_pairs_come_as_one_datasetdict_per_pair():
    data = load_translation_datasets("bundled", pairs=["en-fr", "de-en"], splits=["valid"])
    assert list(data) == ["en-fr", "de-en"]
    assert list(data["de-en"]) == ["validation"] and set(data["de-en"]["validation"][0]["translation"]) == {"en", "de"}
    with pytest.raises(ValueError, match="loads one language pair.*load_translation_datasets"):
        load_translation_dataset("bundled", pairs=["en-fr", "en-de"])
    with pytest.raises(ValueError, match="No data for the pair 'en-xx'.*en-de"):
        load_translation_datasets("bundled", pairs=["en-xx"])
    with pytest.raises(ValueError, match="written 'src-tgt'"):
        load_translation_datasets("bundled", pairs=["enfr"])


def test_texts_by_language_collects_every_side(bundled_pairs):
    texts = texts_by_language(bundled_pairs)
    assert list(texts) == ["en", "de", "es", "fr", "ru", "zh"]
    assert len(texts["en"]) == 5 and len(texts["fr"]) == 1


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_tsv_folder_with_malformed_lines_skip_reports_line_numbers(tmp_path, caplog):
    write(tmp_path / "en-fr.train.tsv", "Hello\tBonjour\nno tab here\nYes\t\n\tOui\na\tb\tc\nThanks\tMerci\n")
    write(tmp_path / "en-fr.valid.tsv", "One\tUn\n")
    with caplog.at_level(logging.WARNING, logger="xlm_hf.data.readers"):
        data = load_translation_dataset(tmp_path)
    assert data["train"]["translation"] == [{"en": "Hello", "fr": "Bonjour"}, {"en": "Thanks", "fr": "Merci"}]
    assert list(data) == ["train", "validation"]
    message = caplog.text
    assert "4 malformed line(s) of 6" in message
    for expected in ("line 2: no tab", "line 3: empty fr side", "line 4: empty en side", "line 5: 2 tabs"):
        assert expected in message


def test_malformed_lines_fail_policy_raises_with_line_numbers(tmp_path):
    write(tmp_path / "en-de.train.tsv", "Hello\tHallo\nbroken\n")
    with pytest.raises(ValueError, match="1 malformed line\\(s\\) of 2 \\(line 2: no tab\\).*on_error='skip'"):
        load_translation_dataset(tmp_path, on_error="fail")
    with pytest.raises(ValueError, match="on_error must be 'skip'"):
        load_translation_dataset(tmp_path, on_error="ignore")


def test_empty_and_missing_files_are_clear_errors(tmp_path):
    write(tmp_path / "en-fr.train.tsv", "")
    with pytest.raises(ValueError, match="en-fr.train.tsv is empty"):
        load_translation_dataset(tmp_path)
    write(tmp_path / "en-fr.train.tsv", "no tab\n\n")
    with pytest.raises(ValueError, match="has no valid pair"):
        load_translation_dataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="No such file or folder"):
        load_translation_dataset(tmp_path / "nope")
    (tmp_path / "en-fr.train.tsv").unlink()
    with pytest.raises(FileNotFoundError, match="expected files named SRC-TGT.SPLIT.tsv"):
        load_translation_dataset(tmp_path)


def test_jsonl_files_nested_or_flat(tmp_path):
    lines = [json.dumps({"translation": {"en": "Hi", "es": "Hola"}}), json.dumps({"en": "Bye", "es": "Adiós"}),
             "{not json", json.dumps({"en": "x"}), json.dumps(["en", "es"])]
    write(tmp_path / "en-es.test.jsonl", "\n".join(lines) + "\n")
    data = load_translation_dataset(tmp_path / "en-es.test.jsonl")
    assert data["test"]["translation"] == [{"en": "Hi", "es": "Hola"}, {"en": "Bye", "es": "Adiós"}]
    with pytest.raises(ValueError, match="line 3: invalid JSON.*line 4: no es text.*line 5: not a JSON object"):
        load_translation_dataset(tmp_path, on_error="fail")


def test_split_mapping_needs_its_pair(tmp_path):
    train = write(tmp_path / "mine.txt", "a\tb\n")
    data = load_translation_dataset({"train": train, "dev": train}, pairs="en-ru")
    assert list(data) == ["train", "validation"] and data["train"][0]["translation"] == {"en": "a", "ru": "b"}
    with pytest.raises(ValueError, match="name its language pair"):
        load_translation_dataset({"train": train})


def test_bad_bytes_are_malformed_lines(tmp_path):
    (tmp_path / "en-fr.train.tsv").write_bytes(b"ok\tbien\ncaf\xe9\tcaf\xe9\n")
    with pytest.raises(ValueError, match="line 2: not UTF-8"):
        load_translation_dataset(tmp_path, on_error="fail")


def test_local_hf_dataset_saved_to_disk_and_in_memory(tmp_path):
    data = load_translation_dataset("bundled", pairs="en-ru", splits=["valid", "test"])
    data.save_to_disk(tmp_path / "saved")
    loaded = load_translation_dataset(tmp_path / "saved")
    assert list(loaded) == ["validation", "test"]
    assert loaded["test"]["translation"] == data["test"]["translation"]
    assert load_translation_dataset(data, pairs="ru-en")["validation"].num_rows == data["validation"].num_rows
    bad = DatasetDict({"train": Dataset.from_dict({"text": ["a"]})})
    with pytest.raises(ValueError, match="needs a 'translation' column"):
        load_translation_dataset(bad)
