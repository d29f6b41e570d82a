"""Checks of the dtypes a layer computes in, shared by the contract suite and the layer tests.

- Mixed precision: a float32 input reaches the math unrounded, so the output
  is the float64 reference of the float32 input, rounded once to the compute
  dtype (`assert_rounded_to`). Magnitudes up to 1e15 (`large_inputs`) would
  overflow float16 (max 65504) if the input were cast first.
- float64 layers compute in float64: within 1e-12 of the float64 reference
  (`assert_float64_close`), on inputs with a large mean, where float32
  statistics are off by about 1e-5.
"""

from __future__ import annotations

import keras
import ml_dtypes
import numpy as np

FLOAT64_TOLERANCE = 1e-12
_NUMPY_DTYPES = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16}


def large_inputs(shape, rng) -> dict[str, np.ndarray]:
    """float32 inputs of large magnitude and large mean, by label."""
    families = {
        "normal*1e4": (0.0, 1e4),
        "1e4+100*normal": (1e4, 100.0),
        "normal*1e15": (0.0, 1e15),
        "1e15+1e13*normal": (1e15, 1e13),
    }
    return {label: (loc + scale * rng.normal(size=shape)).astype("float32")
            for label, (loc, scale) in families.items()}


def as_float64(tensor) -> np.ndarray:
    """A tensor of any float dtype as a float64 NumPy array (exact for float16/bfloat16/float32)."""
    return np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(tensor, "float32")), dtype=np.float64)


def assert_rounded_to(actual, reference, dtype: str, what: str, *, slack: float = 1e-4) -> None:
    """`actual`, of `dtype`, is the float64 `reference` rounded to `dtype`.

    Rounding to nearest is off by half a unit in the last place; the output
    is rounded once more from float32, so one unit (`eps * |reference|`) is
    allowed, plus `slack` times the output scale for the float32 arithmetic
    before it. Where the reference rounds to +-inf (a value beyond the
    dtype's range, which only a layer that does not normalize can return),
    `actual` must be that infinity. NaN is never allowed.
    """
    assert keras.backend.standardize_dtype(actual.dtype) == dtype, (what, actual.dtype)
    actual = as_float64(actual)
    reference = np.asarray(reference, dtype=np.float64)
    assert actual.shape == reference.shape, f"{what}: shape {actual.shape} != {reference.shape}"
    assert not np.isnan(actual).any(), f"{what}: NaN in the output"
    with np.errstate(over="ignore"):  # beyond the dtype's range, rounding gives +-inf
        rounded = reference.astype(_NUMPY_DTYPES[dtype]).astype(np.float64)
    infinite = np.isinf(rounded)
    np.testing.assert_array_equal(actual[infinite], rounded[infinite], err_msg=f"{what}: beyond range")
    actual, reference = actual[~infinite], reference[~infinite]
    assert np.isfinite(actual).all(), f"{what}: inf where the reference is {dtype}-representable"
    scale = max(1.0, float(np.abs(reference).max(initial=0.0)))
    eps = float(ml_dtypes.finfo(_NUMPY_DTYPES[dtype]).eps)
    error = np.abs(actual - reference) - eps * np.abs(reference)
    worst = float(error.max(initial=0.0))
    assert worst <= slack * scale, (
        f"{what}: off by {worst:.3g} more than one {dtype} rounding (allowed {slack * scale:.3g})"
    )


def assert_float64_close(actual, reference, what: str) -> None:
    """`actual` is float64 and within 1e-12 (relative to the output scale) of `reference`."""
    assert keras.backend.standardize_dtype(actual.dtype) == "float64", (what, actual.dtype)
    actual = np.asarray(keras.ops.convert_to_numpy(actual))
    reference = np.asarray(reference, dtype=np.float64)
    assert actual.shape == reference.shape, f"{what}: shape {actual.shape} != {reference.shape}"
    scale = max(1.0, float(np.abs(reference).max(initial=0.0)))
    error = float(np.abs(actual - reference).max(initial=0.0))
    assert error <= FLOAT64_TOLERANCE * scale, f"{what}: max abs error {error:.3g} > {FLOAT64_TOLERANCE:g}"
