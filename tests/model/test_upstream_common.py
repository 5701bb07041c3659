"""transformers' own `ModelTesterMixin` and `ConfigTester` against `XLMModel` and `XLMForSeq2SeqLM`.

The mixins come from the sdist of the installed transformers, fetched at test time (`tests/upstream_mixins.py`);
the module skips, with the reason, when that is impossible. The tester follows transformers' Marian/BART testers
(tiny dims, random ids ending in </s>, masks from the padding), in two variants: one language, and two languages
whose sources and targets start with a language tag (language embeddings on).

Run: `PYTHONPATH=. python -m pytest -q -m upstream tests/model/test_upstream_common.py`

Skips. This file skips nothing itself (Marian's own test file skips four tests); two mixins are not run:
- GenerationTesterMixin: the sdist has no `tests/generation/test_utils.py` (a stand-in satisfies
  `test_generation_tester_mixin_inheritance`); generation is covered by tests/model/test_model.py, tests/model/test_pipeline.py.
- ExportTesterMixin (torch.export): the sdist has no `tests/exporters/` (stand-in, as above).
Upstream's own checks skip these (transformers 5.25.0; each once per variant):
- needs an accelerator / CUDA / MPS / several devices: test_can_load_with_device_context_manager,
  test_can_load_with_global_device_set, test_cpu_offload, test_disk_offload_bin, test_disk_offload_safetensors,
  test_flex_attention_with_grads, test_kernels_can_load_without_crashing, test_kernels_can_run_without_crashing_inference,
  test_kernels_can_run_without_crashing_training, test_sdpa_can_compile_dynamic, test_sdpa_can_dispatch_on_flash,
  test_flash_attn_kernels_inference_equivalence, test_flash_attn_kernels_mps_inference_equivalence,
  test_model_parallelism (CPU loading with device_map and disk offload: tests/model/test_device_map.py);
- needs flash-attention 2/3/4 (a GPU): the 14 test_flash_attn_{2,3,4}_* tests;
- needs DeepSpeed: the 4 test_resize_*_with_deepspeed* tests;
- slow (RUN_SLOW=1) and an accelerator: test_torch_compile_for_training;
- RoPE: test_model_rope_scaling_from_config, test_model_rope_scaling_frequencies, test_model_rope_with_partial_rotation,
  test_vision_axial_rope;
- MoE / grouped_mm: test_moe_models_record_router_logits, test_output_router_logits_from_config,
  test_eager_matches_batched_and_grouped_inference;
- composite (multi-config) models: test_attn_implementation_composite_models, test_sdpa_can_dispatch_composite_models,
  test_can_set_attention_dynamically_composite_model, test_internal_model_config_and_subconfig_are_same;
- decoder-only: test_causal_lm_loss_honors_shift_labels;
- no `_keep_in_fp32_modules`: test_keep_in_fp32_modules, test_keep_in_fp32_modules_exist,
  test_keep_in_fp32_modules_strict_also_hardcode_fp32;
- no TP plan: test_tp_plan_matches_params; no sliding window: test_sliding_window_mask;
- no checkpoint-key conversion mapping (our keys need none): test_reverse_loading_mapping,
  test_can_load_from_already_mapped_keys;
- position embeddings not resizable (`test_resize_position_embeddings` False, as for Marian/BART):
  test_resize_position_vector_embeddings;
- seq2seq outputs name hidden states `encoder_/decoder_hidden_states` (as BART's): test_can_capture_specific_layers_hidden_states.
"""

import tempfile
import unittest
import unittest.mock
import warnings

import pytest
import torch

import xlm_hf  # noqa: F401  (registers the Auto classes)
from xlm_hf import XLMConfig, XLMForSeq2SeqLM, XLMModel

import upstream_mixins  # tests/upstream_mixins.py


pytestmark = pytest.mark.upstream

try:
    _modeling, _configuration = upstream_mixins.load()
except upstream_mixins.Unavailable as err:
    pytest.skip(f"transformers' common tests are unavailable: {err}", allow_module_level=True)

ModelTesterMixin = _modeling.ModelTesterMixin
ids_tensor = _modeling.ids_tensor
ConfigTester = _configuration.ConfigTester

PAD, BOS, EOS, UNK, MASK = 2, 0, 1, 3, 4


class XLMModelTester:
    """Marian's tester, with XLM's special ids (<s>=0, </s>=1, <pad>=2) and, with `n_langs=2`, language tags."""

    def __init__(self, parent, n_langs=1, batch_size=13, seq_length=7, is_training=True, vocab_size=99,
                 hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=4,
                 max_position_embeddings=20):
        self.parent = parent
        self.n_langs = n_langs
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.is_training = is_training
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.max_position_embeddings = max_position_embeddings
        self.tags = [5, 6][:n_langs] if n_langs > 1 else None
        # the mixin reads these
        self.encoder_seq_length = seq_length
        self.decoder_seq_length = seq_length
        self.key_length = seq_length

    def get_config(self):
        languages = {} if self.n_langs == 1 else {"lang2id": {"en": 0, "fr": 1}, "lang_token_ids": self.tags}
        return XLMConfig(
            vocab_size=self.vocab_size,
            d_model=self.hidden_size,
            encoder_layers=self.num_hidden_layers,
            decoder_layers=self.num_hidden_layers,
            encoder_attention_heads=self.num_attention_heads,
            decoder_attention_heads=self.num_attention_heads,
            encoder_ffn_dim=self.intermediate_size,
            decoder_ffn_dim=self.intermediate_size,
            max_position_embeddings=self.max_position_embeddings,
            dropout=0.1,
            attention_dropout=0.1,
            n_langs=self.n_langs,
            pad_token_id=PAD,
            bos_token_id=BOS,
            eos_token_id=EOS,
            decoder_start_token_id=EOS,
            **languages,
        )

    def prepare_config_and_inputs(self):
        input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size).clamp(MASK + 3)
        input_ids[:, -1] = EOS
        decoder_input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size).clamp(MASK + 3)
        if self.tags:
            input_ids[:, 0] = self.tags[0]
            decoder_input_ids[:, 0] = self.tags[1]
        config = self.get_config()
        inputs_dict = {
            "input_ids": input_ids,
            "decoder_input_ids": decoder_input_ids,
            "attention_mask": input_ids.ne(PAD),
            "decoder_attention_mask": decoder_input_ids.ne(PAD),
        }
        return config, inputs_dict

    def prepare_config_and_inputs_for_common(self):
        return self.prepare_config_and_inputs()

    # Marian's model-specific checks, adapted: our decoder always attends to an encoder output.

    def create_and_check_decoder_model_past_large_inputs(self, config, inputs_dict, cache_name):
        model = XLMModel(config).eval()
        decoder = model.get_decoder()
        encoder_states = model.get_encoder()(inputs_dict["input_ids"]).last_hidden_state
        input_ids = inputs_dict["decoder_input_ids"]
        attention_mask = inputs_dict["decoder_attention_mask"].long()
        outputs = decoder(input_ids, attention_mask=attention_mask, encoder_hidden_states=encoder_states,
                          use_cache=True)
        next_tokens = ids_tensor((self.batch_size, 3), config.vocab_size).clamp(MASK + 3)  # (no tags)
        next_attention_mask = torch.cat([attention_mask, ids_tensor((self.batch_size, 3), 2)], dim=-1)
        next_input_ids = torch.cat([input_ids, next_tokens], dim=-1)
        langs = None
        if self.tags:  # the tag is in the prefix only: the cached step gets the prefix's languages (as generate does)
            from xlm_hf.model.modeling_xlm_hf import derive_langs

            langs = derive_langs(next_input_ids, torch.tensor(self.tags))[:, -3:]
        no_past = decoder(next_input_ids, attention_mask=next_attention_mask,
                          encoder_hidden_states=encoder_states).last_hidden_state
        with_past = decoder(next_tokens, attention_mask=next_attention_mask, encoder_hidden_states=encoder_states,
                            langs=langs, **{cache_name: outputs.cache}).last_hidden_state
        self.parent.assertEqual(with_past.shape[1], next_tokens.shape[1])
        torch.testing.assert_close(with_past, no_past[:, -3:], atol=1e-4, rtol=1e-4)

    def check_encoder_decoder_model_standalone(self, config, inputs_dict):
        import tempfile

        from xlm_hf.model.modeling_xlm_hf import XLMDecoder, XLMEncoder

        model = XLMModel(config).eval()
        outputs = model(**inputs_dict)
        with tempfile.TemporaryDirectory() as folder:
            model.get_encoder().save_pretrained(folder)
            encoder = XLMEncoder.from_pretrained(folder).eval()
        encoder_states = encoder(inputs_dict["input_ids"], attention_mask=inputs_dict["attention_mask"])[0]
        torch.testing.assert_close(encoder_states, outputs.encoder_last_hidden_state, atol=1e-5, rtol=1e-5)
        with tempfile.TemporaryDirectory() as folder:
            model.get_decoder().save_pretrained(folder)
            decoder = XLMDecoder.from_pretrained(folder).eval()
        decoder_states = decoder(input_ids=inputs_dict["decoder_input_ids"],
                                 attention_mask=inputs_dict["decoder_attention_mask"],
                                 encoder_hidden_states=outputs.encoder_last_hidden_state,
                                 encoder_attention_mask=inputs_dict["attention_mask"])[0]
        torch.testing.assert_close(decoder_states, outputs.last_hidden_state, atol=1e-5, rtol=1e-5)


class _XLMCommonTests(ModelTesterMixin):
    all_model_classes = (XLMModel, XLMForSeq2SeqLM)
    is_encoder_decoder = True
    # Upstream runs this only for models added since 2023 or fixed since (it finds the year in a copyright line):
    # our `_init_weights` must initialise everything, so it applies.
    test_can_init_all_missing_weights_before_2023 = True
    n_langs = 1

    def setUp(self):
        self.model_tester = XLMModelTester(self, n_langs=self.n_langs)
        self.config_tester = ConfigTester(self, config_class=XLMConfig, d_model=16)
        # The mixin picks labels and the seq2seq-loss checks by class *name*, from transformers' built-in mappings
        # (`MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES`, ...). A plugin is in none of them, so its tests would run
        # without labels (`test_training`: "loss is None") or skip: list our classes there, as a built-in model is,
        # for the duration of each test.
        for mapping, name in ((_modeling.MODEL_MAPPING_NAMES, "XLMModel"),
                              (_modeling.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES, "XLMForSeq2SeqLM")):
            patcher = unittest.mock.patch.dict(mapping, {XLMConfig.model_type: name})
            patcher.start()
            self.addCleanup(patcher.stop)

    def test_config(self):
        self.config_tester.run_common_tests()

    # Marian's own model-specific tests

    def test_save_load_strict(self):
        config, _ = self.model_tester.prepare_config_and_inputs()
        for model_class in self.all_model_classes:
            with tempfile.TemporaryDirectory() as folder:
                model_class(config).save_pretrained(folder)
                _, info = model_class.from_pretrained(folder, output_loading_info=True)
            self.assertEqual(set(info["missing_keys"]), set())

    def test_decoder_model_past_with_large_inputs(self):
        for cache_name in ("cache", "past_key_values"):  # the argument, and its deprecated alias
            with self.subTest(cache_name), warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                self.model_tester.create_and_check_decoder_model_past_large_inputs(
                    *self.model_tester.prepare_config_and_inputs(), cache_name=cache_name)

    def test_encoder_decoder_model_standalone(self):
        self.model_tester.check_encoder_decoder_model_standalone(*self.model_tester.prepare_config_and_inputs())

    def test_share_encoder_decoder_embeddings(self):
        config, _ = self.model_tester.prepare_config_and_inputs()
        for model_class in self.all_model_classes:
            model = model_class(config)
            self.assertIs(model.get_encoder().embed_tokens.weight, model.get_decoder().embed_tokens.weight)
        config.share_encoder_decoder_embeddings = False
        for model_class in self.all_model_classes:
            model = model_class(config)
            self.assertIsNot(model.get_encoder().embed_tokens.weight, model.get_decoder().embed_tokens.weight)


class XLMOneLanguageTest(_XLMCommonTests, upstream_mixins.generation_stand_in(), unittest.TestCase):
    n_langs = 1


class XLMTwoLanguagesTest(_XLMCommonTests, upstream_mixins.generation_stand_in(), unittest.TestCase):
    n_langs = 2
