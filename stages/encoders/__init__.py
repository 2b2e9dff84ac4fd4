"""Modality encoders used by ``climd encode``: tabular standardisation, image CNNs, text transformers."""
