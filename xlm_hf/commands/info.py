"""`xlm-hf info MODEL_DIR`: what a saved model is: its config summary, parameter count and languages.
`xlm-hf info` alone: what this machine runs fast (`xlm_hf.model.hardware`)."""

from __future__ import annotations

import json
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("info", help="summarise a saved model folder; without one, this machine")
    parser.add_argument("model_dir", nargs="?",
                        help="folder written by save_pretrained; leave out to see what this machine runs fast (native "
                        "precisions, what --precision auto picks, the CPU kernels)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(func=run)


def summarise(model_dir: str | Path) -> dict:
    """Config summary and parameter count of a saved model, read from its files without building the model."""
    from safetensors import safe_open

    from ..model import modeling_xlm_hf
    from .. import folders
    from ..cli import CLIError

    folder = Path(model_dir)
    if not (folder / "config.json").is_file():
        raise CLIError(f"{folder} has no config.json: pass a folder written by save_pretrained.")
    config_dict = folders.read_config(folder)
    folders.check_model_type(folder, config_dict)
    config = folders.load_config(folder, config_dict)
    n_params = 0
    weight_files = sorted(folder.glob("*.safetensors"))
    if not weight_files:
        raise CLIError(f"{folder} has no *.safetensors weights (model.safetensors): save the model with "
                       f"save_pretrained, or copy its weights into the folder.")
    for path in weight_files:
        try:
            with safe_open(str(path), framework="pt") as f:
                for key in f.keys():
                    n_params += _numel(f.get_slice(key).get_shape())
        except Exception as err:  # safetensors raises its own error types
            raise CLIError(f"{path} is not a readable safetensors file ({err}): the file is truncated or corrupt; re-save or re-download it.")
    # the numbers shown must be the weights' own: a config that contradicts them is an error, not a summary
    architecture = (config.architectures or ["XLMForSeq2SeqLM"])[0]
    folders.check_weights_match(folder, config, getattr(modeling_xlm_hf, architecture, modeling_xlm_hf.XLMForSeq2SeqLM))
    return {
        "model_dir": str(folder),
        "model_type": config.model_type,
        "architectures": config.architectures,
        "d_model": config.d_model,
        "layers": f"{config.encoder_layers}+{config.decoder_layers}",
        "heads": config.encoder_attention_heads,
        "ffn_dim": config.encoder_ffn_dim,
        "vocab_size": config.vocab_size,
        "max_positions": config.max_position_embeddings,
        "norm": "pre-norm" if config.pre_norm else "post-norm (XLM)",
        "positions": "sinusoidal" if config.sinusoidal_embeddings else "learned",
        "activation": config.activation_function,
        "languages": config.languages,
        "language_embeddings": bool(config.n_langs > 1 and config.use_lang_emb),
        "parameters": n_params,
        "weights": [p.name for p in weight_files],
    }


def _numel(shape) -> int:
    n = 1
    for dim in shape:
        n *= dim
    return n


def run(args) -> int:
    if args.model_dir is None:
        from ..model import hardware

        if args.json:
            print(json.dumps(hardware.report(), indent=2))
            return 0
        info = {f"{device}: {key}": value for device, entries in hardware.report().items()
                for key, value in entries.items()}
    else:
        info = summarise(args.model_dir)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    width = max(len(k) for k in info)
    for key, value in info.items():
        if key == "parameters":
            value = f"{value:,} ({value / 1e6:.1f}M, tied weights counted once)"
        elif isinstance(value, list):
            value = ", ".join(map(str, value)) or "-"
        print(f"{key:<{width}}  {value}")
    return 0
