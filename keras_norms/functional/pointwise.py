"""Element-wise replacements of a norm: no statistics, a learned squashing of each value.

Dynamic Tanh (DyT) and Dynamic erf (Derf) stand in for the layer norms of a
transformer: each value goes through ``tanh`` or ``erf`` of a learned scalar
multiple of itself, then the per-channel `scale` and `offset` a norm has. No
mean or variance is taken, so nothing couples the values of an example, and
the cost is one pass over memory. `layer_scale` multiplies a residual branch
by a learned per-channel scale.
"""

from __future__ import annotations

from keras import backend, ops

from keras_norms.functional._common import _as_axes, _upcast_all
from keras_norms.functional.fast_paths import fast_path_backend
from keras_norms.functional.statistics import _broadcast


def _scalar(param, like):
    """A learned scalar (a `()` or `(1,)` weight) cast to the dtype of `like`, shaped to broadcast."""
    return ops.reshape(ops.cast(param, like.dtype), ())


def _tf_kernel(x, alpha, shift, scale, offset, axis, kind: str):
    """TensorFlow's closed-form training kernel (`kernels.tf_pointwise`), or None where it does not run."""
    wide = any(p is not None and backend.standardize_dtype(p.dtype) == "float64"
               for p in (alpha, scale, offset))
    if fast_path_backend(x) != "tensorflow" or wide:
        return None
    from keras_norms.kernels.tf_pointwise import pointwise_norm

    return pointwise_norm(ops.convert_to_tensor(x), alpha, 0.0 if shift is None else shift, scale, offset,
                          axis=axis, kind=kind)


def _tanh(z):
    if backend.standardize_dtype(z.dtype) == "float64":
        # On JAX, Keras' ops.tanh returns float32 for a float64 input (Keras 3.15); exp keeps float64.
        decay = ops.exp(-2.0 * ops.abs(z))
        return ops.sign(z) * (1.0 - decay) / (1.0 + decay)
    return ops.tanh(z)


def _affine(y, scale, offset, axes):
    if scale is not None:
        y = y * _broadcast(scale, y, axes)
    if offset is not None:
        y = y + _broadcast(offset, y, axes)
    return y


def dynamic_tanh(x, alpha, scale=None, offset=None, *, axis: int | list[int] | tuple[int, ...] = -1):
    r"""Dynamic Tanh: ``tanh(alpha * x) * scale + offset``, element by element.

    $$
    y = \tanh(\alpha x) \cdot \mathrm{scale} + \mathrm{offset}.
    $$

    Replaces a layer norm without computing statistics: the learned scalar
    `alpha` sets how soon large values saturate, as a norm's division by the
    standard deviation would squash them.

    Args:
        x: Input tensor.
        alpha: The learned scalar, of shape `()` or `(1,)`.
        scale: Optional gamma, with the shape of `x` along `axis`.
        offset: Optional beta, with the shape of `x` along `axis`.
        axis: The axis or axes `scale` and `offset` run along (the channels).

    Returns:
        The result, float32 (float64 when `x` or `alpha` is float64).

    Reference:
        - Zhu, Chen, He, LeCun and Liu, "Transformers without Normalization",
          CVPR 2025. [arXiv:2503.10622](https://arxiv.org/abs/2503.10622)

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> x = np.array([[-4.0, 0.0, 1.0, 40.0]], "float32")
        >>> np.round(np.asarray(F.dynamic_tanh(x, np.array([0.5], "float32"))), 4)
        array([[-0.964 ,  0.    ,  0.4621,  1.    ]], dtype=float32)
    """
    outputs = _tf_kernel(x, alpha, None, scale, offset, axis, "tanh")
    if outputs is not None:
        return outputs
    x, alpha, scale, offset = _upcast_all(ops.convert_to_tensor(x), ops.convert_to_tensor(alpha),
                                          scale, offset)
    y = _tanh(_scalar(alpha, x) * x)
    return _affine(y, scale, offset, _as_axes(axis, len(x.shape)))


def erf(x):
    r"""The error function of float32 or float64 `x`, built from ops every exporter has.

    $$
    \operatorname{erf}(x) = \frac{2}{\sqrt{\pi}} \int_0^x e^{-t^2} \, dt.
    $$

    On TensorFlow, float32 runs as multiplications, a division, an
    exponential and a select (the rational approximation of Abramowitz and
    Stegun, formula 7.1.26: absolute error at most 5.3e-7 in float32, where
    `tf.math.erf` is off by up to 3e-7), because TFLite has no erf operator;
    its gradient is the exact $\frac{2}{\sqrt{\pi}} e^{-x^2}$. Float64, and
    every other backend, take the backend's erf.

    Args:
        x: A float32 or float64 tensor.

    Returns:
        ``erf(x)``, of the dtype of `x`.

    Reference:
        - Abramowitz and Stegun, "Handbook of Mathematical Functions", 1964,
          formula 7.1.26.
          [Page 299](https://personal.math.ubc.ca/~cbm/aands/page_299.htm)

    Examples:
        >>> import numpy as np, math
        >>> from keras_norms import functional as F
        >>> x = np.linspace(-3.0, 3.0, 13).astype("float32")
        >>> exact = np.array([math.erf(v) for v in x])
        >>> bool(np.max(np.abs(np.asarray(F.erf(x)) - exact)) < 1e-6)
        True
    """
    if backend.backend() == "tensorflow" and backend.standardize_dtype(x.dtype) != "float64":
        from keras_norms.kernels.tf_pointwise import erf as tf_erf

        return tf_erf(x)
    return ops.erf(x)


def dynamic_erf(x, alpha, shift, scale=None, offset=None, *,
                axis: int | list[int] | tuple[int, ...] = -1):
    r"""Dynamic erf (Derf): ``erf(alpha * x + shift) * scale + offset``, element by element.

    $$
    y = \operatorname{erf}(\alpha x + \mathrm{shift}) \cdot \mathrm{scale} + \mathrm{offset}.
    $$

    The successor of Dynamic Tanh: the error function, with a learned scalar
    slope `alpha` and a learned scalar `shift`.

    Args:
        x: Input tensor.
        alpha: The learned scalar slope, of shape `()` or `(1,)`.
        shift: The learned scalar shift, of shape `()` or `(1,)`.
        scale: Optional gamma, with the shape of `x` along `axis`.
        offset: Optional beta, with the shape of `x` along `axis`.
        axis: The axis or axes `scale` and `offset` run along (the channels).

    Returns:
        The result, float32 (float64 when `x` or a parameter is float64).

    Reference:
        - Chen, Lu, Zhu, Sun and Liu, "Stronger Normalization-Free
          Transformers", 2025. [arXiv:2512.10938](https://arxiv.org/abs/2512.10938)

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> x = np.array([[-4.0, 0.0, 1.0, 40.0]], "float32")
        >>> half, zero = np.array([0.5], "float32"), np.array([0.0], "float32")
        >>> np.round(np.asarray(F.dynamic_erf(x, half, zero)), 4)
        array([[-0.9953,  0.    ,  0.5205,  1.    ]], dtype=float32)
    """
    outputs = _tf_kernel(x, alpha, shift, scale, offset, axis, "erf")
    if outputs is not None:
        return outputs
    x, alpha, shift, scale, offset = _upcast_all(ops.convert_to_tensor(x), ops.convert_to_tensor(alpha),
                                                 ops.convert_to_tensor(shift), scale, offset)
    y = erf(_scalar(alpha, x) * x + _scalar(shift, x))
    return _affine(y, scale, offset, _as_axes(axis, len(x.shape)))


def layer_scale(x, scale, *, axis: int | list[int] | tuple[int, ...] = -1):
    r"""LayerScale: `x` times a learned per-channel `scale`, for a residual branch.

    $$
    y = x \cdot \mathrm{scale}.
    $$

    Args:
        x: Input tensor (a residual branch's output).
        scale: The per-channel scale, with the shape of `x` along `axis`.
        axis: The axis or axes `scale` runs along (the channels).

    Returns:
        ``x * scale``, float32 (float64 when `x` or `scale` is float64).

    Reference:
        - Touvron, Cord, Sablayrolles, Synnaeve and Jégou, "Going deeper with
          Image Transformers" (CaiT), ICCV 2021.
          [arXiv:2103.17239](https://arxiv.org/abs/2103.17239)

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> x = np.ones((1, 2, 3), "float32")
        >>> np.asarray(F.layer_scale(x, np.array([1e-5, 1.0, 2.0], "float32")))[0, 0]
        array([1.e-05, 1.e+00, 2.e+00], dtype=float32)
    """
    x, scale = _upcast_all(ops.convert_to_tensor(x), scale)
    return _affine(x, scale, None, _as_axes(axis, len(x.shape)))
