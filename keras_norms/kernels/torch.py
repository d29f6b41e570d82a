"""The PyTorch kernels of `keras_norms.functional`: batch, layer, group (and instance) and RMS norm.

Called by the functions of the same name, with the same arguments, in
`keras_norms.functional.batch_norms` (`batch_norm`, `batch_norm_train`) and
`keras_norms.functional.example_norms` (`layer_norm`, `rms_norm`,
`group_norm`). Batch, layer and group norm call PyTorch's native kernels
(`torch.nn.functional`), which compute what ours define: the biased variance,
``1 / sqrt(variance + epsilon)``, float32 statistics. They take the channel
axis at position 1 and run fastest on channels-last memory, so a
channels-last input is viewed, never copied, as one of the layouts they take:
rows of channels (batch norm), or an NCHW tensor in `torch.channels_last`
memory format (group norm, after a shift that keeps its one-pass variance
exact: see `_group_shift`; instance norm of small maps is copied to
contiguous memory instead). RMS norm has no fused CPU kernel in PyTorch
(`F.rms_norm` is a chain of element-wise ops, each with its autograd node):
here it is a closed-form gradient (`torch.autograd.Function`), two passes
forward and four backward.

Statistics are float32. A float16/bfloat16 input whose result is wanted in
its own dtype (a layer's compute dtype under mixed precision) is read as it
is by the native kernels, which compute in float32 and round the output once;
any other input is computed in float32. Each kernel returns None where it does
not apply (the channel axis neither first nor last, normalized axes that are
not the trailing ones, the batch axis normalized, an empty batch, statistics
that need gradients), and the caller takes its plain `keras.ops` path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _float32(x):
    return x if x.dtype == torch.float32 else x.float()


def _native_input(x):
    """`x` as PyTorch's native kernels read it: float16/bfloat16 as it is (they compute in float32
    and round once), anything else in float32. The caller passes a half-precision input only where
    the result is wanted in its dtype."""
    return x if x.dtype in (torch.float16, torch.bfloat16) else _float32(x)


def _param(param, shape=None):
    """A weight (a tensor: the caller converts) in float32, flat or of `shape`; a view where it can be."""
    if param is None:
        return None
    param = _float32(param)
    if shape is None:
        return param if param.dim() == 1 else param.reshape(-1)
    return param if param.shape == shape else param.reshape(shape)


def _axes(axis, rank: int) -> tuple[int, ...]:
    if isinstance(axis, int):
        return (axis % rank,)
    return tuple(sorted(a % rank for a in axis))


def _rows(x, axis: int):
    """`x` as (rows, channels) with the channels last, a view; None if the channel axis is not last."""
    return x.reshape(-1, x.shape[-1]) if axis % x.dim() == x.dim() - 1 else None


def batch_norm_train(x, scale, offset, *, axis: int, epsilon: float):
    """`(outputs, mean, variance)`, the statistics of shape `(channels,)` without gradient.

    PyTorch's training kernel returns the batch statistics only through the
    running averages it updates: with momentum 1 they are the statistics
    themselves, the variance unbiased (times ``n / (n - 1)``), which is
    turned back into the biased one.
    """
    rank, axis = x.dim(), axis % x.dim()
    if axis not in (1, rank - 1) or x.numel() == 0:
        return None
    x = _native_input(x)
    source = _rows(x, axis) if axis == rank - 1 else x
    channels = x.shape[axis]
    count = source.numel() // channels
    if count < 2:  # PyTorch refuses one value per channel in training
        return None
    mean = torch.zeros(channels, dtype=torch.float32, device=x.device)
    variance = torch.zeros(channels, dtype=torch.float32, device=x.device)
    outputs = F.batch_norm(source, mean, variance, _param(scale), _param(offset), training=True,
                           momentum=1.0, eps=epsilon)
    return outputs.reshape(x.shape), mean, variance * ((count - 1) / count)


def batch_norm(x, mean, variance, scale, offset, *, axis: int, epsilon: float):
    """Batch norm with given statistics: PyTorch's inference kernel, one multiply-add per element.

    None when a statistic needs its gradient (PyTorch's kernel gives none to
    the running statistics).
    """
    rank, axis = x.dim(), axis % x.dim()
    if axis not in (1, rank - 1) or mean.requires_grad or variance.requires_grad:
        return None
    x = _native_input(x)
    source = _rows(x, axis) if axis == rank - 1 else x
    mean, variance = _param(mean), _param(variance)
    outputs = F.batch_norm(source, mean, variance, _param(scale), _param(offset), training=False,
                           eps=epsilon)
    return outputs.reshape(x.shape)


def group_norm(x, groups: int, scale, offset, *, axis: int, epsilon: float):
    """Group norm (instance norm with one channel per group), channels first or last."""
    rank, axis = x.dim(), axis % x.dim()
    if axis not in (1, rank - 1) or x.shape[0] == 0:
        return None
    channels = x.shape[axis]
    groups = channels if groups == -1 else groups
    if axis != rank - 1:  # channels first: PyTorch's kernel for contiguous memory takes two-pass moments
        return F.group_norm(_native_input(x).contiguous(), groups, _param(scale), _param(offset), epsilon)
    # (batch, ..., channels) as (batch, channels, positions, 1) in channels-last memory: the same bytes.
    view = x.reshape(x.shape[0], -1, 1, channels).permute(0, 3, 1, 2)
    if groups == channels and 1 < view.shape[2] <= _CONTIGUOUS_MAX_POSITIONS:
        # Instance norm of small maps: copied to contiguous memory, where the kernel is exact and faster.
        source = _native_input(view).contiguous()
        outputs = F.group_norm(source, groups, _param(scale), _param(offset), epsilon)
        return outputs.permute(0, 2, 3, 1).reshape(x.shape)
    # The shift is float32, so the subtraction also reads a float16/bfloat16 input into float32: one pass.
    shifted = view - _group_shift(view, groups).float()
    outputs = F.group_norm(shifted, groups, _param(scale), _param(offset), epsilon)
    return outputs.permute(0, 2, 3, 1).reshape(x.shape)


# Instance norm (one channel per group) of at most this many positions runs on a contiguous copy:
# PyTorch's channels-last kernel spreads its work over examples and groups, and with many channels
# and few positions it ran 2-4x slower than the copy and the contiguous kernel together (measured on
# CPU from 4x4 to 32x32 maps; at 56x56 the channels-last kernel was 2x faster). The contiguous kernel
# normalizes as ``x * a + b``, which at one position (zero variance, a gain of 1 / sqrt(epsilon))
# rounds a large mean into the output: one position stays on the shifted path, where it is exact.
_CONTIGUOUS_MAX_POSITIONS = 1024


def _group_shift(view, groups: int):
    """A value of each (example, group), broadcast over its channels: its first channel's first position.

    PyTorch's channels-last group norm takes the variance in one pass, as the
    mean square less the squared mean, which loses the variance to rounding
    when the mean is large against the spread (a mean of 1e4 and a spread of
    100 leave 3 correct digits in float32). Each group minus one of its values
    has the same variance and a mean of the order of the spread. Without
    gradient: the output does not change with the shift.
    """
    batch, channels = view.shape[:2]
    first = view[:, :, :1, :1].detach().reshape(batch, groups, channels // groups)[:, :, :1]
    return first.expand(batch, groups, channels // groups).reshape(batch, channels, 1, 1)


def _trailing(x, axis) -> int | None:
    """How many trailing axes `axis` names, or None if it names others (or the batch axis)."""
    axes = _axes(axis, x.dim())
    if axes[0] == 0 or axes != tuple(range(x.dim() - len(axes), x.dim())):
        return None
    return len(axes)


def layer_norm(x, scale, offset, *, axis, epsilon: float):
    """Layer norm over the trailing axes: PyTorch's native kernel."""
    count = _trailing(x, axis)
    if count is None:
        return None
    x = _native_input(x)
    shape = x.shape[x.dim() - count:]
    return F.layer_norm(x, shape, _param(scale, shape), _param(offset, shape), epsilon)


def _rms_forward(rows, scale, epsilon: float):
    """`(outputs, inverse)`: each row of `rows` over its root mean square (one reduction), times `scale`."""
    inverse = torch.rsqrt(torch.linalg.vector_norm(rows, dim=1, keepdim=True).square_()
                          .div_(rows.shape[1]).add_(epsilon))
    outputs = rows * inverse
    return (outputs if scale is None else outputs.mul_(scale)), inverse


class _RMSNorm(torch.autograd.Function):
    """``y = x * r * scale`` with ``r = 1 / sqrt(mean(x^2) + epsilon)`` per row, and its closed-form gradient.

    With ``g`` the upstream gradient times the scale: ``dx = r * (g - x * r^2 * mean(g * x))``, and
    ``dscale`` the column sums of ``upstream * x * r``.
    """

    @staticmethod
    def forward(ctx, rows, scale, epsilon):
        outputs, inverse = _rms_forward(rows, scale, epsilon)
        ctx.save_for_backward(rows, inverse, scale)
        return outputs

    @staticmethod
    def backward(ctx, upstream):
        rows, inverse, scale = ctx.saved_tensors
        scaled = upstream if scale is None else upstream * scale
        dot = torch.linalg.vecdot(scaled, rows, dim=1).unsqueeze(1)
        drows = None
        if ctx.needs_input_grad[0]:
            coefficient = dot.mul_(inverse.square()).div_(-rows.shape[1])
            drows = torch.addcmul(scaled, rows, coefficient).mul_(inverse)
        dscale = None
        if scale is not None and ctx.needs_input_grad[1]:
            dscale = (upstream * rows).transpose(0, 1).mv(inverse.reshape(-1))
        return drows, dscale, None


def rms_norm(x, scale, *, axis, epsilon: float):
    """RMS norm over the trailing axes, with a closed-form gradient."""
    count = _trailing(x, axis)
    if count is None or x.numel() == 0:
        return None
    x = _float32(x)
    features = 1
    for size in x.shape[x.dim() - count:]:
        features *= size
    rows, scale = x.reshape(-1, features), _param(scale)
    recorded = torch.is_grad_enabled() and (rows.requires_grad or (scale is not None and scale.requires_grad))
    # Without a gradient to record, the forward alone, without the cost of an autograd.Function's call.
    outputs = _RMSNorm.apply(rows, scale, epsilon) if recorded else _rms_forward(rows, scale, epsilon)[0]
    return outputs.reshape(x.shape)
