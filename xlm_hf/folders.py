"""Moved to `xlm_hf.serving.folders` (issue 33)."""

from ._moved import moved

moved(__name__, "xlm_hf.serving.folders")
