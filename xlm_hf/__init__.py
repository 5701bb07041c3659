"""xlm-hf: XLM-style cross-lingual translation models as a Hugging Face Transformers plugin.

Importing the package registers its classes with the Auto classes (and marks them for `trust_remote_code`, so
`save_pretrained` writes the code files and an `auto_map`). Nothing else happens at import time.
"""

__version__ = "0.1.0"

from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoModelForSeq2SeqLM, AutoTokenizer

from . import _moved
from .model import hardware
from .model.configuration_xlm_hf import XLMConfig
from .data.readers import load_translation_dataset, load_translation_datasets
from .model.modeling_xlm_hf import XLMForPreTraining, XLMForSeq2SeqLM, XLMModel, XLMPreTrainedModel
from .model.pipeline_translation import XLMTranslationPipeline, translation_pipeline
from .serving import Translator, translate
from .presets import config_from_preset, list_presets
from .model.tokenization_xlm_hf import XLMHFTokenizer, XLMTokenizerFast
from .data.tokenizer_training import train_tokenizer

_moved.install()  # old import paths (xlm_hf.modeling_xlm_hf, ...) for one release

# --- Auto classes -----------------------------------------------------------------------------------------------------
# Our config is called XLMConfig like transformers' own (encoder-only) one; the Auto mappings key on the class object,
# so `exist_ok=True` adds ours without touching the built-in `xlm` entries (tested in tests/model/test_model.py,
# test_builtin_xlm_is_untouched_by_our_registration).
AutoConfig.register(XLMConfig.model_type, XLMConfig)
AutoModel.register(XLMConfig, XLMModel, exist_ok=True)
AutoModelForSeq2SeqLM.register(XLMConfig, XLMForSeq2SeqLM, exist_ok=True)
AutoModelForMaskedLM.register(XLMConfig, XLMForPreTraining, exist_ok=True)

XLMConfig.register_for_auto_class("AutoConfig")
XLMModel.register_for_auto_class("AutoModel")
XLMForSeq2SeqLM.register_for_auto_class("AutoModelForSeq2SeqLM")
XLMForPreTraining.register_for_auto_class("AutoModelForMaskedLM")

# The tokenizer is named XLMHFTokenizer (exported also as XLMTokenizerFast): AutoTokenizer strips "Fast" from a saved
# tokenizer_class, and "XLMTokenizer" would resolve to transformers' own Moses tokenizer. exist_ok: see XLMConfig above.
AutoTokenizer.register(XLMConfig, tokenizer_class=XLMHFTokenizer, exist_ok=True)
XLMHFTokenizer.register_for_auto_class("AutoTokenizer")

__all__ = [
    "XLMConfig",
    "XLMModel",
    "XLMForSeq2SeqLM",
    "XLMForPreTraining",
    "XLMPreTrainedModel",
    "XLMHFTokenizer",
    "XLMTokenizerFast",
    "train_tokenizer",
    "load_translation_dataset",
    "load_translation_datasets",
    "XLMTranslationPipeline",
    "translate",
    "Translator",
    "translation_pipeline",
    "config_from_preset",
    "list_presets",
    "__version__",
]
