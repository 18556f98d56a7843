"""The fine-tuned head: a backbone's face network retrained end to end, made by fine-tune mode (core.training.finetune).

Its input is aligned face crops instead of embeddings, so the run store, the Train page and
prediction treat both modes alike through the :class:`Head` interface; :meth:`FinetunedHead.embed`
gives the retrained network's embedding (the input of the new identity layer).

A run stores only what training changed: the weights of the layers trainable in the last phase and
of the identity layer (``finetuned_layers.npz``), plus ``finetuned.json`` naming the backbone, its
weights_id and the unfrozen groups. Loading rebuilds the backbone's pretrained network and
overwrites those layers. Runs saved before this format hold the whole model as ``model.keras``
and still load.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.pipeline.backbones import BACKBONES, Backbone
from core.registry import Entry
from core.training.heads import HEADS
from core.training.heads.base import KERAS_FILE, Head, load_keras_model

PREDICT_BATCH = 32
ORIGIN_FILE = "finetuned.json"
LAYERS_FILE = "finetuned_layers.npz"
IDENTITY = "identity"  # the new softmax over the people


@dataclass(frozen=True)
class Origin:
    """The pretrained network a fine-tuned head grew from, and which of its groups of layers training changed."""

    backbone: str
    weights_id: str
    groups: int  # how many groups the backbone declares (``Backbone.finetune_blocks``)
    unfrozen: tuple[int, ...] = ()  # indices of the groups trainable in the last phase (none after warm-up only)


def unfrozen_groups(groups: int, blocks: int) -> tuple[int, ...]:
    """The groups fine-tuning trains: always the top one, plus ``blocks`` more below it."""
    if not 0 <= blocks < groups:
        raise ValueError(f"this backbone has {groups - 1} group(s) of layers below its top one to unfreeze; "
                         f"finetune_blocks must be between 0 and {groups - 1}, got {blocks}.")
    return tuple(range(groups - 1 - blocks, groups))


def build_classifier(network: Any, n_classes: int, dropout: float, augmentation: Any = None) -> Any:
    """crops → [augmentation] → the backbone's network → dropout → a new softmax "identity" over ``n_classes``."""
    import keras

    size = int(network.input_shape[1])
    inputs = keras.Input((size, size, 3), name="crop")
    x = augmentation(inputs) if augmentation is not None else inputs
    x = network(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name=IDENTITY)(x)
    return keras.Model(inputs, outputs, name="facelab_finetuned")


class FinetunedHead(Head):
    """A fine-tuned face network with a softmax over the people; its "embeddings" are uint8 crops (N, S, S, 3).

    ``network`` is the backbone's network inside ``model`` and ``origin`` where it came from; both are None
    for a run of the old whole-model format.
    """

    kind = "finetune"
    mode = "finetune"
    uses_keras = True
    savedmodel = True

    def __init__(self, input_size: int, n_classes: int, model: Any, network: Any = None,
                 origin: Origin | None = None) -> None:
        super().__init__(input_size, n_classes)
        self.model = model
        self.network = network
        self.origin = origin
        self._trained: list[str] = []  # the network's layers trainable in the last phase
        self._embedder: Any = None

    def unfreeze(self, blocks: int | None, layer_groups: Sequence[Sequence[str]]) -> None:
        """Freeze the whole pretrained network (warm-up, ``None``) or train its top group and ``blocks`` more.

        Batch normalisation stays frozen: unfrozen, Keras runs it in training mode, normalising with each small
        batch's own statistics instead of the pretrained ones, which wrecks the features at the first step.
        """
        import keras

        assert self.network is not None and self.origin is not None, "only a new fine-tuned head is trained"
        chosen = () if blocks is None else unfrozen_groups(len(layer_groups), blocks)
        names = {name for index in chosen for name in layer_groups[index]}
        for layer in self.network.layers:
            layer.trainable = layer.name in names and not isinstance(layer, keras.layers.BatchNormalization)
        self.origin = Origin(self.origin.backbone, self.origin.weights_id, len(layer_groups), chosen)
        self._trained = sorted(layer.name for layer in self.network.layers if layer.trainable and layer.weights)

    def fit(self, X: np.ndarray, y: np.ndarray, *, epochs: int = 10, batch_size: int = 16,
            learning_rate: float = 1e-5, class_weight: dict[int, float] | None = None,
            callbacks: Sequence[Any] = (), initial_epoch: int = 0) -> None:
        import keras

        self.model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                           metrics=["accuracy"])
        self.model.fit(np.asarray(X, np.float32), np.asarray(y, np.int64), batch_size=batch_size,
                       epochs=initial_epoch + epochs, initial_epoch=initial_epoch, class_weight=class_weight,
                       callbacks=list(callbacks), shuffle=True, verbose=0)

    def _crops(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 4 or X.shape[1:] != (self.input_dim, self.input_dim, 3):
            raise ValueError(f"the fine-tuned model needs face crops of shape (N, {self.input_dim}, {self.input_dim}, 3); "
                             f"got {X.shape}.")
        return X

    @staticmethod
    def _batched(model: Any, X: np.ndarray) -> np.ndarray:
        chunks = [np.asarray(model.predict_on_batch(X[i:i + PREDICT_BATCH].astype(np.float32)))
                  for i in range(0, len(X), PREDICT_BATCH)]
        return np.concatenate(chunks).astype(np.float32)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = self._crops(X)
        if not len(X):
            return np.zeros((0, self.n_classes), np.float32)
        return self._batched(self.model, X)

    def embedder(self) -> Any:
        """A Keras model from crops to the fine-tuned embedding (the identity layer's input); shares the weights."""
        import keras

        if self._embedder is None:
            self._embedder = keras.Model(self.model.inputs, self.model.get_layer(IDENTITY).input, name="embedding")
        return self._embedder

    def embed(self, X: np.ndarray) -> np.ndarray:
        """The fine-tuned network's embeddings (N, D) of uint8 crops (N, S, S, 3)."""
        X = self._crops(X)
        dim = int(self.model.get_layer(IDENTITY).input.shape[-1])
        return self._batched(self.embedder(), X) if len(X) else np.zeros((0, dim), np.float32)

    def export_savedmodel(self, directory: Path) -> None:
        """The whole network as a TensorFlow SavedModel: uint8 crops (N, S, S, 3) in; probabilities and embedding out."""
        import keras

        both = keras.Model(self.model.inputs, {"probabilities": self.model.output,
                                               "embedding": self.model.get_layer(IDENTITY).input})
        archive = keras.export.ExportArchive()
        archive.track(both)
        archive.add_endpoint("serve", lambda crops: both(keras.ops.cast(crops, "float32"), training=False),
                             input_signature=[keras.InputSpec(shape=(None, self.input_dim, self.input_dim, 3),
                                                              dtype="uint8")])
        archive.write_out(str(directory), verbose=False)

    def _saved_layers(self) -> list[Any]:
        return [*(self.network.get_layer(name) for name in self._trained), self.model.get_layer(IDENTITY)]

    def _save_weights(self, directory: Path) -> None:
        if self.origin is None:  # an old-format run stays whole
            self.model.save(directory / KERAS_FILE)
            return
        arrays = {f"{layer.name}/{i}": np.asarray(w) for layer in self._saved_layers()
                  for i, w in enumerate(layer.get_weights())}
        np.savez(directory / LAYERS_FILE, **arrays)
        (directory / ORIGIN_FILE).write_text(json.dumps({**asdict(self.origin), "layers": self._trained}, indent=2),
                                             encoding="utf-8")

    @classmethod
    def _load_weights(cls, directory: Path, input_dim: int, n_classes: int) -> FinetunedHead:
        if not (directory / ORIGIN_FILE).is_file() and (directory / KERAS_FILE).is_file():
            import core.pipeline.backbones._vggface_layers  # noqa: F401 - lazy (imports Keras): old runs hold this layer

            return cls(input_dim, n_classes, load_keras_model(directory / KERAS_FILE, safe_mode=True))
        try:
            meta = json.loads((directory / ORIGIN_FILE).read_text(encoding="utf-8"))
            origin = Origin(str(meta["backbone"]), str(meta["weights_id"]), int(meta["groups"]),
                            tuple(int(i) for i in meta["unfrozen"]))
            trained = [str(name) for name in meta["layers"]]
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"no fine-tuned network in {directory} ({ORIGIN_FILE} is missing).") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{directory / ORIGIN_FILE} is damaged ({exc}).") from exc
        backbone = pretrained(origin)
        network = backbone.finetune_network()
        if int(network.input_shape[1]) != input_dim:
            raise ValueError(f"the {origin.backbone} network takes {network.input_shape[1]}-pixel crops; "
                             f"this run was trained on {input_dim}-pixel crops.")
        head = cls(input_dim, n_classes, build_classifier(network, n_classes, backbone.finetune_dropout), network, origin)
        head._trained = trained
        try:
            with np.load(directory / LAYERS_FILE, allow_pickle=False) as saved:
                for layer in head._saved_layers():
                    layer.set_weights([saved[f"{layer.name}/{i}"] for i in range(len(layer.weights))])
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"the fine-tuned layers of {directory} are missing ({LAYERS_FILE}).") from exc
        except (ValueError, KeyError, OSError) as exc:
            raise ValueError(f"{directory / LAYERS_FILE} does not fit the {origin.backbone} network ({exc}).") from exc
        return head


def pretrained(origin: Origin) -> Backbone:
    """The backbone a run was fine-tuned from, with the same pretrained weights, or one sentence saying why not."""
    try:
        backbone = BACKBONES.get(origin.backbone)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"this run was fine-tuned from the {origin.backbone} backbone, which cannot be used here: "
                         f"{exc}") from exc
    if backbone.weights_id != origin.weights_id:
        raise ValueError(f"this run was fine-tuned from {origin.backbone} weights {origin.weights_id}, but this machine "
                         f"has {backbone.weights_id}; its saved layers only make sense on the weights they grew from.")
    if len(backbone.finetune_blocks) != origin.groups:
        raise ValueError(f"the {origin.backbone} network has changed since this run was fine-tuned "
                         f"({len(backbone.finetune_blocks)} groups of layers, the run knew {origin.groups}).")
    return backbone


HEADS.register(Entry(
    name=FinetunedHead.kind,
    label="Fine-tuned network",
    factory=FinetunedHead,
    description="The face CNN itself retrained on the dataset's crops, with a new softmax over the people.",
))
