"""VGG-Face's preprocessing as a Keras layer, so a saved fine-tuned model takes raw uint8 crops.

A module of its own because defining a layer imports Keras: the backbone module itself must
stay importable without TensorFlow (the registry lists backbones for the Dataset page).
Loading a saved model that contains this layer needs this module imported first.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from core.pipeline.backbones._vggface_mean import MEAN_BGR


@keras.saving.register_keras_serializable(package="facelab")
class VGGFacePreprocess(keras.layers.Layer):
    """keras-vggface preprocessing (RGB→BGR, minus the VGG-Face mean) as a layer, so saved models take raw crops."""

    def call(self, inputs: Any) -> Any:
        bgr = ops.flip(ops.cast(inputs, "float32"), axis=-1)
        return bgr - ops.convert_to_tensor(np.asarray(MEAN_BGR, np.float32))
