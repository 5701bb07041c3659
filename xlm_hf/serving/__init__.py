"""Translation for every entry point: the service, its decoders, and the server.

- `options`: decoding options, hypotheses, and the errors a caller can fix;
- `translator`: `Translator`, the one translation service (languages, directions and pivots, options, placeholders,
  blank and long texts, n-best, scores, alignments) behind `xlm_hf.translate`, `xlm-hf translate`,
  `xlm-hf translate-po` and `xlm-hf serve`;
- `decoders`: what it decodes with, the PyTorch model (`pipeline("translation")`) or a CTranslate2 export;
- `batcher`: the server's dynamic batching onto one decoding thread;
- `app`: the FastAPI app of `xlm-hf serve` (needs `pip install 'xlm-hf[serve]'`; not imported here).
"""

from .batcher import Batcher, QueueFull
from .decoders import ENGINES, CTranslate2Decoder, TorchDecoder, card_metadata, load_decoder
from .options import (MAX_BEAMS, DecodingOptions, Hypothesis, InvalidOptions, TranslationError, UnknownLanguage,
                      UntrainedDirection)
from .translator import Translator, translate

__all__ = ["Batcher", "CTranslate2Decoder", "DecodingOptions", "ENGINES", "Hypothesis", "InvalidOptions", "MAX_BEAMS",
           "QueueFull", "TorchDecoder", "TranslationError", "Translator", "UnknownLanguage", "UntrainedDirection",
           "card_metadata", "load_decoder", "translate"]
