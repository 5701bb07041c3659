"""`make demo` (first stage): build the `small` preset through the Auto classes, save it, reload it, generate.

The full job (tokenizer, training, evaluation, translation) replaces this once those pieces land.
"""

import tempfile

import torch
from transformers import AutoConfig, AutoModelForSeq2SeqLM

import xlm_hf


def main() -> None:
    torch.manual_seed(0)
    config = xlm_hf.config_from_preset(
        "small", n_langs=2, lang2id={"en": 0, "fr": 1}, lang_token_ids=[5, 6], vocab_size=8000
    )
    model = AutoModelForSeq2SeqLM.from_config(config).eval()
    print(f"built {type(model).__name__}: {model.num_parameters() / 1e6:.1f}M parameters")
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        reloaded = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
        print(f"saved and reloaded from {folder}: config {AutoConfig.from_pretrained(folder).model_type}")
        src = torch.tensor([[5, 100, 200, 300, 1]])
        a = model.generate(input_ids=src, max_new_tokens=10, forced_bos_token_id=6, num_beams=1, do_sample=False)
        b = reloaded.generate(input_ids=src, max_new_tokens=10, forced_bos_token_id=6, num_beams=1, do_sample=False)
        print("generated (untrained) ids:", a[0].tolist())
        assert torch.equal(a, b), "reloaded model generates differently"
        print("reloaded model generates the same tokens: ok")


if __name__ == "__main__":
    main()
