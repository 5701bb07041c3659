"""Data for training: readers of parallel and monolingual text (`readers`), language sampling (`sampling`),
collators (`collators`), denoising noise (`denoising`) and tokenizer training (`tokenizer_training`)."""

from .readers import (BUNDLED, bundled_data_dir, load_translation_dataset, load_translation_datasets, reverse_pair,
                      split_pair, stream_translation_datasets, texts_by_language)

__all__ = ["BUNDLED", "bundled_data_dir", "load_translation_dataset", "load_translation_datasets", "reverse_pair",
           "split_pair", "stream_translation_datasets", "texts_by_language"]
