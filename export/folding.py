"""Frozen batch statistics: batch norm folded into the preceding Conv/Dense, or one multiply-add."""

from __future__ import annotations

import dataclasses
from collections import Counter

import keras
import numpy as np
from keras import ops

import keras_norms

#: Layers whose kernel and bias can absorb a following batch norm. Exact types only: a subclass
#: may compute something else from its kernel (weight standardization, say).
FOLDABLE_LAYER_TYPES = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.DepthwiseConv2D,
    keras.layers.Dense,
)
#: The batch norms that are frozen. Exact types: a subclass (a conditional batch norm, say) may
#: take other inputs or compute other things in inference.
BATCH_NORM_TYPES = (keras.layers.BatchNormalization, keras_norms.BatchNormalization)
#: Layers that multiply each channel by a learned constant: folded into the Conv/Dense before them
#: where they can be, left as they are otherwise (they are one multiply already).
SCALE_TYPES = (keras_norms.LayerScale,)


@keras.saving.register_keras_serializable(package="keras_norms")
class ChannelAffine(keras.layers.Layer):
    r"""A per-channel multiply-add with constant weights: ``x * scale + shift``.

    `fold_batch_norms` puts it in place of a batch norm that cannot be folded
    into a preceding layer: in inference, batch norm is exactly this,

    $$
    y = x \, s + t, \qquad
    s = \frac{\gamma}{\sqrt{\hat\sigma^2 + \epsilon}}, \qquad t = \beta - \hat\mu \, s,
    $$

    with $\hat\mu$ and $\hat\sigma^2$ the moving mean and variance, $s$ the
    weight `scale` and $t$ the weight `shift`. The math runs in float32 and the
    output has the compute dtype. The weights (`scale` and `shift`, shape
    `(channels,)`, initialized to ones and zeros) are not trainable; a mask
    passes through unchanged.

    Args:
        axis: The channel axis, an int; not the batch axis.
        **kwargs: Base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: A tensor of rank 2 or more whose `axis` has a known size.

    Input shape:
        inputs: Any rank of 2 or more, batch first; the channels on `axis`.

    Output shape:
        The shape of the input.

    Returns:
        ``inputs * scale + shift`` (broadcast along `axis`), of the input's
            shape, in the layer's compute dtype.

    Raises:
        TypeError: `axis` is not an int (booleans are refused).
        ValueError: When built: `axis` is the batch axis or out of range, or
            the channel axis has no defined size.

    Examples:
        >>> import numpy as np
        >>> from keras_norms.export import ChannelAffine
        >>> layer = ChannelAffine(axis=-1)
        >>> layer.build((None, 3))
        >>> layer.set_weights([np.array([1.0, 2.0, 3.0]), np.zeros(3)])
        >>> layer(np.ones((1, 3), "float32")).numpy().tolist()
        [[1.0, 2.0, 3.0]]
    """

    def __init__(self, axis: int = -1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise TypeError(f"Argument `axis` must be an int. Received: axis={axis!r}")
        self.axis = axis
        self.supports_masking = True

    def build(self, input_shape):
        rank = len(input_shape)
        if not -rank <= self.axis < rank or self.axis % rank == 0:
            raise ValueError(
                f"ChannelAffine: axis {self.axis} is not a channel axis of an input of shape "
                f"{tuple(input_shape)}. Received: axis={self.axis}"
            )
        self._channel_axis = self.axis % rank
        channels = input_shape[self._channel_axis]
        if channels is None:
            raise ValueError(
                f"ChannelAffine: the channel axis of the input must have a defined size. "
                f"Received: input_shape={tuple(input_shape)}, axis={self.axis}"
            )
        self.scale = self.add_weight(
            name="scale", shape=(channels,), initializer="ones", trainable=False, autocast=False
        )
        self.shift = self.add_weight(
            name="shift", shape=(channels,), initializer="zeros", trainable=False, autocast=False
        )

    def call(self, inputs):
        rank = len(inputs.shape)
        shape = [1] * rank
        shape[self._channel_axis] = -1
        outputs = ops.cast(inputs, "float32") * ops.reshape(self.scale, shape)
        outputs = outputs + ops.reshape(self.shift, shape)
        return ops.cast(outputs, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


@dataclasses.dataclass(frozen=True)
class FoldRecord:
    """What `fold_batch_norms` did with one batch norm.

    `fold_batch_norms(model, records=[...])` appends one per batch norm;
    `export_model` returns them as `ExportResult.batch_norms` and writes them
    to the manifest. Frozen (immutable); the fields are attributes.

    Args:
        batch_norm: The batch norm layer's name.
        folded_into: The name of the Conv/Dense layer that absorbed it, or
            `None` when it became a `ChannelAffine` multiply-add.

    Examples:
        >>> import keras
        >>> from keras_norms.export import fold_batch_norms
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="dense"),
        ...                           keras.layers.BatchNormalization(name="folded"), keras.layers.ReLU(),
        ...                           keras.layers.BatchNormalization(name="after_relu")])
        >>> records = []
        >>> _ = fold_batch_norms(model, records=records)
        >>> records
        [FoldRecord(batch_norm='folded', folded_into='dense'),
         FoldRecord(batch_norm='after_relu', folded_into=None)]
    """

    batch_norm: str
    folded_into: str | None


def batch_norm_scale_shift(layer) -> tuple[np.ndarray, np.ndarray]:
    """The inference-mode batch norm as ``x * scale + shift``, per channel, in float64.

    Examples:
        >>> import keras
        >>> from keras_norms.export.folding import batch_norm_scale_shift
        >>> bn = keras.layers.BatchNormalization(epsilon=0.0)
        >>> bn.build((None, 2))
        >>> scale, shift = batch_norm_scale_shift(bn)
        >>> scale.tolist(), shift.tolist()
        ([1.0, 1.0], [0.0, 0.0])
    """
    mean = np.asarray(layer.moving_mean, dtype=np.float64)
    variance = np.asarray(layer.moving_variance, dtype=np.float64)
    gamma = np.asarray(layer.gamma, dtype=np.float64) if layer.scale else 1.0
    beta = np.asarray(layer.beta, dtype=np.float64) if layer.center else 0.0
    scale = gamma / np.sqrt(variance + layer.epsilon)
    return scale, beta - mean * scale


def _scale_shift(layer) -> tuple[np.ndarray, np.ndarray]:
    """A batch norm or a LayerScale as ``x * scale + shift``, per channel, in float64."""
    if type(layer) in SCALE_TYPES:
        gamma = np.asarray(layer.gamma, dtype=np.float64)
        return gamma, np.zeros_like(gamma)
    return batch_norm_scale_shift(layer)


def _channel_axis(layer) -> int | None:
    """The one axis a batch norm or LayerScale works along, or None (a LayerScale over several)."""
    axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    return axes[0] if len(axes) == 1 else None


def _graph(model):
    """The functional graph of a Sequential or functional model, or None (a subclassed model)."""
    if isinstance(model, keras.Sequential):
        return getattr(model, "_functional", None)
    return model if getattr(model, "_nodes_by_depth", None) is not None else None


def _is_inference_call(node) -> bool:
    arguments = getattr(node, "arguments", None)
    kwargs = getattr(arguments, "kwargs", None) or {}
    return kwargs.get("training") is not True


def _output_channel_axis(layer, rank: int) -> int:
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return 1
    return rank - 1


def _can_fold_into(layer) -> bool:
    if type(layer) not in FOLDABLE_LAYER_TYPES:
        return False
    if getattr(layer, "lora_enabled", False) or getattr(layer, "quantization_mode", None):
        return False
    return keras.activations.serialize(layer.activation) == "linear"


def _plan(model) -> dict[int, tuple]:
    """Maps id(batch norm or LayerScale) -> (it, the layer to fold it into or None for a multiply-add).

    Batch norms called in training mode (`training=True` on the call) or more
    than once are left out: they are not a constant affine map. A LayerScale
    that cannot be folded is left out too: it is one multiply already.
    """
    graph = _graph(model)
    nodes = [node for depth in graph._nodes_by_depth.values() for node in depth]
    calls = Counter(id(node.operation) for node in nodes)
    consumers = Counter(id(t) for node in nodes for t in node.input_tensors)
    consumers.update(id(t) for t in keras.tree.flatten(graph.outputs))
    producers = {id(t): node.operation for node in nodes for t in node.outputs}
    plan = {}
    for node in nodes:
        layer = node.operation
        scales = type(layer) in SCALE_TYPES
        if type(layer) not in BATCH_NORM_TYPES and not scales:
            continue
        if calls[id(layer)] != 1 or not _is_inference_call(node) or len(node.input_tensors) != 1:
            continue
        (tensor,) = node.input_tensors
        rank = len(tensor.shape)
        producer = producers.get(id(tensor))
        folds = (
            producer is not None
            and _can_fold_into(producer)
            and calls[id(producer)] == 1
            and consumers[id(tensor)] == 1
            and _channel_axis(layer) is not None
            and _channel_axis(layer) % rank == _output_channel_axis(producer, rank)
        )
        if folds or not scales:
            plan[id(layer)] = (layer, producer if folds else None)
    return plan


def _contains_batch_norm(model) -> bool:
    return any(type(layer) in (*BATCH_NORM_TYPES, *SCALE_TYPES)
               for layer in model._flatten_layers(include_self=False))


def _folded_weights(layer, scale: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    kernel = np.asarray(layer.kernel, dtype=np.float64)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        # kernel (..., in_channels, depth_multiplier): output channel c = i * multiplier + m.
        factor = scale.reshape(kernel.shape[-2], kernel.shape[-1])
    else:
        factor = scale  # the output channels are the kernel's last axis
    bias = np.asarray(layer.bias, dtype=np.float64) if layer.use_bias else 0.0
    return (kernel * factor).astype("float32"), (bias * scale + shift).astype("float32")


def fold_batch_norms(model: keras.Model, *, records: list | None = None) -> keras.Model:
    """Returns a copy of `model` with every batch norm frozen into constant arithmetic.

    A `BatchNormalization` (of keras-norms or of Keras) that directly follows a
    Conv1D, Conv2D, Conv3D, DepthwiseConv2D or Dense layer with no activation,
    is that layer's only consumer, and normalizes the layer's output channels,
    is folded into the layer's kernel and bias (a bias is created if the layer
    had none) and replaced by an identity. Every other batch norm becomes a
    `ChannelAffine`: one per-channel multiply-add with constant scale and
    shift. Both are the batch norm in inference mode (moving statistics).
    A `keras_norms.LayerScale` along the output channels of such a layer is
    folded into it the same way (its `gamma` scales the kernel and bias); one
    that cannot be folded stays as it is, one multiply.
    Layers that change nothing are shared with `model`, not copied; nested
    Sequential/functional models are folded too. `model` itself is not
    modified.

    Args:
        model: A built Sequential or functional Keras model.
        records: Optional list that receives one `FoldRecord` per batch norm.

    Returns:
        A new Keras model with the same inputs and outputs (equal within
            float32 rounding, in inference mode).

    Raises:
        ValueError: `model` is not a Keras model, or not a built Sequential or
            functional one (a subclassed model has no layer graph to rewrite).

    Examples:
        >>> import keras, keras_norms
        >>> from keras_norms.export import fold_batch_norms
        >>> model = keras.Sequential([keras.Input((8, 8, 3)),
        ...     keras.layers.Conv2D(4, 3, use_bias=False), keras_norms.BatchNormalization()])
        >>> folded = fold_batch_norms(model)
        >>> [type(layer).__name__ for layer in folded.layers], folded.layers[0].use_bias
        (['Conv2D', 'Identity'], True)
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"fold_batch_norms needs a keras.Model. Received: model={model!r}")
    if _graph(model) is None:
        raise ValueError(
            "fold_batch_norms needs a built Sequential or functional model (a subclassed model has "
            "no layer graph to rewrite); wrap it, e.g. `keras.Model(inputs, model(inputs))` with "
            f"`inputs = keras.Input(shape)`. Received: {type(model).__name__} {model.name!r}"
        )
    records = [] if records is None else records
    plan = _plan(model)
    fold_targets = {id(target): bn for bn, target in plan.values() if target is not None}
    replaced = {}  # id(original layer) -> new layer, weights set once the new model is built

    def clone(layer):
        if id(layer) in fold_targets:
            config = {**layer.get_config(), "use_bias": True, "bias_initializer": "zeros"}
            new = type(layer).from_config(config)
        elif id(layer) in plan and plan[id(layer)][1] is not None:
            new = keras.layers.Identity(name=layer.name, dtype=layer.dtype_policy.name)
        elif id(layer) in plan:
            new = ChannelAffine(axis=layer.axis, name=layer.name, dtype=layer.dtype_policy.name)
        elif isinstance(layer, keras.Model) and _graph(layer) is not None and _contains_batch_norm(layer):
            return fold_batch_norms(layer, records=records)
        else:
            return layer
        replaced[id(layer)] = (layer, new)
        return new

    def call(layer, *args, **kwargs):
        if any(new is layer for _, new in replaced.values()):
            kwargs = {}  # the batch norm's `training`/`mask`: an affine map takes neither
        return layer(*args, **kwargs)

    if isinstance(model, keras.Sequential):  # clone_model calls Sequential layers without kwargs
        folded = keras.models.clone_model(model, clone_function=clone)
    else:
        folded = keras.models.clone_model(model, clone_function=clone, call_function=call)
    for original, new in replaced.values():
        if id(original) in fold_targets:
            bn = fold_targets[id(original)]
            kernel, bias = _folded_weights(original, *_scale_shift(bn))
            new.kernel.assign(kernel)
            new.bias.assign(bias)
            if type(bn) in BATCH_NORM_TYPES:
                records.append(FoldRecord(bn.name, original.name))
        elif isinstance(new, ChannelAffine):
            scale, shift = batch_norm_scale_shift(original)
            new.scale.assign(scale.astype("float32"))
            new.shift.assign(shift.astype("float32"))
            records.append(FoldRecord(original.name, None))
    return folded
