"""`build_model`: the paper's models by name, with the norm swapped by name."""

from __future__ import annotations

import keras
from keras_norms.models._norm import resolve
from keras_norms.models.cnn import lenet, paper_cnn, resnet
from keras_norms.models.sequence import sequence
from keras_norms.models.transformer import EXTRA_NORMS as TRANSFORMER_NORMS
from keras_norms.models.transformer import transformer

_FACTORIES = {"paper_cnn": paper_cnn, "lenet": lenet, "resnet": resnet, "sequence": sequence,
              "transformer": transformer}
#: Norm names a model takes beyond the registry.
_EXTRA_NORMS = {"transformer": TRANSFORMER_NORMS}

DEFAULT_INPUT_SHAPES = {
    "paper_cnn": (32, 32, 3),
    "lenet": (32, 32, 1),
    "resnet": (32, 32, 3),
    "sequence": (28, 28),
    "transformer": (32, 32, 3),
}
"""The shape of one example that `build_model` builds each model for when `input_shape` is None.

A dict from model name to shape: `(height, width, channels)` images for the
CNNs and the transformer (CIFAR-10's 32x32x3; 32x32x1 for LeNet-5), and
`(time steps, features)` for `"sequence"` (an MNIST image read row by row).

Examples:
    >>> from keras_norms.models import DEFAULT_INPUT_SHAPES
    >>> DEFAULT_INPUT_SHAPES["lenet"], DEFAULT_INPUT_SHAPES["sequence"]
    ((32, 32, 1), (28, 28))
"""


def model_names() -> list[str]:
    """Lists the model names `build_model` takes.

    Returns:
        A new list of the names, in the order of their factories (`"paper_cnn"`,
            `"lenet"`, `"resnet"`, `"sequence"` and `"transformer"`).

    Examples:
        >>> from keras_norms.models import model_names
        >>> model_names()
        ['paper_cnn', 'lenet', 'resnet', 'sequence', 'transformer']
    """
    return list(_FACTORIES)


def build_model(name: str, norm="batch", input_shape=None, num_classes: int = 10, **options) -> keras.Model:
    """Returns a new, uncompiled classifier (logits) with `norm` at each normalization position.

    Args:
        name: `"paper_cnn"`, `"lenet"`, `"resnet"`, `"sequence"` or
            `"transformer"` (see the functions of the same name for the
            architectures and their options).
        norm: A registry name (`"batch"`, `"layer"`, `"group"`, `"instance"`,
            `"rms"`, `"none"`, ...; the transformer also takes `"adaln"`), a
            layer class, or a callable returning a new layer. A group norm
            without `groups=` gets, at each layer, the largest divisor of its
            channels up to 32 that leaves 2+ channels per group.
        input_shape: The shape of one example; None for the model's default
            (`DEFAULT_INPUT_SHAPES`).
        num_classes: Number of output logits.
        **options: The model's own options (`width=`, `depth=`, `units=`,
            the transformer's `placement="pre"` or `"post"`, `dim=`, ...) and,
            for the rest, constructor arguments of every norm layer
            (`groups=8`, `momentum=0.9`, `epsilon=1e-5`, ...).

    Returns:
        A new, uncompiled `keras.Sequential` (a functional `keras.Model` for
            `"resnet"` and `"transformer"`).

    Raises:
        ValueError: An unknown model or norm name (the message lists the valid
            ones), a `num_classes` that is not a positive int, or an input
            shape or options the model or norm rejects.
        TypeError: A `norm` that is a layer instance or not callable.

    Examples:
        >>> from keras_norms.models import build_model
        >>> model = build_model("lenet", norm="group", groups=2)
        >>> model.input_shape, model.output_shape
        ((None, 32, 32, 1), (None, 10))
    """
    if name not in _FACTORIES:
        raise ValueError(
            f"Unknown model {name!r}. Valid names: {', '.join(_FACTORIES)}. Received: name={name!r}"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(
            f"Argument `num_classes` must be a positive int. Received: num_classes={num_classes!r}"
        )
    resolve(norm, extra=_EXTRA_NORMS.get(name, ()))
    shape = DEFAULT_INPUT_SHAPES[name] if input_shape is None else tuple(input_shape)
    return _FACTORIES[name](norm, shape, num_classes, **options)
