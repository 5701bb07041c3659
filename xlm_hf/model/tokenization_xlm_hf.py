"""The xlm-hf tokenizer: one shared subword vocabulary for every language, plus one language-tag token per language.

This file is shipped with saved tokenizers as remote code (`trust_remote_code=True`): it imports only `tokenizers`,
`transformers` and the standard library, and no sibling module.

Sequences follow NLLB's non-legacy pattern (M2M100-style tags):

    source (text=)          __src__ w1 ... wn </s>
    labels (text_target=)   __tgt__ w1 ... wn </s>
    decoder inputs          </s> __tgt__ w1 ... wn        (decoder_start_token_id = </s>, forced_bos = __tgt__)

The language tag is always at position 0 of the source and of the labels. The model derives XLM's per-token
language ids from the tag tokens itself (each token takes the language of the most recent tag at or before it), so
the tokenizer returns no `langs` tensor.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections.abc import Iterator

from tokenizers import processors
from transformers.tokenization_utils_base import BatchEncoding, TruncationStrategy
from transformers.tokenization_utils_tokenizers import TokenizersBackend
from transformers.utils import PaddingStrategy, logging


logger = logging.get_logger(__name__)

# XLM's dictionary order (xlm/data/dictionary.py): ids 0-4, then the language tags from id 5 on.
SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>", "mask_token": "<mask>"}
# The language tag is the backend's post-processor, switched per call (`_call_languages`, target mode): one tokenizer
# called from several threads at once would tag one thread's text with another's language. datasets 5 does call the
# map function of a streamed dataset from several threads, so every call holds this (re-entrant) lock. It lives in
# the module, not the object: a tokenizer stays picklable and deep-copyable.
_CALL_LOCK = threading.RLock()
_TAG_RE = re.compile(r"^__([A-Za-z0-9][A-Za-z0-9_\-]*?)__$")


def lang_tag(code: str) -> str:
    """The language-tag token of a language code: `"en"` -> `"__en__"`."""
    return f"__{code}__"


class XLMHFTokenizer(TokenizersBackend):
    """
    Fast (Rust `tokenizers`) tokenizer of xlm-hf models: a BPE or Unigram vocabulary shared by all languages, trained
    with [`xlm_hf.train_tokenizer`], NFKC-normalised (no lowercasing), with byte fallback so that no input ever maps
    to `<unk>`.

    Exported as `xlm_hf.XLMTokenizerFast`. The class name itself has no "Fast": `AutoTokenizer` strips that suffix from
    a saved `tokenizer_class`, and `XLMTokenizer` is transformers' own (Moses + BPE) tokenizer.

    Special tokens have XLM's ids: `<s>`=0, `</s>`=1, `<pad>`=2, `<unk>`=3, `<mask>`=4, then one language tag per
    language (`__en__`, `__fr__`, ...) in the order of `languages`, from id 5.

    Special tokens are never read from the text (`split_special_tokens=True` by default): a sentence containing
    "__de__" or "</s>" is encoded as ordinary characters.

    Source texts are encoded as `__src_lang__ tokens </s>`; `text_target=` gives labels `__tgt_lang__ tokens </s>`
    (NLLB's non-legacy pattern). The tag sits at position 0 of both. The model uses `</s>` as decoder start token and
    generation forces the target tag with `forced_bos_token_id` (see [`_build_translation_inputs`]), so decoder inputs
    are `</s> __tgt__ tokens`. The model derives its XLM language ids from the tag tokens: each token takes the
    language of the most recent tag at or before it; the tokenizer therefore returns no `langs`.

    Args:
        tokenizer_object / tokenizer_file: the trained `tokenizers.Tokenizer` (or its `tokenizer.json`).
        languages (`list[str]`, *optional*): language codes in language-id order. Defaults to the `__xx__` tags found
            among the special tokens, in id order.
        src_lang (`str`, *optional*): source language; defaults to the first language.
        tgt_lang (`str`, *optional*): target language, needed for `text_target=`.

    Example:

    ```python
    >>> tok = XLMTokenizerFast.from_pretrained("path/to/folder", src_lang="en", tgt_lang="fr")
    >>> batch = tok(["Hello"], text_target=["Bonjour"], padding=True, return_tensors="pt")
    >>> tok.convert_ids_to_tokens(batch["input_ids"][0])   # ['__en__', ..., '</s>']
    ```
    """

    vocab_files_names = {"tokenizer_file": "tokenizer.json"}
    model_input_names = ["input_ids", "attention_mask"]
    padding_side = "right"

    def __init__(
        self,
        tokenizer_object=None,
        tokenizer_file: str | None = None,
        languages: list[str] | None = None,
        src_lang: str | None = None,
        tgt_lang: str | None = None,
        bos_token: str = "<s>",
        eos_token: str = "</s>",
        pad_token: str = "<pad>",
        unk_token: str = "<unk>",
        mask_token: str = "<mask>",
        **kwargs,
    ):
        if tokenizer_object is None and tokenizer_file is None:
            raise ValueError(
                "XLMTokenizerFast needs a trained tokenizer: train one with xlm_hf.train_tokenizer(...), or load a "
                "saved one with XLMTokenizerFast.from_pretrained(folder)."
            )
        self._languages: list[str] = []  # set below, once the backend is loaded
        self._src_lang: str | None = None
        self._tgt_lang: str | None = None
        self._src_lang_chosen = src_lang is not None  # False: src_lang is the first language, never saved or assumed
        self._saving = False
        self._tag_ids: dict[str, int] = {}
        self._templates: dict[str, processors.TemplateProcessing] = {}
        self._mode: str | None = None  # language whose template is installed in the backend
        # Special tokens are added by the tokenizer, never parsed from the text: a sentence that spells "__de__" or
        # "<unk>" is encoded as ordinary text, so it cannot switch the language the model derives from the tags.
        kwargs.setdefault("split_special_tokens", True)
        super().__init__(
            tokenizer_object=tokenizer_object,
            tokenizer_file=tokenizer_file,
            bos_token=bos_token,
            eos_token=eos_token,
            pad_token=pad_token,
            unk_token=unk_token,
            mask_token=mask_token,
            languages=languages,
            src_lang=src_lang,
            tgt_lang=tgt_lang,
            **kwargs,
        )
        if languages is None:
            languages = _languages_from_added_tokens(self._tokenizer)
        self._languages = _check_language_codes(languages)
        missing = [lang_tag(code) for code in self._languages if self._tokenizer.token_to_id(lang_tag(code)) is None]
        if missing:
            raise ValueError(
                f"The vocabulary has no language-tag token for {missing}: a tokenizer can only use the languages it "
                f"was trained with; retrain with xlm_hf.train_tokenizer(..., languages=[...]) to add languages."
            )
        self._tag_ids = {code: self._tokenizer.token_to_id(lang_tag(code)) for code in self._languages}
        # The language tags are special tokens: in all_special_ids, skipped by decode(skip_special_tokens=True).
        extra = [str(token) for token in self._extra_special_tokens]
        self.extra_special_tokens = extra + [lang_tag(c) for c in self._languages if lang_tag(c) not in extra]
        self._special_ids = {name: self._tokenizer.token_to_id(str(getattr(self, name))) for name in SPECIAL_TOKENS}
        self._src_lang = self._checked(src_lang) if src_lang is not None else self._languages[0]
        self._tgt_lang = self._checked(tgt_lang) if tgt_lang is not None else None
        self._set_lang_mode(self._src_lang)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """`TokenizersBackend.from_pretrained`, with errors that name the broken file of a local folder: a missing or
        unreadable `tokenizer.json`, and a `tokenizer.json` that does not belong to the model of the folder's
        `config.json` (vocabulary size or language tags differ)."""
        folder = os.path.join(str(pretrained_model_name_or_path), kwargs.get("subfolder") or "")
        local = os.path.isdir(folder)
        tokenizer_file = os.path.join(folder, cls.vocab_files_names["tokenizer_file"])
        if local and not os.path.isfile(tokenizer_file) and not {"tokenizer_object", "tokenizer_file"} & kwargs.keys():
            raise FileNotFoundError(
                f"{tokenizer_file} is missing: an xlm-hf tokenizer folder needs it. Save the tokenizer with "
                f"tokenizer.save_pretrained({folder!r}), or copy tokenizer.json from the model's training output."
            )
        try:
            tokenizer = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except Exception as err:
            broken = _unreadable_json(folder) if local else None
            if broken is None:
                raise
            raise ValueError(f"{broken[0]} is not a valid tokenizer file ({broken[1]}): re-save the tokenizer or "
                             f"copy the file again from where it was trained.") from err
        config_file = os.path.join(folder, "config.json")
        if local and os.path.isfile(config_file):
            try:
                with open(config_file, encoding="utf-8") as f:
                    config = json.load(f)
            except ValueError as err:
                raise ValueError(f"{config_file} is not valid JSON ({err}): re-save the model's config.") from err
            if isinstance(config, dict) and config.get("model_type") == "xlm_hf":
                tokenizer.check_matches_model(config, tokenizer_name=tokenizer_file, config_name=config_file)
        return tokenizer

    def check_matches_model(
        self, config, *, tokenizer_name: str = "The tokenizer", config_name: str = "the model's config"
    ) -> None:
        """Raise `ValueError` when this tokenizer cannot be the one of a model with `config` (an `XLMConfig` or its
        `config.json` as a dict): a different vocabulary size, or language tags at other ids. A tokenizer of another
        model would otherwise feed ids the model never learnt (or outside its embeddings) without any error."""
        get = config.get if isinstance(config, dict) else lambda key: getattr(config, key, None)
        vocab_size = get("vocab_size")
        if vocab_size is not None and vocab_size != len(self):
            raise ValueError(
                f"{tokenizer_name} has {len(self)} tokens but {config_name} says vocab_size {vocab_size}: the "
                f"tokenizer belongs to another model. Use the tokenizer saved with this model, or build the model's "
                f"config from this tokenizer (XLMConfig(**tokenizer.model_config_kwargs()))."
            )
        lang2id, tag_ids = get("lang2id"), get("lang_token_ids")
        if lang2id and tag_ids and len(tag_ids) == len(lang2id):
            expected = {code: tag_ids[i] for code, i in lang2id.items()}
            found = {code: self._tag_ids.get(code) for code in expected}
            if found != expected:
                raise ValueError(
                    f"{tokenizer_name} has the language tags {found} but {config_name} expects {expected}: the "
                    f"tokenizer belongs to another model. Use the tokenizer saved with this model."
                )

    @classmethod
    def convert_to_native_format(cls, trust_remote_code=False, **kwargs):
        # The base class rebuilds subclasses that define `__init__` from vocab + merges only, which silently drops the
        # normalizer, pre-tokenizer and decoder (text then decodes as garbage). Always load `tokenizer.json` whole.
        return super().convert_to_native_format(trust_remote_code=True, **kwargs)

    @property
    def can_save_slow_tokenizer(self) -> bool:
        # There is no slow tokenizer: keep the saved `tokenizer_class` name as it is.
        return False

    # --- languages ----------------------------------------------------------------------------------------------------

    @property
    def languages(self) -> list[str]:
        """Language codes in language-id order (the model's `lang2id`)."""
        return list(self._languages)

    @property
    def lang_code_to_id(self) -> dict[str, int]:
        """`{code: token id of its tag}`."""
        return dict(self._tag_ids)

    @property
    def src_lang(self) -> str | None:
        """The language sources are encoded as: the one chosen (constructor, `from_pretrained`, this setter), else
        the first language. A save writes only a chosen one (`default_src_lang`)."""
        return self.default_src_lang if self.__dict__.get("_saving") else self._src_lang

    @src_lang.setter
    def src_lang(self, code: str) -> None:
        self._src_lang = self._checked(code)
        self._src_lang_chosen = True
        self._set_lang_mode(self._src_lang)

    @property
    def default_src_lang(self) -> str | None:
        """The source language the user chose for this tokenizer, or None: the translation pipeline uses it when a
        call names none, and never falls back to the first language."""
        return self._src_lang if self.__dict__.get("_src_lang_chosen") else None

    def save_pretrained(self, *args, **kwargs):
        # tokenizer_config.json gets `src_lang` from the attribute: the chosen one, or null (not the first language)
        self._saving = True
        try:
            return super().save_pretrained(*args, **kwargs)
        finally:
            self._saving = False

    @property
    def tgt_lang(self) -> str | None:
        return self._tgt_lang

    @tgt_lang.setter
    def tgt_lang(self, code: str | None) -> None:
        self._tgt_lang = None if code is None else self._checked(code)

    def lang_token_id(self, code: str) -> int:
        """Token id of the tag of `code` (the `forced_bos_token_id` that makes generate produce that language)."""
        return self._tag_ids[self._checked(code)]

    def _checked(self, code: str) -> str:
        if code not in self._tag_ids:
            raise ValueError(
                f"Unknown language code {code!r}: this tokenizer knows {', '.join(self._languages)}. Use one of "
                f"those (codes are case-sensitive), or retrain the tokenizer with the language added."
            )
        return code

    def _template(self, code: str) -> processors.TemplateProcessing:
        if code not in self._templates:
            tag, eos = lang_tag(code), str(self.eos_token)
            self._templates[code] = processors.TemplateProcessing(
                single=[tag, "$A", eos],
                pair=[tag, "$A", "$B", eos],
                special_tokens=[(tag, self._tag_ids[code]), (eos, self._special_ids["eos_token"])],
            )
        return self._templates[code]

    def _set_lang_mode(self, code: str) -> None:
        if self._mode != code:
            self._tokenizer.post_processor = self._template(code)
            self._mode = code

    def _switch_to_input_mode(self):
        self._set_lang_mode(self._src_lang)

    def _switch_to_target_mode(self):
        if self._tgt_lang is None:
            raise ValueError(
                "text_target= needs a target language: set tokenizer.tgt_lang = 'fr' (or pass tgt_lang= to "
                "from_pretrained) so the labels start with the right language tag."
            )
        self._set_lang_mode(self._tgt_lang)

    @contextlib.contextmanager
    def _source_language(self, code: str) -> Iterator[None]:
        """Encode as `code` inside the block, then restore the previous source language."""
        previous, chosen = self._src_lang, self._src_lang_chosen
        self.src_lang = code
        try:
            yield
        finally:
            self.src_lang = previous
            self._src_lang_chosen = chosen

    @contextlib.contextmanager
    def _call_languages(self, src_lang: str | None, tgt_lang: str | None) -> Iterator[None]:
        """Per-call `src_lang=` / `tgt_lang=` (NLLB / M2M100 users pass them habitually): used inside the block, then
        the tokenizer's own languages and mode are restored. Unknown codes raise."""
        if src_lang is None and tgt_lang is None:
            yield
            return
        src = self._checked(src_lang) if src_lang is not None else self._src_lang
        tgt = self._checked(tgt_lang) if tgt_lang is not None else self._tgt_lang
        previous = (self._src_lang, self._tgt_lang, self._mode)
        self._src_lang, self._tgt_lang = src, tgt
        self._set_lang_mode(src)
        try:
            yield
        finally:
            self._src_lang, self._tgt_lang = previous[:2]
            self._set_lang_mode(previous[2] if previous[2] is not None else self._src_lang)

    def __call__(self, *args, src_lang: str | None = None, tgt_lang: str | None = None, **kwargs):
        """transformers' `__call__`, plus per-call `src_lang=` (the tag of `text`) and `tgt_lang=` (the tag of
        `text_target`), which leave `tokenizer.src_lang` / `tgt_lang` unchanged. Thread-safe (see `_CALL_LOCK`)."""
        with _CALL_LOCK, self._call_languages(src_lang, tgt_lang):
            return super().__call__(*args, **kwargs)

    def encode(self, *args, src_lang: str | None = None, tgt_lang: str | None = None, **kwargs):
        """transformers' `encode`, with a per-call `src_lang=` as in `__call__`."""
        if tgt_lang is not None:
            raise ValueError("encode() encodes source text: pass src_lang=, or call tokenizer(text_target=..., "
                             "tgt_lang=...) for labels.")
        with _CALL_LOCK, self._call_languages(src_lang, None):
            return super().encode(*args, **kwargs)

    def update_post_processor(self):
        # The base class would install a plain bos/eos template; ours is the language template.
        if getattr(self, "_languages", None) and self.__dict__.get("_special_ids"):
            self._mode = None
            self._set_lang_mode(getattr(self, "_src_lang", self._languages[0]))

    def _decode(self, token_ids, *args, **kwargs) -> str:
        """The backend's decode, with ids outside the vocabulary a clear error (-1 was an OverflowError, an id above
        the vocabulary an empty string)."""
        ids = [token_ids] if isinstance(token_ids, int) else token_ids
        ids = ids["input_ids"] if isinstance(ids, dict) else ids
        size = self._tokenizer.get_vocab_size(with_added_tokens=True)
        bad = next((i for i in ids if isinstance(i, int) and not 0 <= i < size), None)
        if bad is not None:
            raise ValueError(
                f"Cannot decode token id {bad}: outside the vocabulary [0, {size}). Labels padded with -100 need "
                f"np.where(labels != -100, labels, tokenizer.pad_token_id) first; other ids come from another model."
            )
        return super()._decode(token_ids, *args, **kwargs)

    # --- translation ----------------------------------------------------------------------------------------------------

    def _build_translation_inputs(self, raw_inputs, return_tensors: str | None, src_lang: str | None, tgt_lang: str | None, **extra_kwargs):
        """Encode `raw_inputs` as `src_lang` and add `forced_bos_token_id` (the `tgt_lang` tag), as transformers 4.x's
        translation pipeline expected. Does not change `self.src_lang`."""
        if src_lang is None or tgt_lang is None:
            raise ValueError(
                f"Translation needs src_lang and tgt_lang (one of {', '.join(self._languages)}), got "
                f"src_lang={src_lang!r}, tgt_lang={tgt_lang!r}."
            )
        forced_bos = self.lang_token_id(tgt_lang)
        with self._source_language(src_lang):
            inputs = self(raw_inputs, add_special_tokens=True, return_tensors=return_tensors, **extra_kwargs)
        inputs["forced_bos_token_id"] = forced_bos
        return inputs

    def model_config_kwargs(self) -> dict:
        """Everything an `XLMConfig` needs from its tokenizer: `XLMConfig(**tok.model_config_kwargs(), d_model=...)`."""
        ids = self._special_ids
        return {
            "vocab_size": len(self),
            "pad_token_id": ids["pad_token"],
            "bos_token_id": ids["bos_token"],
            "eos_token_id": ids["eos_token"],
            "unk_token_id": ids["unk_token"],
            "mask_token_id": ids["mask_token"],
            "decoder_start_token_id": ids["eos_token"],
            "n_langs": len(self._languages),
            "lang2id": {code: i for i, code in enumerate(self._languages)},
            "id2lang": dict(enumerate(self._languages)),
            "lang_token_ids": [self._tag_ids[code] for code in self._languages],
        }

    # --- encoding fast path ------------------------------------------------------------------------------------------

    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = False, **kwargs) -> list[str]:
        """The token strings of `text` (the generic path: the fast path below computes no token strings)."""
        return super()._encode_plus(text, text_pair=pair, add_special_tokens=add_special_tokens, **kwargs).tokens()

    def _encode_plus(
        self,
        text,
        text_pair=None,
        add_special_tokens: bool = True,
        padding_strategy: PaddingStrategy = PaddingStrategy.DO_NOT_PAD,
        truncation_strategy: TruncationStrategy = TruncationStrategy.DO_NOT_TRUNCATE,
        max_length: int | None = None,
        stride: int = 0,
        is_split_into_words: bool = False,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors=None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool | None = None,
        return_overflowing_tokens: bool = False,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_length: bool = False,
        verbose: bool = True,
        split_special_tokens: bool | None = None,
        **kwargs,
    ) -> BatchEncoding:
        # Fast path for the common case (plain strings, ids + attention mask, optional padding / truncation): the
        # backend's `encode_batch_fast` and two list comprehensions, instead of the generic path that builds one dict
        # per sequence. Anything else goes through the generic implementation. `encode_batch_fast` computes neither
        # offsets nor token strings, so its encodings are not attached: `.tokens()` / `.word_ids()` of the result
        # raise instead of answering empty strings; `tokenize()` and `return_offsets_mapping=True` take the generic
        # path, which has them.
        is_batch = isinstance(text, (list, tuple))
        simple = (
            text_pair is None
            and not is_split_into_words
            and not (return_overflowing_tokens or return_special_tokens_mask or return_offsets_mapping or return_length)
            and not return_token_type_ids
            and return_attention_mask is not False
            and not kwargs
            and (split_special_tokens is None or split_special_tokens == self.split_special_tokens)
            and (isinstance(text, str) or (is_batch and (not text or isinstance(text[0], str))))
        )
        if not simple:
            with _explained_type_errors(text):
                return super()._encode_plus(
                    text, text_pair=text_pair, add_special_tokens=add_special_tokens,
                    padding_strategy=padding_strategy, truncation_strategy=truncation_strategy, max_length=max_length,
                    stride=stride, is_split_into_words=is_split_into_words, pad_to_multiple_of=pad_to_multiple_of,
                    padding_side=padding_side, return_tensors=return_tensors,
                    return_token_type_ids=return_token_type_ids, return_attention_mask=return_attention_mask,
                    return_overflowing_tokens=return_overflowing_tokens,
                    return_special_tokens_mask=return_special_tokens_mask,
                    return_offsets_mapping=return_offsets_mapping, return_length=return_length, verbose=verbose,
                    split_special_tokens=split_special_tokens, **kwargs,
                )
        self.set_truncation_and_padding(
            padding_strategy=padding_strategy,
            truncation_strategy=truncation_strategy,
            max_length=max_length,
            stride=stride,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side,
        )
        if self._tokenizer.encode_special_tokens != self.split_special_tokens:
            self._tokenizer.encode_special_tokens = self.split_special_tokens
        batch = list(text) if is_batch else [text]
        with _explained_type_errors(batch):
            encodings = self._tokenizer.encode_batch_fast(batch, add_special_tokens=add_special_tokens)
        input_ids = [e.ids for e in encodings]
        if padding_strategy == PaddingStrategy.DO_NOT_PAD:
            attention_mask = [[1] * len(ids) for ids in input_ids]  # cheaper than converting the backend's masks
        else:
            attention_mask = [e.attention_mask for e in encodings]
        data = {"input_ids": input_ids, "attention_mask": attention_mask}
        if input_ids and truncation_strategy == TruncationStrategy.DO_NOT_TRUNCATE:
            self._eventual_warn_about_too_long_sequence(max(input_ids, key=len), max_length, verbose)
        if not is_batch and return_tensors is None:
            data = {key: value[0] for key, value in data.items()}
        return BatchEncoding(data, None, tensor_type=return_tensors)


@contextlib.contextmanager
def _explained_type_errors(text) -> Iterator[None]:
    """Re-raise the backend's `TypeError` (which names no item) with the index and the fix of the first bad text."""
    try:
        yield
    except TypeError as err:
        problem = _bad_text_message(text)
        if problem is None:
            raise
        raise TypeError(problem) from err


def _bad_text_message(text) -> str | None:
    """Why a text or a batch (of texts, pairs or word lists) cannot be encoded: a value that is not a string, or not
    valid Unicode; None when every value is fine."""
    for index, item in enumerate(text if isinstance(text, (list, tuple)) else [text]):
        for leaf in item if isinstance(item, (list, tuple)) else [item]:
            if not isinstance(leaf, str):
                return (f"Input text {index} is {type(leaf).__name__} ({leaf!r:.60}), not a string: pass strings "
                        f"only (\"\" for an empty sentence).")
            try:
                leaf.encode("utf-8")
            except UnicodeEncodeError as err:
                return (f"Input text {index} is not valid Unicode (lone surrogate {leaf[err.start]!r} at position "
                        f"{err.start}): decode its bytes with errors='replace' before tokenizing.")
    return None


def _unreadable_json(folder: str) -> tuple[str, str] | None:
    """(path, reason) of the first tokenizer file of `folder` that is not valid JSON or not a tokenizer, or None."""
    from tokenizers import Tokenizer

    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                json.load(f)
            if name == "tokenizer.json":
                Tokenizer.from_file(path)
        except Exception as err:  # JSON, UTF-8 or tokenizers' own (untyped) errors
            return path, f"{type(err).__name__}: {str(err)[:200]}"
    return None


def _languages_from_added_tokens(backend) -> list[str]:
    """Language codes of the `__xx__` special tokens of a backend tokenizer, in id order."""
    found = []
    for token_id, token in sorted(backend.get_added_tokens_decoder().items()):
        match = _TAG_RE.match(token.content)
        if token.special and match:
            found.append(match.group(1))
    if not found:
        raise ValueError(
            "This tokenizer has no language-tag tokens (__xx__): train it with xlm_hf.train_tokenizer(..., "
            "languages=[...]) or pass languages=[...] naming tags that exist in its vocabulary."
        )
    return found


def _check_language_codes(languages) -> list[str]:
    if isinstance(languages, str):
        raise ValueError(f"languages must be a list of codes such as ['en', 'fr'], got the string {languages!r}.")
    languages = list(languages)
    if not languages:
        raise ValueError("languages is empty: give at least one language code, e.g. ['en', 'fr'].")
    bad = [code for code in languages if not isinstance(code, str) or not _TAG_RE.match(lang_tag(code))]
    if bad:
        raise ValueError(f"Invalid language codes {bad}: use letters, digits, '_' or '-' (e.g. 'en', 'zh_Hans').")
    duplicates = sorted({code for code in languages if languages.count(code) > 1})
    if duplicates:
        raise ValueError(f"Language codes {duplicates} are listed more than once in languages={languages}.")
    return languages


# The public name. The class itself must not be called `XLMTokenizerFast`: `AutoTokenizer` strips "Fast" from the
# saved `tokenizer_class` and would load transformers' own (Moses + BPE) `XLMTokenizer` instead, silently.
XLMTokenizerFast = XLMHFTokenizer

__all__ = ["XLMHFTokenizer", "XLMTokenizerFast", "lang_tag"]
