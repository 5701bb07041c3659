"""Configuration of the XLM encoder-decoder (Lample & Conneau, 2019) for transformers 5.

This file is shipped with saved models as remote code: it imports only transformers, and at most
single-dot siblings.
"""

import copy
import dataclasses
import difflib

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.activations import ACT2FN
from transformers.utils import logging


logger = logging.get_logger(__name__)

# The label that losses, collators and metrics ignore (PyTorch's and the Trainer's -100).
IGNORE_INDEX = -100

# The files a saved model folder carries as remote code, so that `trust_remote_code=True` works without xlm-hf
# installed. transformers copies the saved classes' files and their single-dot imports; `save_pretrained` copies the
# rest of this list (the translation pipeline, which no model file imports), and the tests check the folder holds
# exactly these.
REMOTE_CODE_FILES = (
    "configuration_xlm_hf.py",
    "hardware.py",
    "inference.py",
    "generation_xlm_hf.py",
    "modeling_xlm_hf.py",
    "tokenization_xlm_hf.py",
    "placeholders.py",
    "pipeline_translation.py",
)

TRANSLATION_TASK = "translation"
MAX_DIRECTION_TASKS_LANGS = 12  # n*(n-1) `translation_xx_to_yy` entries in config.json: keep the file small


def record_trained_directions(config, directions) -> None:
    """Add `directions` ("en-fr", ...) to `config.trained_directions` (kept sorted; a fine-tuned model keeps those of
    its base model)."""
    config.trained_directions = sorted(set(config.trained_directions or []) | set(directions))


def direction_route(config, src_lang: str, tgt_lang: str, allow_zero_shot: bool = False) -> str | None:
    """How to translate src_lang -> tgt_lang with a model trained on `config.trained_directions`: None to translate
    directly (a trained direction, no record of them, or `allow_zero_shot`), or the pivot language `p` for which
    src->p and p->tgt were both trained. Raises ValueError listing the trained directions otherwise."""
    trained = getattr(config, "trained_directions", None)
    if not trained or allow_zero_shot or f"{src_lang}-{tgt_lang}" in trained:
        return None
    pivots = [d.split("-")[1] for d in trained if d.startswith(f"{src_lang}-") and f"{d.split('-')[1]}-{tgt_lang}" in trained]
    if pivots:
        return pivots[0]
    raise ValueError(
        f"This model was not trained to translate {src_lang}->{tgt_lang}, nor through a pivot language: it was trained "
        f"on {', '.join(trained)}. Translate in one of those directions, or pass allow_zero_shot=True "
        f"(--allow-zero-shot) to try {src_lang}->{tgt_lang} directly (untrained directions often answer in the wrong "
        f"language)."
    )


def custom_pipelines_entry(languages: list[str]) -> dict:
    """The `config.custom_pipelines` value for a model with these languages: `pipeline("translation")` (removed from
    transformers 5) and `translation_xx_to_yy` for every direction, served by `pipeline_translation.py`."""
    names = [TRANSLATION_TASK]
    if len(languages) <= MAX_DIRECTION_TASKS_LANGS:
        names += [f"translation_{a}_to_{b}" for a in languages for b in languages if a != b]
    impl = "pipeline_translation.XLMTranslationPipeline"
    return {name: {"impl": impl, "pt": ["AutoModelForSeq2SeqLM"]} for name in names}  # fresh dicts: pipeline() edits them

# The ids of XLM's own dictionary (xlm/data/dictionary.py): <s>=0, </s>=1, <pad>=2, <unk>=3, then specials.
_SPECIAL_IDS = ("pad_token_id", "bos_token_id", "eos_token_id", "unk_token_id", "mask_token_id", "decoder_start_token_id")


@strict
class XLMConfig(PreTrainedConfig):
    r"""
    Configuration of [`XLMModel`], [`XLMForSeq2SeqLM`] and [`XLMForPreTraining`].

    The defaults are the `base` Transformer (d 512, 6+6 layers, 8 heads, FFN 2048) with XLM's choices: GELU, learned
    positions, post-norm blocks, a LayerNorm on the embeddings, no sqrt(d) embedding scale, and one vocabulary and
    embedding matrix shared by encoder, decoder and output layer.

    Language embeddings (XLM's `lang_embeddings`): with `n_langs > 1` and `use_lang_emb`, every token gets the
    embedding of its language added. Languages are either passed as `langs` / `decoder_langs`, or derived from the
    language-tag tokens listed in `lang_token_ids` (index i is the tag of language i): each token takes the language
    of the most recent tag at or before it, and tokens before any tag get no language embedding. `lang2id` /
    `id2lang` name the languages (`{"en": 0, "fr": 1}`), as in transformers' own XLM.

    Example:

    ```python
    >>> from xlm_hf import XLMConfig, XLMForSeq2SeqLM
    >>> config = XLMConfig(vocab_size=1000, d_model=64, encoder_layers=2, decoder_layers=2,
    ...                    encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128,
    ...                    decoder_ffn_dim=128)
    >>> model = XLMForSeq2SeqLM(config)
    ```
    """

    model_type = "xlm_hf"
    keys_to_ignore_at_inference = ["cache"]
    attribute_map = {
        "hidden_size": "d_model",
        "num_attention_heads": "encoder_attention_heads",
        "num_hidden_layers": "encoder_layers",
    }

    # Sizes. XLM's MT models are d 1024 / 6+6 layers / 8 heads; `base` is the Marian/Transformer-base size.
    vocab_size: int = 32000
    d_model: int = 512
    encoder_layers: int = 6
    decoder_layers: int = 6
    encoder_attention_heads: int = 8
    decoder_attention_heads: int = 8
    encoder_ffn_dim: int = 2048
    decoder_ffn_dim: int = 2048
    max_position_embeddings: int = 512  # XLM's N_MAX_POSITIONS

    # Blocks. XLM: exact-erf GELU, post-norm, LayerNorm eps 1e-12, LayerNorm on the summed embeddings.
    activation_function: str = "gelu"
    dropout: float | int = 0.1
    attention_dropout: float | int = 0.1
    activation_dropout: float | int = 0.0
    pre_norm: bool = False
    layer_norm_emb: bool = True
    layer_norm_eps: float = 1e-12
    sinusoidal_embeddings: bool = False  # XLM's --sinusoidal_embeddings: fixed sin/cos instead of learned positions
    scale_embedding: bool = False  # XLM does not scale embeddings by sqrt(d_model)

    # Languages (XLM's n_langs / lang2id / id2lang / use_lang_emb).
    n_langs: int = 1
    lang2id: dict[str, int] | None = None
    id2lang: dict[int, str] | dict[str, str] | None = None
    lang_token_ids: list[int] | None = None
    use_lang_emb: bool = True
    # The directions the model was trained on ("en-fr", ...), written by the training scripts; the translation
    # pipeline pivots or refuses for others (`direction_route`). None: unknown (older models), nothing is checked.
    trained_directions: list[str] | None = None

    # Weight sharing: one embedding for encoder and decoder, and the output projection tied to it (XLM's
    # --share_inout_emb), with an output bias as in XLM's pred_layer.
    share_encoder_decoder_embeddings: bool = True
    tie_word_embeddings: bool = True
    lm_head_bias: bool = True

    # Special ids: XLM's dictionary order. The decoder starts from </s>, as XLM does.
    pad_token_id: int | None = 2
    bos_token_id: int | None = 0
    eos_token_id: int | list[int] | None = 1
    unk_token_id: int | None = 3
    mask_token_id: int | None = 4
    decoder_start_token_id: int | None = 1

    # Training loss. With `fused_lm_loss`, a training forward with labels computes the output layer and the
    # cross-entropy chunk by chunk (`loss_chunk_size` rows at a time), so the (B, T, V) logits are never held: less
    # memory and time, and `outputs.logits` is None then (set False to get them). Eval and inference are unchanged.
    # `label_smoothing` is applied inside the model's loss (the scripts move --label_smoothing_factor here).
    fused_lm_loss: bool = True
    loss_chunk_size: int = 1024
    label_smoothing: float | int = 0.0

    use_cache: bool = True
    init_std: float = 0.02
    is_encoder_decoder: bool = True

    def __post_init__(self, **kwargs):
        if self.id2lang is not None:  # JSON turns int keys into strings
            self.id2lang = {int(k): v for k, v in self.id2lang.items()}
        if self.lang2id is not None and self.id2lang is None:
            self.id2lang = {i: lang for lang, i in self.lang2id.items()}
        if self.id2lang is not None and self.lang2id is None:
            self.lang2id = {lang: i for i, lang in self.id2lang.items()}
        self._check_values()
        self._warn_about_misspelt_fields(kwargs)
        super().__post_init__(**kwargs)

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        """`PreTrainedConfig.from_dict`, which sets the overrides of `from_pretrained(folder, encoder_layers=-1)` as
        attributes after the config was built and validated: validate again, so that no override bypasses the
        checks (a model without encoder layers, 5 heads over d_model 32, dropout 5.0)."""
        result = super().from_dict(config_dict, **kwargs)
        (result[0] if isinstance(result, tuple) else result)._check_values()
        return result

    @classmethod
    def _warn_about_misspelt_fields(cls, extra: dict) -> None:
        # Unknown keys are kept as plain attributes and ignored (transformers' convention, so that config.json files
        # of other versions load): a misspelt field (`encoder_layer=3`) would otherwise be lost silently.
        fields = [field.name for field in dataclasses.fields(cls)]
        for key in extra:
            close = difflib.get_close_matches(key, fields, n=1, cutoff=0.8)
            if close:
                logger.warning(f"XLMConfig got the unknown field {key!r}, which is ignored: did you mean {close[0]!r}?")

    def _check_values(self):
        """Value validation: each message names the field and the fix."""
        for name in ("vocab_size", "d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads",
                     "decoder_attention_heads", "encoder_ffn_dim", "decoder_ffn_dim", "max_position_embeddings",
                     "n_langs"):
            value = getattr(self, name)
            if value <= 0:
                raise ValueError(f"XLMConfig.{name} must be a positive integer, got {value}.")
        for name in ("encoder_attention_heads", "decoder_attention_heads"):
            heads = getattr(self, name)
            if self.d_model % heads != 0:
                raise ValueError(
                    f"XLMConfig.d_model ({self.d_model}) must be divisible by {name} ({heads}): choose a head count "
                    f"that divides d_model, e.g. {_divisor_near(self.d_model, heads)}."
                )
        if self.loss_chunk_size <= 0:
            raise ValueError(f"XLMConfig.loss_chunk_size must be a positive integer, got {self.loss_chunk_size}.")
        for name in ("dropout", "attention_dropout", "activation_dropout", "label_smoothing"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"XLMConfig.{name} must be in [0, 1), got {value}.")
        if self.activation_function not in ACT2FN:
            raise ValueError(
                f"XLMConfig.activation_function {self.activation_function!r} is unknown; use one of "
                f"'gelu' (XLM's default), 'relu', 'gelu_new', 'silu'."
            )
        if self.init_std <= 0 or self.layer_norm_eps <= 0:
            raise ValueError("XLMConfig.init_std and XLMConfig.layer_norm_eps must be positive.")
        self._check_languages()
        for name in _SPECIAL_IDS:
            value = getattr(self, name)
            if value is not None and not 0 <= value < self.vocab_size:
                raise ValueError(
                    f"XLMConfig.{name} = {value} is outside the vocabulary (vocab_size {self.vocab_size}): set it to "
                    f"an id below vocab_size, or build the config from the tokenizer "
                    f"(XLMConfig(**tokenizer.model_config_kwargs()))."
                )
        eos = self.eos_token_id if isinstance(self.eos_token_id, list) else [self.eos_token_id]
        if any(e is not None and not 0 <= e < self.vocab_size for e in eos):
            raise ValueError(f"XLMConfig.eos_token_id {self.eos_token_id} is outside the vocabulary ({self.vocab_size}).")

    def _check_languages(self):
        if self.lang2id is not None:
            if len(self.lang2id) != self.n_langs:
                raise ValueError(
                    f"XLMConfig.lang2id names {len(self.lang2id)} languages ({sorted(self.lang2id)}) but n_langs is "
                    f"{self.n_langs}: set n_langs={len(self.lang2id)}."
                )
            if sorted(self.lang2id.values()) != list(range(self.n_langs)):
                raise ValueError(
                    f"XLMConfig.lang2id must number the languages 0..{self.n_langs - 1}, got {self.lang2id}."
                )
            if any(self.lang2id.get(lang) != i for i, lang in self.id2lang.items()):
                raise ValueError(f"XLMConfig.id2lang {self.id2lang} is not the inverse of lang2id {self.lang2id}.")
        if self.lang_token_ids is not None:
            if len(self.lang_token_ids) != self.n_langs:
                raise ValueError(
                    f"XLMConfig.lang_token_ids has {len(self.lang_token_ids)} entries but n_langs is {self.n_langs}: "
                    f"give one language-tag token id per language, in lang2id order."
                )
            bad = [t for t in self.lang_token_ids if not 0 <= t < self.vocab_size]
            if bad:
                raise ValueError(f"XLMConfig.lang_token_ids {bad} are outside the vocabulary ({self.vocab_size}).")
            if len(set(self.lang_token_ids)) != len(self.lang_token_ids):
                raise ValueError(f"XLMConfig.lang_token_ids must be distinct, got {self.lang_token_ids}.")

    @property
    def languages(self) -> list[str]:
        """Language codes in id order (empty when the config names none)."""
        return [self.id2lang[i] for i in range(self.n_langs)] if self.id2lang else []

    def get_text_config(self, decoder=None, encoder=None) -> PreTrainedConfig:
        """The decoder's (`decoder=True`) or the encoder's view of this flat config: its layer count, heads and FFN
        size under the generic names (`num_hidden_layers`, ...), which transformers' caches read at every
        `generate()`. The base class builds the view from a deep copy of the whole config, several times per
        call; the view only renames numbers, so a shallow copy does."""
        if decoder == encoder:  # both or neither: the config itself (no nested text config)
            return self
        side = "decoder" if decoder else "encoder"
        view = copy.copy(self)
        for generic, ours in (("num_hidden_layers", "layers"), ("num_attention_heads", "attention_heads"),
                              ("ffn_dim", "ffn_dim")):
            setattr(view, self.attribute_map.get(generic, generic), getattr(self, f"{side}_{ours}"))
        return view


def check_local_folder(name_or_path) -> None:
    """`FileNotFoundError` for a name that can only be a local folder (`/x`, `./x`, `~/x`, `a/b/c`) and is none:
    transformers would take it for a Hub id and answer "Repo id must use alphanumeric chars"."""
    import os

    name = os.fspath(name_or_path) if isinstance(name_or_path, (str, os.PathLike)) else None
    if name is None or os.path.isdir(name):
        return
    if name.startswith(("/", ".", "~", "\\")) or name.count("/") > 1 or (len(name) > 1 and name[1] == ":") or \
            os.path.exists(name):
        raise FileNotFoundError(f"{name} is not a model folder (no such folder{'' if not os.path.exists(name) else ', a file'}): "
                                f"pass the folder save_pretrained wrote, or a Hub id such as user/name.")


def _divisor_near(n: int, k: int) -> int:
    return min((d for d in range(1, n + 1) if n % d == 0), key=lambda d: abs(d - k))


__all__ = ["XLMConfig"]
