"""Weight normalization: a wrapper that splits a layer's kernel into a length and a direction."""

from __future__ import annotations

import warnings

import keras
import numpy as np
from keras import ops

# Keras has no public way to read an autocast variable without autocasting it; weight
# normalization must read the float32 kernel under mixed precision (not its bfloat16 copy).
from keras.src.backend import AutocastScope

from keras_norms import functional as F

_CONVOLUTIONS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
_TRANSPOSED_CONVOLUTIONS = (
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
)
# Keras' convolutions call ops.conv, which TensorFlow runs channels first only with oneDNN;
# F.convolve runs them on every machine.
_KERAS_CONVOLUTION_OP = keras.layers.Conv2D.convolution_op
_SUPPORTED = (
    "Dense, Conv1D/2D/3D, Conv1D/2D/3DTranspose, or an RNN layer whose cell has a "
    "`recurrent_kernel` (SimpleRNN, LSTM, GRU)"
)
# As tf.nn.l2_normalize (which tensorflow-addons used): a floor on the squared norm of v.
_SQUARED_NORM_EPSILON = 1e-12
# As tensorflow-addons' data-dependent initialization: added to the variance.
_DATA_INIT_EPSILON = 1e-10


@keras.saving.register_keras_serializable(package="keras_norms")
class WeightNormalization(keras.layers.Wrapper):
    r"""Weight normalization of a layer's kernel (Salimans and Kingma, 2016).

    The wrapped layer computes with

    $$
    w = g \, \frac{v}{\lVert v \rVert}
    $$

    instead of its kernel:
    $v$ is the wrapped layer's own kernel variable (the direction), $g$ a learned
    length per output channel, and $\lVert v \rVert$ the norm of each output channel's
    slice of $v$ (over every kernel axis but the output-channel axis; squared
    norms are floored at 1e-12 as in `tf.nn.l2_normalize`). Decoupling the
    length from the direction conditions the optimization better, without
    batch statistics: a fit for recurrent networks, reinforcement learning and
    generative models, where batch normalization is awkward. For an RNN layer
    the normalized kernel is the cell's `recurrent_kernel`.

    The successor of tensorflow-addons' `WeightNormalization`: same arguments,
    config keys and weights. The normalized kernel exists only inside `call`
    (the wrapped layer's attributes are never reassigned), so the wrapper runs
    in eager mode, in `tf.function`, with `jit_compile=True` and in `model.fit`.
    Differences from tensorflow-addons:

    - Initialization happens on the first *training* call (as the first
      `model.fit` step) with a non-empty batch. Until then the wrapper
      computes what the wrapped layer computes (``g = ||v||``) and changes no
      weight, so an inference graph holds no initialization ops.
    - The data-dependent statistics use the normalized kernel (tfa used an
      unnormalized copy of the layer made at build time) and leave the bias
      out, so the pre-activations come out with mean 0 and variance 1.
    - Transposed convolutions are normalized per output channel (their kernel
      axis -2, ``g`` of shape `(filters,)`); tfa normalized their last kernel
      axis, the input channels (`TfaWeightNormalization`, which tfa files
      load as, keeps tfa's rule).
    - An `activity_regularizer` goes on the wrapper, not on a wrapped Dense or
      convolution.

    Initialization, on the first training call: with ``data_init=False``,
    ``g = ||v||``, so training starts from the plain layer. With
    ``data_init=True`` (Salimans and Kingma, section 3), the batch's
    pre-activations ``y = x * (g v / ||v||)`` (no bias, no activation) give
    per-channel mean `m` and variance `s2` over every axis but the channel
    axis; then ``g <- g / sqrt(s2 + 1e-10)`` and ``bias <- -m / sqrt(s2 +
    1e-10)``, and that first call already uses them. For an RNN (which the
    paper advises against) the statistics are those of the RNN's outputs, the
    scale is tiled over the gates and the bias is kept, as in tensorflow-addons.

    Weights, in `layer.weights` order: ``[g, initialized, *layer.layer.weights]``,
    e.g. ``[g, initialized, kernel, bias]`` for a Dense (``[g, initialized,
    kernel, recurrent_kernel, bias]`` for an RNN); `trainable_weights` are
    ``[g, kernel, bias]``. tensorflow-addons listed ``[g, kernel, bias,
    initialized]`` (trainable, then non-trainable: the order Keras' legacy
    `.h5` loader reads, so tfa `.h5` files with ``data_init=False`` load
    directly), followed, with ``data_init=True``, by copies of the wrapped
    layer's weights held by its internal `_naked_clone_layer`; use
    `set_tfa_weights` for such lists.

    Args:
        layer: The `keras.layers.Layer` to wrap: a Dense, Conv1D/2D/3D,
            Conv1D/2D/3DTranspose, or an RNN layer whose cell has a
            `recurrent_kernel` (SimpleRNN, LSTM, GRU).
        data_init: Python bool; if `True`, initialize `g` and the bias from the
            statistics of the first training batch, else ``g = ||v||``. An RNN
            with `data_init=True` gives a warning (the paper advises against it).
        **kwargs: Base layer arguments (`name`, `dtype`, `activity_regularizer`, ...).

    Call arguments:
        inputs: The wrapped layer's inputs.
        training: Python bool; the first call with `training=True`
            initializes the layer (and the wrapped layer sees it).
        mask: Optional mask, passed on to a wrapped RNN.

    Input shape:
        inputs: The wrapped layer's, e.g. `(batch, features)` for a Dense,
            `(batch, height, width, channels)` for a Conv2D, `(batch, time,
            features)` for an RNN.

    Output shape:
        The wrapped layer's.

    Returns:
        The wrapped layer's outputs, computed with ``w = g * v / ||v||`` in
        place of its kernel (an RNN cell's recurrent kernel), in the wrapper's
        compute dtype.

    Raises:
        TypeError: If `layer` is not a `keras.layers.Layer`, or `data_init` is
            not a Python bool.
        ValueError: If `layer` is not one of the supported kinds, or is a Dense
            or convolution with an `activity_regularizer` (give it to the
            wrapper instead). When building: the wrapped layer (its cell, for an
            RNN) has no `kernel` (`recurrent_kernel`) variable.

    Reference:
        - Salimans and Kingma, "Weight Normalization: A Simple Reparameterization
          to Accelerate Training of Deep Neural Networks", NIPS 2016.
          [arXiv:1602.07868](https://arxiv.org/abs/1602.07868)

    Examples:
        >>> import keras, numpy as np
        >>> from keras_norms.weight_norm import WeightNormalization
        >>> conv = WeightNormalization(keras.layers.Conv2D(8, 3), data_init=False)
        >>> tuple(conv(np.zeros((2, 10, 10, 3))).shape)
        (2, 8, 8, 8)
        >>> [w.name for w in conv.weights]
        ['g', 'initialized', 'kernel', 'bias']

        With `data_init=True` (the default), the first training batch sets `g`
        and the bias so that its pre-activations have mean 0 and variance 1 per unit:

        >>> dense = WeightNormalization(keras.layers.Dense(3))
        >>> x = np.random.default_rng(0).normal(size=(64, 5)).astype("float32")
        >>> y = np.asarray(dense(x, training=True))
        >>> bool(np.allclose(y.mean(axis=0), 0.0, atol=1e-5))
        True
        >>> bool(np.allclose(y.std(axis=0), 1.0, atol=1e-4))
        True
    """

    # tensorflow-addons normalized every kernel per slice of its last axis, the input channels of a
    # transposed convolution; this class per output channel (TfaWeightNormalization as tfa).
    _last_kernel_axis = False

    def __init__(self, layer, data_init: bool = True, **kwargs):
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(
                f"Argument `layer` must be a keras.layers.Layer instance. Received: layer={layer!r}"
            )
        if not isinstance(layer, (keras.layers.Dense, *_CONVOLUTIONS, *_TRANSPOSED_CONVOLUTIONS,
                                  keras.layers.RNN)):
            raise ValueError(
                f"WeightNormalization wraps a layer with a kernel: {_SUPPORTED}. "
                f"Received: layer={type(layer).__name__} ({layer.name!r})"
            )
        if not isinstance(data_init, bool):
            raise TypeError(f"Argument `data_init` must be a Python bool. Received: data_init={data_init!r}")
        is_rnn = isinstance(layer, keras.layers.RNN)
        if not is_rnn and layer.activity_regularizer is not None:
            raise ValueError(
                "WeightNormalization computes the wrapped layer's outputs itself: give the "
                "`activity_regularizer` to the wrapper instead of to the wrapped layer. "
                f"Received: layer.activity_regularizer={layer.activity_regularizer!r}"
            )
        super().__init__(layer, **kwargs)
        self.data_init = data_init
        self.is_rnn = is_rnn
        if data_init and is_rnn:
            warnings.warn(
                "WeightNormalization: the paper advises against data_init=True with RNNs; "
                "use data_init=False.",
                stacklevel=2,
            )
        self.g = None
        self.initialized = None
        self._output_axis = None

    @property
    def v(self):
        """The normalized variable: the wrapped layer's `kernel` (an RNN cell's `recurrent_kernel`)."""
        return self.layer.cell.recurrent_kernel if self.is_rnn else self.layer.kernel

    def build(self, input_shape):
        super().build(input_shape)
        owner = self.layer.cell if self.is_rnn else self.layer
        name = "recurrent_kernel" if self.is_rnn else "kernel"
        kernel = getattr(owner, name, None)
        if not isinstance(kernel, keras.Variable):
            raise ValueError(
                f"WeightNormalization needs a `{name}` variable in {type(owner).__name__} "
                f"{owner.name!r} (supported: {_SUPPORTED}). Received: {name}={kernel!r}"
            )
        transposed = isinstance(self.layer, _TRANSPOSED_CONVOLUTIONS) and not self._last_kernel_axis
        self._output_axis = len(kernel.shape) - (2 if transposed else 1)
        self.g = self.add_weight(
            name="g",
            shape=(kernel.shape[self._output_axis],),
            initializer="ones",
            dtype=kernel.dtype,
            trainable=True,
            autocast=False,
        )
        self.initialized = self.add_weight(
            name="initialized", shape=(), initializer="zeros", dtype="bool", trainable=False
        )

    def call(self, inputs, training=None, mask=None):
        with AutocastScope(None):
            if training:
                g, bias = self._initialize_once(inputs, mask)
            else:
                g = self._g_or_v_norm()
                bias = self._bias()
            return self._forward(inputs, self._kernel(g), bias, training=training, mask=mask)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask) if self.layer.supports_masking else None

    def get_config(self):
        return {**super().get_config(), "data_init": self.data_init}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)  # the caller's dict stays intact
        layer = config.pop("layer")
        if "module" not in layer and hasattr(keras.layers, layer.get("class_name", "")):
            # tf.keras 2 wrote a built-in layer's config without its module, which Keras 3 needs.
            layer = {**layer, "module": "keras.layers"}
        return cls(keras.saving.deserialize_keras_object(layer, custom_objects=custom_objects), **config)

    def remove(self):
        """Returns the wrapped layer, its kernel set to the effective kernel ``g * v / ||v||``.

        The wrapped layer's kernel variable is assigned in place; the returned
        layer, used on its own, computes what the wrapper computed.

        Returns:
            The wrapped layer, `self.layer`.

        Raises:
            ValueError: If the wrapper is not built.
        """
        if not self.built:
            raise ValueError(f"WeightNormalization {self.name!r} must be built before `remove()`.")
        with AutocastScope(None):
            self.v.assign(self._kernel(self._g_or_v_norm()))
        return self.layer

    def set_tfa_weights(self, weights) -> None:
        """Sets the weights from a list in tensorflow-addons' order (its `get_weights()`, its `.h5`).

        That order is ``[g, *wrapped trainable weights, initialized, *wrapped
        non-trainable weights]``, followed with ``data_init=True`` by as many
        copies of the wrapped layer's weights (its internal `_naked_clone_layer`),
        which are ignored. The wrapper must be built.

        Args:
            weights: The list of arrays, in tensorflow-addons' order.

        Raises:
            ValueError: If the wrapper is not built, the list has neither length
                (without or with the copies), or an array's shape differs from
                its weight's (a transposed convolution's tfa `g` has one entry
                per input channel, this class's one per output channel).
        """
        if not self.built:
            raise ValueError(f"WeightNormalization {self.name!r} must be built before `set_tfa_weights()`.")
        wrapped = self.layer.weights
        targets = [self.g, *[w for w in wrapped if w.trainable], self.initialized,
                   *[w for w in wrapped if not w.trainable]]
        weights = list(weights)
        if len(weights) not in (len(targets), len(targets) + len(wrapped)):
            raise ValueError(
                f"WeightNormalization {self.name!r} expects {len(targets)} tensorflow-addons weights "
                f"(or {len(targets) + len(wrapped)} with the data_init clone's copies). "
                f"Received: {len(weights)} weights"
            )
        pairs = list(zip(targets, weights[: len(targets)], strict=True))
        for variable, value in pairs:
            if tuple(variable.shape) != np.shape(value):
                raise ValueError(
                    f"WeightNormalization {self.name!r}: weight {variable.name!r} has shape "
                    f"{tuple(variable.shape)} (transposed convolutions: tfa's g had one entry per input "
                    f"channel, this g one per output channel). Received: shape {np.shape(value)}"
                )
        for variable, value in pairs:
            variable.assign(value)

    # The math. Everything below runs without autocasting: g, v and the bias are read in
    # their own dtype (float32 under mixed precision) and cast for the wrapped layer's math.

    def _bias(self):
        bias = None if self.is_rnn else self.layer.bias
        return None if bias is None else ops.copy(bias)

    def _g_or_v_norm(self):
        """`g` once initialized, else ``||v||`` (the plain layer)."""
        initialized, g = ops.convert_to_tensor(self.initialized), ops.convert_to_tensor(self.g)
        return ops.where(initialized, g, self._v_norm())

    def _v_norm(self):
        """``||v||`` per output channel, shaped like `g`."""
        return F.kernel_norms(self.v, axis=self._output_axis)

    def _kernel(self, g):
        """``g * v / ||v||`` in the dtype of `v`."""
        return F.weight_normalized_kernel(self.v, g, axis=self._output_axis, epsilon=_SQUARED_NORM_EPSILON)

    def _initialize_once(self, inputs, mask):
        """`g` and the bias, first set to their initial values if the layer is not initialized."""
        bias_variable = None if self.is_rnn else self.layer.bias
        variables = [self.g] if bias_variable is None else [self.g, bias_variable]

        def current():
            return [ops.copy(v) for v in variables]

        def initial():
            return [ops.stop_gradient(t) for t in self._initial_values(inputs, mask)[: len(variables)]]

        # An empty batch has no statistics: the layer waits, uninitialized, for a batch with examples.
        initialized, nonempty = ops.copy(self.initialized), ops.size(inputs) > 0
        # Pure branches, then plain assignments: only the branch taken runs (graph mode, XLA).
        values = ops.cond(ops.logical_or(initialized, ops.logical_not(nonempty)), current, initial)
        for variable, value in zip(variables, values, strict=True):
            variable.assign(value)
        self.initialized.assign(ops.logical_or(initialized, nonempty))
        # Read back after the assignments, so that gradients reach the variables from the first step.
        return ops.copy(self.g), self._bias()

    def _initial_values(self, inputs, mask):
        """``[g, bias]`` at initialization (see the class docstring)."""
        g = ops.copy(self.g)
        bias = self._bias()
        if not self.data_init:
            return [self._v_norm(), bias]
        if self.is_rnn:
            outputs = self._rnn_forward(inputs, self._kernel(g), training=False, mask=mask)
            outputs = ops.cast(keras.tree.flatten(outputs)[0], g.dtype)
            _, variance = ops.moments(outputs, axes=list(range(len(outputs.shape) - 1)))
            scale = ops.rsqrt(variance + _DATA_INIT_EPSILON)
            return [g * ops.tile(scale, [g.shape[0] // scale.shape[0]]), bias]
        outputs = self._linear(ops.cast(inputs, self.layer.compute_dtype), self._kernel(g))
        outputs = ops.cast(outputs, g.dtype)
        channel_axis = self._channel_axis(len(outputs.shape))
        axes = [a for a in range(len(outputs.shape)) if a != channel_axis]
        mean, variance = ops.moments(outputs, axes=axes)
        scale = ops.rsqrt(variance + _DATA_INIT_EPSILON)
        return [g * scale, -mean * scale]

    def _channel_axis(self, rank: int) -> int:
        channels_first = getattr(self.layer, "data_format", None) == "channels_first"
        return 1 if channels_first else rank - 1

    def _forward(self, inputs, kernel, bias, training=None, mask=None):
        if self.is_rnn:
            outputs = self._rnn_forward(inputs, kernel, training=training, mask=mask)
            return keras.tree.map_structure(lambda t: ops.cast(t, self.compute_dtype), outputs)
        dtype = self.layer.compute_dtype
        outputs = self._linear(ops.cast(inputs, dtype), kernel)
        if bias is not None:
            rank = len(outputs.shape)
            channel_shape = [-1 if a == self._channel_axis(rank) else 1 for a in range(rank)]
            bias = ops.reshape(ops.cast(bias, dtype), channel_shape)
            if self._channel_axis(rank) == rank - 1:
                outputs = ops.add(outputs, bias)  # TensorFlow: a BiasAdd, fused with a convolution
            else:
                # `+`, not ops.add: on TensorFlow, ops.add turns a (1, C, 1, ...) bias into a channels-last
                # BiasAdd when the last axis also has C entries, adding the bias along the wrong axis.
                outputs = outputs + bias
        if self.layer.activation is not None:
            outputs = self.layer.activation(outputs)
        return ops.cast(outputs, self.compute_dtype)

    def _linear(self, inputs, kernel):
        """The wrapped Dense or convolution without bias and activation, with `kernel` as its kernel."""
        layer = self.layer
        kernel = ops.cast(kernel, inputs.dtype)
        if isinstance(layer, keras.layers.Dense):
            return ops.matmul(inputs, kernel)
        if isinstance(layer, _TRANSPOSED_CONVOLUTIONS):
            return F.convolve_transpose(
                inputs,
                kernel,
                strides=list(layer.strides),
                padding=layer.padding,
                output_padding=layer.output_padding,
                dilation_rate=layer.dilation_rate,
                data_format=layer.data_format,
            )
        if layer.padding == "causal":  # Conv1D pads the past itself, then convolves without padding.
            past = layer.dilation_rate[0] * (layer.kernel_size[0] - 1)
            time_axis = 1 if layer.data_format == "channels_last" else 2
            padding = [[past, 0] if a == time_axis else [0, 0] for a in range(3)]
            return F.convolve(
                ops.pad(inputs, padding),
                kernel,
                strides=list(layer.strides),
                padding="valid",
                dilation_rate=layer.dilation_rate,
                data_format=layer.data_format,
            )
        if type(layer).convolution_op is not _KERAS_CONVOLUTION_OP:  # a subclass's own convolution
            return layer.convolution_op(inputs, kernel)
        return F.convolve(
            inputs,
            kernel,
            strides=list(layer.strides),
            padding=layer.padding,
            dilation_rate=layer.dilation_rate,
            data_format=layer.data_format,
        )

    def _rnn_forward(self, inputs, kernel, training=None, mask=None):
        """Runs the wrapped RNN with its cell's recurrent kernel read as `kernel`.

        A `keras.StatelessScope` maps the variable to `kernel` for this call
        only: no attribute of the layer changes, and the scope is local to the
        thread, so tracing and replica threads are safe. Updates the RNN makes
        (dropout seeds, states) and its losses are carried out of the scope.
        """
        with keras.StatelessScope(state_mapping=[(self.v, kernel)], collect_losses=True) as scope:
            outputs = self.layer(inputs, training=training, mask=mask)
        for variable in self.layer.variables:
            updated = scope.get_current_value(variable)
            if variable is not self.v and updated is not None:
                variable.assign(updated)
        for loss in scope.losses:
            self.add_loss(loss)
        return outputs


@keras.saving.register_keras_serializable(package="keras_norms")
class TfaWeightNormalization(WeightNormalization):
    """`WeightNormalization` as tensorflow-addons laid it out; files naming ``Addons>WeightNormalization``
    load as this class.

    With ``data_init=True``, tensorflow-addons also saved copies of the wrapped
    layer's weights (its internal `_naked_clone_layer`, made at build time for
    the data-dependent initialization), after ``[g, kernel, bias,
    initialized]``. This class holds them, unused, so that tfa's `.h5` files
    load weight for weight. It also normalizes a transposed convolution's
    kernel per input channel (its last axis), as tfa did, so a tfa model
    computes what it computed. New models use `WeightNormalization`.
    """

    _last_kernel_axis = True

    def build(self, input_shape):
        super().build(input_shape)
        self.tfa_copies = []
        if self.data_init:
            self.tfa_copies = [
                self.add_weight(name=f"tfa_copy_{weight.name}", shape=weight.shape, dtype=weight.dtype,
                                initializer="zeros", trainable=False)
                for weight in self.layer.weights
            ]
