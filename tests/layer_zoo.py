"""The layers without a registry name, each with a small model around it.

Shared by tests/test_backend_layers.py and tests/test_reliability.py: the
two-input layers (conditional, adaptive, SPADE, FiLM), weight-standardized
convolution, weight normalization and the recurrent cells.
"""

from __future__ import annotations

import keras

import keras_norms
from keras_norms import models as norm_models


def _image_and(condition_shape, condition_dtype="float32"):
    """A model over an image `(4, 4, 8)` and a condition, for a layer called as `layer(x, condition)`."""
    def build(layer):
        image = keras.Input((4, 4, 8), name="image")
        condition = keras.Input(condition_shape, dtype=condition_dtype, name="condition")
        features = keras.layers.Conv2D(8, 3, padding="same")(image)
        outputs = layer(features, condition)
        return keras.Model([image, condition], keras.layers.Dense(1)(keras.layers.Flatten()(outputs)))
    return build


def _sequence_and(condition_shape):
    def build(layer):
        sequence = keras.Input((5, 8), name="sequence")
        condition = keras.Input(condition_shape, name="condition")
        outputs = layer(keras.layers.Dense(8)(sequence), condition)
        return keras.Model([sequence, condition], keras.layers.Dense(1)(keras.layers.Flatten()(outputs)))
    return build


def _single(input_shape, before=None):
    def build(layer):
        inputs = keras.Input(input_shape, name="x")
        features = before(inputs) if before is not None else inputs
        outputs = layer(features)
        return keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten()(outputs)))
    return build


# name: (a new layer, a model around it, the condition's sample: None, "ids" or a shape)
LAYERS = {
    "conditional_batch_ids": (lambda: keras_norms.ConditionalBatchNormalization(num_classes=3),
                              _image_and((), "int32"), "ids"),
    "conditional_batch_vector": (lambda: keras_norms.ConditionalBatchNormalization(),
                                 _image_and((6,)), (6,)),
    "conditional_instance": (lambda: keras_norms.ConditionalInstanceNormalization(num_styles=3),
                             _image_and((3,)), (3,)),
    "film": (lambda: keras_norms.FiLM(kernel_initializer="glorot_uniform"), _sequence_and((6,)), (6,)),
    "spade": (lambda: keras_norms.SPADE(hidden_channels=8), _image_and((8, 8, 2)), (8, 8, 2)),
    "adain_features": (lambda: keras_norms.AdaptiveInstanceNormalization(), _image_and((6, 6, 8)),
                       (6, 6, 8)),
    "adain_vector": (lambda: keras_norms.AdaptiveInstanceNormalization(mode="vector"), _image_and((6,)),
                     (6,)),
    "adaptive_layer": (lambda: keras_norms.AdaptiveLayerNormalization(kernel_initializer="glorot_uniform"),
                       _sequence_and((6,)), (6,)),
    "adaptive_group": (lambda: keras_norms.AdaptiveGroupNormalization(groups=4), _image_and((6,)), (6,)),
    "weight_standardized_conv": (lambda: keras_norms.WeightStandardizedConv2D(8, 3, padding="same"),
                                 _single((4, 4, 3)), None),
    "weight_normalization": (lambda: keras_norms.WeightNormalization(keras.layers.Dense(8)),
                             _single((6,)), None),
    "layer_scale": (lambda: keras_norms.LayerScale(init_values=1.0), _single((5, 6)), None),
    "layer_norm_lstm": (lambda: keras.layers.RNN(norm_models.LayerNormLSTMCell(6)), _single((5, 4)), None),
    "layer_norm_simple_rnn": (lambda: keras.layers.RNN(norm_models.LayerNormSimpleRNNCell(6)),
                              _single((5, 4)), None),
}
