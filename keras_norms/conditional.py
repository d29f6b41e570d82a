"""Conditional normalization: gamma and beta computed from a condition (a class, a style, a vector, a map).

The layers take two inputs, `layer(inputs, condition)`, so they have no
registry name (`SPADE`, which takes a map, is in `keras_norms.spade`); they
are `keras_norms.ConditionedNormalization` layers, as the adaptive ones. Their
math is in `keras_norms.functional` (`modulate`, `select_rows`, `linear`,
`resize_nearest`, `conv2d` over the existing norms),
in float32 under every policy but float64 (which computes in float64); the
weights are never autocast and the output has the compute dtype. A condition
whose rank, channel count or batch size does not fit the input raises a
`ValueError` naming both shapes. A class or style id outside its range raises
when the ids are known: at once where they have values (eager TensorFlow, JAX
outside `jax.jit`, PyTorch), when the graph runs in a `tf.function` or a
compiled Keras model on TensorFlow (`InvalidArgumentError`). Compiled code
cannot raise: under XLA (`jit_compile=True`) and in `jax.jit` (a JAX model's
`fit`, `predict`) such an id selects no row, so gamma and beta are 0 for its
example (`functional.check_ids`).
"""

from __future__ import annotations

import keras
from keras import ops

from keras_norms import functional as F
from keras_norms._base import ConditionedNormalization
from keras_norms._checks import check_axis_argument, check_count, check_rank, resolve_axes
from keras_norms.batch import BatchNormalization

# The BatchNormalization arguments that ConditionalBatchNormalization passes on (its statistics).
_STATISTICS_ARGUMENTS = (
    "axis", "momentum", "epsilon", "moving_mean_initializer", "moving_variance_initializer",
    "renorm", "renorm_clipping", "renorm_momentum", "synchronized", "virtual_batch_size",
    "freeze_statistics",
)

def _is_integer(tensor) -> bool:
    return "int" in keras.backend.standardize_dtype(tensor.dtype)


def _ids_problem(condition_shape, what: str) -> str | None:
    if len(condition_shape) == 1 or (len(condition_shape) == 2 and condition_shape[1] in (1, None)):
        return None
    return f"{what} ids must have shape (batch,) or (batch, 1)"


def _checked_ids(layer, ids, what: str, count: int):
    """`ids`, checked to be in [0, count): an error naming `layer`, eagerly or when a graph runs."""
    argument = "num_classes" if what == "class" else "num_styles"
    # No quotes around the name: a graph's assertion message would show them escaped.
    return F.check_ids(ids, count,
                       what=f"{type(layer).__name__} {layer.name}: {what} ids ({argument}={count})")


def _add_vector_projections(layer, features: int, channels: int) -> None:
    """`gamma_kernel`, `gamma_bias`, `beta_kernel`, `beta_bias`: gamma and beta projected from a vector."""
    layer.condition_features = features
    layer.gamma_kernel, layer.gamma_bias = layer.add_projection((features, channels), name="gamma")
    layer.beta_kernel, layer.beta_bias = layer.add_projection((features, channels), name="beta")


def _vector_gamma_beta(layer, condition):
    """``1 + c @ gamma_kernel + gamma_bias`` and ``c @ beta_kernel + beta_bias``."""
    gamma = 1.0 + F.linear(condition, layer.gamma_kernel, layer.gamma_bias)
    return gamma, F.linear(condition, layer.beta_kernel, layer.beta_bias)


@keras.saving.register_keras_serializable(package="keras_norms")
class ConditionalBatchNormalization(ConditionedNormalization):
    r"""Conditional batch normalization (de Vries et al., 2017; Miyato and Koyama, 2018).

    Batch normalization without an affine of its own, then a gamma and beta per
    example taken from the condition $c$:

    $$
    y = \frac{x - \mu_B}{\sqrt{\sigma_B^2 + \epsilon}} \, \gamma(c) + \beta(c).
    $$

    Use it to condition a network on a class (the generators and
    discriminators of class-conditional GANs) or on a vector (a question
    embedding, a noise code) through its normalization layers.

    - **Class ids** (`num_classes=K`): `gamma` and `beta` are `(K, channels)`
      tables (embeddings) starting at 1 and 0; $\gamma(c) = \gamma_c$,
      $\beta(c) = \beta_c$, the rows of class $c$. The condition has shape `(batch,)` or
      `(batch, 1)`; pass it as an integer input (`keras.Input((), dtype="int32")`).
      An id outside `[0, K)` raises a `ValueError` naming the layer, the id
      and the range (`InvalidArgumentError` with the same words when a
      TensorFlow graph runs); compiled code cannot raise, and there (XLA,
      `jax.jit`) such an id gives gamma = beta = 0.
    - **A vector** (`num_classes=None`), shape `(batch, features)`: two
      projections, $\gamma(c) = 1 + c \, W_\gamma + b_\gamma$ and
      $\beta(c) = c \, W_\beta + b_\beta$ (`gamma_kernel`, `gamma_bias`,
      `beta_kernel`, `beta_bias`), zero-initialized so that the
      layer starts as plain batch norm.

    The statistics are those of `keras_norms.BatchNormalization` (run inside
    the layer, with `center=False, scale=False`), and so are all its statistics
    arguments: moving averages for inference, `momentum`, `renorm`,
    `synchronized`, `virtual_batch_size`, `freeze_statistics`, the `training`
    flag and `trainable=False` (inference mode).

    Args:
        num_classes: Number of classes for class-id conditions (the rows of
            the `gamma` and `beta` tables), or `None` for conditioning vectors.
        axis: The channel axis (`-1` channels last, `1` channels first).
        momentum: Momentum of the moving averages, in [0, 1].
        epsilon: Small float added to the variance, > 0.
        moving_mean_initializer: Initializer of the moving mean.
        moving_variance_initializer: Initializer of the moving variance.
        renorm: Use batch renormalization in training.
        renorm_clipping: Dict with optional keys `"rmax"`, `"rmin"`, `"dmax"`
            clipping the renormalization corrections `r` to `[rmin, rmax]` and
            `d` to `[-dmax, dmax]`.
        renorm_momentum: Momentum of the statistics that `r` and `d` use, in [0, 1].
        synchronized: Statistics over the global batch of all devices
            (TensorFlow and JAX, as in `keras_norms.BatchNormalization`).
        virtual_batch_size: Examples per virtual batch (ghost batch norm), or
            `None`; the batch size must be a multiple of it.
        freeze_statistics: Normalize with the moving statistics even in
            training, and do not update them (fine-tuning); also settable on a
            built layer (`layer.freeze_statistics = True`, then compile again).
        gamma_initializer: Initializer of the `gamma` table (class ids only).
        beta_initializer: Initializer of the `beta` table (class ids only).
        kernel_initializer: Initializer of `gamma_kernel` and `beta_kernel`
            (vectors only); with the default zeros, and zero biases, the layer
            starts as plain batch norm.
        bias_initializer: Initializer of `gamma_bias` and `beta_bias` (vectors only).
        gamma_regularizer: Optional regularizer of the `gamma` table.
        beta_regularizer: Optional regularizer of the `beta` table.
        kernel_regularizer: Optional regularizer of `gamma_kernel` and `beta_kernel`.
        **kwargs: Base layer arguments (`name`, `dtype`, `trainable`, ...).

    Call arguments:
        inputs: Tensor of rank 2 or more, batch first, channels on `axis`.
        condition: Class ids of shape `(batch,)` or `(batch, 1)` (cast to
            int32), or float vectors `(batch, features)`; the batch size of `inputs`.
        training: Python bool: batch statistics (and moving-average updates)
            when `True`, moving statistics otherwise.
        inputs_mask: Optional mask of `inputs`, as `BatchNormalization`'s
            `mask` (Keras passes the mask of `Masking` or
            `Embedding(mask_zero=True)` here by itself): masked positions do
            not count in the batch statistics.

    Input shape:
        inputs: Any rank of 2 or more, batch first, e.g. `(batch, height,
            width, channels)`; the channels on `axis`.
        condition: `(batch,)` or `(batch, 1)` class ids, or `(batch,
            features)` vectors.

    Output shape:
        The shape of `inputs`.

    Returns:
        The modulated tensor, of the shape of `inputs`, in the layer's compute dtype.

    Raises:
        TypeError: If `num_classes`, `axis` or `virtual_batch_size` is not an
            int, `epsilon`, `momentum` or `renorm_momentum` is not a number,
            `renorm_clipping` is not a dict or holds a value that is not a
            number, or `renorm`, `synchronized` or `freeze_statistics` is not a
            bool.
        ValueError: In the constructor, if `num_classes` or
            `virtual_batch_size` is < 1, `axis` is 0, `epsilon` is not finite
            and > 0, `momentum` or `renorm_momentum` is outside [0, 1],
            `renorm_clipping` has other keys than `"rmax"`, `"rmin"`, `"dmax"`,
            a NaN value, or `rmax < rmin` or `dmax < 0`, `synchronized=True` is combined
            with `virtual_batch_size` or used on a backend other than
            TensorFlow and JAX, or Keras cannot interpret an initializer or
            regularizer. When the layer is built, if `inputs` has rank < 2, or
            `axis` is not one of its axes or has an undefined size. When it is
            built or called, if `condition` does not fit: class ids not of
            shape `(batch,)` or `(batch, 1)`, vectors not of rank 2 or with an
            undefined or (once built) another number of features, or a batch
            size other than that of `inputs`; or if the known batch size is
            not a multiple of `virtual_batch_size` (when called: in training).
            When it is called, if `inputs` has another rank or channel count
            than the layer was built for, in training `inputs_mask` does not
            broadcast against `inputs`, or a class id is outside
            `[0, num_classes)` (see the class ids above).

    References:
        - de Vries et al., "Modulating early visual processing by language",
          NIPS 2017. [arXiv:1707.00683](https://arxiv.org/abs/1707.00683)
        - Miyato and Koyama, "cGANs with Projection Discriminator", ICLR 2018.
          [arXiv:1802.05637](https://arxiv.org/abs/1802.05637)

    Examples:
        >>> import numpy as np, keras_norms
        >>> layer = keras_norms.ConditionalBatchNormalization(num_classes=10)
        >>> x = np.random.default_rng(0).normal(2.0, 3.0, size=(4, 8, 8, 16)).astype("float32")
        >>> classes = np.array([0, 3, 3, 9])
        >>> y = np.asarray(layer(x, classes, training=True))  # gamma 1 and beta 0: batch norm
        >>> tuple(layer.gamma.shape), bool(abs(y.mean()) < 1e-4), round(float(y.std()), 2)
        ((10, 16), True, 1.0)
        >>> _ = layer.beta.assign(np.arange(10, dtype="float32")[:, None] * np.ones(16, "float32"))
        >>> y = np.asarray(layer(x, classes, training=True))  # beta of class k: k
        >>> y.mean(axis=(1, 2, 3)).round().astype(int)
        array([0, 3, 3, 9])
    """

    declared_arguments = {
        "gamma_initializer": "ones",
        "beta_initializer": "zeros",
        "kernel_initializer": "zeros",
        "bias_initializer": "zeros",
        "gamma_regularizer": None,
        "beta_regularizer": None,
        "kernel_regularizer": None,
    }
    _restate_shapes = True

    def __init__(
        self,
        num_classes: int | None = None,
        axis: int = -1,
        momentum: float = 0.99,
        epsilon: float = 1e-3,
        moving_mean_initializer="zeros",
        moving_variance_initializer="ones",
        renorm: bool = False,
        renorm_clipping: dict | None = None,
        renorm_momentum: float = 0.99,
        synchronized: bool = False,
        virtual_batch_size: int | None = None,
        freeze_statistics: bool = False,
        gamma_initializer="ones",
        beta_initializer="zeros",
        kernel_initializer="zeros",
        bias_initializer="zeros",
        gamma_regularizer=None,
        beta_regularizer=None,
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(**self.declared_values(locals()), **kwargs)
        self.num_classes = None if num_classes is None else check_count("num_classes", num_classes)
        # BatchNormalization checks these arguments and computes the statistics. Its policy (float32,
        # or float64 in a float64 layer) hands the modulation below its unrounded output.
        self.normalization = BatchNormalization(
            axis=axis, momentum=momentum, epsilon=epsilon, center=False, scale=False,
            moving_mean_initializer=moving_mean_initializer,
            moving_variance_initializer=moving_variance_initializer,
            renorm=renorm, renorm_clipping=renorm_clipping, renorm_momentum=renorm_momentum,
            synchronized=synchronized, virtual_batch_size=virtual_batch_size,
            freeze_statistics=freeze_statistics, dtype=self.statistics_dtype, name="batch_normalization",
        )
        self.normalization.trainable = self.trainable
        self._axis = None

    def condition_problem(self, inputs_shape, condition_shape, integer):
        if self.num_classes is not None:
            return _ids_problem(condition_shape, "class")
        return self.vector_problem(condition_shape)

    def build(self, inputs_shape, condition_shape):
        name = type(self).__name__
        check_rank(name, inputs_shape, 2)
        (self._axis,) = resolve_axes(name, self.normalization.axis, inputs_shape)
        self.check_condition(inputs_shape, condition_shape)
        self.expect_input_shape(inputs_shape, [self._axis])
        self.normalization.build(inputs_shape)
        channels = inputs_shape[self._axis]
        if self.num_classes is not None:
            self.gamma = self.add_learned_weight("gamma", (self.num_classes, channels))
            self.beta = self.add_learned_weight("beta", (self.num_classes, channels))
        else:
            _add_vector_projections(self, condition_shape[-1], channels)

    def call(self, inputs, condition, training=None, inputs_mask=None):
        inputs = self.prepare(inputs)
        self.check_condition(inputs.shape, condition.shape)
        normalized = self.normalization(inputs, training=training, mask=inputs_mask)
        if self.num_classes is not None:
            ids = ops.reshape(ops.cast(condition, "int32"), (-1,))
            ids = _checked_ids(self, ids, "class", self.num_classes)
            gamma, beta = F.select_rows(self.gamma, ids), F.select_rows(self.beta, ids)
        else:
            gamma, beta = _vector_gamma_beta(self, condition)
        outputs = F.modulate(normalized, gamma, beta, axis=self._axis)
        return ops.cast(outputs, self.compute_dtype)

    def get_config(self):
        statistics = self.normalization.get_config()
        config = {"num_classes": self.num_classes, **{key: statistics[key] for key in _STATISTICS_ARGUMENTS}}
        return {**super().get_config(), **config}


def _statistics_argument(name: str) -> property:
    return property(lambda self: getattr(self.normalization, name),
                    doc=f"`{name}` of the batch normalization that computes the statistics.")


for _name in _STATISTICS_ARGUMENTS:
    if _name != "freeze_statistics":
        setattr(ConditionalBatchNormalization, _name, _statistics_argument(_name))


@keras.saving.register_keras_serializable(package="keras_norms")
class ConditionalInstanceNormalization(ConditionedNormalization):
    r"""Conditional instance normalization (Dumoulin et al., 2017): a gamma and beta per style.

    Each channel of each example is normalized over its spatial (or time)
    axes, with their mean $\mu$ and variance $\sigma^2$, then scaled and
    shifted with the parameters of its style:

    $$
    y = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} \, (w \, \Gamma) + w \, B,
    $$

    with $\Gamma$ and $B$ (`gamma` and `beta`) `(num_styles, channels)` tables (starting at 1 and
    0) and $w$ the example's style: an integer style id ($w$ one-hot) or a
    float vector of `num_styles` style weights, which mixes styles (weights
    summing to 1 interpolate between them, as in the paper). Use it for one
    style-transfer network that renders several styles, each costing only
    its two rows of parameters.

    Args:
        num_styles: Number of styles (the rows of `gamma` and `beta`).
        axis: The channel axis (`-1` channels last, `1` channels first).
        epsilon: Small float added to the variance, > 0.
        gamma_initializer: Initializer of the `gamma` table (default ones).
        beta_initializer: Initializer of the `beta` table (default zeros).
        gamma_regularizer: Optional regularizer of the `gamma` table.
        beta_regularizer: Optional regularizer of the `beta` table.
        **kwargs: Base layer arguments (`name`, `dtype`, `trainable`, ...).

    Call arguments:
        inputs: Tensor of rank 3 to 5, batch first, channels on `axis`.
        condition: Integer style ids `(batch,)`/`(batch, 1)` (an id outside
            `[0, num_styles)` raises, as in `ConditionalBatchNormalization`;
            under XLA and `jax.jit` it gives gamma = beta = 0), or float
            style weights `(batch, num_styles)`; its dtype tells which. The
            batch size of `inputs`.

    Input shape:
        inputs: Rank 3 to 5, batch first, e.g. `(batch, height, width,
            channels)`; the channels on `axis`.
        condition: `(batch,)` or `(batch, 1)` style ids, or `(batch,
            num_styles)` style weights.

    Output shape:
        The shape of `inputs`.

    Returns:
        The normalized and modulated tensor, of the shape of `inputs`, in the
        layer's compute dtype.

    Raises:
        TypeError: If `num_styles` or `axis` is not an int, or `epsilon` is
            not a number.
        ValueError: In the constructor, if `num_styles` is < 1, `axis` is 0,
            `epsilon` is not finite and > 0, or Keras cannot interpret an initializer or
            regularizer. When the layer is built, if `inputs` is not of rank 3
            to 5, or `axis` is not one of its axes or has an undefined size.
            When it is built or called, if `condition` does not fit: integer
            ids not of shape `(batch,)` or `(batch, 1)`, float weights not of
            shape `(batch, num_styles)`, or a batch size other than that of
            `inputs`. When it is called, if `inputs` has another rank or
            channel count than the layer was built for, or a style id is
            outside `[0, num_styles)`.

    Reference:
        - Dumoulin, Shlens and Kudlur, "A Learned Representation For Artistic
          Style", ICLR 2017. [arXiv:1610.07629](https://arxiv.org/abs/1610.07629)

    Examples:
        >>> import numpy as np, keras_norms
        >>> layer = keras_norms.ConditionalInstanceNormalization(num_styles=3)
        >>> x = np.random.default_rng(0).normal(size=(2, 8, 8, 4)).astype("float32")
        >>> layer.build(x.shape, (2,))
        >>> _ = layer.beta.assign([[0.0] * 4, [1.0] * 4, [2.0] * 4])  # beta of style k: k
        >>> by_id = np.asarray(layer(x, np.array([0, 2])))
        >>> mixed = np.asarray(layer(x, np.array([[0.5, 0.0, 0.5], [0.0, 0.0, 1.0]], "float32")))
        >>> by_id.mean(axis=(1, 2, 3)).round().astype(int), mixed.mean(axis=(1, 2, 3)).round().astype(int)
        (array([0, 2]), array([1, 2]))
    """

    declared_arguments = {
        "epsilon": 1e-3,
        "gamma_initializer": "ones",
        "beta_initializer": "zeros",
        "gamma_regularizer": None,
        "beta_regularizer": None,
    }
    _restate_shapes = True

    def __init__(
        self,
        num_styles: int,
        axis: int = -1,
        epsilon: float = 1e-3,
        gamma_initializer="ones",
        beta_initializer="zeros",
        gamma_regularizer=None,
        beta_regularizer=None,
        **kwargs,
    ):
        super().__init__(**self.declared_values(locals()), **kwargs)
        self.num_styles = check_count("num_styles", num_styles)
        self.axis = check_axis_argument(axis)
        self._axis = None

    def condition_problem(self, inputs_shape, condition_shape, integer):
        ids = _ids_problem(condition_shape, "style")
        weights = (None if len(condition_shape) == 2 and condition_shape[1] in (self.num_styles, None)
                   else f"style weights must have shape (batch, {self.num_styles})")
        if integer is None:  # in build, before the dtype is known: either form
            return ids and weights
        return ids if integer else weights

    def build(self, inputs_shape, condition_shape):
        name = type(self).__name__
        check_rank(name, inputs_shape, 3, 5)
        (self._axis,) = resolve_axes(name, self.axis, inputs_shape)
        self.check_condition(inputs_shape, condition_shape)
        self.expect_input_shape(inputs_shape, [self._axis])
        shape = (self.num_styles, inputs_shape[self._axis])
        self.gamma = self.add_learned_weight("gamma", shape)
        self.beta = self.add_learned_weight("beta", shape)

    def call(self, inputs, condition):
        inputs = self.prepare(inputs)
        integer = _is_integer(condition)
        self.check_condition(inputs.shape, condition.shape, integer)
        if integer:
            condition = _checked_ids(self, ops.reshape(condition, (-1,)), "style", self.num_styles)
        normalized = F.group_norm(inputs, -1, axis=self._axis, epsilon=self.epsilon)
        gamma, beta = F.select_rows(self.gamma, condition), F.select_rows(self.beta, condition)
        outputs = F.modulate(normalized, gamma, beta, axis=self._axis)
        return ops.cast(outputs, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "num_styles": self.num_styles, "axis": self.axis}


@keras.saving.register_keras_serializable(package="keras_norms")
class FiLM(ConditionedNormalization):
    r"""Feature-wise linear modulation (Perez et al., 2018); no normalization of its own.

    A scale and a shift per example and channel, projected from a
    conditioning vector $c$ and broadcast over the spatial or time axes:

    $$
    y = x \, (1 + c \, W_\gamma + b_\gamma) + c \, W_\beta + b_\beta,
    $$

    with $W_\gamma$, $b_\gamma$, $W_\beta$, $b_\beta$ the weights `gamma_kernel`,
    `gamma_bias`, `beta_kernel` and `beta_bias`.
    The gain is written as 1 + delta and the projections start at zero (the
    default initializers), so the layer starts as the identity. Use it to
    condition any features on a vector (a question or text embedding, a
    timestep), for instance after a normalization without an affine.

    Args:
        axis: The channel axis (`-1` channels last, `1` channels first).
        kernel_initializer: Initializer of `gamma_kernel` and `beta_kernel` (default zeros).
        bias_initializer: Initializer of `gamma_bias` and `beta_bias` (default zeros).
        kernel_regularizer: Optional regularizer of `gamma_kernel` and `beta_kernel`.
        **kwargs: Base layer arguments (`name`, `dtype`, `trainable`, ...).

    Call arguments:
        inputs: Tensor of rank 2 or more, batch first, channels on `axis`.
        condition: Conditioning vectors `(batch, features)`, with the batch
            size of `inputs`.

    Input shape:
        inputs: Any rank of 2 or more, batch first, e.g. `(batch, height,
            width, channels)` or `(batch, tokens, channels)`; the channels
            on `axis`.
        condition: `(batch, features)`.

    Output shape:
        The shape of `inputs`.

    Returns:
        The modulated tensor, of the shape of `inputs`, in the layer's compute dtype.

    Raises:
        TypeError: If `axis` is not an int.
        ValueError: In the constructor, if `axis` is 0 or Keras cannot
            interpret an initializer or regularizer. When the layer is built,
            if `inputs` has rank < 2, or `axis` is not one of its axes or has
            an undefined size. When it is built or called, if `condition` is
            not of rank 2, has an undefined or (once built) another number of
            features, or a batch size other than that of `inputs`. When it is
            called, if `inputs` has another rank or channel count than the
            layer was built for.

    Reference:
        - Perez, Strub, de Vries, Dumoulin and Courville, "FiLM: Visual Reasoning
          with a General Conditioning Layer", AAAI 2018.
          [arXiv:1709.07871](https://arxiv.org/abs/1709.07871)

    Examples:
        >>> import numpy as np, keras_norms
        >>> layer = keras_norms.FiLM()
        >>> x, c = np.ones((2, 5, 8), "float32"), np.ones((2, 3), "float32")
        >>> y = np.asarray(layer(x, c))
        >>> bool((y == x).all()), tuple(layer.gamma_kernel.shape)  # the identity at first
        (True, (3, 8))
        >>> _ = layer.gamma_bias.assign(np.ones(8, "float32"))  # a gain of 1 + 1
        >>> float(np.asarray(layer(x, c)).max())
        2.0
    """

    declared_arguments = {
        "kernel_initializer": "zeros",
        "bias_initializer": "zeros",
        "kernel_regularizer": None,
    }
    _restate_shapes = True

    def __init__(self, axis: int = -1, kernel_initializer="zeros", bias_initializer="zeros",
                 kernel_regularizer=None, **kwargs):
        super().__init__(**self.declared_values(locals()), **kwargs)
        self.axis = check_axis_argument(axis)
        self._axis = None

    def build(self, inputs_shape, condition_shape):
        name = type(self).__name__
        check_rank(name, inputs_shape, 2)
        (self._axis,) = resolve_axes(name, self.axis, inputs_shape)
        self.check_condition(inputs_shape, condition_shape)
        self.expect_input_shape(inputs_shape, [self._axis])
        _add_vector_projections(self, condition_shape[-1], inputs_shape[self._axis])

    def call(self, inputs, condition):
        inputs = self.prepare(inputs)
        self.check_condition(inputs.shape, condition.shape)
        gamma, beta = _vector_gamma_beta(self, condition)
        return ops.cast(F.modulate(inputs, gamma, beta, axis=self._axis), self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}
