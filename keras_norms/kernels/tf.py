"""The TensorFlow entry points of `keras_norms.functional`, re-exported in one place.

`functional` calls them with the same arguments as its functions of the same
name (and `cross_replica_moments` from `functional.moments` with
`synchronized=True`); the norms return None where their fast path does not
apply to the input, and `functional` then takes the plain path.
"""

from __future__ import annotations

from keras_norms.kernels.tf_batch import (
    batch_norm,
    batch_norm_train,
    cross_replica_moments,
    virtual_batch_norm,
)
from keras_norms.kernels.tf_channel import group_norm
from keras_norms.kernels.tf_row import layer_norm, rms_norm

__all__ = [
    "batch_norm",
    "batch_norm_train",
    "cross_replica_moments",
    "group_norm",
    "layer_norm",
    "rms_norm",
    "virtual_batch_norm",
]
