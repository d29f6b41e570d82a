"""Loading what tensorflow-addons-era code saved.

tensorflow-addons registered its layers as ``Addons>GroupNormalization``,
``Addons>InstanceNormalization``, ``Addons>FilterResponseNormalization`` and
``Addons>TLU``. Pass `tfa_custom_objects()` when loading a
model or a layer config that names them; the arguments and weights are the same.

Example:

>>> import keras, keras_norms
>>> config = {"class_name": "Addons>GroupNormalization",
...           "config": {"groups": 4, "axis": -1, "epsilon": 1e-3}}
>>> layer = keras.layers.deserialize(config, custom_objects=keras_norms.tfa_custom_objects())
>>> type(layer).__name__, layer.groups
('GroupNormalization', 4)
"""

from __future__ import annotations

from keras_norms.group import GroupNormalization, InstanceNormalization
from keras_norms.response import TLU, FilterResponseNormalization


def tfa_custom_objects() -> dict[str, type]:
    """The `custom_objects` mapping from tensorflow-addons' registered names to keras-norms layers."""
    return {
        "Addons>GroupNormalization": GroupNormalization,
        "Addons>InstanceNormalization": InstanceNormalization,
        "Addons>FilterResponseNormalization": FilterResponseNormalization,
        "Addons>TLU": TLU,
    }
