"""Moved to `xlm_hf.serving.app` (issue 33)."""

from ._moved import moved

moved(__name__, "xlm_hf.serving.app")
