"""The Train page's settings form: the numbers that decide a run, with each backbone's fine-tuning defaults."""

from __future__ import annotations

import streamlit as st

from core.pipeline.backbones import BACKBONES
from core.training.config import CLASS_WEIGHTINGS, TrainConfig

LEARNING_RATES = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


def _rate(label: str, value: float, key: str, help: str | None) -> float:
    return float(st.select_slider(label, LEARNING_RATES, value=min(LEARNING_RATES, key=lambda r: abs(r - value)),
                                  key=key, format_func=lambda v: f"{v:g}", help=help))


def hyper_parameters(mode: str, head: str, backbone_name: str) -> TrainConfig:
    """The training settings. Fine-tuning starts from the backbone's declared, measured defaults (its widgets are keyed
    per backbone, so switching backbones shows the other one's), and offers as many layer groups as it has."""
    finetune = mode == "finetune"
    declared = BACKBONES.entry(backbone_name).factory
    defaults = TrainConfig(**dict(declared.finetune_defaults)) if finetune else TrainConfig()
    config = TrainConfig(head=head, mode=mode)
    if head == "centroid" and not finetune:
        st.caption("The nearest-centroid head has no epochs: it averages each person's embeddings in one pass.")
        return config
    suffix = f"finetune_{backbone_name}" if finetune else mode
    columns = st.columns(3)
    config.epochs = int(columns[0].number_input("Epochs (at most)", 1, 5000, defaults.epochs, key=f"tr_epochs_{suffix}"))
    config.batch_size = int(columns[1].number_input("Batch size", 1, 1024, defaults.batch_size, key=f"tr_batch_{suffix}"))
    with columns[2]:
        config.learning_rate = _rate("Learning rate", defaults.learning_rate, f"tr_lr_{suffix}",
                                     "Fine-tuning: the warm-up's rate, while only the new softmax learns." if finetune
                                     else None)
    columns = st.columns(3)
    config.seed = int(columns[0].number_input("Seed", 0, 2**31 - 1, defaults.seed, key="tr_seed",
                                              help="The same seed and settings give the same run."))
    config.class_weighting = columns[1].selectbox(
        "Class weighting", CLASS_WEIGHTINGS, key="tr_weighting",
        help="balanced: every person counts equally in the loss, however many photos they have.")
    config.early_stopping_patience = int(columns[2].number_input(
        "Early-stopping patience", 0, 1000, defaults.early_stopping_patience, key="tr_patience",
        help="Stop after this many epochs without a better validation loss (0: never stop early). "
             "The best epoch's weights are kept."))
    if finetune:
        columns = st.columns(4)
        config.warmup_epochs = int(columns[0].number_input("Warm-up epochs", 0, 100, defaults.warmup_epochs,
                                                           key=f"tr_warmup_{backbone_name}",
                                                           help="Only the new softmax learns."))
        config.finetune_blocks = int(columns[1].slider(
            "Layer groups to unfreeze", 0, len(declared.finetune_blocks) - 1, defaults.finetune_blocks,
            key=f"tr_blocks_{backbone_name}", help="Below the network's top layer group, which always trains: "
            "VGG-Face's conv blocks, dlib's residual levels."))
        with columns[2]:
            config.finetune_learning_rate = _rate("Fine-tune learning rate", defaults.finetune_rate,
                                                  f"tr_ftlr_{backbone_name}", "Once the network is unfrozen: lower, "
                                                  "so the pretrained layers move gently.")
        config.augment = columns[3].checkbox("Augment (mirror, rotate, shift, brightness)", value=defaults.augment,
                                             key="tr_augment")
    return config
