"""Norm-free layers for transformers: Dynamic Tanh, Dynamic erf, and LayerScale for residual branches."""

from __future__ import annotations

import keras
from keras import initializers, ops

from keras_norms import functional as F
from keras_norms._base import AffineNormalization, NormalizationLayer
from keras_norms._checks import (
    check_axes_in_range,
    check_axis_argument,
    check_finite,
    check_rank,
    resolve_axes,
)

_AFFINE = {
    "center": True,
    "scale": True,
    "beta_initializer": "zeros",
    "gamma_initializer": "ones",
    "beta_regularizer": None,
    "gamma_regularizer": None,
    "beta_constraint": None,
    "gamma_constraint": None,
}


class _ElementwiseNormalization(AffineNormalization):
    """A learned squashing of each value, then `gamma` and `beta` along `axis`; learned scalars."""

    declared_arguments = _AFFINE
    #: The learned scalars: (weight name, its initial value's argument).
    scalars: tuple[tuple[str, str], ...] = ()

    def __init__(self, axis: int | list[int] = -1, **kwargs):
        super().__init__(**kwargs)
        self.axis = check_axis_argument(axis, allow_list=True)
        self._axes = None

    def build(self, input_shape):
        name = type(self).__name__
        check_rank(name, input_shape, 2)
        self._axes = resolve_axes(name, self.axis, input_shape)
        self.expect_input_shape(input_shape, self._axes, axis=self.axis)
        for weight, argument in self.scalars:
            setattr(self, weight, self.add_weight(
                name=weight, shape=(1,), initializer=initializers.Constant(getattr(self, argument)),
                trainable=True, autocast=False))
        self.add_affine_weights(tuple(input_shape[a] for a in self._axes))

    def compute_output_shape(self, input_shape):
        check_axes_in_range(type(self).__name__, self.axis, input_shape)
        return input_shape

    def get_config(self):
        return {**super().get_config(), "axis": self.axis,
                **{argument: getattr(self, argument) for _, argument in self.scalars}}


@keras.saving.register_keras_serializable(package="keras_norms")
class DynamicTanh(_ElementwiseNormalization):
    r"""Dynamic Tanh (DyT, Zhu et al., 2025): a squashing in place of layer norm, element by element.

    $$
    y = \tanh(\alpha x) \, \gamma + \beta.
    $$

    A drop-in replacement of layer norm in transformers that computes no
    statistics: the learned scalar `alpha` decides how soon large values
    saturate, as dividing by the standard deviation would squash them.
    `gamma` and `beta` have the shape of the input along `axis`, as in layer
    norm. Nothing couples the values of an example, so the layer costs one
    pass over memory and gives the same output for any batch or mask.

    The paper initializes `alpha` to 0.5 for vision models (the reference
    code's default, kept here) and smaller for large language models.

    Args:
        axis: The axis or list of axes `gamma` and `beta` run along (the
            channels; never the batch axis).
        alpha_init_value: Initial value of the learned scalar `alpha`.
        **kwargs: The keyword arguments below, and the base layer arguments
            (`name`, `dtype`, ...).

    Keyword Args:
        center: If `True` (default), add the learned offset `beta`.
        scale: If `True` (default), multiply by the learned scale `gamma`.
        beta_initializer: Initializer of `beta` (default `"zeros"`).
        gamma_initializer: Initializer of `gamma` (default `"ones"`).
        beta_regularizer: Optional regularizer of `beta`.
        gamma_regularizer: Optional regularizer of `gamma`.
        beta_constraint: Optional constraint of `beta`.
        gamma_constraint: Optional constraint of `gamma`.

    Call arguments:
        inputs: Tensor of rank 2 or more, batch first. A built layer takes
            another rank too where `axis` lands on the same axes counted from
            the end, of the same sizes.

    Input shape:
        inputs: Any rank of 2 or more, batch first, e.g. `(batch, tokens,
            features)`; the sizes along `axis` fixed once built.

    Output shape:
        The shape of the input.

    Returns:
        The result, of the input's shape, in the layer's compute dtype.

    Raises:
        TypeError: If `alpha_init_value` is not a real number, `axis` is not
            an int or a non-empty list of ints, or `center` or `scale` is not a bool.
        ValueError: If `alpha_init_value` is not finite, `axis` includes 0,
            or Keras cannot interpret an initializer, regularizer or
            constraint. When building: the input has rank < 2, or an entry
            of `axis` is out of range, names the batch axis, is repeated or
            has an undefined size. When called: the input's sizes along
            `axis` differ from the built ones.

    Reference:
        - Zhu, Chen, He, LeCun and Liu, "Transformers without Normalization",
          CVPR 2025. [arXiv:2503.10622](https://arxiv.org/abs/2503.10622);
          reference code [jiachenzhu/DyT](https://github.com/jiachenzhu/DyT)

    Examples:
        >>> import numpy as np, keras_norms
        >>> x = np.array([[-4.0, 0.0, 1.0, 40.0]])
        >>> np.round(np.asarray(keras_norms.DynamicTanh()(x)), 4)
        array([[-0.964 ,  0.    ,  0.4621,  1.    ]], dtype=float32)
        >>> layer = keras_norms.DynamicTanh(alpha_init_value=0.2)
        >>> y = layer(np.zeros((2, 8)))
        >>> [(w.name, tuple(w.shape)) for w in layer.weights]
        [('alpha', (1,)), ('gamma', (8,)), ('beta', (8,))]
    """

    scalars = (("alpha", "alpha_init_value"),)

    def __init__(self, axis: int | list[int] = -1, alpha_init_value: float = 0.5, **kwargs):
        super().__init__(axis, **kwargs)
        self.alpha_init_value = check_finite("alpha_init_value", alpha_init_value)

    def call(self, inputs):
        inputs = self.prepare(inputs)
        outputs = F.dynamic_tanh(inputs, self.alpha, self.gamma, self.beta,
                                 axis=self.fixed_axes_of(inputs.shape))
        return ops.cast(outputs, self.compute_dtype)


@keras.saving.register_keras_serializable(package="keras_norms")
class DynamicErf(_ElementwiseNormalization):
    r"""Dynamic erf (Derf, Chen et al., 2025): the error function of a learned scaling, per element.

    $$
    y = \operatorname{erf}(\alpha x + s) \, \gamma + \beta.
    $$

    The successor of `DynamicTanh`: the error function with a learned scalar
    slope $\alpha$ (`alpha`) and a learned scalar shift $s$ (`shift`), initialized as the reference
    code does (0.5 and 0). The paper reports ViT-B at 82.8% top-1 on
    ImageNet, against 82.3% with layer norm and 82.5% with DyT. On
    TensorFlow the error function is computed from TFLite builtin operators
    (`keras_norms.functional.erf`), so the layer exports to TFLite.

    Args:
        axis: The axis or list of axes `gamma` and `beta` run along (the
            channels; never the batch axis).
        alpha_init_value: Initial value of the learned scalar `alpha`.
        shift_init_value: Initial value of the learned scalar `shift`.
        **kwargs: The keyword arguments below, and the base layer arguments
            (`name`, `dtype`, ...).

    Keyword Args:
        center: If `True` (default), add the learned offset `beta`.
        scale: If `True` (default), multiply by the learned scale `gamma`.
        beta_initializer: Initializer of `beta` (default `"zeros"`).
        gamma_initializer: Initializer of `gamma` (default `"ones"`).
        beta_regularizer: Optional regularizer of `beta`.
        gamma_regularizer: Optional regularizer of `gamma`.
        beta_constraint: Optional constraint of `beta`.
        gamma_constraint: Optional constraint of `gamma`.

    Call arguments:
        inputs: Tensor of rank 2 or more, batch first. A built layer takes
            another rank too where `axis` lands on the same axes counted from
            the end, of the same sizes.

    Input shape:
        inputs: Any rank of 2 or more, batch first, e.g. `(batch, tokens,
            features)`; the sizes along `axis` fixed once built.

    Output shape:
        The shape of the input.

    Returns:
        The result, of the input's shape, in the layer's compute dtype.

    Raises:
        TypeError: If `alpha_init_value` or `shift_init_value` is not a real
            number, `axis` is not an int or a non-empty list of ints, or
            `center` or `scale` is not a bool.
        ValueError: If an initial value is not finite, `axis` includes 0,
            or Keras cannot interpret an initializer, regularizer or
            constraint. When building: the input has rank < 2, or an entry
            of `axis` is out of range, names the batch axis, is repeated or
            has an undefined size. When called: the input's sizes along
            `axis` differ from the built ones.

    Reference:
        - Chen, Lu, Zhu, Sun and Liu, "Stronger Normalization-Free
          Transformers", 2025. [arXiv:2512.10938](https://arxiv.org/abs/2512.10938);
          reference code [zlab-princeton/Derf](https://github.com/zlab-princeton/Derf)

    Examples:
        >>> import numpy as np, keras_norms
        >>> x = np.array([[-4.0, 0.0, 1.0, 40.0]])
        >>> np.round(np.asarray(keras_norms.DynamicErf()(x)), 4)
        array([[-0.9953,  0.    ,  0.5205,  1.    ]], dtype=float32)
    """

    scalars = (("alpha", "alpha_init_value"), ("shift", "shift_init_value"))

    def __init__(self, axis: int | list[int] = -1, alpha_init_value: float = 0.5,
                 shift_init_value: float = 0.0, **kwargs):
        super().__init__(axis, **kwargs)
        self.alpha_init_value = check_finite("alpha_init_value", alpha_init_value)
        self.shift_init_value = check_finite("shift_init_value", shift_init_value)

    def call(self, inputs):
        inputs = self.prepare(inputs)
        outputs = F.dynamic_erf(inputs, self.alpha, self.shift, self.gamma, self.beta,
                                axis=self.fixed_axes_of(inputs.shape))
        return ops.cast(outputs, self.compute_dtype)


@keras.saving.register_keras_serializable(package="keras_norms")
class LayerScale(NormalizationLayer):
    r"""LayerScale (Touvron et al., 2021): a residual branch times a learned per-channel `gamma`.

    $y = x \, \gamma$, with `gamma` of the input's shape along `axis`,
    initialized small (`init_values`) so that each residual block starts
    close to the identity: what lets CaiT, ConvNeXt and DINOv2 train deep.
    CaiT uses 0.1 up to depth 18, 1e-5 up to 24 and 1e-6 beyond; ConvNeXt
    1e-6; DINOv2 1e-5 (the default here). `keras_norms.export.export_model`
    folds it into the `Dense` or convolution before it, so it costs nothing
    at inference.

    Args:
        axis: The axis or list of axes `gamma` runs along (the channels;
            never the batch axis).
        init_values: Initial value of every entry of `gamma`.
        gamma_regularizer: Optional regularizer of `gamma`.
        gamma_constraint: Optional constraint of `gamma`.
        **kwargs: Base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: Tensor of rank 2 or more, batch first (a residual branch's output).

    Input shape:
        inputs: Any rank of 2 or more, batch first, e.g. `(batch, tokens,
            features)`; the sizes along `axis` fixed once built.

    Output shape:
        The shape of the input.

    Returns:
        ``inputs * gamma``, of the input's shape, in the layer's compute dtype.

    Raises:
        TypeError: If `init_values` is not a real number or `axis` is not an
            int or a non-empty list of ints.
        ValueError: If `init_values` is not finite, `axis` includes 0, or
            Keras cannot interpret the regularizer or constraint. When
            building: the input has rank < 2, or an entry of `axis` is out of
            range or has an undefined size.

    Reference:
        - Touvron, Cord, Sablayrolles, Synnaeve and Jégou, "Going deeper with
          Image Transformers" (CaiT), ICCV 2021.
          [arXiv:2103.17239](https://arxiv.org/abs/2103.17239)

    Examples:
        >>> import numpy as np, keras_norms
        >>> layer = keras_norms.LayerScale(init_values=0.1)
        >>> np.asarray(layer(np.full((1, 3), 2.0)))
        array([[0.2, 0.2, 0.2]], dtype=float32)
        >>> tuple(layer.gamma.shape)
        (3,)
    """

    declared_arguments = {"gamma_regularizer": None, "gamma_constraint": None}

    def __init__(self, axis: int | list[int] = -1, init_values: float = 1e-5,
                 gamma_regularizer=None, gamma_constraint=None, **kwargs):
        super().__init__(**self.declared_values(locals()), **kwargs)
        self.axis = check_axis_argument(axis, allow_list=True)
        self.init_values = check_finite("init_values", init_values)
        self.gamma_initializer = initializers.Constant(self.init_values)
        self.gamma = None
        self._axes = None

    def build(self, input_shape):
        name = type(self).__name__
        check_rank(name, input_shape, 2)
        self._axes = resolve_axes(name, self.axis, input_shape)
        self.expect_input_shape(input_shape, self._axes, axis=self.axis)
        self.gamma = self.add_learned_weight("gamma", tuple(input_shape[a] for a in self._axes))

    def call(self, inputs):
        inputs = self.prepare(inputs)
        outputs = F.layer_scale(inputs, self.gamma, axis=self.fixed_axes_of(inputs.shape))
        return ops.cast(outputs, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        check_axes_in_range(type(self).__name__, self.axis, input_shape)
        return input_shape

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "init_values": self.init_values}
