"""Published properties of the normalizations, checked on shapes and data drawn by hypothesis.

- Group norm is invariant to shifting and positively scaling the input of one group of one
  example (Wu and He, 2018, Eq. 1-3: each group is standardized on its own).
- Layer norm is invariant to positive scaling of an example (Ba et al., 2016, Table 1).
- Group norm with one group is layer norm over all non-batch axes, and with one channel per
  group it is instance norm (Wu and He, 2018, Section 3.1 and Figure 2).
- RMS norm is invariant to positive scaling but, unlike layer norm, not to shifting: it does not
  subtract the mean (Zhang and Sennrich, 2019, Eq. 4).
"""

from __future__ import annotations

import numpy as np
import pytest
import references
from hypothesis import given, settings
from hypothesis import strategies as st

import keras_norms
from keras_norms import functional as F

SETTINGS = settings(max_examples=25, deadline=None)
# Each normalized slice of the inputs below is standardized to this standard deviation (or
# root mean square), far above the epsilon used, so that invariances hold to float32 accuracy.
SLICE_STD = 10.0
EPSILON = 1e-6


@st.composite
def group_cases(draw, min_rank=2, max_rank=5, any_axis=False):
    """(shape, channel axis, groups): batch 1-3, spatial sizes 1-5, channels a multiple of groups <= 16."""
    rank = draw(st.integers(min_rank, max_rank))
    groups = draw(st.integers(1, 8))
    channels = groups * draw(st.integers(1, 16 // groups))
    sizes = [draw(st.integers(1, 3))] + [draw(st.integers(1, 5)) for _ in range(rank - 2)]
    axis = draw(st.integers(1, rank - 1)) if any_axis else draw(st.sampled_from([-1, 1]))
    axis_index = axis % rank
    shape = sizes[:axis_index] + [channels] + sizes[axis_index:]
    return tuple(shape), axis, groups


seeds = st.integers(0, 2**32 - 1)


def _grouped_view(x, axis, groups):
    """`x` viewed as (batch, positions, groups, channels // groups), as in Wu and He's Figure 3."""
    moved = np.moveaxis(x, axis, -1)
    view = moved.reshape(moved.shape[0], -1, groups, moved.shape[-1] // groups)
    return view, lambda v: np.moveaxis(v.reshape(moved.shape), -1, axis)


def _standardize(x, axes, std=SLICE_STD):
    """Each slice over `axes` shifted to mean 0 and scaled to `std` (slices of one element become 0)."""
    x = np.asarray(x, np.float64)
    centered = x - x.mean(axis=axes, keepdims=True)
    spread = centered.std(axis=axes, keepdims=True)
    return np.where(spread > 0, centered / np.where(spread > 0, spread, 1.0) * std, 0.0)


def _per_example(values, rank):
    return np.reshape(values, (-1,) + (1,) * (rank - 1))


@SETTINGS
@given(case=group_cases(), seed=seeds, data=st.data())
def test_group_norm_is_invariant_to_an_affine_change_of_one_group(case, seed, data):
    shape, axis, groups = case
    rng = np.random.default_rng(seed)
    view, restore = _grouped_view(rng.normal(size=shape), axis, groups)
    view = _standardize(view, (1, 3))
    x = restore(view)
    example = data.draw(st.integers(0, shape[0] - 1), label="example")
    group = data.draw(st.integers(0, groups - 1), label="group")
    factor = data.draw(st.floats(0.1, 10.0), label="factor")
    shift = data.draw(st.floats(-100.0, 100.0), label="shift")
    changed_view = view.copy()
    changed_view[example, :, group, :] = changed_view[example, :, group, :] * factor + shift
    changed = restore(changed_view)
    channels = shape[axis]
    gamma, beta = rng.normal(size=channels), rng.normal(size=channels)

    def run(inputs):
        outputs = F.group_norm(
            inputs.astype("float32"), groups, gamma, beta, axis=axis, epsilon=EPSILON
        )
        return np.asarray(outputs)

    np.testing.assert_allclose(run(changed), run(x), atol=1e-4, rtol=0)


@SETTINGS
@given(case=group_cases(min_rank=2, max_rank=4), all_axes=st.booleans(), seed=seeds, data=st.data())
def test_layer_norm_is_invariant_to_scaling_an_example(case, all_axes, seed, data):
    shape, _, _ = case
    rank = len(shape)
    axes = tuple(range(1, rank)) if all_axes else (rank - 1,)
    rng = np.random.default_rng(seed)
    x = _standardize(rng.normal(size=shape), axes)
    factors = np.array(data.draw(st.lists(st.floats(0.1, 10.0), min_size=shape[0], max_size=shape[0])))
    layer = keras_norms.LayerNormalization(axis=list(axes), epsilon=EPSILON)
    layer.build(shape)
    layer.set_weights([rng.normal(size=w.shape) for w in layer.weights])
    outputs = np.asarray(layer(x.astype("float32")))
    scaled = np.asarray(layer((x * _per_example(factors, rank)).astype("float32")))
    np.testing.assert_allclose(scaled, outputs, atol=1e-4, rtol=0)


@SETTINGS
@given(case=group_cases(), seed=seeds)
def test_group_norm_with_one_group_is_layer_norm_over_all_non_batch_axes(case, seed):
    shape, axis, _ = case
    rank = len(shape)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape).astype("float32")
    channels = shape[axis]
    gamma, beta = rng.normal(size=channels), rng.normal(size=channels)
    # Layer norm over all non-batch axes has a gamma and beta per position; give it GN's per-channel
    # values broadcast over the positions.
    per_channel = references.channel_shape(rank - 1, axis % rank - 1, channels)
    full_gamma = np.broadcast_to(gamma.reshape(per_channel), shape[1:])
    full_beta = np.broadcast_to(beta.reshape(per_channel), shape[1:])
    all_axes = list(range(1, rank))

    grouped = F.group_norm(x, 1, gamma, beta, axis=axis)
    layered = F.layer_norm(x, full_gamma, full_beta, axis=all_axes)
    np.testing.assert_allclose(np.asarray(grouped), np.asarray(layered), atol=1e-5, rtol=0)

    group_layer = keras_norms.GroupNormalization(groups=1, axis=axis)
    group_layer.build(shape)
    group_layer.set_weights([gamma, beta])
    layer_layer = keras_norms.LayerNormalization(axis=all_axes)
    layer_layer.build(shape)
    layer_layer.set_weights([full_gamma, full_beta])
    np.testing.assert_allclose(
        np.asarray(group_layer(x)), np.asarray(layer_layer(x)), atol=1e-5, rtol=0
    )


@SETTINGS
@given(case=group_cases(min_rank=3), seed=seeds)
def test_instance_norm_is_group_norm_with_one_channel_per_group(case, seed):
    shape, axis, _ = case
    channels = shape[axis]
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape).astype("float32")
    weights = [rng.normal(size=channels), rng.normal(size=channels)]
    instance = keras_norms.InstanceNormalization(axis=axis)
    grouped = keras_norms.GroupNormalization(groups=channels, axis=axis)
    for layer in (instance, grouped):
        layer.build(shape)
        layer.set_weights(weights)
    expected = references.instance_norm(x, *weights, axis=axis)
    np.testing.assert_allclose(np.asarray(instance(x)), expected, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(grouped(x)), np.asarray(instance(x)), atol=1e-5, rtol=0)
    np.testing.assert_allclose(
        np.asarray(F.group_norm(x, -1, *weights, axis=axis)), expected, atol=1e-5, rtol=1e-5
    )


@SETTINGS
@given(case=group_cases(min_rank=2, max_rank=4), seed=seeds, data=st.data())
def test_rms_norm_is_invariant_to_scaling_an_example(case, seed, data):
    shape, _, _ = case
    rank = len(shape)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape)
    x = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True)) * SLICE_STD
    factors = np.array(data.draw(st.lists(st.floats(0.1, 10.0), min_size=shape[0], max_size=shape[0])))
    gamma = rng.normal(size=shape[-1])
    layer = keras_norms.RMSNormalization(epsilon=EPSILON)
    layer.build(shape)
    layer.set_weights([gamma])
    outputs = np.asarray(layer(x.astype("float32")))
    np.testing.assert_allclose(outputs, references.rms_norm(x, gamma, epsilon=EPSILON), atol=1e-4, rtol=0)
    scaled = np.asarray(layer((x * _per_example(factors, rank)).astype("float32")))
    np.testing.assert_allclose(scaled, outputs, atol=1e-4, rtol=0)


@SETTINGS
@given(
    case=group_cases(min_rank=2, max_rank=4),
    seed=seeds,
    shift=st.floats(5.0, 100.0) | st.floats(-100.0, -5.0),
)
def test_rms_norm_does_not_subtract_the_mean_where_layer_norm_does(case, seed, shift):
    shape, _, _ = case
    if shape[-1] < 2:
        shape = shape[:-1] + (2,)  # a zero-mean row needs two features
    rng = np.random.default_rng(seed)
    x = _standardize(rng.normal(size=shape), -1)  # rows of mean 0: root mean square == std
    shifted = (x + shift).astype("float32")
    x = x.astype("float32")

    def layer_norm(t):
        return np.asarray(F.layer_norm(t, axis=-1, epsilon=EPSILON))

    def rms_norm(t):
        return np.asarray(F.rms_norm(t, axis=-1, epsilon=EPSILON))

    # On zero-mean rows the two agree; layer norm then ignores the shift ...
    np.testing.assert_allclose(rms_norm(x), layer_norm(x), atol=1e-4, rtol=0)
    np.testing.assert_allclose(layer_norm(shifted), layer_norm(x), atol=1e-4, rtol=0)
    np.testing.assert_allclose(layer_norm(shifted).mean(axis=-1), 0.0, atol=1e-4)
    # ... while RMS norm keeps it: each row's output mean is shift / rms(x + shift), not 0.
    expected_mean = shift / np.sqrt(SLICE_STD**2 + shift**2)
    np.testing.assert_allclose(rms_norm(shifted).mean(axis=-1), expected_mean, atol=1e-4)
    assert np.max(np.abs(rms_norm(shifted) - layer_norm(shifted))) > 0.4


@SETTINGS
@given(
    case=group_cases(any_axis=True),
    seed=seeds,
    epsilon=st.sampled_from([1e-3, 1e-5]),
    affine=st.booleans(),
)
def test_group_norm_matches_the_float64_reference(case, seed, epsilon, affine):
    shape, axis, groups = case
    channels = shape[axis]
    rng = np.random.default_rng(seed)
    x = rng.normal(loc=rng.uniform(-5, 5), scale=rng.uniform(0.5, 3), size=shape).astype("float32")
    gamma, beta = (rng.normal(size=channels), rng.normal(size=channels)) if affine else (None, None)
    expected = references.group_norm(x, groups, gamma, beta, axis=axis, epsilon=epsilon)
    outputs = F.group_norm(x, groups, gamma, beta, axis=axis, epsilon=epsilon)
    np.testing.assert_allclose(np.asarray(outputs), expected, atol=1e-4, rtol=1e-4)

    layer = keras_norms.GroupNormalization(groups, axis=axis, epsilon=epsilon, center=affine, scale=affine)
    layer.build(shape)
    if affine:
        layer.set_weights([gamma, beta])
    np.testing.assert_allclose(np.asarray(layer(x)), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("groups", [2, 4])
def test_group_norm_invariance_is_per_group_not_per_channel(groups):
    """Control for the invariance property: scaling a single channel of a multi-channel group
    changes the output, so the invariance test would catch statistics pooled wrongly."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 4, 4, 8)).astype("float32")
    changed = x.copy()
    changed[0, ..., 0] = changed[0, ..., 0] * 5.0 + 3.0
    before = np.asarray(F.group_norm(x, groups, epsilon=EPSILON))
    after = np.asarray(F.group_norm(changed, groups, epsilon=EPSILON))
    group_size = 8 // groups
    # Channels of the same group as channel 0 in example 0 move ...
    assert np.max(np.abs(after[0, ..., 1:group_size] - before[0, ..., 1:group_size])) > 0.1
    # ... and nothing else does.
    np.testing.assert_allclose(after[0, ..., group_size:], before[0, ..., group_size:], atol=1e-5)
    np.testing.assert_allclose(after[1], before[1], atol=1e-5)
