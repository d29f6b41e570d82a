"""TensorFlow contenders: keras-norms' layers (fast and plain paths) and `keras.layers.*`, as traced steps."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import keras
import tensorflow as tf

import keras_norms
from benchmarks.shapes import SHAPES
from keras_norms import functional as F

IMAGES = SHAPES["reference"]["images"]  # NHWC, groups=32: the reference shapes (docs/contributing.md)
SEQUENCES = SHAPES["reference"]["sequences"]


@dataclasses.dataclass(frozen=True)
class Norm:
    """A norm as both contenders build it: ours and the Keras built-in it is compared with."""

    name: str
    shape: tuple[int, ...]
    ours: Callable[..., keras.layers.Layer]
    keras: Callable[..., keras.layers.Layer]
    groups: int | None = None


NORMS = {
    "batch": Norm("batch", IMAGES, keras_norms.BatchNormalization, keras.layers.BatchNormalization),
    "group": Norm("group", IMAGES, lambda **kw: keras_norms.GroupNormalization(groups=32, **kw),
                  lambda **kw: keras.layers.GroupNormalization(groups=32, **kw), groups=32),
    # Keras has no instance norm layer; its group norm with one channel per group is one.
    "instance": Norm("instance", IMAGES, keras_norms.InstanceNormalization,
                     lambda **kw: keras.layers.GroupNormalization(groups=-1, **kw)),
    "layer": Norm("layer", SEQUENCES, keras_norms.LayerNormalization, keras.layers.LayerNormalization),
    "rms": Norm("rms", SEQUENCES, keras_norms.RMSNormalization, keras.layers.RMSNormalization),
}

#: The norm-free layers, each against the layer norm it replaces (Keras'; ours is a contender too).
POINTWISE = {
    "dyt": Norm("dyt", SEQUENCES, keras_norms.DynamicTanh, keras.layers.LayerNormalization),
    "derf": Norm("derf", SEQUENCES, keras_norms.DynamicErf, keras.layers.LayerNormalization),
}
#: An element-wise layer reads x and writes y; its training step then reads dy and x and writes dx.
POINTWISE_PASSES = {"forward": 2, "inference": 2, "train": 5}

# Full-size tensors that must be read or written, per element of the input: statistics need a
# read before the output can be written (forward: read, read, write); backward needs the two
# sums over dy and x (read, read) before dx (read, read, write).
PASSES = {"forward": 3, "inference": 2, "train": 8}


def policy(dtype: str) -> str:
    return "mixed_bfloat16" if dtype == "bfloat16" else "float32"


def tensor_bytes(shape, dtype: str) -> int:
    size = 1
    for n in shape:
        size *= n
    return size * (2 if dtype == "bfloat16" else 4)


def step(make_layer: Callable[..., keras.layers.Layer], shape, *, mode: str, xla: bool, dtype: str,
         fast: bool = True, layer_kwargs: dict | None = None):
    """A traced `tf.function` doing one forward (`mode` "forward"/"inference") or training step, as a thunk.

    "forward" calls the layer with `training=True` (batch statistics for batch
    norm), "inference" with `training=False`. "train" returns the output and
    the gradients with respect to the input and every trainable weight, for a
    fixed upstream gradient. The function is traced (with the fast paths on
    or off as asked) before it is returned.
    """
    with F.use_fast_paths(fast):
        layer = make_layer(dtype=policy(dtype), **(layer_kwargs or {}))
        layer.build(shape)
        generator = tf.random.Generator.from_seed(0)
        x = tf.cast(generator.normal(shape), dtype)
        upstream = tf.cast(generator.normal(shape), dtype)

        if mode == "train":
            def body(inputs):
                with tf.GradientTape() as tape:
                    tape.watch(inputs)
                    outputs = layer(inputs, training=True)
                sources = [inputs, *layer.trainable_weights]
                return outputs, tape.gradient(outputs, sources, output_gradients=upstream)
        else:
            def body(inputs):
                return layer(inputs, training=mode == "forward")

        # The batch size is left unknown, as `model.fit` traces its steps.
        signature = [tf.TensorSpec([None, *shape[1:]], x.dtype)]
        function = tf.function(body, jit_compile=xla, input_signature=signature)
        function(x)
    return lambda: function(x)


def one_pass(shape, *, xla: bool, dtype: str):
    """A traced `x + 1`: one read and one write of the tensor, the least any op producing a new one costs.

    The anchor that bounds batch norm inference: no kernel that writes its
    output to new memory can be faster, so `keras / (x + 1)` is the largest
    ratio any inference kernel can reach against Keras on this machine.
    """
    x = tf.cast(tf.random.Generator.from_seed(0).normal(shape), dtype)
    function = tf.function(lambda: x + tf.constant(1, x.dtype), jit_compile=xla)
    function()
    return function


def reduction(shape, *, xla: bool, dtype: str, axes):
    """A traced sum of the tensor, in float32, over `axes`: one read, the statistics' least cost.

    The anchor of the forward rows under XLA: a norm's forward takes two such
    reductions (the mean, then the variance of the centred input, exact for a
    large mean) and one element-wise pass (`one_pass`).
    """
    x = tf.cast(tf.random.Generator.from_seed(0).normal(shape), dtype)
    function = tf.function(lambda: tf.reduce_sum(tf.cast(x, tf.float32), axis=axes), jit_compile=xla)
    function()
    return function


# Ops that move no tensor data: views, constants, variables and bookkeeping.
_NO_TRAFFIC = {"Placeholder", "Identity", "IdentityN", "Reshape", "Const", "ReadVariableOp", "NoOp",
               "Shape", "StopGradient", "VarHandleOp", "Squeeze", "ExpandDims"}


def graph_passes(make_layer, shape, *, dtype: str) -> float:
    """Passes over the tensor that the layer's forward graph (no tape, no XLA) makes, op by op.

    A graph without XLA runs each op as its own kernel: every op reads its
    full-size inputs from memory and writes its full-size output. This sums
    those bytes over the ops of the traced graph, in units of the input's
    size: the least that graph can cost, however fast each op is.
    """
    layer = make_layer(dtype=policy(dtype))
    layer.build(shape)
    spec = tf.TensorSpec(shape, tf.as_dtype(dtype))
    graph = tf.function(lambda x: layer(x, training=True)).get_concrete_function(spec).graph
    size = 1
    for n in shape:
        size *= n

    def full_bytes(tensors):
        return sum(t.dtype.size * size for t in tensors
                   if t.shape.rank is not None and t.shape.num_elements() == size)

    moved = sum(full_bytes(op.inputs) + full_bytes(op.outputs)
                for op in graph.get_operations() if op.type not in _NO_TRAFFIC)
    return moved / tensor_bytes(shape, dtype)


def peak_memory(function) -> int:
    """Peak bytes TensorFlow's CPU allocator held above what was live before one call of `function`."""
    function()
    tf.config.experimental.reset_memory_stats("CPU:0")
    before = tf.config.experimental.get_memory_info("CPU:0")["current"]
    outputs = function()
    peak = tf.config.experimental.get_memory_info("CPU:0")["peak"]
    del outputs
    return peak - before
