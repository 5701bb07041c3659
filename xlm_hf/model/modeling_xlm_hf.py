"""XLM as an encoder-decoder translation model (Lample & Conneau, 2019), for transformers 5.

Reads top to bottom in dependency order: helpers, attention, blocks, the embedding+stack base, encoder, decoder,
the bare model, the translation head. Shapes: B batch, T / S target / source length, H heads, Dh head dim, D d_model.

What is XLM here and not in Marian/BART:
- language embeddings (`lang_embeddings`) added per token, derived from the tokenizer's language tags when not given
  (the decoder's cache carries the language of its last position: `generation_xlm_hf.XLMEncoderDecoderCache`);
- post-norm blocks with a LayerNorm on the summed embeddings (pre-norm on request), exact GELU, learned positions;
- one embedding matrix for encoder, decoder and output layer, with an output bias (XLM's `pred_layer`).

This file is shipped with saved models as remote code: it imports only torch, transformers and its sibling
`configuration_xlm_hf`, `inference` and `generation_xlm_hf` (`REMOTE_CODE_FILES`); `xlm_hf.atomic` makes saves atomic
where the package is installed.
"""

import inspect
import math
from collections.abc import Callable

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.masking_utils import create_bidirectional_mask, create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutput,
    BaseModelOutputWithPastAndCrossAttentions,
    MaskedLMOutput,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, PreTrainedModel
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs, can_return_tuple, logging
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from .configuration_xlm_hf import IGNORE_INDEX, REMOTE_CODE_FILES, XLMConfig, check_local_folder, custom_pipelines_entry
from .generation_xlm_hf import XLMEncoderDecoderCache, XLMGenerationMixin, carried_langs, carry_langs
from .inference import apply_dropout, cross_attention_dtype, eager_is_faster


logger = logging.get_logger(__name__)


# ----------------------------------------------------------------------------------------------------------------------
# Helpers


def shift_tokens_right(labels: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """Decoder inputs from labels: prepend the start token, drop the last label, and turn -100 into padding."""
    shifted = labels.new_empty(labels.shape)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill_(shifted == IGNORE_INDEX, pad_token_id)


def derive_langs(
    input_ids: torch.LongTensor,  # (B, T)
    lang_token_ids: torch.LongTensor,  # (n_langs,)
    carried: torch.LongTensor | None = None,  # (B,) the language before the first token, -1 for none
) -> torch.LongTensor:
    """Language id of every token: that of the most recent language tag at or before it; before the first tag, the
    `carried` language (-1, none, when not given).

    The rule is causal and its only state is the last language, so a decoder fed in chunks sees the languages of a full
    forward when each chunk carries on from the previous chunk's last language: the decoder's cache carries it
    (`generation_xlm_hf.XLMEncoderDecoderCache`); generate passes the languages of the whole prefix instead
    (`XLMForSeq2SeqLM.prepare_inputs_for_generation`).
    """
    batch, length = input_ids.shape
    match = input_ids.unsqueeze(-1) == lang_token_ids  # (B, T, n_langs)
    is_tag = match.any(-1)  # (B, T)
    tag_lang = match.to(torch.uint8).argmax(-1)  # (B, T), meaningful where is_tag
    positions = torch.arange(length, device=input_ids.device).expand(batch, length)
    last_tag = torch.where(is_tag, positions, -1).cummax(dim=1).values  # (B, T)
    langs = tag_lang.gather(1, last_tag.clamp(min=0))
    before = -1 if carried is None else carried.unsqueeze(1)  # (B, 1)
    return torch.where(last_tag < 0, before, langs)


def lm_loss(logits: torch.Tensor, labels: torch.LongTensor | None, label_smoothing: float = 0.0) -> torch.Tensor | None:
    """Mean cross-entropy over the positions whose label is not -100 (fp32 softmax, also under bf16 autocast)."""
    if labels is None:
        return None
    return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX,
                           label_smoothing=label_smoothing)


def _accumulate(total: torch.Tensor | None, term: torch.Tensor) -> torch.Tensor:
    """`total + term` in fp32, in place when there is a total."""
    return term.float() if total is None else total.add_(term)


class LinearCrossEntropy(torch.autograd.Function):
    """`lm_loss(hidden @ weight.T + bias, labels)` without the (N, V) logits: only the rows with a label (not -100:
    padding) go through the output layer, `chunk` at a time, and each chunk's gradients are computed right there
    (softmax minus the smoothed one-hot), so only (chunk, V) is ever alive. The loss must be the end of the graph up
    to a scalar factor (it is: the backward scales the stored gradients by grad_output). Under autocast the matmuls
    run in its dtype, the softmax in fp32."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, labels, label_smoothing: float, chunk: int):
        # hidden (N, D), weight (V, D), bias (V,) or None, labels (N,) with -100 where ignored
        dtype = torch.get_autocast_dtype(hidden.device.type) if torch.is_autocast_enabled(hidden.device.type) else hidden.dtype
        with torch.autocast(hidden.device.type, enabled=False):
            valid = labels != IGNORE_INDEX
            rows = None if valid.all() else valid.nonzero().squeeze(1)  # (M,): the labelled rows, when some are not
            h_all, y_all = (hidden, labels) if rows is None else (hidden[rows], labels[rows])  # (M, D), (M,)
            h_all, w = h_all.to(dtype), weight.to(dtype)
            count = torch.tensor(max(h_all.shape[0], 1), dtype=torch.float32, device=hidden.device)
            vocab = weight.shape[0]
            loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
            grad_rows = torch.empty(h_all.shape, dtype=hidden.dtype, device=hidden.device)  # (M, D)
            grad_weight = grad_bias = None  # fp32 sums over the chunks; the first chunk's term starts them (no zeros)
            bias_c = bias.to(dtype) if bias is not None else None
            for start in range(0, h_all.shape[0], chunk):
                h, y = h_all[start : start + chunk], y_all[start : start + chunk]
                logits = (torch.addmm(bias_c, h, w.T) if bias is not None else h @ w.T).float()  # (n, V)
                lse = torch.logsumexp(logits, dim=-1)  # (n,)
                y0 = y.unsqueeze(1)
                per_row = (1.0 - label_smoothing) * (lse - logits.gather(1, y0).squeeze(1))
                if label_smoothing:
                    per_row += label_smoothing * (lse - logits.mean(dim=-1))
                loss += per_row.sum()
                # d loss / d logits = (softmax - (1 - eps) one_hot - eps / V) / count: one pass, in place of the logits
                grad = logits.sub_((lse + count.log()).unsqueeze(1)).exp_()
                grad.scatter_add_(1, y0, torch.full_like(lse, -(1.0 - label_smoothing)).div_(count).unsqueeze(1))
                if label_smoothing:
                    grad.sub_(label_smoothing / vocab / count)
                del logits  # (the same tensor as grad: freed at the cast, before the gradient matmuls' outputs)
                grad = grad.to(dtype)
                grad_rows[start : start + chunk] = grad @ w
                grad_weight = _accumulate(grad_weight, grad.T @ h)
                if bias is not None:
                    grad_bias = _accumulate(grad_bias, grad.sum(0, dtype=torch.float32))
            if grad_weight is None:  # no labelled rows
                grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
                grad_bias = torch.zeros(vocab, dtype=torch.float32, device=weight.device) if bias is not None else None
            if rows is None:
                grad_hidden = grad_rows
            else:  # unlabelled rows get no gradient from the loss
                grad_hidden = torch.zeros_like(hidden).index_copy_(0, rows, grad_rows)
        # Held on ctx, not saved for backward: the backward hands them over (scaled in place), so autograd can
        # accumulate them into .grad without copying (vocabulary-sized).
        ctx.grads = (grad_hidden, grad_weight.to(weight.dtype), grad_bias.to(bias.dtype) if bias is not None else None)
        return loss / count

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        if ctx.grads is None:
            raise RuntimeError("The fused LM loss (config.fused_lm_loss) has one backward pass; for several "
                               "(retain_graph=True), set config.fused_lm_loss = False.")
        grads, ctx.grads = ctx.grads, None
        scaled = [None if grad is None else grad.mul_(grad_output.to(grad.dtype)) for grad in grads]
        return (*scaled, None, None, None)


def fused_lm_loss(hidden_states: torch.Tensor, lm_head: nn.Linear, labels: torch.LongTensor, config) -> torch.Tensor:
    """The training loss of `lm_head(hidden_states)` against `labels` through `LinearCrossEntropy`."""
    return LinearCrossEntropy.apply(hidden_states.flatten(0, 1), lm_head.weight, lm_head.bias, labels.flatten(),
                                    float(config.label_smoothing), config.loss_chunk_size)


def sinusoidal_positions(n_pos: int, dim: int) -> torch.Tensor:
    """XLM's create_sinusoidal_embeddings: sin on even features, cos on odd ones."""
    position = torch.arange(n_pos, dtype=torch.float64).unsqueeze(1)  # (P, 1)
    freq = torch.pow(10000.0, -2 * (torch.arange(dim, dtype=torch.float64) // 2) / dim)  # (D,)
    angles = position * freq  # (P, D)
    out = torch.empty(n_pos, dim, dtype=torch.float64)
    out[:, 0::2] = torch.sin(angles[:, 0::2])
    out[:, 1::2] = torch.cos(angles[:, 1::2])
    return out.float()


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,  # (B, H, T, Dh)
    key: torch.Tensor,  # (B, H, S, Dh)
    value: torch.Tensor,  # (B, H, S, Dh)
    attention_mask: torch.Tensor | None,  # (B, 1, T, S): additive, or boolean (True = attend) from an sdpa config
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling  # (B, H, T, S)
    if attention_mask is not None and attention_mask.dtype == torch.bool:
        attn_weights = attn_weights.masked_fill(~attention_mask, torch.finfo(attn_weights.dtype).min)
    elif attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    elif module.is_causal and query.shape[2] > 1:
        q_len, k_len = query.shape[2], key.shape[2]
        future = torch.ones(q_len, k_len, dtype=torch.bool, device=query.device).triu(k_len - q_len + 1)
        attn_weights = attn_weights.masked_fill(future, torch.finfo(attn_weights.dtype).min)
    attn_weights = F.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = apply_dropout(attn_weights, dropout, module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()  # (B, T, H, Dh)
    return attn_output, attn_weights


# ----------------------------------------------------------------------------------------------------------------------
# Attention: modules only project and reshape; the kernel comes from the attention interface (eager/sdpa/flex/flash).


class XLMAttention(nn.Module):
    """Shared part of self- and cross-attention: the kernel call and the output projection."""

    def __init__(self, config: XLMConfig, num_heads: int, layer_idx: int, is_causal: bool):
        super().__init__()
        self.config = config
        self.num_heads = num_heads
        self.head_dim = config.d_model // num_heads
        self.scaling = self.head_dim**-0.5
        self.dropout = config.attention_dropout
        self.layer_idx = layer_idx
        # sdpa reads `is_causal` when the mask is None (no padding): encoder and cross-attention must say False.
        self.is_causal = is_causal
        self.out_proj = nn.Linear(config.d_model, config.d_model)

    def _kernel(self, query: torch.Tensor) -> Callable:
        # The interface call stays in this file: transformers' set_attn_implementation() looks for it in the source
        # of the model's module (PreTrainedModel._can_set_attn_implementation) and silently refuses without it.
        implementation = self.config._attn_implementation
        if eager_is_faster(implementation, query, self.training and self.dropout > 0):
            return eager_attention_forward
        return ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)

    def _attend(self, query, key, value, attention_mask, **kwargs):
        """The kernel, in the dtype of the keys (fp32 for a bf16 model's cross-attention cache, see
        `XLMCrossAttention`), then the output projection, in the query's."""
        dtype = query.dtype
        query = query.to(key.dtype)
        attention_interface = self._kernel(query)
        attn_output, attn_weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.dropout if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )  # (B, T, H, Dh)
        attn_output = self.out_proj(attn_output.reshape(*attn_output.shape[:2], -1).to(dtype))  # (B, T, D)
        return attn_output, attn_weights


class XLMSelfAttention(XLMAttention):
    """Self-attention with one fused q/k/v projection (one GEMM instead of three)."""

    def __init__(self, config: XLMConfig, num_heads: int, layer_idx: int, is_causal: bool):
        super().__init__(config, num_heads, layer_idx, is_causal)
        self.qkv_proj = nn.Linear(config.d_model, 3 * config.d_model)

    def forward(
        self,
        hidden_states: torch.Tensor,  # (B, T, D)
        attention_mask: torch.Tensor | None = None,
        cache: EncoderDecoderCache | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, length, _ = hidden_states.shape
        qkv = self.qkv_proj(hidden_states).view(batch, length, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.transpose(1, 3).unbind(2)  # each (B, H, T, Dh)
        if cache is not None:
            key, value = cache.self_attention_cache.update(key, value, self.layer_idx)  # (B, H, past+T, Dh)
        return self._attend(query, key, value, attention_mask, **kwargs)


class XLMCrossAttention(XLMAttention):
    """Decoder-to-encoder attention. Keys and values of the source are computed once per generation and cached.

    In bf16/fp16 inference on a CPU they may be cached and attended in fp32 (`inference.cross_attention_dtype`)."""

    def __init__(self, config: XLMConfig, num_heads: int, layer_idx: int):
        super().__init__(config, num_heads, layer_idx, is_causal=False)
        self.q_proj = nn.Linear(config.d_model, config.d_model)
        self.kv_proj = nn.Linear(config.d_model, 2 * config.d_model)

    def forward(
        self,
        hidden_states: torch.Tensor,  # (B, T, D)
        encoder_hidden_states: torch.Tensor,  # (B, S, D)
        attention_mask: torch.Tensor | None = None,
        cache: EncoderDecoderCache | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, length, _ = hidden_states.shape
        query = self.q_proj(hidden_states).view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
        if cache is not None and cache.is_updated.get(self.layer_idx):
            layer = cache.cross_attention_cache.layers[self.layer_idx]
            key, value = layer.keys, layer.values  # (B, H, S, Dh)
        else:
            src_len = encoder_hidden_states.shape[1]
            kv = self.kv_proj(encoder_hidden_states)
            kv = kv.to(self._kernel_dtype(kv)).view(batch, src_len, 2, self.num_heads, self.head_dim)
            key, value = kv.transpose(1, 3).unbind(2)  # each (B, H, S, Dh)
            if cache is not None:
                key, value = cache.cross_attention_cache.update(key, value, self.layer_idx)  # (a static one: its dtype)
                cache.is_updated[self.layer_idx] = True
        return self._attend(query, key, value, attention_mask, **kwargs)

    def _kernel_dtype(self, states: torch.Tensor) -> torch.dtype:
        return cross_attention_dtype(states, self.config._attn_implementation)


# ----------------------------------------------------------------------------------------------------------------------
# Blocks


class XLMBlock(GradientCheckpointingLayer):
    """Residual sub-layers with XLM's post-norm, `LN(x + f(x))`, or pre-norm, `x + f(LN(x))`, and the FFN."""

    def __init__(self, config: XLMConfig, ffn_dim: int):
        super().__init__()
        self.pre_norm = config.pre_norm
        self.dropout = config.dropout
        self.activation_dropout = config.activation_dropout
        self.activation_fn = ACT2FN[config.activation_function]
        self.fc1 = nn.Linear(config.d_model, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, config.d_model)
        self.final_layer_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)

    def _residual(self, hidden_states: torch.Tensor, norm: nn.LayerNorm, sublayer: Callable) -> torch.Tensor:
        if self.pre_norm:
            return hidden_states + apply_dropout(sublayer(norm(hidden_states)), self.dropout, self.training)
        return norm(hidden_states + apply_dropout(sublayer(hidden_states), self.dropout, self.training))

    def _feed_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.activation_fn(self.fc1(hidden_states))  # (B, T, ffn)
        hidden_states = apply_dropout(hidden_states, self.activation_dropout, self.training)
        return self.fc2(hidden_states)


class XLMEncoderLayer(XLMBlock):
    def __init__(self, config: XLMConfig, layer_idx: int):
        super().__init__(config, config.encoder_ffn_dim)
        self.self_attn = XLMSelfAttention(config, config.encoder_attention_heads, layer_idx, is_causal=False)
        self.self_attn_layer_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        hidden_states = self._residual(
            hidden_states, self.self_attn_layer_norm, lambda x: self.self_attn(x, attention_mask, **kwargs)[0]
        )
        return self._residual(hidden_states, self.final_layer_norm, self._feed_forward)


class XLMDecoderLayer(XLMBlock):
    def __init__(self, config: XLMConfig, layer_idx: int):
        super().__init__(config, config.decoder_ffn_dim)
        heads = config.decoder_attention_heads
        self.self_attn = XLMSelfAttention(config, heads, layer_idx, is_causal=True)
        self.self_attn_layer_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.encoder_attn = XLMCrossAttention(config, heads, layer_idx)
        self.encoder_attn_layer_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        encoder_hidden_states: torch.Tensor,  # positional, for gradient checkpointing
        encoder_attention_mask: torch.Tensor | None = None,
        cache: EncoderDecoderCache | None = None,
        **kwargs,
    ):
        hidden_states = self._residual(
            hidden_states,
            self.self_attn_layer_norm,
            lambda x: self.self_attn(x, attention_mask, cache=cache, **kwargs)[0],
        )
        hidden_states = self._residual(
            hidden_states,
            self.encoder_attn_layer_norm,
            lambda x: self.encoder_attn(x, encoder_hidden_states, encoder_attention_mask, cache=cache, **kwargs)[0],
        )
        return self._residual(hidden_states, self.final_layer_norm, self._feed_forward)


# ----------------------------------------------------------------------------------------------------------------------
# Pretrained-model base, and the embedding + layers stack shared by encoder and decoder


class XLMPreTrainedModel(PreTrainedModel):
    config: XLMConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["XLMEncoderLayer", "XLMDecoderLayer"]
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_flash_attn = True
    _can_compile_fullgraph = True
    # Our losses are means over the non-ignored labels of the batch: the Trainer must not also divide by
    # `num_items_in_batch` (it would, because forward takes **kwargs, and scale gradients under DDP/accumulation).
    accepts_loss_kwargs = False

    # Every Auto class a saved folder answers to with trust_remote_code (transformers writes only the saved class's).
    _remote_auto_map: dict[str, str] = {}

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, atomic (`xlm_hf.atomic.saving_into`): the folder holds the old model or
        the new one whenever the process dies, never a config of one beside the weights of the other, and the weights
        are published 0644 like every other file."""
        try:  # the package's helper, not shipped (it uses ctypes): remote code without xlm_hf saves the plain way
            from xlm_hf.atomic import saving_into
        except ImportError:
            saving_into = None
        if saving_into is None or args or kwargs.get("push_to_hub") or not kwargs.get("is_main_process", True):
            return self._save_unstaged(save_directory, *args, **kwargs)
        with saving_into(save_directory, replaced=("model*.safetensors", "model.safetensors.index.json")) as folder:
            return self._save_unstaged(folder, **kwargs)

    def _save_unstaged(self, save_directory, *args, **kwargs):
        if self._auto_class is not None:  # registered for remote code: advertise all our Auto classes
            module = type(self).__module__.rsplit(".", 1)[-1]
            auto_map = {auto: f"{module}.{cls}" for auto, cls in self._remote_auto_map.items()}
            self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), **auto_map}
        if self.can_generate():  # pipeline("translation") through config.custom_pipelines (the file is copied along)
            self.config.custom_pipelines = custom_pipelines_entry(self.config.languages)
        # Compiled decoding (xlm_hf.model.inference.enable_compiled_decoding) is a runtime choice, like the precision: its
        # static cache is not saved (transformers drops the compile config it goes with).
        generation_config = getattr(self, "generation_config", None)
        compiled = getattr(generation_config, "compile_config", None) is not None
        if compiled:
            cache_implementation, generation_config.cache_implementation = generation_config.cache_implementation, None
        try:
            result = super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            if compiled:
                generation_config.cache_implementation = cache_implementation
        if self._auto_class is not None:
            _copy_remote_code(save_directory)
        return result

    # Prefixes of the weights that are a task head, not the body: a checkpoint may lack them (a bare `XLMModel`
    # folder loaded into `XLMForSeq2SeqLM` has no output bias), and transformers' contract is to initialise and report.
    _head_weight_prefixes = ("lm_head.",)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`, with one line drawn between head and body weights a checkpoint lacks.

        - Head weights (`lm_head.*`, e.g. the output bias when loading a bare `XLMModel` folder into
          `XLMForSeq2SeqLM`) are initialised, as transformers does, and named in a warning.
        - Body weights (embeddings, layers) missing from a checkpoint are an error instead of being silently
          initialised at random. To accept them, opt in: pass `output_loading_info=True` (you then get
          `(model, {"missing_keys": ...})` and decide), or pass no checkpoint at all,
          `from_pretrained(None, config=..., state_dict=...)`: the state dict is then all there is, and what it lacks
          is initialised (and named in a warning).

        A truncated or corrupt `.safetensors` file is named in the error."""
        check_local_folder(pretrained_model_name_or_path)
        wants_info = kwargs.get("output_loading_info", False)
        no_checkpoint = pretrained_model_name_or_path is None and kwargs.get("state_dict") is not None
        kwargs["output_loading_info"] = True
        try:
            model, info = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except Exception as err:
            if type(err).__name__ != "SafetensorError":  # safetensors' error names no file
                raise
            raise OSError(f"{_describe_weights(pretrained_model_name_or_path, kwargs.get('subfolder'))} cannot be read "
                          f"({err}): the file is truncated or corrupt; re-save or re-download it.") from err
        missing = sorted(info["missing_keys"])  # (mismatched shapes raise, unless ignore_mismatched_sizes=True)
        heads = [k for k in missing if k.startswith(cls._head_weight_prefixes)]
        body = [k for k in missing if k not in heads]
        source = "the given state_dict" if no_checkpoint else f"the checkpoint {pretrained_model_name_or_path}"
        if heads:
            logger.warning(f"{cls.__name__}: {source} lacks the head weight(s) {', '.join(heads)}, initialised "
                           f"afresh: fine-tune before use.")
        if body and (wants_info or no_checkpoint):
            logger.warning(f"{cls.__name__}: {len(body)} body weight(s) are not in {source} and start from random "
                           f"values ({', '.join(body[:5])}{', ...' if len(body) > 5 else ''}).")
        elif body:
            raise ValueError(
                f"The checkpoint {pretrained_model_name_or_path} lacks {len(body)} weight(s) of "
                f"{cls.__name__} ({', '.join(body[:5])}{', ...' if len(body) > 5 else ''}); they would start "
                f"from random values. Load the class the checkpoint was saved from (see architectures in its "
                f"config.json), or pass output_loading_info=True to accept freshly initialised weights."
            )
        return (model, info) if wants_info else model

    def _output_layer(self, hidden_states: torch.Tensor, labels: torch.LongTensor | None):
        """(logits, loss) of the LM head. Training with labels and `config.fused_lm_loss`: (None, fused loss)."""
        if labels is not None and self.config.fused_lm_loss and self.training and torch.is_grad_enabled():
            return None, fused_lm_loss(hidden_states, self.lm_head, labels, self.config)
        logits = self.lm_head(hidden_states)
        return logits, lm_loss(logits, labels, self.config.label_smoothing)

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, XLMStack):
            if module.lang_token_ids is not None:
                init.copy_(module.lang_token_ids, torch.tensor(self.config.lang_token_ids))
            if self.config.sinusoidal_embeddings:
                init.copy_(module.embed_positions.weight, sinusoidal_positions(*module.embed_positions.weight.shape))
        elif isinstance(module, (XLMForSeq2SeqLM, XLMForPreTraining)) and module.lm_head.bias is not None:
            init.zeros_(module.lm_head.bias)


class XLMStack(XLMPreTrainedModel):
    """Embeddings (word + position + language, LayerNorm, dropout) followed by layers; base of encoder and decoder."""

    layer_class: type[XLMBlock]
    langs_argument = "langs"  # the model's argument that feeds this stack's languages (in error messages)

    def __init__(self, config: XLMConfig, embed_tokens: nn.Embedding | None, num_layers: int):
        super().__init__(config)
        d_model = config.d_model
        self.embed_scale = math.sqrt(d_model) if config.scale_embedding else 1.0
        if embed_tokens is None:  # standalone (`XLMEncoder.from_pretrained(folder)`): its own embedding
            embed_tokens = nn.Embedding(config.vocab_size, d_model, config.pad_token_id)
        self.embed_tokens = embed_tokens
        self.embed_positions = nn.Embedding(config.max_position_embeddings, d_model)
        if config.sinusoidal_embeddings:
            self.embed_positions.weight.requires_grad_(False)
        self.lang_embeddings = (
            nn.Embedding(config.n_langs, d_model) if config.n_langs > 1 and config.use_lang_emb else None
        )
        # Token ids of the language tags, in language-id order, to derive languages when none are passed.
        tag_ids = torch.tensor(config.lang_token_ids) if config.lang_token_ids and self.lang_embeddings else None
        self.register_buffer("lang_token_ids", tag_ids, persistent=False)
        self.layernorm_embedding = nn.LayerNorm(d_model, eps=config.layer_norm_eps) if config.layer_norm_emb else None
        self.layers = nn.ModuleList([self.layer_class(config, layer_idx=i) for i in range(num_layers)])
        self.layer_norm = nn.LayerNorm(d_model, eps=config.layer_norm_eps) if config.pre_norm else None
        self.dropout = config.dropout
        self.gradient_checkpointing = False

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def embed(
        self,
        input_ids: torch.LongTensor | None,
        inputs_embeds: torch.Tensor | None,
        position_ids: torch.LongTensor | None,
        langs: torch.LongTensor | None,
        past_length: int = 0,
        carried: torch.LongTensor | None = None,
    ) -> tuple[torch.Tensor, torch.LongTensor | None]:
        """(hidden states (B, T, D), the language ids (B, T) they got: `langs`, else derived from the tags after the
        `carried` language (B,) of a decoder's cache; None when there are no language embeddings to add)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids and inputs_embeds.")
        if inputs_embeds is None:
            # A static cache's length is a tensor (no sync): only a fresh (int 0) cache means user-given ids.
            self._check_ids(input_ids, check_range=isinstance(past_length, int) and past_length == 0)
            inputs_embeds = self.embed_tokens(input_ids)  # (B, T, D)
            if self.embed_scale != 1.0:
                inputs_embeds = inputs_embeds * self.embed_scale
        batch, length, _ = inputs_embeds.shape
        if langs is not None:
            self._check_langs(langs, (batch, length), check_range=isinstance(past_length, int) and past_length == 0)
        if position_ids is None:
            position_ids = torch.arange(length, device=inputs_embeds.device) + past_length
        if isinstance(past_length, int) and past_length + length > self.config.max_position_embeddings and \
                position_ids.max() >= self.config.max_position_embeddings:  # (static caches: checked by the decoder)
            raise ValueError(
                f"Sequence of {past_length + length} tokens exceeds max_position_embeddings "
                f"({self.config.max_position_embeddings}): truncate the input (tokenizer truncation=True)."
            )
        hidden_states = inputs_embeds + self.embed_positions(position_ids)
        langs = self._languages(input_ids, inputs_embeds, langs, carried)
        if langs is not None:
            lang_emb = self.lang_embeddings(langs.clamp(min=0))  # (B, T, D)
            hidden_states = hidden_states + lang_emb * (langs >= 0).unsqueeze(-1).to(lang_emb.dtype)
        if self.layernorm_embedding is not None:
            hidden_states = self.layernorm_embedding(hidden_states)
        return apply_dropout(hidden_states, self.dropout, self.training), langs

    def _languages(self, input_ids, inputs_embeds, langs, carried) -> torch.LongTensor | None:
        """The language ids (B, T) to embed: `langs` when given, else derived from the tags (`derive_langs`), after
        the `carried` language (B,); None without language embeddings (or without tags to derive them from)."""
        if self.lang_embeddings is None:
            return None
        if langs is not None or self.lang_token_ids is None:
            return langs
        if carried is not None and carried.shape[0] != inputs_embeds.shape[0]:
            raise ValueError(
                f"The cache carries the language of {carried.shape[0]} rows but the decoder input has "
                f"{inputs_embeds.shape[0]}: resize a plain EncoderDecoderCache with model._reorder_cache, or decode "
                f"with the cache the model makes (XLMEncoderDecoderCache), whose batch methods move its language too."
            )
        tagged = input_ids if input_ids is not None else self._tags_in_embeds(inputs_embeds, carried)
        return derive_langs(tagged, self.lang_token_ids, carried)

    def _tags_in_embeds(self, inputs_embeds: torch.Tensor, carried: torch.LongTensor | None) -> torch.LongTensor:
        """Where `inputs_embeds` (given without `langs`) hold a language tag's embedding exactly (as
        `get_input_embeddings()(input_ids)` gives), that tag's id, else -1: the languages then follow from the tags
        as on the `input_ids` path. Embeddings holding no tag at all, with no language `carried` by a cache, cannot
        tell their language: an error, not a silent loss of the language embeddings."""
        tag_embeds = self.embed_tokens(self.lang_token_ids)  # (n_langs, D)
        if self.embed_scale != 1.0:
            tag_embeds = tag_embeds * self.embed_scale
        tags = torch.full(inputs_embeds.shape[:2], -1, dtype=torch.long, device=inputs_embeds.device)  # (B, T)
        for tag_id, tag_embed in zip(self.lang_token_ids, tag_embeds.to(inputs_embeds.dtype)):
            tags.masked_fill_((inputs_embeds == tag_embed).all(-1), tag_id)
        if carried is None and not torch.compiler.is_compiling() and bool((tags < 0).all()):
            raise ValueError(
                "inputs_embeds were given without langs, and they hold no language-tag embedding to take the languages "
                "from: pass langs= (a (batch, length) tensor of language ids from config.lang2id, -1 for none), or "
                "pass input_ids instead of inputs_embeds."
            )
        return tags

    def _check_ids(self, input_ids: torch.Tensor, check_range: bool = True) -> None:
        """Users' mistakes as clear errors. Shape and dtype checks are free; the range check costs one device sync, so
        the decoder skips it on cached generation steps (their ids come from the model itself)."""
        if not isinstance(input_ids, torch.Tensor):
            raise TypeError(f"input_ids must be a tensor of shape (batch, length), got {type(input_ids).__name__}: "
                            f"call the tokenizer with return_tensors='pt'.")
        if input_ids.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"input_ids must be an integer tensor, got {input_ids.dtype}.")
        if input_ids.dim() != 2 or 0 in input_ids.shape:
            raise ValueError(
                f"input_ids must have shape (batch, length) with batch and length >= 1, got {tuple(input_ids.shape)}: "
                f"add a batch dimension with input_ids[None], and skip the call when there is nothing to translate."
            )
        if check_range and not torch.compiler.is_compiling():
            low, high = torch.stack(torch.aminmax(input_ids)).tolist()  # one sync for both bounds
            if low < 0 or high >= self.embed_tokens.num_embeddings:
                raise ValueError(
                    f"input_ids contain {low if low < 0 else high}, outside the vocabulary "
                    f"[0, {self.embed_tokens.num_embeddings}): the tokenizer does not match this model."
                )

    def _check_langs(self, langs, shape: tuple[int, int], check_range: bool) -> None:
        """Language ids given by the caller: an integer (batch, length) tensor below n_langs (negative: no language).
        The range check costs a sync: first step only, as for the ids."""
        name = self.langs_argument
        if not isinstance(langs, torch.Tensor) or langs.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"{name} must be an integer tensor of shape (batch, length), got "
                            f"{getattr(langs, 'dtype', type(langs).__name__)}.")
        if tuple(langs.shape) != shape:
            raise ValueError(f"{name} has shape {tuple(langs.shape)} but the input is {shape} (batch, length): give one "
                             f"language id per token, or leave {name} out to derive it from the language tags.")
        if check_range and self.lang_embeddings is not None and not torch.compiler.is_compiling():
            high, n_langs = int(langs.max()), self.lang_embeddings.num_embeddings
            if high >= n_langs:
                raise ValueError(f"{name} contain {high}, but the model has {n_langs} languages (ids 0..{n_langs - 1}, "
                                 f"negative for none): use config.lang2id {self.config.lang2id}.")

    @staticmethod
    def _check_mask(attention_mask: torch.Tensor | None, hidden_states: torch.Tensor) -> None:
        if attention_mask is not None and attention_mask.dim() == 2 and attention_mask.shape != hidden_states.shape[:2]:
            raise ValueError(
                f"attention_mask has shape {tuple(attention_mask.shape)} but the input is "
                f"{tuple(hidden_states.shape[:2])} (batch, length): pass the mask the tokenizer returned with these ids."
            )

    def finish(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.layer_norm(hidden_states) if self.layer_norm is not None else hidden_states


class XLMEncoder(XLMStack):
    layer_class = XLMEncoderLayer
    _can_record_outputs = {"hidden_states": XLMEncoderLayer, "attentions": XLMSelfAttention}

    def __init__(self, config: XLMConfig, embed_tokens: nn.Embedding | None = None):
        super().__init__(config, embed_tokens, config.encoder_layers)
        self.post_init()

    @merge_with_config_defaults
    @capture_outputs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,  # (B, S)
        attention_mask: torch.Tensor | None = None,  # (B, S), 1 for real tokens
        langs: torch.LongTensor | None = None,  # (B, S) language ids, derived from tags when None
        position_ids: torch.LongTensor | None = None,  # (B, S); TLM restarts them on the second sentence
        inputs_embeds: torch.Tensor | None = None,
        causal: bool = False,  # XLM's CLM objective runs the encoder stack left-to-right
        **kwargs,
    ) -> BaseModelOutput:
        hidden_states, _ = self.embed(input_ids, inputs_embeds, position_ids, langs)
        self._check_mask(attention_mask, hidden_states)
        if causal:  # an explicit mask even without padding: our attention modules say is_causal=False
            attention_mask = create_causal_mask(
                config=self.config, inputs_embeds=hidden_states, attention_mask=attention_mask, cache=None,
                allow_is_causal_skip=False,
            )
        else:
            attention_mask = create_bidirectional_mask(
                config=self.config, inputs_embeds=hidden_states, attention_mask=attention_mask
            )
        for layer in self.layers:
            hidden_states = layer(hidden_states, attention_mask, **kwargs)
        return BaseModelOutput(last_hidden_state=self.finish(hidden_states))


class XLMDecoder(XLMStack):
    layer_class = XLMDecoderLayer
    langs_argument = "decoder_langs"
    _can_record_outputs = {
        "hidden_states": XLMDecoderLayer,
        "attentions": OutputRecorder(XLMSelfAttention, index=1),
        "cross_attentions": OutputRecorder(XLMCrossAttention, index=1),
    }

    def __init__(self, config: XLMConfig, embed_tokens: nn.Embedding | None = None):
        super().__init__(config, embed_tokens, config.decoder_layers)
        self.post_init()

    @merge_with_config_defaults
    @capture_outputs
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")  # transformers' own alias (until 5.40)
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,  # (B, T)
        attention_mask: torch.Tensor | None = None,  # (B, past+T)
        encoder_hidden_states: torch.Tensor | None = None,  # (B, S, D)
        encoder_attention_mask: torch.Tensor | None = None,  # (B, S)
        langs: torch.LongTensor | None = None,  # (B, T)
        cache: EncoderDecoderCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPastAndCrossAttentions:
        if encoder_hidden_states is None:
            raise ValueError("The decoder needs encoder_hidden_states (run the encoder first, or call XLMModel).")
        if use_cache and cache is None:
            cache = XLMEncoderDecoderCache(DynamicCache(config=self.config), DynamicCache(config=self.config))
        past_length = cache.get_seq_length() if cache is not None else 0
        if cache is not None:
            self._check_static_cache(cache)
        carried = self._carried_langs(cache, past_length) if langs is None else None  # (B,)
        hidden_states, langs = self.embed(input_ids, inputs_embeds, None, langs, past_length, carried)
        if hidden_states.shape[0] != encoder_hidden_states.shape[0]:
            raise ValueError(
                f"The decoder input has batch size {hidden_states.shape[0]} but the source has "
                f"{encoder_hidden_states.shape[0]}: give decoder_input_ids (or labels) with one row per source sentence."
            )
        if isinstance(past_length, int) and attention_mask is not None and attention_mask.dim() == 2 and \
                tuple(attention_mask.shape) != (hidden_states.shape[0], past_length + hidden_states.shape[1]):
            raise ValueError(
                f"decoder_attention_mask has shape {tuple(attention_mask.shape)} but the decoder input is "
                f"{(hidden_states.shape[0], past_length + hidden_states.shape[1])} (batch, length): pass the mask that "
                f"goes with decoder_input_ids."
            )
        if cache is not None and langs is not None:
            carry_langs(cache, langs)  # the next chunk's language before its first tag
        causal_mask = create_causal_mask(
            config=self.config,
            inputs_embeds=hidden_states,
            attention_mask=attention_mask,
            cache=cache.self_attention_cache if cache is not None else None,
        )
        encoder_attention_mask = create_bidirectional_mask(
            config=self.config,
            inputs_embeds=hidden_states,
            attention_mask=encoder_attention_mask,
            encoder_hidden_states=encoder_hidden_states,
        )
        for layer in self.layers:
            hidden_states = layer(
                hidden_states, causal_mask, encoder_hidden_states, encoder_attention_mask, cache=cache, **kwargs
            )
        return BaseModelOutputWithPastAndCrossAttentions(last_hidden_state=self.finish(hidden_states), cache=cache)

    @staticmethod
    def _carried_langs(cache: Cache | None, past_length) -> torch.LongTensor | None:
        """(B,) the language of the last position `cache` holds (-1: none), or None when it holds no position. A
        static cache's length is a tensor (no sync): there, a cache reset by hand (a plain EncoderDecoderCache keeps
        its carried language) counts as empty through `torch.where`."""
        carried = carried_langs(cache) if cache is not None else None
        if carried is None or isinstance(past_length, int) and past_length == 0:
            return None
        return carried if isinstance(past_length, int) else torch.where(past_length > 0, carried, -1)

    def _check_static_cache(self, cache: Cache) -> None:
        """A static cache's size bounds the positions (checked without a device sync); dynamic caches have none (and a
        fresh `DynamicCache()` has no layers to ask yet)."""
        if not cache.is_compileable:
            return
        size = cache.get_max_length()
        if size > self.config.max_position_embeddings:
            raise ValueError(
                f"The static cache holds {size} target positions but the model has max_position_embeddings "
                f"{self.config.max_position_embeddings}: lower max_new_tokens (or max_length / max_cache_len)."
            )


# ----------------------------------------------------------------------------------------------------------------------
# The bare encoder-decoder and the translation model


class XLMModel(XLMPreTrainedModel):
    """XLM encoder-decoder returning the decoder's last hidden states (`Seq2SeqModelOutput`)."""

    _remote_auto_map = {"AutoModel": "XLMModel", "AutoModelForSeq2SeqLM": "XLMForSeq2SeqLM"}

    def __init__(self, config: XLMConfig):
        super().__init__(config)
        # Tied the way transformers ties (BART's layout): encoder and decoder own an embedding module each, whose
        # weight `tie_weights` makes the very Parameter of `shared`. (Sharing one module object instead hides the
        # aliases from the loader: a checkpoint with the matrix under only one tied name left a weight on `meta`.)
        self.shared = nn.Embedding(config.vocab_size, config.d_model, config.pad_token_id)
        self._tied_weights_keys = {"encoder.embed_tokens.weight": "shared.weight"}
        if config.share_encoder_decoder_embeddings:
            self._tied_weights_keys["decoder.embed_tokens.weight"] = "shared.weight"
        self.encoder = XLMEncoder(config, nn.Embedding(config.vocab_size, config.d_model, config.pad_token_id))
        self.decoder = XLMDecoder(config, nn.Embedding(config.vocab_size, config.d_model, config.pad_token_id))
        self.post_init()

    def get_expanded_tied_weights_keys(self, all_submodels: bool = False) -> dict:
        """The encoder (and, with `share_encoder_decoder_embeddings`, the decoder) embeddings ARE `shared`: part of
        the architecture, tied whatever `tie_word_embeddings` says (that flag is about the output layer only)."""
        if all_submodels:
            return super().get_expanded_tied_weights_keys(all_submodels=True)
        return dict(self._tied_weights_keys)

    def get_input_embeddings(self):
        return self.shared

    def set_input_embeddings(self, value):
        self.shared = value
        self.encoder.embed_tokens = value
        if self.config.share_encoder_decoder_embeddings:
            self.decoder.embed_tokens = value

    def get_encoder(self):
        return self.encoder

    def get_decoder(self):
        return self.decoder

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")  # transformers' own alias (until 5.40)
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        langs: torch.LongTensor | None = None,
        decoder_langs: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        encoder_outputs: tuple | BaseModelOutput | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> Seq2SeqModelOutput:
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                input_ids=input_ids,
                attention_mask=attention_mask,
                langs=langs,
                position_ids=position_ids,
                inputs_embeds=inputs_embeds,
                **kwargs,
            )
        elif not isinstance(encoder_outputs, BaseModelOutput):
            encoder_outputs = BaseModelOutput(*encoder_outputs)
        decoder_outputs = self.decoder(
            input_ids=decoder_input_ids,
            attention_mask=decoder_attention_mask,
            encoder_hidden_states=encoder_outputs.last_hidden_state,
            encoder_attention_mask=attention_mask,
            langs=decoder_langs,
            cache=cache,
            inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        return Seq2SeqModelOutput(
            last_hidden_state=decoder_outputs.last_hidden_state,
            cache=decoder_outputs.cache,
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )


class XLMForSeq2SeqLM(XLMPreTrainedModel, XLMGenerationMixin):
    """XLM encoder-decoder with the output layer tied to the embeddings (XLM's `pred_layer`), for translation."""

    _remote_auto_map = XLMModel._remote_auto_map

    def __init__(self, config: XLMConfig):
        super().__init__(config)
        self.model = XLMModel(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=config.lm_head_bias)
        source = "model.shared.weight" if config.share_encoder_decoder_embeddings else "model.decoder.embed_tokens.weight"
        self._tied_weights_keys = {"lm_head.weight": source}
        self.post_init()
        # Translation defaults, saved to generation_config.json (a folder's own file overrides them on load). The
        # target language is forced per call (forced_bos_token_id), never stored globally.
        self.generation_config.num_beams = 4
        self.generation_config.max_new_tokens = min(256, config.max_position_embeddings - 1)
        forward = type(self).forward
        if "__signature__" not in vars(forward):
            # transformers inspects the forward of a registered (remote-code) model at every decoding step; inspect
            # returns a function's __signature__ as it is, so compute it once per class.
            forward.__signature__ = inspect.signature(forward)

    def get_encoder(self):
        return self.model.encoder

    def get_decoder(self):
        return self.model.decoder

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, new_embeddings):
        self.lm_head = new_embeddings

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")  # transformers' own alias (until 5.40)
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        langs: torch.LongTensor | None = None,
        decoder_langs: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        encoder_outputs: tuple | BaseModelOutput | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,  # (B, T), -100 where ignored
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        **kwargs: Unpack[TransformersKwargs],
    ) -> Seq2SeqLMOutput:
        if labels is not None:
            use_cache = False
            self._check_labels(labels, decoder_input_ids, input_ids if input_ids is not None else inputs_embeds)
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
        outputs = self.model(
            input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            langs=langs,
            decoder_langs=decoder_langs,
            position_ids=position_ids,
            encoder_outputs=encoder_outputs,
            cache=cache,
            inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state  # (B, T, D)
        if logits_to_keep:  # generation needs the last position only: skip the full-vocabulary projection elsewhere
            hidden_states = hidden_states[:, -logits_to_keep:]
        logits, loss = self._output_layer(hidden_states, labels)  # (B, T, V) or None when the loss is fused
        return Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            decoder_hidden_states=outputs.decoder_hidden_states,
            decoder_attentions=outputs.decoder_attentions,
            cross_attentions=outputs.cross_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
            encoder_attentions=outputs.encoder_attentions,
        )

    @staticmethod
    def _check_labels(labels, decoder_input_ids, source) -> None:
        if not isinstance(labels, torch.Tensor) or labels.dim() != 2:
            raise ValueError(f"labels must be a tensor of shape (batch, target length), got "
                             f"{tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__}.")
        if decoder_input_ids is not None and decoder_input_ids.shape != labels.shape:
            raise ValueError(f"labels have shape {tuple(labels.shape)} but decoder_input_ids {tuple(decoder_input_ids.shape)}: "
                             f"they must match (or leave decoder_input_ids out: they are derived from the labels).")
        if source is not None and source.shape[0] != labels.shape[0]:
            raise ValueError(f"labels have batch size {labels.shape[0]} but the source has {source.shape[0]}: one row "
                             f"of labels per source sentence.")

    def generate(self, *args, **kwargs):
        """`GenerationMixin.generate`, with the settings a user mistypes checked first (num_beams=0 was a
        ZeroDivisionError, forced_bos_token_id=999 an IndexError inside the logits processor)."""
        config = kwargs.get("generation_config") or self.generation_config
        for name in ("num_beams", "num_return_sequences", "max_new_tokens", "max_length"):
            value = kwargs.get(name, getattr(config, name, None))
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        for name in ("forced_bos_token_id", "forced_eos_token_id", "decoder_start_token_id"):
            value = kwargs.get(name, getattr(config, name, None))
            if isinstance(value, int) and not 0 <= value < self.config.vocab_size:
                raise ValueError(f"{name}={value} is outside the vocabulary [0, {self.config.vocab_size}): use a "
                                 f"token id of the tokenizer, e.g. tokenizer.lang_token_id('fr').")
        return super().generate(*args, **kwargs)

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)

    def prepare_inputs_for_generation(self, input_ids, next_sequence_length=None, cache=None, **kwargs):
        """Derive the decoder's languages from the whole prefix (its tags), then keep the positions being fed."""
        decoder_langs = kwargs.pop("decoder_langs", None)
        model_inputs = super().prepare_inputs_for_generation(
            input_ids, next_sequence_length=next_sequence_length, cache=cache, **kwargs
        )
        decoder = self.model.decoder
        if decoder_langs is None and decoder.lang_token_ids is not None:
            decoder_langs = derive_langs(input_ids, decoder.lang_token_ids)
        if decoder_langs is not None:
            fed = model_inputs["decoder_input_ids"].shape[1]
            model_inputs["decoder_langs"] = decoder_langs[:, -fed:].contiguous()  # fixed strides: no recompiles
        return model_inputs

    @classmethod
    def from_pretrained_lm(cls, lm, **config_overrides) -> "XLMForSeq2SeqLM":
        """A translation model whose encoder AND decoder start from one pretrained cross-lingual LM (XLM's
        `--reload_model 'mlm.pth,mlm.pth'`).

        `lm` is an `XLMForPreTraining` or a folder holding one. The decoder gets the LM's layers as its self-attention
        and feed-forward sub-layers (and its embeddings, positions, language embeddings); cross-attention
        (`encoder_attn`, `encoder_attn_layer_norm`) starts fresh, as in the original. `config_overrides` change
        non-architectural fields (dropout, ...). The report of what was copied and what was initialised is logged
        and kept in `model.lm_init_report` (`{"copied": [...], "initialised": [...]}`).
        """
        if not isinstance(lm, XLMForPreTraining):
            lm = XLMForPreTraining.from_pretrained(lm)
        fields = lm.config.to_dict()
        fields.update(
            decoder_layers=lm.config.encoder_layers,
            decoder_attention_heads=lm.config.encoder_attention_heads,
            decoder_ffn_dim=lm.config.encoder_ffn_dim,
            **config_overrides,
        )
        for key in ("architectures", "auto_map", "model_type", "transformers_version", "_name_or_path", "use_cache"):
            fields.pop(key, None)
        model = cls(XLMConfig(**fields))
        lm_state = lm.state_dict()
        target = model.state_dict()
        copied = {}
        for name, tensor in lm_state.items():
            if name.startswith("encoder."):
                for stack in ("encoder", "decoder"):
                    copied[f"model.{stack}.{name[len('encoder.'):]}"] = tensor
            elif name == "shared.weight":
                copied["model.shared.weight"] = tensor
            elif name == "lm_head.bias" and model.lm_head.bias is not None:
                copied["lm_head.bias"] = tensor
        unknown = sorted(k for k in copied if k not in target)
        assert not unknown, f"pretrained LM weights without a place in the translation model: {unknown}"
        for name, tensor in copied.items():
            if target[name].shape != tensor.shape:
                raise ValueError(f"Shape mismatch for {name}: LM {tuple(tensor.shape)} vs model {tuple(target[name].shape)}.")
        model.load_state_dict(copied, strict=False)
        model.tie_weights()
        tied = set(model.all_tied_weights_keys)
        initialised = sorted(k for k in target if k not in copied and k not in tied and k not in _non_persistent(model))
        model.lm_init_report = {"copied": sorted(copied), "initialised": initialised}
        logger.info(
            f"Initialised from the pretrained LM: {len(copied)} tensors copied into encoder and decoder; "
            f"{len(initialised)} start fresh: {', '.join(sorted({k.split('.layers.')[-1].split('.', 1)[-1] for k in initialised}))}"
        )
        return model


def _copy_remote_code(save_directory) -> None:
    """Copy the files of `REMOTE_CODE_FILES` that transformers did not (it copies only the saved classes' files and
    their imports) from this file's folder: the package, or the modules cache of a remote-code model."""
    import shutil
    from pathlib import Path

    here, folder = Path(__file__).resolve().parent, Path(save_directory)
    for name in REMOTE_CODE_FILES:
        if not (folder / name).is_file() and (here / name).is_file():
            shutil.copyfile(here / name, folder / name)


def _describe_weights(name_or_path, subfolder: str | None) -> str:
    """The unreadable weight file of a local model folder (each `.safetensors` file is opened to find it), or a
    description of the weights when the folder is not local."""
    from pathlib import Path

    from safetensors import safe_open

    folder = Path(name_or_path, subfolder or "")
    for path in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
        try:
            with safe_open(str(path), framework="pt") as f:
                for key in f.keys():
                    f.get_slice(key)
        except Exception:
            return str(path)
    return f"a .safetensors file of {folder}"


def _non_persistent(model: nn.Module) -> set[str]:
    return {name for name, _ in model.named_non_persistent_buffers()}


class XLMForPreTraining(XLMPreTrainedModel):
    """The XLM encoder with its LM head tied to the embeddings: MLM, TLM (`langs` + restarted `position_ids`) and
    CLM (`causal=True`). Shares `XLMConfig` with the translation model (its decoder fields are unused), and is
    what `XLMForSeq2SeqLM.from_pretrained_lm` loads into both encoder and decoder."""

    _remote_auto_map = {"AutoModelForMaskedLM": "XLMForPreTraining"}

    def __init__(self, config: XLMConfig):
        super().__init__(config)
        self.shared = nn.Embedding(config.vocab_size, config.d_model, config.pad_token_id)
        # The encoder's embedding module is its own, its weight tied to `shared` (see XLMModel).
        self.encoder = XLMEncoder(config, nn.Embedding(config.vocab_size, config.d_model, config.pad_token_id))
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=config.lm_head_bias)
        self._tied_weights_keys = {"encoder.embed_tokens.weight": "shared.weight", "lm_head.weight": "shared.weight"}
        self.post_init()

    def get_expanded_tied_weights_keys(self, all_submodels: bool = False) -> dict:
        """The encoder's embedding is `shared` always; the output layer only with `tie_word_embeddings`."""
        if all_submodels:
            return super().get_expanded_tied_weights_keys(all_submodels=True)
        keys = {"encoder.embed_tokens.weight": "shared.weight"}
        if self.config.tie_word_embeddings:
            keys["lm_head.weight"] = "shared.weight"
        return keys

    def get_input_embeddings(self):
        return self.shared

    def set_input_embeddings(self, value):
        self.shared = value
        self.encoder.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, new_embeddings):
        self.lm_head = new_embeddings

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,  # (B, T)
        attention_mask: torch.Tensor | None = None,  # (B, T)
        langs: torch.LongTensor | None = None,  # (B, T) per-token language ids (TLM: one per side)
        position_ids: torch.LongTensor | None = None,  # (B, T) (TLM: restart on the second side)
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,  # (B, T): the token to predict at each position, -100 elsewhere
        causal: bool = False,
        **kwargs,
    ) -> MaskedLMOutput:
        outputs = self.encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            langs=langs,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            causal=causal,
            **kwargs,
        )
        logits, loss = self._output_layer(outputs.last_hidden_state, labels)  # (B, T, V) or None when fused
        return MaskedLMOutput(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


__all__ = ["XLMPreTrainedModel", "XLMModel", "XLMForSeq2SeqLM", "XLMForPreTraining", "XLMEncoder", "XLMDecoder"]
