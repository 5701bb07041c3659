"""Shared fixtures, and the test helpers' folder on sys.path.

Tests mirror the package: tests/model/, tests/data/, tests/text/, tests/interop/, tests/training/, tests/serving/ and
tests/commands/, with the package-wide checks (layout, wheel, demo, benchmarks) here at the top. The helpers the folders
share (`serve_helpers`, `training_scripts`, `toy_languages`, `upstream_mixins`) live here and import by name.

`tokenizer`: a small BPE `XLMTokenizerFast` (2000 tokens) trained once per session on the bundled po-mini corpus,
languages en fr de es ru zh (tags `__en__`=5 ... `__zh__`=10), src_lang "en", tgt_lang "fr".
"""

import os
import sys
from pathlib import Path

import pytest

# The shared helpers, and each folder's test modules by name (some share fixtures: `from test_model import tiny_model`;
# module names are unique across the folders, so pytest's own import of a file is the one a neighbour gets).
for folder in (Path(__file__).resolve().parent, *sorted(p for p in Path(__file__).resolve().parent.iterdir()
                                                        if p.is_dir() and list(p.glob("test_*.py")))):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TOKENIZER_LANGUAGES = ["en", "fr", "de", "es", "ru", "zh"]
TOKENIZER_VOCAB_SIZE = 2000


@pytest.fixture(scope="session")
def bundled_pairs():
    """`{pair: DatasetDict}` of the whole bundled corpus."""
    from xlm_hf.data.readers import load_translation_datasets

    return load_translation_datasets("bundled")


@pytest.fixture(scope="session")
def tokenizer(bundled_pairs):
    from xlm_hf.data.readers import texts_by_language
    from xlm_hf.data.tokenizer_training import train_tokenizer

    texts = texts_by_language(bundled_pairs, split="train")
    return train_tokenizer(
        texts,
        languages=TOKENIZER_LANGUAGES,
        vocab_size=TOKENIZER_VOCAB_SIZE,
        src_lang="en",
        tgt_lang="fr",
        seed=0,
        show_progress=False,
    )


# Markers that transformers' own common tests carry (tests/model/test_upstream_common.py runs them; --strict-markers).
_UPSTREAM_MARKERS = ("accelerate_tests", "flash_attn_test", "flash_attn_3_test", "flash_attn_4_test",
                     "torch_compile_test", "is_agent_test", "is_expert_parallel_test", "is_fsdp_test",
                     "is_pipeline_test", "is_staging_test", "is_tensor_parallel_test", "is_training_test", "order")


def pytest_configure(config):
    for name in _UPSTREAM_MARKERS:
        config.addinivalue_line("markers", f"{name}: used by transformers' common tests (tests/upstream_mixins.py)")


@pytest.fixture(scope="session")
def memorised_model(tmp_path_factory):
    """The tiny en/fr/de model that learnt `serve_helpers.TEXTS` by heart (`make_model_dir`), trained once per session
    for the serving and CLI tests; copy it before changing it."""
    from serve_helpers import make_model_dir

    return make_model_dir(tmp_path_factory.mktemp("memorised") / "model")

