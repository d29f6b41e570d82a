"""The PyTorch kernels (keras_norms/kernels/torch.py): native kernels, exact, correct under `torch.compile`.

Runs with ``KERAS_BACKEND=torch`` (`make test` runs the backend suite there when
torch is installed); skipped on the other backends. The contract suite
(test_backend_contract.py) checks every layer's forward and gradients on both
paths against the float64 references; here, what is particular to PyTorch: that
the fast paths reach PyTorch's native kernels (their autograd nodes), that the
statistics stay exact for a large mean (PyTorch's channels-last group norm
takes a one-pass variance), and that `torch.compile` (dynamo and AOT autograd,
the `aot_eager` backend, which needs no C compiler) gives the eager values and
gradients.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

if keras.backend.backend() != "torch":
    pytest.skip("PyTorch kernels: run with KERAS_BACKEND=torch", allow_module_level=True)

import torch

from keras_norms import functional as F


def _tensor(shape, loc=0.0, spread=1.0, requires_grad=False, seed=0):
    value = np.random.default_rng(seed).normal(size=shape)
    return torch.tensor((loc + spread * value).astype("float32")).requires_grad_(requires_grad)


def _group_reference(x, groups, epsilon, axis):
    """Float64 NumPy group norm, channels on `axis`."""
    x = np.moveaxis(np.asarray(x, np.float64), axis, -1)
    grouped = x.reshape(x.shape[0], -1, groups, x.shape[-1] // groups)
    mean = grouped.mean(axis=(1, 3), keepdims=True)
    variance = grouped.var(axis=(1, 3), keepdims=True)
    return np.moveaxis(((grouped - mean) / np.sqrt(variance + epsilon)).reshape(x.shape), -1, axis)


# Each case: (name, function of (x, scale, offset), input shape, autograd node of the native kernel).
CASES = {
    "batch_nhwc": (lambda x, s, o: F.batch_norm_train(x, s, o)[0], (4, 5, 6, 8), "NativeBatchNormBackward"),
    "batch_nchw": (lambda x, s, o: F.batch_norm_train(x, s, o, axis=1)[0], (4, 8, 5, 6),
                   "NativeBatchNormBackward"),
    "layer": (lambda x, s, o: F.layer_norm(x, s, o), (4, 7, 8), "NativeLayerNormBackward"),
    "group_nhwc": (lambda x, s, o: F.group_norm(x, 4, s, o), (4, 5, 6, 8), "NativeGroupNormBackward"),
    "group_ncl": (lambda x, s, o: F.group_norm(x, 4, s, o, axis=1), (4, 8, 9), "NativeGroupNormBackward"),
    "instance_seq": (lambda x, s, o: F.group_norm(x, -1, s, o), (4, 9, 8), "NativeGroupNormBackward"),
    "rms": (lambda x, s, o: F.rms_norm(x, s), (4, 7, 8), "_RMSNormBackward"),
}


def _autograd_nodes(tensor) -> set[str]:
    seen, stack = set(), [tensor.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or type(node).__name__ in seen:
            continue
        seen.add(type(node).__name__)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return seen


def _outputs_and_gradients(function, x, scale, offset):
    outputs = function(x, scale, offset)
    upstream = torch.linspace(-1.0, 1.0, outputs.numel()).reshape(outputs.shape)
    gradients = torch.autograd.grad(outputs, [x, scale, offset], upstream, allow_unused=True)
    return outputs.detach(), [None if g is None else g.detach() for g in gradients]


@pytest.mark.parametrize("name", list(CASES))
def test_the_fast_path_runs_the_native_kernel_and_matches_the_plain_path(name):
    function, shape, node = CASES[name]
    x = _tensor(shape, requires_grad=True)
    channels = shape[1] if "nchw" in name or "ncl" in name else shape[-1]
    scale, offset = _tensor((channels,), 1.0, 0.5, True, seed=1), _tensor((channels,), 0.0, 0.5, True, seed=2)
    outputs = function(x, scale, offset)
    assert any(n.startswith(node) for n in _autograd_nodes(outputs)), _autograd_nodes(outputs)
    fast = _outputs_and_gradients(function, x, scale, offset)
    with F.use_fast_paths(False):
        plain_outputs = function(x, scale, offset)
        assert not any(n.startswith(node) for n in _autograd_nodes(plain_outputs))
        plain = _outputs_and_gradients(function, x, scale, offset)
    np.testing.assert_allclose(fast[0].numpy(), plain[0].numpy(), atol=2e-5)
    for got, expected in zip(fast[1], plain[1], strict=True):
        if expected is None:  # RMS norm has no offset
            assert got is None
            continue
        np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=5e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(CASES))
def test_torch_compile_gives_the_eager_values_and_gradients(name):
    function, shape, _ = CASES[name]
    channels = shape[1] if "nchw" in name or "ncl" in name else shape[-1]
    x = _tensor(shape, requires_grad=True)
    scale, offset = _tensor((channels,), 1.0, 0.5, True, seed=1), _tensor((channels,), 0.0, 0.5, True, seed=2)
    torch._dynamo.reset()
    compiled = torch.compile(function, backend="aot_eager", fullgraph=True)
    eager = _outputs_and_gradients(function, x, scale, offset)
    traced = _outputs_and_gradients(compiled, x, scale, offset)
    np.testing.assert_allclose(traced[0].numpy(), eager[0].numpy(), atol=1e-6)
    for got, expected in zip(traced[1], eager[1], strict=True):
        if expected is not None:
            np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-5)


# (2, 33, 33, 4): instance norm of more positions than the contiguous copy takes, on the shifted path.
@pytest.mark.parametrize(("shape", "axis"), [((4, 6, 6, 8), -1), ((4, 9, 8), -1), ((4, 8), -1),
                                              ((4, 8, 6, 6), 1), ((2, 33, 33, 4), -1)])
@pytest.mark.parametrize("groups", [2, -1])
def test_group_norm_stays_exact_for_a_large_mean(shape, axis, groups):
    # A mean of 1e4 and a spread of 1: a one-pass variance in float32 (PyTorch's channels-last kernel)
    # would lose it entirely (an error of about 150); float32 itself resolves the mean to about 1e-3.
    x = _tensor(shape, loc=1e4, spread=1.0)
    channels = shape[axis]
    expected = _group_reference(x.numpy(), channels if groups == -1 else groups, 1e-3, axis)
    outputs = F.group_norm(x, groups, axis=axis)
    np.testing.assert_allclose(outputs.numpy(), expected, atol=1e-2)


def test_channels_first_group_norm_of_channels_last_memory_stays_exact():
    # An NCHW tensor whose memory is channels last (a permuted NHWC tensor, as PyTorch's
    # `channels_last` format holds it): the kernel makes it contiguous, where PyTorch's moments are exact.
    x = _tensor((4, 6, 6, 8), loc=1e4, spread=1.0).permute(0, 3, 1, 2)
    assert not x.is_contiguous()
    expected = _group_reference(x.numpy(), 4, 1e-3, 1)
    np.testing.assert_allclose(F.group_norm(x, 4, axis=1).numpy(), expected, atol=1e-2)


@pytest.mark.parametrize(("shape", "axis"), [((8, 5, 5, 6), -1), ((8, 6, 5, 5), 1), ((64, 6), -1)])
def test_batch_statistics_are_the_biased_moments(shape, axis):
    x = _tensor(shape, loc=1e3, spread=3.0)
    _, mean, variance = F.batch_norm_train(x, axis=axis)
    values = np.moveaxis(x.numpy().astype(np.float64), axis, -1).reshape(-1, shape[axis])
    np.testing.assert_allclose(mean.numpy(), values.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(variance.numpy(), values.var(axis=0), rtol=1e-4)


def test_mixed_precision_inputs_give_float32_outputs_and_input_gradients_in_their_dtype():
    x = _tensor((4, 7, 8)).to(torch.bfloat16).requires_grad_(True)
    for function in (lambda v: F.layer_norm(v), lambda v: F.rms_norm(v), lambda v: F.group_norm(v, 2),
                     lambda v: F.batch_norm_train(v)[0]):
        outputs = function(x)
        assert outputs.dtype == torch.float32
        (gradient,) = torch.autograd.grad(outputs.sum(), [x])
        assert gradient.dtype == torch.bfloat16


HALF_CASES = {
    "layer": (lambda v, **kw: F.layer_norm(v, **kw), "NativeLayerNorm"),
    "batch": (lambda v, **kw: F.batch_norm_train(v, **kw)[0], "NativeBatchNorm"),
    "group channels first": (lambda v, **kw: F.group_norm(v, 4, axis=1, **kw), "NativeGroupNorm"),
}


@pytest.mark.parametrize("name", list(HALF_CASES))
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_a_result_in_the_inputs_half_precision_reads_it_without_an_upcast(name, dtype):
    function, node = HALF_CASES[name]
    x = _tensor((4, 8, 6, 8), seed=3).to(getattr(torch, dtype)).requires_grad_(True)
    outputs = function(x, dtype=dtype)
    assert outputs.dtype == x.dtype
    nodes = _autograd_nodes(outputs)
    assert any(n.startswith(node) for n in nodes) and "ToCopyBackward0" not in nodes, nodes
    # The kernel computes in float32 and rounds once: one unit in the last place of the float32 result.
    wide = function(x.detach().float()).numpy()
    unit = np.abs(wide).max() * {"bfloat16": 2.0 ** -7, "float16": 2.0 ** -10}[dtype]
    np.testing.assert_allclose(outputs.detach().float().numpy(), wide, atol=unit, rtol=0)
    (gradient,) = torch.autograd.grad(outputs.float().sum(), [x])
    assert gradient.dtype == x.dtype


def test_inputs_the_kernels_do_not_cover_take_the_plain_path():
    x = _tensor((4, 6, 4, 3), requires_grad=True)
    # Channels on a middle axis, layer norm over a non-trailing axis, statistics that need gradients.
    middle = F.group_norm(x, 2, axis=2)
    expected = _group_reference(x.detach().numpy(), 2, 1e-3, 2)
    np.testing.assert_allclose(middle.detach().numpy(), expected, atol=1e-5)
    assert not any(n.startswith("NativeGroupNorm") for n in _autograd_nodes(middle))
    over_height = F.layer_norm(x, axis=1)
    assert not any(n.startswith("NativeLayerNorm") for n in _autograd_nodes(over_height))
    mean = x.mean(dim=(0, 1, 2))
    variance = x.var(dim=(0, 1, 2), unbiased=False)
    outputs = F.batch_norm(x, mean, variance)
    (gradient,) = torch.autograd.grad(outputs.sum(), [x])
    # Through the batch's own statistics the gradient of the sum is 0 (a normalized output sums to 0).
    np.testing.assert_allclose(gradient.numpy(), 0.0, atol=1e-5)
