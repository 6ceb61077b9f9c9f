"""The zero-shot track: captions for training audio-text models, a small text encoder, analyses."""
