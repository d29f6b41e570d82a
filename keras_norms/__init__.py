"""keras-norms: normalization layers for Keras 3 on TensorFlow.

Example:

>>> import keras, keras_norms
>>> model = keras.Sequential([
...     keras.Input((8, 8, 16)),
...     keras_norms.GroupNormalization(groups=4),
... ])
"""

from keras_norms import functional
from keras_norms.batch import BatchNormalization
from keras_norms.compat import tfa_custom_objects
from keras_norms.group import GroupNormalization, InstanceNormalization
from keras_norms.layer import LayerNormalization, RMSNormalization
from keras_norms.registry import get, names, register

__version__ = "0.1.0"

__all__ = [
    "BatchNormalization",
    "GroupNormalization",
    "InstanceNormalization",
    "LayerNormalization",
    "RMSNormalization",
    "functional",
    "get",
    "names",
    "register",
    "tfa_custom_objects",
]
