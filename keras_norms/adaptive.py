"""Adaptive normalization: AdaIN, adaLN and adaLN-Zero, adaptive group norm.

Each takes a second input, called as `layer(x, condition)`: a style (feature
map or vector), or a conditioning vector such as a class or timestep
embedding, which sets the scale and shift of the normalized `x`. They are
`keras_norms.ConditionedNormalization` layers, as the conditional ones.
`SwitchableNormalization` (single input) is in `keras_norms.switchable`.
"""

from __future__ import annotations

import keras
from keras import initializers, ops

from keras_norms import functional as F
from keras_norms._base import ConditionedNormalization
from keras_norms._checks import check_bool, check_fraction, check_groups, check_rank

# The arguments of the projection of the condition, with the defaults of AdaIN and AdaGN.
_PROJECTION_ARGUMENTS = {
    "epsilon": 1e-5,
    "activation": None,
    "kernel_initializer": "glorot_uniform",
    "bias_initializer": "zeros",
    "kernel_regularizer": None,
    "bias_regularizer": None,
}


def _check_channels(layer, inputs_shape, condition_shape, min_rank: int, max_rank: int | None) -> int:
    """The channel count (last axis) of `inputs_shape`, after checking its rank and that it is defined."""
    check_rank(type(layer).__name__, inputs_shape, min_rank, max_rank)
    channels = inputs_shape[-1]
    if channels is None:
        raise layer.condition_error(inputs_shape, condition_shape,
                                    "the channel axis (last) of the inputs must have a defined size")
    return channels


def _add_projection(layer, condition_shape, units: int) -> None:
    """`kernel` and `bias`: the projection of a condition vector of `condition_shape` to `units`."""
    layer.condition_features = condition_shape[-1]
    layer.kernel, layer.bias = layer.add_projection((layer.condition_features, units))


def _modulation(layer, condition, chunks: int):
    """``activation(condition) @ kernel + bias``, split into `chunks` per-channel parameters."""
    return F.condition_parameters(condition, layer.kernel, layer.bias, chunks=chunks,
                                  activation=layer.activation)


_ADAIN_MODES = ("features", "vector")


@keras.saving.register_keras_serializable(package="keras_norms")
class AdaptiveInstanceNormalization(ConditionedNormalization):
    r"""Adaptive instance normalization, AdaIN (Huang and Belongie, 2017).

    Called as `layer(content, style)`. Each channel of each content example is
    instance-normalized, then given the statistics of the style:

    - `mode="features"` (parameter-free AdaIN): `style` is a feature map of
      the content's rank and channel count (its spatial size may differ), and
      $\operatorname{AdaIN}(x, y) = \sigma(y) \, \frac{x - \mu(x)}{\sigma(x)} + \mu(y)$,
      with the per-channel mean $\mu$ and $\sigma = \sqrt{\mathrm{variance} + \epsilon}$
      over the spatial axes. Arbitrary style transfer between two feature maps.
    - `mode="vector"` (learned AdaIN, as in StyleGAN): `style` is a style
      code of shape `(batch, style_dim)`, projected by a dense layer to a
      per-channel scale $s$ and shift $t$: $\operatorname{IN}(x) \, (1 + s) + t$
      with $[s, t] = \operatorname{activation}(y) \, W + b$ (`kernel`, `bias`).

    Either way the output mixes the stylized content with the content,

    $$
    \mathrm{output} = \alpha \, \operatorname{AdaIN}(x, y) + (1 - \alpha) \, x,
    $$

    where `alpha` trades content for style (1: full style). Channels are last.

    Args:
        mode: `"features"` or `"vector"`, the kind of `style` (see above).
        alpha: The style weight, in [0, 1]; a call may override it.
        epsilon: Small float added to the variances, > 0.
        activation: `"vector"` mode: applied to the style code before the
            projection (default `None`: the identity).
        kernel_initializer: `"vector"` mode: initializer of the projection kernel.
        bias_initializer: `"vector"` mode: initializer of the projection bias.
        kernel_regularizer: `"vector"` mode: optional regularizer of the projection kernel.
        bias_regularizer: `"vector"` mode: optional regularizer of the projection bias.
        **kwargs: Base layer arguments (`name`, `dtype`, `trainable`, ...).

    Call arguments:
        inputs: The content, a tensor of rank 3 to 5, channels last.
        style: A feature map (`"features"`) or a `(batch, style_dim)` code (`"vector"`),
            with the batch size of `inputs`.
        alpha: Optional float in [0, 1] overriding the constructor's `alpha`.

    Input shape:
        inputs: Rank 3 to 5, channels last, e.g. `(batch, height, width,
            channels)`.
        style: `"features"`: the rank and channels of `inputs`, any spatial
            size; `"vector"`: `(batch, style_dim)`.

    Output shape:
        The shape of `inputs`.

    Returns:
        The stylized content, of the shape of `inputs`, in the layer's compute dtype.

    Raises:
        TypeError: If `alpha` (of the constructor or of a call) or `epsilon`
            is not a number.
        ValueError: In the constructor, if `mode` is not `"features"` or
            `"vector"`, `alpha` is outside [0, 1], `epsilon` is not finite and
            > 0, or Keras cannot interpret the activation, an initializer or a
            regularizer.
            When the layer is built or called, if `inputs` is not of rank 3 to
            5 or its channel size is undefined; in `"features"` mode, if
            `style` has another rank or channel count than `inputs`; in
            `"vector"` mode, if `style` is not of rank 2 or has an undefined
            or (once built) another number of features; in both, if `style`
            has a batch size other than that of `inputs`. When called, if
            `inputs` has another rank or channel count than the layer was
            built for, or `alpha` is outside [0, 1].

    References:
        - Huang and Belongie, "Arbitrary Style Transfer in Real-time with
          Adaptive Instance Normalization", ICCV 2017.
          [arXiv:1703.06868](https://arxiv.org/abs/1703.06868)
        - Karras, Laine and Aila, "A Style-Based Generator Architecture for
          Generative Adversarial Networks", CVPR 2019.
          [arXiv:1812.04948](https://arxiv.org/abs/1812.04948)

    Examples:
        >>> import numpy as np, keras_norms
        >>> rng = np.random.default_rng(0)
        >>> content = rng.normal(size=(2, 16, 16, 8)).astype("float32")
        >>> style = rng.normal(3.0, 2.0, size=(2, 8, 8, 8)).astype("float32")
        >>> y = np.asarray(keras_norms.AdaptiveInstanceNormalization()(content, style))
        >>> bool(np.allclose(y.mean(axis=(1, 2)), style.mean(axis=(1, 2)), atol=1e-4))
        True
        >>> bool(np.allclose(y.std(axis=(1, 2)), style.std(axis=(1, 2)), atol=1e-3))
        True
    """

    condition_name = "style"
    declared_arguments = _PROJECTION_ARGUMENTS

    def __init__(self, mode: str = "features", alpha: float = 1.0, epsilon: float = 1e-5, activation=None,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, **kwargs):
        if mode not in _ADAIN_MODES:
            raise ValueError(f"Argument `mode` must be one of {_ADAIN_MODES}. Received: mode={mode!r}")
        super().__init__(**self.declared_values(locals()), **kwargs)
        self.kernel = self.bias = None  # the projection, created by build
        self.mode = mode
        self.alpha = check_fraction("alpha", alpha)

    def condition_problem(self, inputs_shape, style_shape, integer):
        if self.mode == "vector":
            return self.vector_problem(style_shape)
        if len(style_shape) != len(inputs_shape) or style_shape[-1] != inputs_shape[-1]:
            return ("in mode='features' the style must be a feature map of the content's rank and channel "
                    "count (for a style vector of shape (batch, style_dim) use mode='vector')")
        return None

    def build(self, inputs_shape, style_shape):
        channels = _check_channels(self, inputs_shape, style_shape, 3, 5)
        self.check_condition(inputs_shape, style_shape)
        self.expect_input_shape(inputs_shape, [-1])
        if self.mode == "vector":
            _add_projection(self, style_shape, 2 * channels)

    def call(self, inputs, style, alpha=None):
        inputs = self.prepare(inputs)
        _check_channels(self, inputs.shape, style.shape, 3, 5)
        self.check_condition(inputs.shape, style.shape)
        alpha = self.alpha if alpha is None else check_fraction("alpha", alpha)
        if self.mode == "features":
            outputs = F.adaptive_instance_norm(inputs, self.cast_for_math(style), alpha=alpha,
                                               epsilon=self.epsilon)
        else:
            scale, shift = _modulation(self, style, 2)
            outputs = F.modulated_instance_norm(inputs, scale, shift, alpha=alpha, epsilon=self.epsilon)
        return ops.cast(outputs, self.compute_dtype)

    def compute_output_shape(self, inputs_shape, style_shape):
        return inputs_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "alpha": self.alpha}


@keras.saving.register_keras_serializable(package="keras_norms")
class AdaptiveLayerNormalization(ConditionedNormalization):
    r"""Adaptive layer normalization, adaLN and adaLN-Zero (Peebles and Xie, 2023).

    Called as `layer(x, condition)` with `condition` of shape `(batch,
    features)` (in DiT, the sum of the timestep and class embeddings). `x` is
    layer-normalized over its last axis without an affine of its own, then
    modulated per example with a shift $t$ and a scale $s$ projected from the
    condition $c$ (`kernel` $W$, `bias` $b$), broadcast over the other axes
    (the tokens):

    $$
    y = \operatorname{LN}(x) \, (1 + s) + t, \qquad
    [t, s] = \operatorname{activation}(c) \, W + b.
    $$

    `zero=True` is adaLN-Zero: the projection also gives a gate
    (``[shift, scale, gate]``), the layer returns `(modulated, gate)` (the
    gate shaped to broadcast against `x`), and `kernel` and `bias` start at
    zero. A residual block ``x + gate * f(modulated)`` is then exactly the
    identity at initialization, which is what makes deep diffusion
    transformers train stably.

    Args:
        zero: adaLN-Zero: return a gate too, and initialize the projection to zero.
        epsilon: Small float added to the variance, > 0 (DiT: 1e-6).
        activation: Applied to the condition before the projection (DiT: SiLU).
        kernel_initializer: Initializer of the projection kernel; default
            `"zeros"` with `zero=True` (which requires zeros) and
            `"glorot_uniform"` without.
        bias_initializer: Initializer of the projection bias; must be zeros
            with `zero=True`.
        kernel_regularizer: Optional regularizer of the projection kernel.
        bias_regularizer: Optional regularizer of the projection bias.
        **kwargs: Base layer arguments (`name`, `dtype`, `trainable`, ...).

    Call arguments:
        inputs: Tensor of rank 2 or more, features last (e.g. `(batch, tokens, dim)`).
        condition: Tensor `(batch, features)`, with the batch size of `inputs`.

    Input shape:
        inputs: Any rank of 2 or more, features last, e.g. `(batch, tokens,
            dim)`.
        condition: `(batch, features)`.

    Output shape:
        The shape of `inputs`; with `zero=True`, that and the gate's,
        `(batch, 1, ..., 1, dim)`.

    Returns:
        The modulated tensor, of the shape of `inputs`; with `zero=True`,
        `(modulated, gate)`, the gate of shape `(batch, 1, ..., 1, dim)`. Both
        in the layer's compute dtype.

    Raises:
        TypeError: If `epsilon` is not a number, or `zero` is not a bool.
        ValueError: In the constructor, if `zero=True` and `kernel_initializer`
            or `bias_initializer` is not zeros, `epsilon` is not finite and > 0, or Keras
            cannot interpret the activation, an initializer or a regularizer.
            When the layer is built, if `inputs` has rank < 2 or its last axis
            has an undefined size. When it is built or called, if `condition`
            is not of rank 2, has an undefined or (once built) another number
            of features, or a batch size other than that of `inputs`. When it
            is called, if `inputs` has another rank or last-axis size than the
            layer was built for.

    Reference:
        - Peebles and Xie, "Scalable Diffusion Models with Transformers",
          ICCV 2023. [arXiv:2212.09748](https://arxiv.org/abs/2212.09748)

    Examples:
        >>> import keras, keras_norms
        >>> x = keras.random.normal((2, 16, 32))
        >>> c = keras.random.normal((2, 64))
        >>> h, gate = keras_norms.AdaptiveLayerNormalization(zero=True)(x, c)
        >>> tuple(h.shape), tuple(gate.shape), float(keras.ops.max(keras.ops.abs(gate)))
        ((2, 16, 32), (2, 1, 32), 0.0)
    """

    # kernel_initializer: None is zeros with zero=True, glorot_uniform without.
    declared_arguments = {**_PROJECTION_ARGUMENTS, "epsilon": 1e-6, "activation": "silu"}

    def __init__(self, zero: bool = False, epsilon: float = 1e-6, activation="silu", kernel_initializer=None,
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, **kwargs):
        zero = check_bool("zero", zero)
        if kernel_initializer is None:
            kernel_initializer = "zeros" if zero else "glorot_uniform"
        super().__init__(**self.declared_values(locals()), **kwargs)
        self.kernel = self.bias = None  # the projection, created by build
        if zero:
            for argument in ("kernel_initializer", "bias_initializer"):
                value = getattr(self, argument)
                if not isinstance(value, initializers.Zeros):
                    raise ValueError(
                        f"zero=True (adaLN-Zero) starts the projection at zero, so `{argument}` must be "
                        f"'zeros'. Received: {argument}={initializers.serialize(value)!r}"
                    )
        self.zero = zero

    def build(self, inputs_shape, condition_shape):
        channels = _check_channels(self, inputs_shape, condition_shape, 2, None)
        self.expect_input_shape(inputs_shape, [-1])
        self.check_condition(inputs_shape, condition_shape)
        _add_projection(self, condition_shape, (3 if self.zero else 2) * channels)

    def call(self, inputs, condition):
        inputs = self.prepare(inputs)
        self.check_condition(inputs.shape, condition.shape)
        rank = len(inputs.shape)
        parameters = _modulation(self, condition, 3 if self.zero else 2)
        shift, scale = parameters[:2]
        normalized = F.layer_norm(inputs, axis=-1, epsilon=self.epsilon)
        outputs = ops.cast(F.modulate(normalized, 1.0 + scale, shift), self.compute_dtype)
        if not self.zero:
            return outputs
        gate = ops.reshape(parameters[2], (-1,) + (1,) * (rank - 2) + (inputs.shape[-1],))
        return outputs, ops.cast(gate, self.compute_dtype)

    def compute_output_shape(self, inputs_shape, condition_shape):
        if not self.zero:
            return inputs_shape
        gate_shape = (inputs_shape[0],) + (1,) * (len(inputs_shape) - 2) + (inputs_shape[-1],)
        return tuple(inputs_shape), gate_shape

    def get_config(self):
        return {**super().get_config(), "zero": self.zero}


@keras.saving.register_keras_serializable(package="keras_norms")
class AdaptiveGroupNormalization(ConditionedNormalization):
    r"""Adaptive group normalization: the timestep conditioning of diffusion U-Nets.

    Called as `layer(x, condition)` with an embedding `condition` of shape
    `(batch, features)` (timestep, plus class). `x` is group-normalized
    (`groups` groups of channels, no affine of its own), then scaled and
    shifted per example and channel by a scale $s$ and a shift $t$ projected
    from the embedding $c$ (`kernel` $W$, `bias` $b$):

    $$
    y = \operatorname{GN}(x) \, (1 + s) + t, \qquad
    [s, t] = \operatorname{activation}(c) \, W + b,
    $$

    the "scale-shift norm" of improved DDPM / ADM (AdaGN in Dhariwal and Nichol,
    2021). Use it in the residual blocks of a diffusion U-Net, in place of a
    group norm followed by adding the embedding.

    Args:
        groups: Number of groups; must divide the number of channels. `-1`
            means one channel per group.
        epsilon: Small float added to the variance, > 0.
        activation: Applied to the embedding before the projection (default SiLU).
        kernel_initializer: Initializer of the projection kernel.
        bias_initializer: Initializer of the projection bias.
        kernel_regularizer: Optional regularizer of the projection kernel.
        bias_regularizer: Optional regularizer of the projection bias.
        **kwargs: Base layer arguments (`name`, `dtype`, `trainable`, ...).

    Call arguments:
        inputs: Tensor of rank 3 to 5, channels last.
        condition: Tensor `(batch, features)`, with the batch size of `inputs`.

    Input shape:
        inputs: Rank 3 to 5, channels last, e.g. `(batch, height, width,
            channels)`; the channels a multiple of `groups`.
        condition: `(batch, features)`.

    Output shape:
        The shape of `inputs`.

    Returns:
        The modulated tensor, of the shape of `inputs`, in the layer's compute dtype.

    Raises:
        TypeError: If `groups` is not an int, or `epsilon` is not a number.
        ValueError: In the constructor, if `groups` is 0 or < -1, `epsilon` is
            not finite and > 0, or Keras cannot interpret the activation, an initializer or a
            regularizer. When the layer is built, if `inputs` is not of rank 3
            to 5, its channel axis has an undefined size, or `groups` does not
            divide the number of channels. When it is built or called, if
            `condition` is not of rank 2, has an undefined or (once built)
            another number of features, or a batch size other than that of
            `inputs`. When it is called, if `inputs` has another rank or
            channel count than the layer was built for.

    References:
        - Dhariwal and Nichol, "Diffusion Models Beat GANs on Image Synthesis",
          NeurIPS 2021. [arXiv:2105.05233](https://arxiv.org/abs/2105.05233)
        - Wu and He, "Group Normalization", ECCV 2018.
          [arXiv:1803.08494](https://arxiv.org/abs/1803.08494)

    Examples:
        >>> import numpy as np, keras_norms
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(3.0, 2.0, size=(2, 8, 8, 16)).astype("float32")
        >>> c = rng.normal(size=(2, 32)).astype("float32")
        >>> layer = keras_norms.AdaptiveGroupNormalization(groups=4)
        >>> y = np.asarray(layer(x, c))
        >>> gn = np.asarray(layer(x, np.zeros_like(c)))  # silu(0) = 0 and zero bias: GN(x) alone
        >>> gn.reshape(2, 64, 4, 4).std(axis=(1, 3)).round(2)  # each group of 4 channels
        array([[1., 1., 1., 1.],
               [1., 1., 1., 1.]], dtype=float32)
        >>> projected = c / (1 + np.exp(-c)) @ np.asarray(layer.kernel) + np.asarray(layer.bias)
        >>> scale, shift = np.split(projected[:, None, None], 2, axis=-1)  # kernel: (32, 2 * 16)
        >>> bool(np.allclose(y, gn * (1 + scale) + shift, atol=1e-4))
        True
    """

    declared_arguments = {**_PROJECTION_ARGUMENTS, "activation": "silu"}

    def __init__(self, groups: int = 32, epsilon: float = 1e-5, activation="silu",
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, **kwargs):
        groups = check_groups(groups)
        super().__init__(**self.declared_values(locals()), **kwargs)
        self.kernel = self.bias = None  # the projection, created by build
        self.groups = groups

    def build(self, inputs_shape, condition_shape):
        channels = _check_channels(self, inputs_shape, condition_shape, 3, 5)
        self.expect_input_shape(inputs_shape, [-1])
        if self.groups != -1 and (self.groups > channels or channels % self.groups):
            raise ValueError(
                f"{type(self).__name__}: the number of groups must divide the number of channels "
                f"({channels}, input shape {tuple(inputs_shape)}). Received: groups={self.groups}"
            )
        self.check_condition(inputs_shape, condition_shape)
        _add_projection(self, condition_shape, 2 * channels)

    def call(self, inputs, condition):
        inputs = self.prepare(inputs)
        self.check_condition(inputs.shape, condition.shape)
        scale, shift = _modulation(self, condition, 2)
        normalized = F.group_norm(inputs, self.groups, epsilon=self.epsilon)
        return ops.cast(F.modulate(normalized, 1.0 + scale, shift), self.compute_dtype)

    def compute_output_shape(self, inputs_shape, condition_shape):
        return inputs_shape

    def get_config(self):
        return {**super().get_config(), "groups": self.groups}
