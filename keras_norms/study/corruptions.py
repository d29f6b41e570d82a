"""Test-set corruptions of increasing severity, and a heterogeneous test set mixing them.

All functions take examples in [0, 1], batch first: images `(N, H, W, C)` or
sequences `(N, T, F)` (treated as one-channel images), and return float32
arrays in [0, 1]; the input is never modified. Severity runs from 1 (mild) to 5.

Examples:
    >>> import numpy as np
    >>> from keras_norms.study.corruptions import corrupt
    >>> x = np.full((2, 8, 8, 1), 0.5, "float32")
    >>> float(corrupt(x, "brightness_contrast", 5).mean()) > 0.5
    True
"""

from __future__ import annotations

import numpy as np

SEVERITIES = (1, 2, 3, 4, 5)

#: Standard deviation of the added noise, per severity.
NOISE_STDDEV = (0.04, 0.08, 0.12, 0.18, 0.26)
#: Contrast factor (around mid-grey) and brightness offset, per severity.
CONTRAST = (0.9, 0.75, 0.6, 0.45, 0.3)
BRIGHTNESS = (0.05, 0.1, 0.15, 0.2, 0.3)
#: Gaussian blur sigma as a fraction of the smaller image side, per severity.
BLUR_SIGMA = (0.03, 0.06, 0.09, 0.12, 0.18)


def _check(x, severity: int) -> np.ndarray:
    if severity not in SEVERITIES:
        raise ValueError(f"Argument `severity` must be one of {SEVERITIES}. Received: severity={severity!r}")
    x = np.asarray(x, dtype=np.float32)
    if x.ndim not in (3, 4):
        raise ValueError(
            "Corruptions take images (N, H, W, C) or sequences (N, T, F). "
            f"Received: an array of shape {x.shape}"
        )
    return x


def gaussian_noise(x, severity: int, seed: int = 0) -> np.ndarray:
    """Adds zero-mean Gaussian noise of standard deviation `NOISE_STDDEV[severity - 1]`.

    The noise pattern is the same at every severity (only its scale grows), so
    the damage grows monotonically with severity.
    """
    x = _check(x, severity)
    noise = np.random.default_rng(seed).standard_normal(x.shape, dtype=np.float32)
    return np.clip(x + NOISE_STDDEV[severity - 1] * noise, 0.0, 1.0)


def brightness_contrast(x, severity: int) -> np.ndarray:
    """Lowers the contrast around mid-grey and brightens: ``(x - 0.5) * c + 0.5 + b``."""
    x = _check(x, severity)
    contrast, brightness = CONTRAST[severity - 1], BRIGHTNESS[severity - 1]
    return np.clip((x - 0.5) * contrast + 0.5 + brightness, 0.0, 1.0)


def blur(x, severity: int) -> np.ndarray:
    """Gaussian blur over the two spatial (or time and feature) axes, edges repeated."""
    from scipy.ndimage import gaussian_filter

    x = _check(x, severity)
    sigma = BLUR_SIGMA[severity - 1] * min(x.shape[1], x.shape[2])
    sigmas = (0, sigma, sigma) + (0,) * (x.ndim - 3)
    return np.clip(gaussian_filter(x, sigma=sigmas, mode="nearest"), 0.0, 1.0).astype(np.float32)


CORRUPTIONS = {"gaussian_noise": gaussian_noise, "brightness_contrast": brightness_contrast, "blur": blur}


def corrupt(x, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """Applies the corruption `name` (a key of `CORRUPTIONS`) at `severity`."""
    if name not in CORRUPTIONS:
        raise ValueError(f"Unknown corruption {name!r}. Valid names: {', '.join(CORRUPTIONS)}")
    if name == "gaussian_noise":
        return gaussian_noise(x, severity, seed)
    return CORRUPTIONS[name](x, severity)


def heterogeneous(x, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """A test set whose examples come from mixed domains.

    Each example independently stays clean or gets one of the corruptions at a
    severity drawn from 1-5 (clean and each corruption equally likely), so every
    batch mixes differently distributed inputs.

    Returns:
        The mixed examples and, per example, its domain (`"clean"` or
        `"<corruption>:<severity>"`).
    """
    x = np.asarray(x, dtype=np.float32)
    rng = np.random.default_rng(seed)
    names = list(CORRUPTIONS)
    kinds = rng.integers(0, len(names) + 1, size=len(x))
    severities = rng.integers(1, 6, size=len(x))
    mixed = x.copy()
    domains = ["clean"] * len(x)
    for k, name in enumerate(names, start=1):
        for severity in SEVERITIES:
            chosen = np.flatnonzero((kinds == k) & (severities == severity))
            if chosen.size:
                mixed[chosen] = corrupt(x[chosen], name, severity, seed=seed + severity)
                for i in chosen:
                    domains[i] = f"{name}:{severity}"
    return mixed, domains
