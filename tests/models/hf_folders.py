"""Tiny random ``transformers`` folders written with ``save_pretrained`` (nothing downloads), shared by the tests."""

from __future__ import annotations

from pathlib import Path

import torch

from audiobench.data.synth_events import CLASS_NAMES

TINY_AST = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
            "patch_size": 8, "frequency_stride": 8, "time_stride": 6, "max_length": 40, "num_mel_bins": 32}


def ast_folder(folder: Path, labels: list[str] | None = None, seed: int = 0, **config: object) -> Path:
    """A random AST classifier for ``labels`` (default: synth's first three classes) and its feature
    extractor (16 kHz, the config's mel bands and frames), saved in ``folder``."""
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    labels = labels or list(CLASS_NAMES[:3])
    cfg = ASTConfig(**{**TINY_AST, **config}, num_labels=len(labels), id2label=dict(enumerate(labels)),
                    label2id={n: i for i, n in enumerate(labels)})
    torch.manual_seed(seed)
    model = ASTForAudioClassification(cfg)
    with torch.no_grad():  # AST initialises these to zero; random values make the positions matter
        emb = model.audio_spectrogram_transformer.embeddings
        for p in (emb.cls_token, emb.distillation_token, emb.position_embeddings):
            p.normal_(0, 0.5)
    model.save_pretrained(folder)
    ASTFeatureExtractor(num_mel_bins=cfg.num_mel_bins, max_length=cfg.max_length, mean=-3.0, std=2.5).save_pretrained(folder)
    return folder


def wav2vec2_folder(folder: Path, labels: list[str] | None = None, kind: str = "wav2vec2", seed: int = 0) -> Path:
    """A tiny random waveform sequence classifier (``kind``: wav2vec2 or hubert) for ``labels`` (default:
    synth's first three classes) and its feature extractor (16 kHz, normalising), saved in ``folder``."""
    import transformers as tf

    labels = labels or list(CLASS_NAMES[:3])
    config_cls, model_cls = {"wav2vec2": (tf.Wav2Vec2Config, tf.Wav2Vec2ForSequenceClassification),
                             "hubert": (tf.HubertConfig, tf.HubertForSequenceClassification)}[kind]
    cfg = config_cls(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                     conv_dim=(8, 8), conv_kernel=(10, 3), conv_stride=(5, 2), num_conv_pos_embeddings=4,
                     num_conv_pos_embedding_groups=2, classifier_proj_size=8, num_labels=len(labels),
                     id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    torch.manual_seed(seed)
    model_cls(cfg).save_pretrained(folder)
    tf.Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(folder)
    return folder
