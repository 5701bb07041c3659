"""Subcommands of the `xlm-hf` CLI: one module each, discovered by `xlm_hf.cli`."""
