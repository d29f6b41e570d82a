"""SavedModel and TFLite/LiteRT export (`keras_norms.export`).

`export_model` writes a verified SavedModel, `.tflite` files (float32 and
quantized variants) and a manifest; `fold_batch_norms` freezes batch norms
into the preceding Conv/Dense layers.

Examples:
    >>> import keras, keras_norms
    >>> from keras_norms.export import export_model, fold_batch_norms
    >>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
    ...                           keras_norms.BatchNormalization()])
    >>> [type(layer).__name__ for layer in fold_batch_norms(model).layers]
    ['Conv2D', 'Identity']
"""

from keras_norms.export._api import ExportResult, export_model
from keras_norms.export.errors import ExportError, ParityError, UnsupportedOpError
from keras_norms.export.folding import ChannelAffine, FoldRecord, fold_batch_norms

__all__ = [
    "ChannelAffine",
    "ExportError",
    "ExportResult",
    "FoldRecord",
    "ParityError",
    "UnsupportedOpError",
    "export_model",
    "fold_batch_norms",
]
