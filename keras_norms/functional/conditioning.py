"""Conditioning: per-example parameters from a condition, and the norms they adapt.

The pieces of conditional normalization (conditional batch and instance norm,
FiLM, SPADE): per-example gamma and beta come from a condition (`linear`,
`select_rows` with `check_ids`, `conv2d` over a segmentation map resized with
`resize_nearest`), then modulate the normalized input (`modulate`). Adaptive
normalization (AdaIN, adaLN, adaptive group norm): `condition_parameters`
projects a style code or an embedding to per-example parameters;
`adaptive_instance_norm` and `modulated_instance_norm` renormalize with them.
Each runs in float32, or in float64 when one of its operands is float64.
"""

from __future__ import annotations

import numpy as np
from keras import backend, ops

from keras_norms.functional._common import _like, _spatial_axes, _upcast_all
from keras_norms.functional.example_norms import group_norm
from keras_norms.functional.reparametrization import _conv_shape_for_empty_batch
from keras_norms.functional.statistics import moments, normalize


def linear(x, kernel, bias=None):
    """``x @ kernel + bias``: a conditioning vector projected to per-channel parameters.

    Computed in float32, or in float64 when one of the operands is float64.

    Args:
        x: Tensor of shape `(batch, features)`.
        kernel: Shape `(features, units)`.
        bias: Optional, shape `(units,)`.

    Returns:
        The tensor of shape `(batch, units)`, float32 (float64 when an operand
        is float64).

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> x = np.array([[1.0, 2.0]], dtype="float32")
        >>> kernel = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]], dtype="float32")
        >>> bias = np.array([0.0, 0.0, 10.0], dtype="float32")
        >>> print(np.asarray(F.linear(x, kernel, bias)))
        [[ 1.  2. 13.]]
    """
    x, kernel, bias = _upcast_all(x, kernel, bias)
    outputs = ops.matmul(x, kernel)
    return outputs if bias is None else outputs + bias


def select_rows(table, condition):
    """Per-example rows of `table`, picked by integer id or mixed by weights.

    An integer `condition` of shape `(batch,)` holds row ids and gives
    ``table[condition]``. The ids are one-hot encoded, so an id outside
    ``[0, rows)`` gives a row of zeros, the same way eagerly, in graph mode,
    under XLA and in TFLite. A float `condition` of shape `(batch, rows)` holds
    weights and gives ``condition @ table``, a weighted mixture of the rows.

    Args:
        table: Shape `(rows, features)`: per-class or per-style parameters.
        condition: Integer ids `(batch,)` or float weights `(batch, rows)`.

    Returns:
        The tensor of shape `(batch, features)`, float32 (float64 when `table`
        or the weights are float64).

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> table = np.arange(6.0, dtype="float32").reshape(3, 2)
        >>> print(np.asarray(F.select_rows(table, np.array([2, 0, 5]))))
        [[4. 5.]
         [0. 1.]
         [0. 0.]]
        >>> weights = np.array([[0.5, 0.5, 0.0]], dtype="float32")
        >>> print(np.asarray(F.select_rows(table, weights)))
        [[1. 2.]]
    """
    if "int" in backend.standardize_dtype(condition.dtype):
        condition = ops.one_hot(ops.cast(condition, "int32"), table.shape[0], dtype=table.dtype)
    return ops.matmul(*_upcast_all(condition, table))


def _values_known_now(x):
    """The values of `x` as a NumPy array when they exist now (eager), None while traced or compiled."""
    if isinstance(x, (np.ndarray, np.generic)):
        return np.asarray(x)
    name = backend.backend()
    if name == "tensorflow":
        from keras_norms.kernels.tf_checks import values_known_now
    elif name == "jax":
        from keras_norms.kernels.jax_checks import values_known_now
    elif name == "torch":
        from keras_norms.kernels.torch_checks import values_known_now
    else:
        return None
    return values_known_now(x)


def check_ids(ids, rows: int, *, what: str):
    """Checks that every integer id of `ids` indexes one of `rows` rows; returns `ids`.

    Where the ids have values (eager TensorFlow, JAX outside `jax.jit`,
    PyTorch), an id outside ``[0, rows)`` raises a `ValueError` at once. In a
    TensorFlow graph (`tf.function`, `model.fit`, `model.predict`) the graph
    asserts it when it runs and raises `InvalidArgumentError` with the same
    words. Compiled code cannot raise: under XLA (`jit_compile=True`) and in
    `jax.jit` the ids pass unchecked, and `select_rows` gives a row of zeros
    for an id out of range.

    Args:
        ids: Integer tensor of ids.
        rows: The number of rows the ids index.
        what: The start of the error message: who takes the ids and what
            they are, e.g. ``"ConditionalBatchNormalization 'cbn': class ids"``.

    Returns:
        `ids` (in a TensorFlow graph, behind the assertion).

    Raises:
        ValueError: If an id is outside ``[0, rows)``; the message names
            `what`, the valid range and the ids out of range.

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> F.check_ids(np.array([0, 2]), 3, what="class ids").tolist()
        [0, 2]
        >>> F.check_ids(np.array([0, 5, -1]), 3, what="class ids")
        Traceback (most recent call last):
        ...
        ValueError: class ids must be in [0, 3). Received: ids out of range [5, -1]
    """
    message = f"{what} must be in [0, {rows})"
    values = _values_known_now(ids)
    if values is not None:
        outside = values[(values < 0) | (values >= rows)]
        if outside.size:
            raise ValueError(f"{message}. Received: ids out of range {outside.tolist()}")
        return ids
    if backend.backend() == "tensorflow":
        from keras_norms.kernels.tf_checks import assert_ids_in_range

        return assert_ids_in_range(ids, rows, f"{message}.")
    return ids


def _per_example(param, rank: int, axis: int):
    if len(param.shape) == rank:
        return param
    shape = [1] * rank
    shape[0] = -1
    shape[axis % rank] = param.shape[-1]
    return ops.reshape(param, shape)


def modulate(x, scale=None, offset=None, *, axis: int = -1):
    r"""``x * scale + offset`` with per-example or per-position parameters.

    $$
    y = x \cdot \mathrm{scale} + \mathrm{offset}.
    $$

    Parameters of shape `(batch, channels)` are broadcast over every axis of
    `x` but the batch and `axis` (FiLM, conditional batch and instance norm);
    parameters of the full shape of `x` apply per position (SPADE). Either may
    be `None`.

    Args:
        x: Input tensor, batch first, channels on `axis`.
        scale: `(batch, channels)` or the shape of `x`, or `None` (no scaling).
        offset: `(batch, channels)` or the shape of `x`, or `None` (no shift).
        axis: The channel axis.

    Returns:
        The modulated tensor, float32 (float64 when an operand is float64).

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> x = np.ones((2, 3, 3, 3), dtype="float32")
        >>> scale = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype="float32")
        >>> offset = np.ones((2, 3), dtype="float32")
        >>> y = np.asarray(F.modulate(x, scale, offset))
        >>> print(y[:, 0, 0, :])
        [[2. 3. 4.]
         [5. 6. 7.]]
        >>> bool((y == y[:, :1, :1, :]).all())  # the same at every position
        True
    """
    rank = len(x.shape)
    outputs, scale, offset = _upcast_all(x, scale, offset)
    if scale is not None:
        outputs = outputs * _per_example(scale, rank, axis)
    if offset is not None:
        outputs = outputs + _per_example(offset, rank, axis)
    return outputs


def resize_nearest(images, size):
    """Nearest-neighbour resize of channels-last `images` `(batch, height, width, channels)` to `size`.

    Output pixel ``i`` takes input pixel ``floor((i + 0.5) * in / out)``, the
    one whose centre is nearest to its own centre (ties to the later one):
    the rule of `tf.image.resize(method="nearest")` and of PyTorch's
    ``mode="nearest-exact"`` (PyTorch's ``mode="nearest"`` takes
    ``floor(i * in / out)`` instead, a different pixel when downsampling).
    The indices are computed exactly, in integers, and the resize is a gather
    per spatial axis; an axis whose size already matches is left alone.

    Args:
        images: Tensor of rank 4, channels last.
        size: `(height, width)` of the result, ints or scalar int tensors.

    Returns:
        The resized tensor, in the dtype of `images`.

    Raises:
        ValueError: If `size` does not have exactly two entries.

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> row = np.arange(4, dtype="float32").reshape(1, 1, 4, 1)  # one row of pixels 0, 1, 2, 3
        >>> print(np.asarray(F.resize_nearest(row, (1, 2)))[0, 0, :, 0])
        [1. 3.]
        >>> print(np.asarray(F.resize_nearest(row, (1, 8)))[0, 0, :, 0])
        [0. 0. 1. 1. 2. 2. 3. 3.]
    """
    for axis, out_size in zip((1, 2), size, strict=True):
        in_size = images.shape[axis]
        if isinstance(in_size, int) and isinstance(out_size, int):
            if in_size == out_size:
                continue
            indices = ((2 * np.arange(out_size) + 1) * in_size) // (2 * out_size)
            indices = indices.astype("int32")
        else:
            if in_size is None:
                in_size = ops.shape(images)[axis]
            indices = ((2 * ops.arange(out_size, dtype="int32") + 1) * in_size) // (2 * out_size)
        images = ops.take(images, indices, axis=axis)
    return images


def conv2d(x, kernel, bias=None):
    """A stride-1, "same"-padded 2D convolution of channels-last `x` (SPADE's convolutions).

    The input is zero-padded so that the output keeps its height and width.
    Computed in float32, or in float64 when one of the operands is float64.

    Args:
        x: Tensor `(batch, height, width, in_channels)`.
        kernel: `(kernel_height, kernel_width, in_channels, out_channels)`.
        bias: Optional, `(out_channels,)`.

    Returns:
        The tensor `(batch, height, width, out_channels)`.

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> x = np.ones((1, 3, 3, 1), dtype="float32")
        >>> kernel = np.ones((3, 3, 1, 1), dtype="float32")  # sums each 3x3 neighbourhood
        >>> print(np.asarray(F.conv2d(x, kernel))[0, :, :, 0])
        [[4. 6. 4.]
         [6. 9. 6.]
         [4. 6. 4.]]
    """
    x, kernel, bias = _upcast_all(x, kernel, bias)
    outputs = ops.conv(x, kernel, strides=1, padding="same", data_format="channels_last")
    outputs = _conv_shape_for_empty_batch(outputs, x, kernel, strides=1, padding="same", dilation_rate=1,
                                          data_format="channels_last")
    return outputs if bias is None else outputs + bias


def condition_parameters(condition, kernel, bias=None, *, chunks: int, activation=None):
    """``activation(condition) @ kernel + bias`` split into `chunks` equal per-channel tensors.

    The modulation parameters of adaptive normalization: a conditioning vector
    (a style code, a class or timestep embedding) is mapped to per-example
    scales, shifts and gates.

    Args:
        condition: Tensor of shape `(batch, features)`.
        kernel: Shape `(features, chunks * channels)`.
        bias: Optional, shape `(chunks * channels,)`.
        chunks: How many parameter tensors to split the projection into; must
            divide the last dimension of `kernel`.
        activation: Optional callable applied to `condition` first (SiLU in DiT
            and diffusion U-Nets).

    Returns:
        A list of `chunks` tensors of shape `(batch, channels)`, float32
        (float64 when `condition` or `kernel` is float64).

    Examples:
        >>> import numpy as np
        >>> from keras import ops
        >>> from keras_norms import functional as F
        >>> condition = np.array([[1.0, -2.0]], dtype="float32")
        >>> kernel = np.array([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0]], dtype="float32")
        >>> scale, shift = F.condition_parameters(condition, kernel, chunks=2)
        >>> print(np.asarray(scale), np.asarray(shift))
        [[ 1. -2.]] [[-2.  1.]]
        >>> scale, shift = F.condition_parameters(condition, kernel, chunks=2, activation=ops.relu)
        >>> print(np.asarray(scale), np.asarray(shift))
        [[1. 0.]] [[0. 1.]]
    """
    condition, kernel = _upcast_all(condition, kernel)
    if activation is not None:
        condition = activation(condition)
    return ops.split(linear(condition, kernel, bias), chunks, axis=-1)


def _blend(stylized, content, alpha: float):
    if alpha == 1.0:
        return stylized
    return alpha * stylized + (1.0 - alpha) * _like(content, stylized)


def adaptive_instance_norm(content, style, *, alpha: float = 1.0, epsilon: float = 1e-5,
                           axis: int = -1):
    r"""AdaIN: `content` renormalized to the per-channel mean and standard deviation of `style`.

    For content $x$ and style $y$,

    $$
    \operatorname{AdaIN}(x, y) = \sigma(y) \, \frac{x - \mu(x)}{\sigma(x)} + \mu(y),
    $$

    with $\mu$ and $\sigma = \sqrt{\mathrm{variance} + \epsilon}$ taken per
    example and channel over the spatial axes; then
    $\alpha \operatorname{AdaIN}(x, y) + (1 - \alpha) \, x$, the paper's
    content-style trade-off. `style` may have other spatial sizes than `content`.
    There are no learned parameters: the style statistics are the affine
    parameters.

    Args:
        content: Tensor, batch first, channels on `axis`, with spatial axes.
        style: Tensor with the batch size and channels of `content`; its
            spatial sizes may differ.
        alpha: Content-style trade-off: 1 gives AdaIN's output, 0 gives
            `content` back, values between blend the two linearly.
        epsilon: Added to both variances.
        axis: The channel axis of both tensors.

    Returns:
        The stylized tensor of the shape of `content`, float32 (float64 for
        float64 `content`).

    Reference:
        - Huang and Belongie, "Arbitrary Style Transfer in Real-time with
          Adaptive Instance Normalization", ICCV 2017.
          [arXiv:1703.06868](https://arxiv.org/abs/1703.06868)

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> rng = np.random.default_rng(0)
        >>> content = rng.normal(size=(1, 8, 8, 3)).astype("float32")
        >>> style = rng.normal([5.0, -1.0, 0.0], [2.0, 0.5, 3.0], size=(1, 4, 4, 3)).astype("float32")
        >>> y = np.asarray(F.adaptive_instance_norm(content, style))
        >>> bool(np.allclose(y.mean(axis=(1, 2)), style.mean(axis=(1, 2)), atol=1e-4))
        True
        >>> bool(np.allclose(y.std(axis=(1, 2)), style.std(axis=(1, 2)), rtol=1e-3))
        True
        >>> bool(np.allclose(F.adaptive_instance_norm(content, style, alpha=0.0), content))
        True
    """
    rank = len(content.shape)
    content_mean, content_variance = moments(content, _spatial_axes(rank, axis), keepdims=True)
    style_mean, style_variance = moments(style, _spatial_axes(len(style.shape), axis), keepdims=True)
    stylized = normalize(content, content_mean, content_variance, ops.sqrt(style_variance + epsilon),
                         style_mean, epsilon=epsilon)
    return _blend(stylized, content, alpha)


def modulated_instance_norm(x, scale, shift, *, alpha: float = 1.0, epsilon: float = 1e-5):
    r"""Learned AdaIN: ``IN(x) * (1 + scale) + shift`` with `(batch, channels)` parameters.

    $$
    y = \operatorname{IN}(x) \, (1 + \mathrm{scale}) + \mathrm{shift}.
    $$

    ``IN`` is instance normalization (each example and channel over the spatial
    axes, without affine parameters). The per-example `scale` and `shift` are
    typically projected from a style code (`condition_parameters`); the gain
    ``1 + scale`` makes zero parameters the identity on ``IN(x)``. Blended with
    the input as ``alpha * that + (1 - alpha) * x``; channels last.

    Args:
        x: Input tensor, batch first, channels last, with spatial axes.
        scale: Per-example scale, shape `(batch, channels)`; the gain is
            ``1 + scale``.
        shift: Per-example shift, shape `(batch, channels)`.
        alpha: Trade-off with the input: 1 gives the modulated output, 0 gives
            `x` back, values between blend the two linearly.
        epsilon: Added to the variance of the instance norm.

    Returns:
        The tensor of the shape of `x`, float32 (float64 when `x`, `scale` or
        `shift` is float64).

    Reference:
        - Karras, Laine and Aila, "A Style-Based Generator Architecture for
          Generative Adversarial Networks", CVPR 2019.
          [arXiv:1812.04948](https://arxiv.org/abs/1812.04948)

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> x = np.random.default_rng(0).normal(3.0, 2.0, size=(2, 4, 4, 3)).astype("float32")
        >>> scale = np.ones((2, 3), dtype="float32")  # gain 2
        >>> shift = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype="float32")
        >>> y = np.asarray(F.modulated_instance_norm(x, scale, shift))
        >>> print(np.round(y.mean(axis=(1, 2)), 3))
        [[1. 2. 3.]
         [4. 5. 6.]]
        >>> print(np.round(y.std(axis=(1, 2)), 3))
        [[2. 2. 2.]
         [2. 2. 2.]]
    """
    stylized = modulate(group_norm(x, -1, epsilon=epsilon), 1.0 + scale, shift)
    return _blend(stylized, x, alpha)
