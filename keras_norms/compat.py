"""Loading what tensorflow-addons-era code saved.

tensorflow-addons registered its layers as ``Addons>GroupNormalization``,
``Addons>InstanceNormalization``, ``Addons>FilterResponseNormalization``,
``Addons>TLU``, ``Addons>WeightNormalization``, ``Addons>LayerNormLSTMCell``
and ``Addons>LayerNormSimpleRNNCell``. Importing keras_norms registers those
names for the keras-norms successors (same arguments, config keys and weights),
so `keras.models.load_model` (legacy `.h5` and `.keras`), `model_from_json` and
`keras.layers.deserialize` read tfa-era files as they are. (`Addons>WeightNormalization`
loads as `TfaWeightNormalization`, which also holds the copies of the wrapped
weights that tfa saved with ``data_init=True``.) The registration
only adds names to look up: keras-norms layers are still saved under their own.
`tfa_custom_objects()` gives the same mapping for an explicit `custom_objects`.

Examples:
    >>> import keras, keras_norms
    >>> config = {"class_name": "Addons>GroupNormalization",
    ...           "config": {"groups": 4, "axis": -1, "epsilon": 1e-3}}
    >>> layer = keras.layers.deserialize(config)
    >>> type(layer).__name__, layer.groups
    ('GroupNormalization', 4)
"""

from __future__ import annotations

import keras

from keras_norms.group import GroupNormalization, InstanceNormalization
from keras_norms.recurrent import LayerNormLSTMCell, LayerNormSimpleRNNCell
from keras_norms.response import TLU, FilterResponseNormalization
from keras_norms.weight_norm import TfaWeightNormalization


def tfa_custom_objects() -> dict[str, type]:
    """Maps tensorflow-addons' registered names to the keras-norms layers that succeed them.

    Importing keras_norms already registers these names globally (unless a
    custom object of the same name was registered before); pass this mapping as
    `custom_objects` to make the loading of a tfa-era file explicit, or to load
    it where the global registration was replaced.

    Returns:
        A new dict from each `"Addons>..."` name to its keras-norms class
            (`GroupNormalization`, `InstanceNormalization`,
            `FilterResponseNormalization`, `TLU`, `LayerNormLSTMCell`,
            `LayerNormSimpleRNNCell`, and `TfaWeightNormalization` for
            `"Addons>WeightNormalization"`).

    Examples:
        >>> import keras, keras_norms
        >>> objects = keras_norms.tfa_custom_objects()
        >>> objects["Addons>WeightNormalization"].__name__
        'TfaWeightNormalization'
        >>> config = {"class_name": "Addons>InstanceNormalization", "config": {"epsilon": 1e-5}}
        >>> layer = keras.layers.deserialize(config, custom_objects=objects)
        >>> type(layer).__name__, layer.epsilon
        ('InstanceNormalization', 1e-05)
    """
    return {
        "Addons>GroupNormalization": GroupNormalization,
        "Addons>InstanceNormalization": InstanceNormalization,
        "Addons>FilterResponseNormalization": FilterResponseNormalization,
        "Addons>TLU": TLU,
        "Addons>LayerNormLSTMCell": LayerNormLSTMCell,
        "Addons>LayerNormSimpleRNNCell": LayerNormSimpleRNNCell,
        # tfa's files with data_init=True hold copies of the wrapped weights: see TfaWeightNormalization.
        "Addons>WeightNormalization": TfaWeightNormalization,
    }


def register_tfa_names() -> None:
    """Makes tensorflow-addons' registered names load as keras-norms layers (done on import)."""
    custom_objects = keras.saving.get_custom_objects()
    for name, layer in tfa_custom_objects().items():
        custom_objects.setdefault(name, layer)


register_tfa_names()
