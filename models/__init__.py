"""The paper's models (`keras_norms.models`), each with its norm swappable by name.

Examples:
    >>> from keras_norms.models import build_model
    >>> model = build_model("paper_cnn", norm="group", groups=8, input_shape=(32, 32, 3))
    >>> model.output_shape
    (None, 10)
"""

from keras_norms.models.build import DEFAULT_INPUT_SHAPES, build_model, model_names
from keras_norms.models.cnn import lenet, paper_cnn, resnet
from keras_norms.models.sequence import sequence
from keras_norms.models.transformer import PositionEmbedding, transformer

# The recurrent cells are norm layers (`keras_norms.LayerNormLSTMCell`); their former names still import.
from keras_norms.recurrent import LayerNormLSTMCell as LayerNormLSTMCell
from keras_norms.recurrent import LayerNormSimpleRNNCell as LayerNormSimpleRNNCell

__all__ = [
    "DEFAULT_INPUT_SHAPES",
    "PositionEmbedding",
    "build_model",
    "lenet",
    "model_names",
    "paper_cnn",
    "resnet",
    "sequence",
    "transformer",
]
