"""Model tools: convert, freeze, synchronize and recalibrate the normalization of whole models.

They take the models users already have (Sequential or functional, nested
sub-models included, `keras.applications` backbones) whether their batch norms
are Keras' or keras-norms'. `convert_norms`, `freeze_batch_norms`,
`unfreeze_batch_norms` and `synchronize_batch_norms` return a new model with the
weights of the original, which they leave untouched; Keras' batch norms become
`keras_norms.BatchNormalization` (same weights, same outputs), which has the
options they set. `recalibrate_batch_norms` updates a model's moving
statistics in place (PreciseBN; in `keras_norms.recalibrate`).

Examples:
    >>> import keras, keras_norms
    >>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(8, 3),
    ...                           keras.layers.BatchNormalization()])
    >>> grouped = keras_norms.convert_norms(model, "group", groups=4)
    >>> [type(layer).__name__ for layer in grouped.layers]
    ['Conv2D', 'GroupNormalization']
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import keras

from keras_norms import registry
from keras_norms._base import NormalizationLayer
from keras_norms.batch import BatchNormalization
from keras_norms.layer import LayerNormalization, RMSNormalization
from keras_norms.pointwise import DynamicErf, DynamicTanh

__all__ = [
    "convert_norms",
    "freeze_batch_norms",
    "is_batch_norm",
    "synchronize_batch_norms",
    "unfreeze_batch_norms",
]

# Keys of a layer's config that every replacement keeps (the base layer arguments).
_BASE_KEYS = ("name", "dtype", "trainable")


def is_batch_norm(layer) -> bool:
    """Whether `layer` is a batch normalization layer: Keras' or keras-norms'."""
    return isinstance(layer, (keras.layers.BatchNormalization, BatchNormalization))


def _is_layer_or_rms_norm(layer) -> bool:
    classes = (keras.layers.LayerNormalization, LayerNormalization, RMSNormalization)
    return isinstance(layer, (*classes, getattr(keras.layers, "RMSNormalization", LayerNormalization)))


def _is_elementwise_norm(layer) -> bool:
    return isinstance(layer, (DynamicTanh, DynamicErf))


def _default_match(norm: registry.Norm) -> Callable[[keras.layers.Layer], bool]:
    """Which layers `convert_norms` replaces when it is given no `match`."""
    if norm.elementwise:  # DyT and Derf replace layer and RMS norms
        return _is_layer_or_rms_norm
    if norm.layer_class is not None and issubclass(norm.layer_class, (LayerNormalization, RMSNormalization,
                                                                      keras.layers.LayerNormalization)):
        return lambda layer: is_batch_norm(layer) or _is_elementwise_norm(layer)
    return is_batch_norm


def _is_preprocessing(layer) -> bool:
    # keras.layers.Normalization standardizes the inputs with adapted constants: never a norm to swap.
    return isinstance(layer, keras.layers.Normalization) or ".preprocessing." in type(layer).__module__


def check_model(model) -> None:
    """Raises unless `model` is a built Sequential or functional Keras model."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"Argument `model` must be a keras.Model. Received: model={model!r}")
    inputs = getattr(model, "inputs", None) if model.built else None
    if not inputs:
        raise ValueError(
            "Argument `model` must be a built Sequential or functional model (give it a keras.Input, "
            f"or call it once). Received: model={model.name!r} ({type(model).__name__}, "
            f"built={model.built})"
        )


# Keras' normalization layers, which `to` may name as classes too.
_KERAS_NORMS = tuple(getattr(keras.layers, name) for name in (
    "BatchNormalization", "LayerNormalization", "GroupNormalization", "RMSNormalization",
    "UnitNormalization", "Identity") if hasattr(keras.layers, name))


def _described(to) -> registry.Norm:
    """The description of the new layers; raises unless `to` names or makes a normalization layer."""
    try:
        norm = registry.describe(to)
    except ValueError:
        raise ValueError(f"Argument `to` must name a normalization ({', '.join(registry.names())}), a "
                         f"layer class or a factory. Received: to={to!r}") from None
    except TypeError:
        raise ValueError(
            "Argument `to` must be a registry name, a normalization layer class or a factory function "
            f"returning a new layer (one per replaced layer), not a layer instance. Received: to={to!r}"
        ) from None
    if isinstance(to, type) and not (issubclass(to, (NormalizationLayer, *_KERAS_NORMS)) or norm.name):
        raise ValueError(
            "Argument `to` must be a normalization layer class (keras-norms' or Keras'), a registry "
            f"name or a factory function; {to.__name__} is none of them. Received: to={to!r}"
        )
    return norm


def _parameters(factory) -> tuple[set[str], bool]:
    """The named parameters of `factory` and whether it takes **kwargs.

    For a layer class, the parameters its `__init__` passes on through **kwargs
    to the constructors of its base classes count too, up to `keras.layers.Layer`'s
    own, and so do the `declared_arguments` of a keras_norms layer (`center`,
    `scale`, initializers, ...).
    """
    owners = [factory]
    if isinstance(factory, type) and issubclass(factory, keras.layers.Layer):
        owners = [cls.__init__ for cls in factory.__mro__
                  if "__init__" in vars(cls) and issubclass(cls, keras.layers.Layer)
                  and cls is not keras.layers.Layer and cls.__module__.split(".")[0] != "keras"]
        owners = owners or [factory]
    named, variadic = set(), False
    for owner in owners:
        parameters = inspect.signature(owner).parameters
        named |= {name for name, p in parameters.items()
                  if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name != "self"}
        variadic = any(p.kind == p.VAR_KEYWORD for p in parameters.values())
        if not variadic:
            break
    # And those a keras_norms base class takes in **kwargs because the layer declares them.
    named |= set(getattr(factory, "declared_arguments", ()))
    return named, variadic


def _replacement(layer, norm: registry.Norm, kwargs: dict) -> keras.layers.Layer:
    """A new `norm` layer, with the arguments of `layer` it shares (axis, epsilon, ...) and `kwargs`."""
    config = layer.get_config()
    named, variadic = _parameters(norm.factory)
    carried = {key: value for key, value in config.items()
               if key in named or (variadic and key in _BASE_KEYS)}
    if not norm.axis_is_channel_axis:
        carried.pop("axis", None)  # e.g. filter response norm's `axis` lists the spatial axes
    return norm.layer(**{**carried, **kwargs})


def _copy_weights(old, new, *, by_name: bool) -> None:
    """Copies the weights of `old` into `new`: all of them, or those whose name and shape match."""
    if not old.weights:
        return
    if not by_name:
        new.set_weights(old.get_weights())
        return
    sources = {(w.name, tuple(w.shape)): w for w in old.weights}
    for weight in new.weights:
        source = sources.get((weight.name, tuple(weight.shape)))
        if source is not None:
            weight.assign(keras.ops.cast(source, weight.dtype))


def _rebuild(model, replace: Callable) -> keras.Model:
    """A clone of `model` in which `replace(layer)` (a new layer, or None to copy it) swaps layers.

    Every copied layer gets the weights of its original; a replaced one those
    whose name and shape match.
    """
    check_model(model)
    pairs = []
    replacing = []  # the layers replaced, and the one being replaced when its new layer fails

    def clone(layer):
        new = None
        if not _is_preprocessing(layer):
            replacing.append(layer.name)
            new = replace(layer)
            if new is None:
                replacing.pop()
        replaced = new is not None
        if not replaced:
            new = type(layer).from_config(layer.get_config())
        pairs.append((layer, new, replaced))
        return new

    def call(layer, *args, **kwargs):
        # A replaced layer's graph node may carry call arguments the new layer does not take (batch
        # norm's `mask`, which Keras fills in): drop those.
        named, variadic = _parameters(layer.call)
        return layer(*args, **{k: v for k, v in kwargs.items() if variadic or k in named})

    functional = not isinstance(model, keras.Sequential)
    try:
        converted = keras.models.clone_model(model, clone_function=clone, recursive=True,
                                             call_function=call if functional else None)
        if not converted.built:
            converted.build(model.input_shape)
        for old, new, replaced in pairs:
            _copy_weights(old, new, by_name=replaced)
    except ValueError as error:
        raise ValueError(
            f"The model does not build or fit its weights after replacing {replacing}: "
            f"{str(error).rstrip('.')}. "
            "Replace normalization layers only (check `match`), with norms that fit their inputs."
        ) from None
    return converted


def convert_norms(model, to, *, match: Callable | None = None, **kwargs) -> keras.Model:
    """Returns a copy of `model` with every batch norm (or every layer `match` selects) replaced by `to`.

    Use it to try another norm on a model you already have, a
    `keras.applications` backbone included, without rewriting its code. Each
    new layer is made by calling `to` with the entries of the replaced
    layer's config that `to` takes (`axis`, `epsilon`, `center`, `scale`, the
    initializers, ...: its named parameters and, for a layer class, those of
    the base-class constructors it passes `**kwargs` to), with `name`, `dtype`
    and `trainable` when `to` takes `**kwargs`, and with `kwargs`. A factory
    function gets only the arguments it names. A filter response norm never
    gets the replaced layer's `axis` (its `axis` lists the spatial axes).
    Weights whose name and shape match
    (gamma and beta, moving statistics between batch norms) are carried over;
    every other layer is copied with its weights exactly. Preprocessing layers
    (`keras.layers.Normalization`) are never replaced. The original model is
    not modified.

    Args:
        model: A built Sequential or functional model (nested models included).
        to: A registry name (`"group"`, `"layer"`, `"batch"`, ...), a layer
            class, or a callable returning a new layer, called with the
            carried arguments and `kwargs`.
        match: Optional `match(layer) -> bool` choosing the layers to replace.
            By default every batch norm, Keras' or keras-norms'; for
            `to="dyt"` or `"derf"` every layer and RMS norm instead; for
            `to="layer"` or `"rms"` every batch norm and every DyT and Derf
            (so a model goes to the norm-free layers and back).
        **kwargs: Arguments of the new layers, e.g. `groups=32`; they override
            the carried ones.

    Returns:
        A new, uncompiled model of the same kind (Sequential or functional),
            with the same inputs and outputs.

    Raises:
        TypeError: `model` is not a Keras model, `match` is not callable, or
            `to` returned something that is not a layer.
        ValueError: `model` is not built; `to` is an unregistered name, a class
            that is not a normalization layer, a layer instance or not
            callable; or a new layer rejects its arguments or does not fit its
            input (e.g. `groups` not dividing the channels).

    Examples:
        >>> import keras, keras_norms
        >>> model = keras.Sequential([keras.Input((8, 8, 16)), keras.layers.Conv2D(16, 3),
        ...                           keras.layers.BatchNormalization(epsilon=1e-5, name="bn")])
        >>> norm = keras_norms.convert_norms(model, "group", groups=4).get_layer("bn")
        >>> type(norm).__name__, norm.groups, norm.epsilon
        ('GroupNormalization', 4, 1e-05)

        Only the layers `match` selects are replaced:

        >>> swapped = keras_norms.convert_norms(model, keras_norms.LayerNormalization,
        ...                                     match=lambda layer: layer.name == "bn")
        >>> [type(layer).__name__ for layer in swapped.layers]
        ['Conv2D', 'LayerNormalization']

        A transformer's layer norms become Dynamic Tanh, gamma and beta carried:

        >>> tokens = keras.Sequential([keras.Input((4, 8)), keras.layers.LayerNormalization(name="ln")])
        >>> dyt = keras_norms.convert_norms(tokens, "dyt").get_layer("ln")
        >>> type(dyt).__name__, [w.name for w in dyt.weights]
        ('DynamicTanh', ['alpha', 'gamma', 'beta'])
    """
    norm = _described(to)
    if match is None:
        match = _default_match(norm)
    elif not callable(match):
        raise TypeError(f"Argument `match` must be a callable taking a layer. Received: match={match!r}")

    def replace(layer):
        return _replacement(layer, norm, kwargs) if match(layer) else None

    return _rebuild(model, replace)


def _with_batch_norm_option(model, key: str, value) -> keras.Model:
    """Every batch norm as `keras_norms.BatchNormalization` with `key=value`; so too the layers holding
    one that take `key` (ConditionalBatchNormalization, SPADE)."""

    def replace(layer):
        if is_batch_norm(layer):
            return _replacement(layer, registry.describe(BatchNormalization), {key: value})
        config = layer.get_config()
        if key in config and type(layer).__module__.startswith("keras_norms."):
            return type(layer).from_config({**config, key: value})
        return None

    return _rebuild(model, replace)


def freeze_batch_norms(model) -> keras.Model:
    """Returns a copy of `model` whose batch norms normalize with their moving statistics and never update
    them, while gamma and beta keep training (fine-tuning at small batch sizes).

    Keras' batch norms become `keras_norms.BatchNormalization(freeze_statistics=True)`
    with the same weights; keras-norms' batch norms, conditional batch norms and
    SPADE get `freeze_statistics=True`. Inference outputs are unchanged. Compile
    the returned model to train it. `unfreeze_batch_norms` undoes it.

    Args:
        model: A built Sequential or functional model (nested models included).

    Returns:
        A new, uncompiled model with the weights of `model`, which is not modified.

    Raises:
        TypeError: `model` is not a Keras model.
        ValueError: `model` is not built, or does not build again with the
            new layers.

    Examples:
        >>> import keras, keras_norms
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization()])
        >>> keras_norms.freeze_batch_norms(model).layers[0].freeze_statistics
        True
    """
    return _with_batch_norm_option(model, "freeze_statistics", True)


def unfreeze_batch_norms(model) -> keras.Model:
    """Returns a copy of `model` whose batch norms use and update batch statistics in training again.

    The inverse of `freeze_batch_norms`: `freeze_statistics=False` on every
    batch norm (Keras' become `keras_norms.BatchNormalization`), conditional
    batch norm and SPADE, which then normalize by batch statistics in training
    and update their moving statistics.

    Args:
        model: A built Sequential or functional model (nested models included).

    Returns:
        A new, uncompiled model with the weights of `model`, which is not modified.

    Raises:
        TypeError: `model` is not a Keras model.
        ValueError: `model` is not built, or does not build again with the
            new layers.

    Examples:
        >>> import keras, keras_norms
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization()])
        >>> frozen = keras_norms.freeze_batch_norms(model)
        >>> keras_norms.unfreeze_batch_norms(frozen).layers[0].freeze_statistics
        False
    """
    return _with_batch_norm_option(model, "freeze_statistics", False)


def synchronize_batch_norms(model) -> keras.Model:
    """Returns a copy of `model` whose batch norms compute their statistics over the global batch.

    Under a `tf.distribute` strategy, mean and variance are reduced over every
    replica's batch (`synchronized=True`); outside one nothing changes. Call it
    inside `strategy.scope()`, so that the new model's variables are the
    strategy's. On JAX, under `keras.distribution.DataParallel`, the statistics
    are those of the global batch already, and the copy keeps them so; Keras'
    own `BatchNormalization(synchronized=True)` would raise there. Keras'
    batch norms become `keras_norms.BatchNormalization`. PyTorch has no
    multi-device Keras training: the layers' constructor raises.

    Args:
        model: A built Sequential or functional model (nested models included).

    Returns:
        A new, uncompiled model with the weights of `model`, which is not modified.

    Raises:
        TypeError: `model` is not a Keras model.
        ValueError: `model` is not built; the backend is PyTorch; or a batch
            norm has a `virtual_batch_size`, which cannot be combined with
            `synchronized=True`.

    Examples:
        >>> import keras, keras_norms
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization()])
        >>> keras_norms.synchronize_batch_norms(model).layers[0].synchronized
        True
    """
    return _with_batch_norm_option(model, "synchronized", True)
