"""Export an `XLMForSeq2SeqLM` to CTranslate2 (https://github.com/OpenNMT/CTranslate2), one translation direction
per export.

    xlm-hf export MODEL_DIR --ctranslate2 OUT_DIR --src en --tgt fr [--quantization int8]

    import ctranslate2
    from xlm_hf.interop.export_ctranslate2 import translate_ctranslate2
    translator = ctranslate2.Translator(OUT_DIR, compute_type="int8")
    translate_ctranslate2(translator, tokenizer, ["Hello."], "en", "fr")

How our architecture maps onto CTranslate2's `TransformerSpec` (the same spec as its BART/Marian converters):

- word embeddings (shared or not), `scale_embedding` -> `scale_embeddings` (1 or sqrt(d_model));
- learned or sinusoidal positions -> `position_encodings.encodings`, the table itself (our sin/cos interleaving is
  not CTranslate2's built-in one, so the table is always stored);
- XLM's language embeddings -> folded into the position table, which is exact for one direction:
  * source `__src__ w1 .. wn </s>`: every token, the tag included, has the source language (the model derives
    languages from the most recent tag at or before a token), so the encoder table is `pos + lang[src]`;
  * decoder `</s> __tgt__ w1 ..`: position 0 (the start token `</s>`, before any tag) has no language embedding,
    every later position has the target language, so the decoder table is `pos[0]`, then `pos[t] + lang[tgt]`;
- LayerNorm on the summed embeddings -> `layernorm_embedding`; LayerNorm eps -> `config.layer_norm_epsilon`;
- post-norm `LN(x + f(x))` / pre-norm `x + f(LN(x))` with a final LayerNorm -> `pre_norm` False / True;
- fused q/k/v (self-attention) and q + fused k/v (cross-attention) -> `linear[0]` / `linear[0]`, `linear[1]`;
- GELU (exact) / gelu_new / relu / silu -> `Activation.GELU` / `GELUTanh` / `RELU` / `SWISH`;
- output layer tied to the embeddings, with XLM's output bias -> `decoder.projection` weight and bias;
- `decoder_start_token_id` (`</s>`) -> `decoder_start_token`; the forced first token (`forced_bos_token_id`, the
  target tag) -> `target_prefix=[["__tgt__"]]` on every call (`translate_ctranslate2` passes it).

The one thing the spec cannot express is a language that changes inside a sequence: if a source text contains
another language's tag token, or the model generates one mid-translation, our model switches the language embedding
of the following tokens and CTranslate2 keeps the export's language. Our tokenizer never puts a tag inside a text
(`__fr__` typed in a sentence is ordinary text), and `translate_ctranslate2` suppresses nothing, so the outputs
differ only where the model itself emits a second, different tag.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from ..atomic import staging_dir
from ..folders import CTRANSLATE2_METADATA

logger = logging.getLogger(__name__)

QUANTIZATIONS = ("float32", "bfloat16", "int8")
METADATA_FILE = CTRANSLATE2_METADATA

# transformers' activation names -> CTranslate2's `common_spec.Activation` member names.
_ACTIVATIONS = {
    "gelu": "GELU",
    "gelu_python": "GELU",
    "gelu_new": "GELUTanh",
    "gelu_fast": "GELUTanh",
    "gelu_pytorch_tanh": "GELUTanh",
    "quick_gelu": "GELUSigmoid",
    "relu": "RELU",
    "silu": "SWISH",
    "swish": "SWISH",
}


def has_ctranslate2() -> bool:
    """Whether the `ctranslate2` package is installed (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("ctranslate2") is not None


def import_ctranslate2():
    """The `ctranslate2` module, or an ImportError saying how to install it."""
    try:
        import ctranslate2
    except ImportError as err:
        raise ImportError(
            "CTranslate2 export needs the ctranslate2 package: pip install ctranslate2 (or pip install 'xlm-hf[ctranslate2]')."
        ) from err
    return ctranslate2


def language_id(config, code: str, role: str) -> int | None:
    """The language id of `code` in the model's config (None for a model without languages: it has no language
    embeddings to fold); ValueError naming the known languages otherwise."""
    if config.lang2id is None and config.n_langs == 1:
        return None
    lang2id = config.lang2id or {}
    if code not in lang2id:
        known = ", ".join(sorted(lang2id, key=lang2id.get)) or "none"
        raise ValueError(f"unknown {role} language {code!r}: this model knows {known}")
    return lang2id[code]


def build_spec(model, tokens: list[str], src_lang: str, tgt_lang: str):
    """CTranslate2 `TransformerSpec` of `model` (an `XLMForSeq2SeqLM`) for translating `src_lang` into `tgt_lang`,
    with `tokens` (the token string of every id, `vocabulary(tokenizer, vocab_size)`) as its vocabulary."""
    ctranslate2 = import_ctranslate2()
    from ctranslate2.specs import common_spec, transformer_spec

    config = model.config
    src_id, tgt_id = language_id(config, src_lang, "source"), language_id(config, tgt_lang, "target")
    if config.activation_function not in _ACTIVATIONS:
        raise ValueError(f"activation {config.activation_function!r} has no CTranslate2 equivalent "
                         f"(supported: {', '.join(sorted(_ACTIVATIONS))})")
    activation = getattr(common_spec.Activation, _ACTIVATIONS[config.activation_function])
    logger.info("Building a CTranslate2 %s spec for %s -> %s (ctranslate2 %s)",
                "pre-norm" if config.pre_norm else "post-norm", src_lang, tgt_lang, ctranslate2.__version__)

    common = dict(pre_norm=config.pre_norm, activation=activation, layernorm_embedding=config.layer_norm_emb)
    encoder_spec = transformer_spec.TransformerEncoderSpec(config.encoder_layers, config.encoder_attention_heads, **common)
    decoder_spec = transformer_spec.TransformerDecoderSpec(config.decoder_layers, config.decoder_attention_heads, **common)
    spec = transformer_spec.TransformerSpec(encoder_spec, decoder_spec)

    encoder, decoder = model.model.encoder, model.model.decoder
    if encoder.lang_embeddings is not None and encoder.lang_token_ids is None:
        logger.warning("The model has language embeddings but no lang_token_ids: it adds them only when given `langs`; "
                       "the export adds those of %s / %s as if it were.", src_lang, tgt_lang)
    _set_embeddings(encoder_spec, encoder, encoder_spec.embeddings[0], lang_id=src_id, from_position=0)
    _set_embeddings(decoder_spec, decoder, decoder_spec.embeddings, lang_id=tgt_id, from_position=1)
    for layer_spec, layer in zip(encoder_spec.layer, encoder.layers):
        _set_self_attention(layer_spec.self_attention, layer)
        _set_ffn(layer_spec.ffn, layer)
    for layer_spec, layer in zip(decoder_spec.layer, decoder.layers):
        _set_self_attention(layer_spec.self_attention, layer)
        cross = layer.encoder_attn
        _set_linear(layer_spec.attention.linear[0], cross.q_proj)
        _set_linear(layer_spec.attention.linear[1], cross.kv_proj)
        _set_linear(layer_spec.attention.linear[2], cross.out_proj)
        _set_layer_norm(layer_spec.attention.layer_norm, layer.encoder_attn_layer_norm)
        _set_ffn(layer_spec.ffn, layer)
    _set_linear(decoder_spec.projection, model.lm_head)

    if len(tokens) != config.vocab_size:
        raise ValueError(f"the vocabulary has {len(tokens)} tokens, the model {config.vocab_size}")
    spec.register_source_vocabulary(tokens)
    spec.register_target_vocabulary(tokens)
    spec.config.unk_token = tokens[config.unk_token_id]
    spec.config.bos_token = tokens[config.bos_token_id]
    eos = config.eos_token_id[0] if isinstance(config.eos_token_id, list) else config.eos_token_id
    spec.config.eos_token = tokens[eos]
    spec.config.decoder_start_token = tokens[config.decoder_start_token_id]
    spec.config.layer_norm_epsilon = float(config.layer_norm_eps)
    return spec


def _array(tensor):
    return tensor.detach().to("cpu").float().numpy().copy()


def _set_embeddings(stack_spec, stack, embeddings_spec, lang_id: int, from_position: int) -> None:
    """Word embeddings, scale, the position table with the language embedding folded in from `from_position` on,
    the embedding LayerNorm and (pre-norm) the final LayerNorm of one stack."""
    config = stack.config
    embeddings_spec.weight = _array(stack.embed_tokens.weight)
    stack_spec.scale_embeddings = math.sqrt(config.d_model) if config.scale_embedding else 1.0
    table = stack.embed_positions.weight.detach().to("cpu").float().clone()  # (P, D)
    if stack.lang_embeddings is not None and lang_id is not None:
        table[from_position:] += stack.lang_embeddings.weight.detach().to("cpu").float()[lang_id]
    stack_spec.position_encodings.encodings = table.numpy()
    if stack.layernorm_embedding is not None:
        _set_layer_norm(stack_spec.layernorm_embedding, stack.layernorm_embedding)
    if stack.layer_norm is not None:
        _set_layer_norm(stack_spec.layer_norm, stack.layer_norm)


def _set_self_attention(attention_spec, layer) -> None:
    _set_linear(attention_spec.linear[0], layer.self_attn.qkv_proj)  # (3D, D): q, k, v rows, as CTranslate2 fuses them
    _set_linear(attention_spec.linear[1], layer.self_attn.out_proj)
    _set_layer_norm(attention_spec.layer_norm, layer.self_attn_layer_norm)


def _set_ffn(ffn_spec, layer) -> None:
    _set_linear(ffn_spec.linear_0, layer.fc1)
    _set_linear(ffn_spec.linear_1, layer.fc2)
    _set_layer_norm(ffn_spec.layer_norm, layer.final_layer_norm)


def _set_linear(linear_spec, module) -> None:
    linear_spec.weight = _array(module.weight)
    if module.bias is not None:
        linear_spec.bias = _array(module.bias)


def _set_layer_norm(norm_spec, module) -> None:
    norm_spec.gamma = _array(module.weight)
    norm_spec.beta = _array(module.bias)


def vocabulary(tokenizer, vocab_size: int) -> list[str]:
    """Token strings in id order, `vocab_size` of them (ids the tokenizer lacks get unique placeholder names)."""
    tokens = tokenizer.convert_ids_to_tokens(list(range(min(vocab_size, len(tokenizer)))))
    tokens += [f"<xlm_hf_unused_{i}>" for i in range(len(tokens), vocab_size)]
    if len(set(tokens)) != len(tokens):
        raise ValueError("the tokenizer maps two ids to the same token string; CTranslate2 vocabularies need unique tokens")
    return tokens


def converter(spec):
    """A `ctranslate2.converters.Converter` whose model is the already built `spec`."""
    from ctranslate2.converters import Converter

    class XLMConverter(Converter):
        def _load(self):
            return spec

    return XLMConverter()


def export_model(model, tokenizer, output_dir: str | Path, src_lang: str, tgt_lang: str,
                 quantization: str = "float32", force: bool = False) -> Path:
    """Write the CTranslate2 model of `model` for `src_lang` -> `tgt_lang` to `output_dir`, with the tokenizer and
    `xlm_hf_ctranslate2.json` (languages, target prefix, length limit) beside it. Written to a temporary folder next
    to `output_dir`, then renamed: an interrupted export leaves no partial folder. An existing non-empty
    `output_dir` is an error unless `force`."""
    import_ctranslate2()
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {quantization!r}: choose one of {', '.join(QUANTIZATIONS)}")
    for code in (src_lang, tgt_lang):  # the tokenizer needs the tags too (the target prefix)
        if code not in tokenizer.languages:
            raise ValueError(f"unknown language {code!r}: the tokenizer knows {', '.join(tokenizer.languages)}")
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise NotADirectoryError(f"{output_dir} exists and is not a folder")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not force:
        raise FileExistsError(f"{output_dir} already exists and is not empty: choose another folder or pass --force")
    spec = build_spec(model.eval(), vocabulary(tokenizer, model.config.vocab_size), src_lang, tgt_lang)
    with staging_dir(output_dir) as tmp:  # an existing folder is replaced only once the new one is in place
        converter(spec).convert(str(tmp), quantization=quantization, force=True)
        tokenizer.save_pretrained(tmp)
        metadata = {
            "format": "ctranslate2",
            "src_lang": src_lang,
            "tgt_lang": tgt_lang,
            "target_prefix": [tokenizer.convert_ids_to_tokens(tokenizer.lang_token_id(tgt_lang))],
            # generate's default cap (min(256, positions - 1)); CTranslate2's default is 256, and a longer output
            # than the position table is an error there as in our model.
            "max_decoding_length": model.generation_config.max_new_tokens or model.config.max_position_embeddings - 1,
            "max_source_tokens": model.config.max_position_embeddings,  # source tokens, tag and </s> included
            "quantization": quantization,
            "usage": "source tokens: tokenizer(text) with src_lang, as token strings; pass target_prefix to "
                     "translate_batch (xlm_hf.interop.export_ctranslate2.translate_ctranslate2 does both)",
        }
        (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    logger.info("Wrote the CTranslate2 model (%s, %s -> %s) to %s", quantization, src_lang, tgt_lang, output_dir)
    return output_dir


def export_ctranslate2(model_dir: str | Path, output_dir: str | Path, src_lang: str, tgt_lang: str,
                       quantization: str = "float32", force: bool = False, allow_zero_shot: bool = False) -> Path:
    """`export_model` for a saved model folder (model + tokenizer), loaded in float32. Only a direction the model was
    trained on (`config.trained_directions`, when recorded) is exported, unless `allow_zero_shot`: an export holds one
    direct direction, so neither a pivot nor the pipeline's refusal can follow it."""
    import_ctranslate2()
    from transformers import AutoConfig

    from ..model.modeling_xlm_hf import XLMForSeq2SeqLM

    from ..atomic import folders_overlap
    from ..model.configuration_xlm_hf import direction_route
    from ..folders import check_model_type, load_model_and_tokenizer, read_config

    folder = Path(model_dir)
    if folders_overlap(folder, output_dir):  # --force would delete the model the export is made from
        raise ValueError(
            f"the CTranslate2 folder {output_dir} is, holds or sits inside the model folder {folder}: writing it would "
            f"delete the model; pass --ctranslate2 a folder outside it, e.g. {folder.name}-ct2-{src_lang}-{tgt_lang} "
            f"beside it")
    check_model_type(folder, read_config(folder))  # never another folder's code
    config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    language_id(config, src_lang, "source"), language_id(config, tgt_lang, "target")  # before loading the weights
    pivot = direction_route(config, src_lang, tgt_lang, allow_zero_shot)  # untrained, no pivot: its ValueError
    if pivot is not None:
        raise ValueError(
            f"This model was not trained to translate {src_lang}->{tgt_lang} directly (the pipeline pivots through "
            f"{pivot}), and a CTranslate2 export holds one direct direction: export {src_lang}-{pivot} and "
            f"{pivot}-{tgt_lang}, or pass --allow-zero-shot to export {src_lang}->{tgt_lang} as it is.")
    model, tokenizer = load_model_and_tokenizer(folder)
    if not isinstance(model, XLMForSeq2SeqLM):
        raise ValueError(f"{folder} holds a {type(model).__name__}, not an xlm-hf translation model (XLMForSeq2SeqLM)")
    return export_model(model, tokenizer, output_dir, src_lang, tgt_lang, quantization=quantization, force=force)


def source_tokens(tokenizer, texts: list[str], src_lang: str) -> list[list[str]]:
    """The token strings CTranslate2 takes: our tokenizer's `__src__ tokens </s>`, unpadded."""
    previous = tokenizer.src_lang
    tokenizer.src_lang = src_lang
    try:
        ids = tokenizer(list(texts), add_special_tokens=True)["input_ids"]
    finally:
        tokenizer.src_lang = previous
    return [tokenizer.convert_ids_to_tokens(row) for row in ids]


def translate_batch_ctranslate2(translator, tokenizer, texts: list[str], src_lang: str, tgt_lang: str, **options):
    """`translator.translate_batch` on `texts` (tokenised, with the target tag as prefix): its `TranslationResult`s,
    n-best hypotheses and scores included (`num_hypotheses=`, `return_scores=`)."""
    prefix = tokenizer.convert_ids_to_tokens(tokenizer.lang_token_id(tgt_lang))
    sources = source_tokens(tokenizer, texts, src_lang)
    return translator.translate_batch(sources, target_prefix=[[prefix]] * len(sources), **options)


def translate_ctranslate2(translator, tokenizer, texts: list[str], src_lang: str, tgt_lang: str,
                          return_ids: bool = False, **options):
    """Translate `texts` with a `ctranslate2.Translator` of an export for `src_lang` -> `tgt_lang`: tokenises, forces
    the target tag as the prefix (our `forced_bos_token_id`), and decodes. `options` go to `translate_batch`
    (`beam_size`, `max_decoding_length`, ...). With `return_ids`, the generated ids (tag first, no `</s>`)."""
    results = translate_batch_ctranslate2(translator, tokenizer, texts, src_lang, tgt_lang, **options)
    ids = [tokenizer.convert_tokens_to_ids(result.hypotheses[0]) for result in results]
    if return_ids:
        return ids
    return tokenizer.batch_decode(ids, skip_special_tokens=True)


__all__ = ["build_spec", "converter", "vocabulary", "export_model", "export_ctranslate2", "translate_ctranslate2", "translate_batch_ctranslate2", "source_tokens", "QUANTIZATIONS"]
