"""The recurrent classifier: layer norm inside the LSTM cell, or any norm between layers."""

from __future__ import annotations

import keras
from keras_norms.models._norm import make_norm, resolve

from keras_norms.layer import LayerNormalization
from keras_norms.recurrent import LayerNormLSTMCell


def sequence(norm="layer", input_shape=(28, 28), num_classes: int = 10, *, units: int = 64,
             depth: int = 2, **norm_options) -> keras.Sequential:
    """A stack of `depth` LSTM layers and a linear classifier on the last output.

    Where the norm goes depends on `norm`:
    - `"layer"` (or the `LayerNormalization` class): inside every cell, as a
      `LayerNormLSTMCell` (the paper's layer norm for RNNs; `norm_options` go to
      the cell, e.g. `norm_epsilon=`);
    - `"none"`: plain `keras.layers.LSTM` layers;
    - any other norm (`"batch"`, `"group"`, ...): plain LSTMs, with the norm
      applied to each layer's output sequence `(batch, time, units)` before the
      next layer, so it needs `depth >= 2`.

    Args:
        norm: A registry name, a layer class or a callable returning a layer.
        input_shape: `(time steps, features)`.
        num_classes: Number of output logits.
        units: Units of each LSTM layer.
        depth: Number of LSTM layers.
        **norm_options: Passed to each norm layer (or to the cells for `"layer"`).

    Returns:
        A new, uncompiled `keras.Sequential` named `"sequence"` that returns logits.

    Raises:
        TypeError: `norm` is a layer instance (each position needs a new layer
            of its own), or neither a name nor a callable.
        ValueError: `input_shape` is not two positive ints; `units` or `depth`
            is not a positive int; a norm between layers with `depth < 2`;
            `norm` is an unknown name, or a norm (or the cells) rejects
            `norm_options`.

    Examples:
        >>> from keras_norms.models import sequence
        >>> sequence("layer", input_shape=(8, 8), units=16).output_shape
        (None, 10)
    """
    shape = tuple(input_shape)
    if len(shape) != 2 or any(not isinstance(d, int) or d < 1 for d in shape):
        raise ValueError(
            "sequence: `input_shape` must be (time steps, features) of positive ints. "
            f"Received: input_shape={input_shape!r}"
        )
    for name, value in (("units", units), ("depth", depth)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"sequence: `{name}` must be a positive int. Received: {name}={value!r}")
    description = resolve(norm)
    in_cell = description.name == "layer" or description.layer_class is LayerNormalization
    between = not in_cell and not description.identity
    if between and depth < 2:
        raise ValueError(
            f"sequence: the norm {norm!r} goes between LSTM layers, so it needs depth >= 2 "
            f"(or use norm='layer' for layer norm inside the cell). Received: depth={depth}"
        )
    layers = [keras.Input(shape)]
    for index in range(depth):
        last = index == depth - 1
        if in_cell:
            cell = LayerNormLSTMCell(units, **norm_options)
            layers.append(keras.layers.RNN(cell, return_sequences=not last))
        else:
            layers.append(keras.layers.LSTM(units, return_sequences=not last))
            if between and not last:
                layers.append(make_norm(norm, units, rank=3, **norm_options))
    layers.append(keras.layers.Dense(num_classes))
    return keras.Sequential(layers, name="sequence")
