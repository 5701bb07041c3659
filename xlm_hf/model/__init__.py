"""The model as a saved folder carries it: exactly the files of `REMOTE_CODE_FILES`, so `trust_remote_code=True` works
without xlm-hf installed. They import only torch, transformers and each other (single-dot imports)."""
