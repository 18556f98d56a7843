"""What decides a training run and what it produced: the types every training mode shares.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from core.pipeline.backbones import BACKBONES
from core.training.heads import Head, head_kinds

CLASS_WEIGHTINGS = ("balanced", "none")


MODES = ("head", "finetune")


HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")


EpochCallback = Callable[[int, dict[str, float]], None]


StopCheck = Callable[[], bool]


@dataclass
class TrainConfig:
    """Everything that decides a training run; saved with the run so it can be reproduced and explained."""

    head: str = "softmax"
    epochs: int = 100
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0
    class_weighting: str = "balanced"  # "balanced": every person counts equally however many photos they have
    early_stopping_patience: int = 10  # epochs without a better monitored loss before stopping; 0 disables
    mode: str = "head"  # "head": a head on fixed embeddings; "finetune": the backbone's own network end to end on crops
    # Fine-tuning only (see core.training.finetune): epochs with the pretrained network frozen, how many groups of
    # layers (VGG-Face: conv blocks; dlib: residual stages) to unfreeze below the network's top group afterwards,
    # the learning rate then (None: learning_rate / 100), and whether to augment the crops.
    warmup_epochs: int = 2
    finetune_blocks: int = 1
    finetune_learning_rate: float | None = None
    augment: bool = True
    # Context filled by the caller, stored for provenance and cache checks; not used by training itself.
    dataset: str = ""
    dataset_fingerprint: str = ""
    detector: str = ""
    align: bool = True
    backbone: str = ""
    weights_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise a ValueError naming the first setting that cannot work."""
        if self.head not in head_kinds():
            raise ValueError(f"unknown head '{self.head}'; choose one of: {', '.join(head_kinds())}")
        if self.mode not in MODES:
            raise ValueError(f"unknown mode '{self.mode}'; choose one of: {', '.join(MODES)}")
        if self.class_weighting not in CLASS_WEIGHTINGS:
            raise ValueError(f"class_weighting must be one of {', '.join(CLASS_WEIGHTINGS)}; got '{self.class_weighting}'.")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be at least 1; got {self.epochs} and {self.batch_size}.")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive; got {self.learning_rate}.")
        if self.early_stopping_patience < 0:
            raise ValueError(f"early_stopping_patience cannot be negative; got {self.early_stopping_patience}.")
        if self.warmup_epochs < 0 or self.finetune_blocks < 0:
            raise ValueError(f"warmup_epochs and finetune_blocks cannot be negative; got {self.warmup_epochs} and "
                             f"{self.finetune_blocks}.")
        if self.finetune_learning_rate is not None and not self.finetune_learning_rate > 0:
            raise ValueError(f"finetune_learning_rate must be positive; got {self.finetune_learning_rate}.")
        if self.mode == "finetune" and self.backbone:  # known once the caller has chosen the backbone
            self.check_backbone(BACKBONES.entry(self.backbone).factory)

    def check_backbone(self, backbone: Any) -> None:
        """In fine-tune mode, refuse a backbone (class or instance) that cannot be fine-tuned or has fewer groups of
        layers than ``finetune_blocks`` asks for."""
        if self.mode != "finetune":
            return
        if not backbone.fine_tunable:
            raise ValueError(f"the {backbone.name} backbone cannot be fine-tuned; use mode 'head'.")
        below = len(backbone.finetune_blocks) - 1
        if self.finetune_blocks > below:
            raise ValueError(f"finetune_blocks must be between 0 and {below} for {backbone.name} (its groups of "
                             f"layers below the top one); got {self.finetune_blocks}.")

    @property
    def finetune_rate(self) -> float:
        """The learning rate once the pretrained layers are unfrozen: lower, so they move gently."""
        return self.finetune_learning_rate if self.finetune_learning_rate is not None else self.learning_rate / 100

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild a saved configuration; keys this version does not know are kept in ``extra``."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["extra"] = {**dict(values.get("extra") or {}), **{k: v for k, v in data.items() if k not in known}}
        return cls(**values)


@dataclass
class TrainResult:
    """A trained head and everything the page and the run store show about how it got there."""

    head: Head
    labels: list[str]  # class index → person name (sorted)
    history: dict[str, list[float]]  # per epoch: loss, accuracy and, with a validation set, val_loss, val_accuracy
    metrics: dict[str, Any] | None  # on the validation split; None without one
    seconds: float
    epochs_run: int
    stopped: bool  # the user stopped it; the head holds the best weights seen so far
    best_epoch: int  # 0-based epoch whose weights the head holds
    warnings: list[str] = field(default_factory=list)
