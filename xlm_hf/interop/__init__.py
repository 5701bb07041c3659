"""Other formats and places: original XLM checkpoints (`convert`), CTranslate2 exports (`export_ctranslate2`), the
Hugging Face Hub (`hub`)."""
