"""Import transformers' own XLM checkpoints (`xlm-mlm-*`, `xlm-clm-*`, `XLMWithLMHeadModel`, model_type `xlm`).

transformers' XLM is an encoder-only LM; its weights map one to one onto `XLMForPreTraining`, and from there
`XLMForSeq2SeqLM.from_pretrained_lm` puts the same LM into encoder and decoder (XLM's `--reload_model 'a,a'`):

    transformers (XLMWithLMHeadModel)                xlm-hf (XLMForPreTraining)
    transformer.embeddings.weight                    shared.weight (= encoder.embed_tokens, = lm_head.weight)
    transformer.position_embeddings.weight           encoder.embed_positions.weight
    transformer.lang_embeddings.weight               encoder.lang_embeddings.weight
    transformer.layer_norm_emb.*                     encoder.layernorm_embedding.*
    transformer.attentions.i.{q,k,v}_lin.*           encoder.layers.i.self_attn.qkv_proj.*  (rows [q; k; v])
    transformer.attentions.i.out_lin.*               encoder.layers.i.self_attn.out_proj.*
    transformer.layer_norm1.i.*                      encoder.layers.i.self_attn_layer_norm.*
    transformer.ffns.i.lin1.* / lin2.*               encoder.layers.i.fc1.* / fc2.*
    transformer.layer_norm2.i.*                      encoder.layers.i.final_layer_norm.*
    pred_layer.proj.bias (weight tied)               lm_head.bias

Both models are post-norm, without sqrt(d) embedding scaling, with LayerNorm eps from the config, exact GELU (or
ReLU when `gelu_activation` is false), q scaled by 1/sqrt(head dim), and an FFN of 4 x emb_dim; so for the same
`input_ids`, `attention_mask` and `langs` the hidden states agree at every non-padding position (transformers' XLM
also zeroes the padding positions; ours leaves them, the attention mask hides them).

Languages: `lang2id` / `id2lang` and the language embeddings carry over. transformers' XLM takes languages as a
`langs` tensor; the converted config has `lang_token_ids=None` unless the vocabulary is converted too, so pass
`langs=` to the converted model.

Vocabulary: the checkpoints ship a slow Moses+BPE tokenizer (`vocab.json` + `merges.txt`, words end in `</w>`). When
both files are present, `convert_tokenizer` builds an `XLMTokenizerFast` from them: the same BPE, the lowercasing
and accent stripping of `do_lowercase_and_remove_accent`, and an approximation of the Moses pre-tokenizer (split on
whitespace and punctuation; Moses' language-specific rules, e.g. English "don't" -> "don 't", and its punctuation
normalisation are not reproduced). The language tags our tokenizer puts first (`__en__ ... </s>`) are appended to
the vocabulary, and each gets a copy of the `</s>` embedding: XLM's sentences start with `</s>`, so
`__en__ w1 .. wn </s>` with the language embedding of `en` gives exactly XLM's `</s> w1 .. wn </s>` with `langs=en`.

Weights are read from safetensors only (never unpickled); the output is written atomically.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from ..atomic import staging_dir
from ..model.configuration_xlm_hf import XLMConfig


logger = logging.getLogger(__name__)

_WEIGHTS = "model.safetensors"
_INDEX = "model.safetensors.index.json"
_TAG_TEMPLATE = "__{}__"


class ConversionError(ValueError):
    """The source is not a convertible transformers XLM checkpoint; the message says what to do."""


# ----------------------------------------------------------------------------------------------------------------------
# Reading the source


def read_xlm_config(src_dir: str | os.PathLike):
    """The source's transformers `XLMConfig` (legacy field names such as `n_words` / `pad_index` included)."""
    from transformers.models.xlm.configuration_xlm import XLMConfig as HFXLMConfig

    folder = Path(src_dir)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ConversionError(
            f"{folder} has no config.json: pass the folder of a transformers XLM checkpoint (e.g. a local copy of "
            f"FacebookAI/xlm-mlm-ende-1024, or a folder written by XLMWithLMHeadModel.save_pretrained)."
        )
    raw = _read_json(config_file)
    if raw.get("model_type") != "xlm":
        raise ConversionError(
            f"{config_file} has model_type {raw.get('model_type')!r}; the converter reads transformers' XLM "
            f"checkpoints (model_type 'xlm'). An xlm-hf folder (model_type 'xlm_hf') needs no conversion."
        )
    config = HFXLMConfig.from_pretrained(folder)
    if config.asm:
        raise ConversionError("The checkpoint uses an adaptive softmax output layer (asm=true), which xlm-hf does not support.")
    if not config.is_encoder:
        raise ConversionError("The checkpoint is not an encoder (is_encoder=false); only XLM encoder LMs can be converted.")
    return config


def read_safetensors(src_dir: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of the source folder (one file, or shards listed in `model.safetensors.index.json`)."""
    from safetensors.torch import load_file

    folder = Path(src_dir)
    if (folder / _WEIGHTS).is_file():
        files = [folder / _WEIGHTS]
    elif (folder / _INDEX).is_file():
        index = _read_json(folder / _INDEX)
        files = [folder / name for name in sorted(set(index["weight_map"].values()))]
    elif any(folder.glob("*.bin")) or any(folder.glob("*.pt*")):
        raise ConversionError(
            f"{folder} holds only pickled PyTorch weights (*.bin), which the converter does not load (unpickling runs "
            f"code). Re-save them as safetensors first, in an environment you trust: "
            f"`XLMWithLMHeadModel.from_pretrained('{folder}').save_pretrained('{folder}')` writes model.safetensors."
        )
    else:
        raise ConversionError(f"{folder} has no {_WEIGHTS}: pass a folder with the checkpoint's safetensors weights.")
    state = {}
    for path in files:
        try:
            state.update(load_file(str(path)))
        except Exception as err:  # safetensors raises its own error types
            raise ConversionError(f"{path} is not a readable safetensors file ({err}): re-download or re-save it.") from err
    return state


# ----------------------------------------------------------------------------------------------------------------------
# Mapping


def our_config(src_config, **overrides) -> XLMConfig:
    """The xlm-hf `XLMConfig` of a transformers XLM config (encoder and decoder of the source's size)."""
    dim, layers, heads = src_config.emb_dim, src_config.n_layers, src_config.n_heads
    id2lang = _id2lang(src_config) or None
    n_langs = src_config.n_langs
    if id2lang is not None and len(id2lang) != n_langs:
        logger.warning("The checkpoint's id2lang names %d languages but n_langs is %d: languages dropped.", len(id2lang), n_langs)
        id2lang = None
    fields = dict(
        vocab_size=src_config.vocab_size,
        d_model=dim,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=4 * dim,  # transformers' XLM: hidden_dim = 4 * emb_dim
        decoder_ffn_dim=4 * dim,
        max_position_embeddings=src_config.max_position_embeddings,
        activation_function="gelu" if src_config.gelu_activation else "relu",
        dropout=src_config.dropout,
        attention_dropout=src_config.attention_dropout,
        activation_dropout=0.0,
        pre_norm=False,
        layer_norm_emb=True,
        layer_norm_eps=src_config.layer_norm_eps,
        sinusoidal_embeddings=src_config.sinusoidal_embeddings,
        scale_embedding=False,
        n_langs=n_langs,
        id2lang=id2lang,
        lang_token_ids=None,
        use_lang_emb=src_config.use_lang_emb,
        pad_token_id=src_config.pad_token_id,
        bos_token_id=src_config.bos_token_id,
        eos_token_id=src_config.eos_token_id,
        unk_token_id=src_config.unk_index,
        mask_token_id=src_config.mask_index,
        decoder_start_token_id=src_config.eos_token_id,  # XLM's decoder starts from </s>
        init_std=src_config.init_std,
    )
    fields.update(overrides)
    return XLMConfig(**fields)


def expected_source_shapes(src_config) -> dict[str, tuple[int, ...]]:
    """The tensors an XLMWithLMHeadModel of this config has (prefix `transformer.`), and their shapes."""
    dim, vocab = src_config.emb_dim, src_config.vocab_size
    shapes = {
        "embeddings.weight": (vocab, dim),
        "position_embeddings.weight": (src_config.max_position_embeddings, dim),
        "layer_norm_emb.weight": (dim,),
        "layer_norm_emb.bias": (dim,),
    }
    if src_config.n_langs > 1 and src_config.use_lang_emb:
        shapes["lang_embeddings.weight"] = (src_config.n_langs, dim)
    for i in range(src_config.n_layers):
        for name in ("q_lin", "k_lin", "v_lin", "out_lin"):
            shapes[f"attentions.{i}.{name}.weight"] = (dim, dim)
            shapes[f"attentions.{i}.{name}.bias"] = (dim,)
        shapes[f"ffns.{i}.lin1.weight"] = (4 * dim, dim)
        shapes[f"ffns.{i}.lin1.bias"] = (4 * dim,)
        shapes[f"ffns.{i}.lin2.weight"] = (dim, 4 * dim)
        shapes[f"ffns.{i}.lin2.bias"] = (dim,)
        for norm in ("layer_norm1", "layer_norm2"):
            shapes[f"{norm}.{i}.weight"] = (dim,)
            shapes[f"{norm}.{i}.bias"] = (dim,)
    return shapes


def _split_prefix(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(encoder tensors without the `transformer.` prefix, the rest). A bare XLMModel checkpoint has no prefix."""
    if any(k.startswith("transformer.") for k in state):
        body = {k[len("transformer."):]: v for k, v in state.items() if k.startswith("transformer.")}
        rest = {k: v for k, v in state.items() if not k.startswith("transformer.")}
        return body, rest
    heads = ("pred_layer.", "sequence_summary.", "qa_outputs.", "classifier.")
    return {k: v for k, v in state.items() if not k.startswith(heads)}, {k: v for k, v in state.items() if k.startswith(heads)}


def check_source_state(src_config, body: dict[str, torch.Tensor]) -> None:
    """Missing, unexpected and mis-shaped tensors, all reported in one error that names the likely cause."""
    expected = expected_source_shapes(src_config)
    body = {k: v for k, v in body.items() if k != "position_ids"}  # a buffer some versions saved
    missing = sorted(set(expected) - set(body))
    unexpected = sorted(set(body) - set(expected))
    wrong = [f"{k}: checkpoint {tuple(body[k].shape)}, config implies {expected[k]}"
             for k in sorted(set(expected) & set(body)) if tuple(body[k].shape) != expected[k]]
    problems = []
    if missing:
        problems.append(f"missing tensors {_short(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors {_short(unexpected)}")
    if wrong:
        problems.append("shape mismatches: " + "; ".join(wrong[:8]) + (f" (+{len(wrong) - 8} more)" if len(wrong) > 8 else ""))
    if problems:
        raise ConversionError(
            f"The weights do not match their config.json (emb_dim={src_config.emb_dim}, n_layers={src_config.n_layers}, "
            f"n_heads={src_config.n_heads}, vocab_size={src_config.vocab_size}, n_langs={src_config.n_langs}, "
            f"max_position_embeddings={src_config.max_position_embeddings}): " + "; ".join(problems)
            + ". Use the config.json that came with these weights, or a complete checkpoint."
        )


def _short(names: list[str], n: int = 8) -> str:
    return ", ".join(names[:n]) + (f" (+{len(names) - n} more)" if len(names) > n else "")


def map_state_dict(src_config, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers XLM tensors -> `XLMForPreTraining` tensors (see the module docstring), after the checks."""
    body, rest = _split_prefix(state)
    check_source_state(src_config, body)
    out = {
        "shared.weight": body["embeddings.weight"],
        "encoder.embed_positions.weight": body["position_embeddings.weight"],
        "encoder.layernorm_embedding.weight": body["layer_norm_emb.weight"],
        "encoder.layernorm_embedding.bias": body["layer_norm_emb.bias"],
    }
    if "lang_embeddings.weight" in body:
        out["encoder.lang_embeddings.weight"] = body["lang_embeddings.weight"]
    for i in range(src_config.n_layers):
        ours, theirs = f"encoder.layers.{i}", f"attentions.{i}"
        for kind in ("weight", "bias"):
            out[f"{ours}.self_attn.qkv_proj.{kind}"] = torch.cat(
                [body[f"{theirs}.{name}.{kind}"] for name in ("q_lin", "k_lin", "v_lin")], dim=0
            )  # (3D, D) / (3D,): rows [q; k; v]
            out[f"{ours}.self_attn.out_proj.{kind}"] = body[f"{theirs}.out_lin.{kind}"]
            out[f"{ours}.self_attn_layer_norm.{kind}"] = body[f"layer_norm1.{i}.{kind}"]
            out[f"{ours}.fc1.{kind}"] = body[f"ffns.{i}.lin1.{kind}"]
            out[f"{ours}.fc2.{kind}"] = body[f"ffns.{i}.lin2.{kind}"]
            out[f"{ours}.final_layer_norm.{kind}"] = body[f"layer_norm2.{i}.{kind}"]
    vocab = src_config.vocab_size
    bias = rest.get("pred_layer.proj.bias")
    if bias is None:
        logger.warning("The checkpoint has no output layer (pred_layer.proj): the LM head bias starts at zero.")
        bias = torch.zeros(vocab, dtype=body["embeddings.weight"].dtype)
    elif tuple(bias.shape) != (vocab,):
        raise ConversionError(f"pred_layer.proj.bias has shape {tuple(bias.shape)}, expected ({vocab},) from vocab_size.")
    out["lm_head.bias"] = bias
    head_weight = rest.get("pred_layer.proj.weight")
    if head_weight is not None and not torch.equal(head_weight, body["embeddings.weight"]):
        raise ConversionError(
            "pred_layer.proj.weight differs from the word embeddings: xlm-hf ties its output layer to the embeddings "
            "(XLM's --share_inout_emb), so an untied checkpoint cannot be converted without changing its outputs."
        )
    dropped = sorted(k for k in rest if not k.startswith("pred_layer."))
    if dropped:
        logger.warning("Task heads not converted (xlm-hf keeps the LM): %s", _short(dropped))
    return out


# ----------------------------------------------------------------------------------------------------------------------
# Tokenizer


def convert_tokenizer(src_dir: str | os.PathLike, src_config, languages: list[str] | None = None):
    """An `XLMTokenizerFast` from the source's `vocab.json` + `merges.txt`, with the language tags appended after
    its vocabulary (see the module docstring), or None when the files are missing."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers

    from ..model.tokenization_xlm_hf import XLMTokenizerFast

    folder = Path(src_dir)
    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    if not (vocab_file.is_file() and merges_file.is_file()):
        return None
    languages = languages or _languages(src_config)
    vocab = _read_json(vocab_file)
    if len(vocab) != src_config.vocab_size:
        raise ConversionError(
            f"{vocab_file} has {len(vocab)} entries but the model's vocab_size is {src_config.vocab_size}: use the "
            f"vocabulary that came with these weights."
        )
    for token, expected in (("<s>", src_config.bos_token_id), ("</s>", src_config.eos_token_id),
                            ("<pad>", src_config.pad_token_id), ("<unk>", src_config.unk_index)):
        if vocab.get(token) != expected:
            raise ConversionError(f"{vocab_file} maps {token} to {vocab.get(token)}, but the model expects id {expected}.")
    merges = []
    for line in merges_file.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) >= 2 and not line.startswith("#version"):
            merges.append((parts[0], parts[1]))  # XLM's merges.txt may carry a count as a third column
    backend = Tokenizer(models.BPE(vocab, merges, unk_token="<unk>", end_of_word_suffix="</w>"))
    tok_config = _read_json(folder / "tokenizer_config.json")
    lowercase = tok_config.get("do_lowercase_and_remove_accent", True)
    steps = [normalizers.NFKC()]
    if lowercase:  # XLM's lowercase_and_remove_accent: lower, NFD, drop combining marks
        steps += [normalizers.Lowercase(), normalizers.NFD(), normalizers.StripAccents()]
    backend.normalizer = normalizers.Sequence(steps)
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation("isolated")])
    backend.decoder = decoders.BPEDecoder(suffix="</w>")
    specials = ["<s>", "</s>", "<pad>", "<unk>"] + [f"<special{i}>" for i in range(10) if f"<special{i}>" in vocab]
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    tags = [_TAG_TEMPLATE.format(code) for code in languages]
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in tags])
    mask = vocab_token(vocab, src_config.mask_index)
    return XLMTokenizerFast(tokenizer_object=backend, languages=languages, mask_token=mask,
                            model_max_length=src_config.max_position_embeddings)


def vocab_token(vocab: dict[str, int], index: int) -> str:
    for token, i in vocab.items():
        if i == index:
            return token
    raise ConversionError(f"The vocabulary has no token with id {index} (the model's mask_index).")


def _read_json(path: Path) -> dict:
    """A JSON object file ({} when absent); `ConversionError` naming the file when it is not one."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ConversionError(f"{path} is not a valid JSON file ({err}): re-download or re-save it.") from None
    if not isinstance(data, dict):
        raise ConversionError(f"{path} holds a JSON {type(data).__name__}, not an object: re-download or re-save it.")
    return data


def _id2lang(src_config) -> dict[int, str]:
    """The checkpoint's languages by id, from id2lang or, failing that, lang2id."""
    id2lang = getattr(src_config, "id2lang", None)  # absent, not None, when config.json omits the key
    if id2lang:
        return {int(k): v for k, v in id2lang.items()}
    return {int(i): lang for lang, i in (getattr(src_config, "lang2id", None) or {}).items()}


def _languages(src_config) -> list[str]:
    id2lang = _id2lang(src_config)
    if len(id2lang) != src_config.n_langs:
        raise ConversionError(
            f"The checkpoint does not name its {src_config.n_langs} language(s) (config id2lang/lang2id): pass them "
            f"in language-id order, e.g. `xlm-hf convert SRC OUT --languages en`."
        )
    return [id2lang[i] for i in range(src_config.n_langs)]


def append_language_tags(state: dict[str, torch.Tensor], src_config, tokenizer) -> dict:
    """Grow the embeddings and output bias to the tokenizer's vocabulary (the appended language tags), each tag a copy
    of `</s>`'s row; return the config fields that let the model derive languages from the tags."""
    old, new = src_config.vocab_size, len(tokenizer)
    tag_ids = [tokenizer.lang_token_id(code) for code in tokenizer.languages]
    if sorted(tag_ids) != list(range(old, new)):
        raise ConversionError(f"Expected the language tags at ids {old}..{new - 1}, got {tag_ids}.")
    eos = src_config.eos_token_id
    embeddings, bias = state["shared.weight"], state["lm_head.bias"]
    state["shared.weight"] = torch.cat([embeddings, embeddings[eos].expand(new - old, -1)], dim=0)  # (V + n, D)
    state["lm_head.bias"] = torch.cat([bias, bias[eos].expand(new - old)], dim=0)  # (V + n,)
    return {"vocab_size": new, "lang_token_ids": tag_ids}


# ----------------------------------------------------------------------------------------------------------------------
# The conversion


def convert_xlm_checkpoint(
    src_dir: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    *,
    seq2seq: bool = False,
    languages: list[str] | None = None,
    tokenizer: bool = True,
    **config_overrides,
):
    """Convert a transformers XLM checkpoint folder into an xlm-hf model (and tokenizer), saved to `out_dir` if given.

    Returns an `XLMForPreTraining` (the encoder LM), or with `seq2seq=True` an `XLMForSeq2SeqLM` whose encoder and
    decoder both start from it (cross-attention fresh). `languages` names the languages when the checkpoint's config
    does not. `tokenizer=False` skips the vocabulary conversion (then languages must be passed as `langs`).
    `config_overrides` set non-architectural fields (dropout, ...). The returned model carries the converted
    tokenizer as `model.converted_tokenizer` (None when the source has no vocab.json + merges.txt).
    """
    from ..model.modeling_xlm_hf import XLMForPreTraining, XLMForSeq2SeqLM

    if out_dir is not None:
        _check_output_folder(out_dir)
    src_config = read_xlm_config(src_dir)
    state = map_state_dict(src_config, read_safetensors(src_dir))
    if languages is not None:
        if len(languages) != src_config.n_langs:
            raise ConversionError(
                f"languages names {len(languages)} languages but the checkpoint has n_langs={src_config.n_langs}: "
                f"give one code per language, in language-id order."
            )
        config_overrides.setdefault("id2lang", dict(enumerate(languages)))
    fast = convert_tokenizer(src_dir, src_config, languages) if tokenizer else None
    if fast is not None:
        config_overrides.update(append_language_tags(state, src_config, fast))
    elif tokenizer:
        logger.warning(
            "No vocab.json + merges.txt in %s: the model is converted without a tokenizer; pass languages as `langs`.",
            src_dir,
        )
    lm = XLMForPreTraining(our_config(src_config, **config_overrides)).to(state["shared.weight"].dtype)
    missing, unexpected = lm.load_state_dict(state, strict=False)
    tied = {"encoder.embed_tokens.weight", "lm_head.weight"}
    assert not unexpected and set(missing) <= tied, (missing, unexpected)
    if src_config.causal:
        logger.warning("This is a causal LM checkpoint (causal=true): call XLMForPreTraining with causal=True to use it as one.")
    model = XLMForSeq2SeqLM.from_pretrained_lm(lm) if seq2seq else lm
    model.converted_tokenizer = fast
    if out_dir is not None:
        save_atomically(model, fast, out_dir)
    return model


def _check_output_folder(out_dir: str | os.PathLike) -> Path:
    target = Path(out_dir)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise FileExistsError(f"{target} exists and is not an empty folder: choose a new output folder or remove it.")
    return target


def save_atomically(model, tokenizer, out_dir: str | os.PathLike) -> Path:
    """`save_pretrained` into a temporary folder next to `out_dir`, then rename it into place."""
    target = _check_output_folder(out_dir)
    with staging_dir(target) as tmp:  # the folder appears complete or not at all
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    logger.info("Converted model written to %s", target)
    return target


__all__ = ["ConversionError", "convert_xlm_checkpoint", "convert_tokenizer", "map_state_dict", "our_config"]
