"""keras-norms: normalization layers for Keras 3, on TensorFlow, JAX and PyTorch.

Examples:
    >>> import keras, keras_norms
    >>> model = keras.Sequential([
    ...     keras.Input((8, 8, 16)),
    ...     keras_norms.GroupNormalization(groups=4),
    ... ])
"""

from keras_norms import functional
from keras_norms._base import AffineNormalization, ConditionedNormalization, NormalizationLayer
from keras_norms.adaptive import (
    AdaptiveGroupNormalization,
    AdaptiveInstanceNormalization,
    AdaptiveLayerNormalization,
)
from keras_norms.attention import MultiHeadAttention
from keras_norms.batch import BatchNormalization
from keras_norms.compat import tfa_custom_objects
from keras_norms.conditional import (
    ConditionalBatchNormalization,
    ConditionalInstanceNormalization,
    FiLM,
)
from keras_norms.convert import (
    convert_norms,
    freeze_batch_norms,
    synchronize_batch_norms,
    unfreeze_batch_norms,
)
from keras_norms.group import GroupNormalization, InstanceNormalization
from keras_norms.layer import LayerNormalization, RMSNormalization
from keras_norms.pointwise import DynamicErf, DynamicTanh, LayerScale
from keras_norms.recalibrate import recalibrate_batch_norms
from keras_norms.recurrent import LayerNormLSTMCell, LayerNormSimpleRNNCell
from keras_norms.registry import Norm, describe, get, names, register
from keras_norms.response import TLU, FilterResponseNormalization
from keras_norms.spade import SPADE
from keras_norms.switchable import SwitchableNormalization
from keras_norms.weight_norm import WeightNormalization
from keras_norms.weight_standardization import WeightStandardizedConv2D

__version__ = "0.1.0"

__all__ = [
    "AdaptiveGroupNormalization",
    "AdaptiveInstanceNormalization",
    "AdaptiveLayerNormalization",
    "AffineNormalization",
    "BatchNormalization",
    "ConditionalBatchNormalization",
    "ConditionalInstanceNormalization",
    "ConditionedNormalization",
    "DynamicErf",
    "DynamicTanh",
    "FiLM",
    "FilterResponseNormalization",
    "GroupNormalization",
    "InstanceNormalization",
    "LayerNormLSTMCell",
    "LayerNormSimpleRNNCell",
    "LayerNormalization",
    "LayerScale",
    "MultiHeadAttention",
    "Norm",
    "NormalizationLayer",
    "RMSNormalization",
    "SPADE",
    "SwitchableNormalization",
    "TLU",
    "WeightNormalization",
    "WeightStandardizedConv2D",
    "convert_norms",
    "describe",
    "freeze_batch_norms",
    "functional",
    "get",
    "names",
    "recalibrate_batch_norms",
    "register",
    "synchronize_batch_norms",
    "tfa_custom_objects",
    "unfreeze_batch_norms",
]
