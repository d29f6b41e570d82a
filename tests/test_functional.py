"""The shared math in `keras_norms.functional`: accurate moments, masking, and graphs that never grow rank."""

from __future__ import annotations

import numpy as np
import pytest
import references
import tensorflow as tf
from graph_checks import assert_no_rank_growth, max_rank, tensors_above_rank, trace

import keras_norms
from keras_norms import functional as F

# --- moments accuracy -------------------------------------------------------------------------

LARGE_MEAN = 1e4
ACCURACY = 1e-2  # on normalized outputs (unit scale)
SHAPE = (4, 6, 6, 16)
GROUPS = 4


def _large_mean_input(seed=0):
    rng = np.random.default_rng(seed)
    return (LARGE_MEAN + rng.normal(size=SHAPE)).astype("float32")


def _grouped(x):
    """(batch, positions, groups, channels // groups): GN's statistics are over axes (1, 3)."""
    return x.reshape(x.shape[0], -1, GROUPS, x.shape[-1] // GROUPS)


# name -> (keras_norms computation, float64 reference, (view of x, axes) its statistics reduce over)
ACCURACY_CASES = {
    "group_norm": (
        lambda x: F.group_norm(x, GROUPS),
        lambda x: references.group_norm(x, GROUPS),
        lambda x: (_grouped(x), (1, 3)),
    ),
    "instance_norm": (
        lambda x: F.group_norm(x, -1),
        references.instance_norm,
        lambda x: (x, (1, 2)),
    ),
    "layer_norm": (
        lambda x: F.layer_norm(x, axis=-1),
        references.layer_norm,
        lambda x: (x, (3,)),
    ),
    "batch_norm_with_moments": (
        lambda x: F.batch_norm(x, *F.moments(x, (0, 1, 2))),
        references.batch_norm_train,
        lambda x: (x, (0, 1, 2)),
    ),
    "synchronized_moments_without_strategy": (
        lambda x: F.batch_norm(x, *F.moments(x, (0, 1, 2), synchronized=True)),
        references.batch_norm_train,
        lambda x: (x, (0, 1, 2)),
    ),
    "GroupNormalization": (
        lambda x: keras_norms.GroupNormalization(GROUPS)(x),
        lambda x: references.group_norm(x, GROUPS),
        lambda x: (_grouped(x), (1, 3)),
    ),
    "InstanceNormalization": (
        lambda x: keras_norms.InstanceNormalization()(x),
        references.instance_norm,
        lambda x: (x, (1, 2)),
    ),
    "LayerNormalization": (
        lambda x: keras_norms.LayerNormalization()(x),
        references.layer_norm,
        lambda x: (x, (3,)),
    ),
    "BatchNormalization_training": (
        lambda x: keras_norms.BatchNormalization()(x, training=True),
        references.batch_norm_train,
        lambda x: (x, (0, 1, 2)),
    ),
}


def _naive_float32_normalize(view, axes, epsilon=1e-3):
    """The one-pass formula var = E[x^2] - E[x]^2, all in float32."""
    view = view.astype(np.float32)
    mean = view.mean(axis=axes, keepdims=True, dtype=np.float32)
    mean_square = (view * view).mean(axis=axes, keepdims=True, dtype=np.float32)
    variance = mean_square - mean * mean
    with np.errstate(invalid="ignore"):  # the naive variance can even come out negative
        return (view - mean) / np.sqrt(variance + np.float32(epsilon))


def _exact_normalize(view, axes, epsilon=1e-3):
    view = view.astype(np.float64)
    mean = view.mean(axis=axes, keepdims=True)
    return (view - mean) / np.sqrt(view.var(axis=axes, keepdims=True) + epsilon)


def _within(actual, expected, tolerance):
    return bool(np.all(np.abs(np.asarray(actual, np.float64) - expected) <= tolerance))


@pytest.mark.parametrize("name", list(ACCURACY_CASES))
def test_normalization_is_accurate_for_inputs_with_a_large_mean(name):
    compute, reference, statistics_view = ACCURACY_CASES[name]
    x = _large_mean_input()
    # Why the bound is a real test: on the very same float32 data and reduction, the naive
    # one-pass variance loses every significant digit and misses the bound by far.
    view, axes = statistics_view(x)
    assert not _within(_naive_float32_normalize(view, axes), _exact_normalize(view, axes), ACCURACY)

    expected = reference(x)  # float64, from the float32 input
    outputs = np.asarray(compute(x))
    assert outputs.dtype == np.float32
    np.testing.assert_allclose(outputs, expected, atol=ACCURACY, rtol=0)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("name", ["layer_norm", "rms_norm", "group_norm", "batch_norm_train"])
def test_the_result_dtype_is_the_float32_result_rounded_once(name, dtype):
    functions = {"layer_norm": F.layer_norm, "rms_norm": F.rms_norm,
                 "group_norm": lambda x, **kw: F.group_norm(x, GROUPS, **kw),
                 "batch_norm_train": lambda x, **kw: F.batch_norm_train(x, **kw)[0]}
    x = np.random.default_rng(4).normal(2.0, 3.0, size=SHAPE).astype("float32")
    for inputs in (x, tf.cast(x, dtype)):  # a float32 input, and one already in the result's dtype
        wide = functions[name](tf.cast(inputs, "float32"))
        narrow = functions[name](inputs, dtype=dtype)
        assert narrow.dtype == tf.as_dtype(dtype)
        # Computed in float32 and rounded once: at most one unit in the last place from the float32
        # result rounded (the two float32 results may differ in their last bits).
        wide = np.asarray(wide)
        unit = np.abs(wide).max() * {"bfloat16": 2.0 ** -7, "float16": 2.0 ** -10}[dtype]
        np.testing.assert_allclose(np.asarray(tf.cast(narrow, "float32")), wide, atol=unit, rtol=0)


def test_moments_of_a_large_mean_input_match_float64():
    x = _large_mean_input()
    mean, variance = F.moments(x, (0, 1, 2))
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(np.asarray(mean), x64.mean(axis=(0, 1, 2)), rtol=1e-6)
    # The true variance is about 1; a 1% error would already be visible in the normalized output.
    np.testing.assert_allclose(np.asarray(variance), x64.var(axis=(0, 1, 2)), rtol=1e-2)


# --- masked moments ---------------------------------------------------------------------------


def _masked_numpy_moments(x, mask, axes):
    x = x.astype(np.float64)
    weights = np.broadcast_to(mask, x.shape).astype(np.float64)
    count = weights.sum(axis=axes, keepdims=True)
    safe = np.maximum(count, 1.0)
    mean = (x * weights).sum(axis=axes, keepdims=True) / safe
    variance = ((x - mean) ** 2 * weights).sum(axis=axes, keepdims=True) / safe
    return mean, variance


@pytest.mark.parametrize("synchronized", [False, True])
@pytest.mark.parametrize(
    "axes, mask_shape",
    [
        ((0, 1), (3, 7, 1)),  # per channel over batch and time, mask broadcast over channels
        ((0, 1), (3, 7, 5)),  # a full mask
        ((1, 2), (3, 7, 1)),  # per example
        (1, (3, 7, 5)),  # an int axis
    ],
)
def test_masked_moments_match_numpy(axes, mask_shape, synchronized):
    rng = np.random.default_rng(1)
    x = rng.normal(loc=100.0, scale=2.0, size=(3, 7, 5)).astype("float32")
    mask = rng.random(mask_shape) < 0.6
    mask[0, 0] = True  # at least one position counts in each slice below
    mask[:, 0] = True
    axes_tuple = (axes,) if isinstance(axes, int) else axes
    expected_mean, expected_variance = _masked_numpy_moments(x, mask, axes_tuple)

    mean, variance = F.moments(x, axes, keepdims=True, mask=mask, synchronized=synchronized)
    np.testing.assert_allclose(np.asarray(mean), expected_mean, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(np.asarray(variance), expected_variance, rtol=1e-4, atol=1e-5)

    mean, variance = F.moments(x, axes, mask=mask, synchronized=synchronized)
    np.testing.assert_allclose(np.asarray(mean), expected_mean.squeeze(axes_tuple), rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(
        np.asarray(variance), expected_variance.squeeze(axes_tuple), rtol=1e-4, atol=1e-5
    )
    # Masked-out values really are ignored: changing them changes nothing.
    poisoned = np.where(np.broadcast_to(mask, x.shape), x, 1e6).astype("float32")
    poisoned_mean, poisoned_variance = F.moments(poisoned, axes, mask=mask, synchronized=synchronized)
    np.testing.assert_allclose(np.asarray(poisoned_mean), np.asarray(mean), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(poisoned_variance), np.asarray(variance), rtol=1e-5)


def test_unmasked_moments_match_numpy():
    x = np.random.default_rng(2).normal(size=(3, 7, 5)).astype("float32")
    for axes in [(0, 1), (1, 2), (-1,), (0, 1, 2)]:
        mean, variance = F.moments(x, axes)
        np.testing.assert_allclose(np.asarray(mean), x.astype(np.float64).mean(axis=axes), atol=1e-6)
        np.testing.assert_allclose(np.asarray(variance), x.astype(np.float64).var(axis=axes), atol=1e-6)


def test_fully_masked_slices_have_zero_statistics():
    x = np.random.default_rng(3).normal(loc=5.0, size=(2, 4, 3)).astype("float32")
    mask = np.ones((2, 4, 1), bool)
    mask[1] = False  # example 1 is fully masked
    mean, variance = F.moments(x, (1, 2), mask=mask)
    expected_mean, expected_variance = _masked_numpy_moments(x[:1], mask[:1], (1, 2))
    np.testing.assert_allclose(np.asarray(mean), [expected_mean.item(), 0.0], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(variance), [expected_variance.item(), 0.0], rtol=1e-5)


# --- no rank growth ---------------------------------------------------------------------------

CHANNELS = 8
SPATIAL = {2: (), 3: (6,), 4: (5, 6), 5: (3, 4, 5)}


def _input_shape(rank, axis):
    spatial = list(SPATIAL[rank])
    if axis == -1:
        return (2, *spatial, CHANNELS)
    return (2, CHANNELS, *spatial)


LAYERS = {
    "GroupNormalization": (lambda axis: keras_norms.GroupNormalization(groups=4, axis=axis), 2, {}),
    "InstanceNormalization": (lambda axis: keras_norms.InstanceNormalization(axis=axis), 3, {}),
    "LayerNormalization": (lambda axis: keras_norms.LayerNormalization(axis=axis), 2, {}),
    "RMSNormalization": (lambda axis: keras_norms.RMSNormalization(axis=axis), 2, {}),
    "BatchNormalization_inference": (
        lambda axis: keras_norms.BatchNormalization(axis=axis), 2, {"training": False}
    ),
    "BatchNormalization_training": (
        lambda axis: keras_norms.BatchNormalization(axis=axis), 2, {"training": True}
    ),
}
RANK_CASES = [
    pytest.param(name, rank, axis, id=f"{name}-rank{rank}-axis{axis}")
    for name, (_, min_rank, _) in LAYERS.items()
    for rank in range(min_rank, 6)
    for axis in ((-1,) if rank == 2 else (-1, 1))  # at rank 2, axis 1 is axis -1
]


@pytest.mark.parametrize("name, rank, axis", RANK_CASES)
def test_layer_graph_never_exceeds_the_input_rank(name, rank, axis):
    make_layer, _, call_kwargs = LAYERS[name]
    shape = _input_shape(rank, axis)
    layer = make_layer(axis)
    layer.build(shape)
    graph = trace(lambda x: layer(x, **call_kwargs), shape)
    assert_no_rank_growth(graph, rank)
    assert max_rank(graph) == rank  # the check saw the input itself


@pytest.mark.parametrize("rank", [3, 4, 5])
def test_group_norm_graph_never_exceeds_the_input_rank_on_any_axis(rank):
    shape = (2,) + (3,) * (rank - 1)
    shape = shape[:-1] + (CHANNELS,)
    for axis in range(1, rank):
        moved = list(shape)
        moved[axis], moved[-1] = moved[-1], moved[axis]
        graph = trace(lambda x, axis=axis: F.group_norm(x, 4, axis=axis), tuple(moved))
        assert_no_rank_growth(graph, rank)


def _naive_group_norm(x, groups=4, epsilon=1e-3):
    """Group norm the way the paper's Figure 3 writes it: a 5D view of a 4D image."""
    n, h, w, c = x.shape
    grouped = tf.reshape(x, (n, h, w, groups, c // groups))
    mean, variance = tf.nn.moments(grouped, axes=[1, 2, 4], keepdims=True)
    return tf.reshape((grouped - mean) * tf.math.rsqrt(variance + epsilon), (n, h, w, c))


def test_rank_check_catches_a_naive_five_dimensional_group_view():
    graph = trace(_naive_group_norm, (2, 5, 6, CHANNELS))
    assert max_rank(graph) == 5
    offenders = tensors_above_rank(graph, 4)
    assert offenders and {t.rank for t in offenders} == {5}
    assert "Reshape" in {t.op_type for t in offenders}
    with pytest.raises(AssertionError, match="rank 5"):
        assert_no_rank_growth(graph, 4)
    # The naive view is numerically right (it is the paper's formulation); only its rank is wrong.
    x = np.random.default_rng(4).normal(size=(2, 5, 6, CHANNELS)).astype("float32")
    np.testing.assert_allclose(
        _naive_group_norm(tf.constant(x)).numpy(), references.group_norm(x, 4), atol=1e-5
    )


def test_rank_check_looks_inside_nested_function_graphs():
    def branchy(x):
        return tf.cond(
            tf.reduce_sum(x) > 0,
            lambda: _naive_group_norm(x),
            lambda: x,
        )

    graph = trace(branchy, (2, 5, 6, CHANNELS))
    with pytest.raises(AssertionError, match="rank 5"):
        assert_no_rank_growth(graph, 4)
