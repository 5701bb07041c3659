"""Text around the model: documents split into sentences and joined back (`documents`), gettext catalogs
(`gettext_catalogs`). Placeholders are protected by `xlm_hf.model.placeholders`, which a saved model carries."""
