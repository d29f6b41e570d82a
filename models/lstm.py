"""The former home of the recurrent cells, which are norm layers: see `keras_norms.recurrent`.

`from keras_norms.models.lstm import LayerNormLSTMCell` keeps working; `keras_norms.LayerNormLSTMCell`
and `keras_norms.LayerNormSimpleRNNCell` are their public names.
"""

from keras_norms.recurrent import LayerNormLSTMCell, LayerNormSimpleRNNCell

__all__ = ["LayerNormLSTMCell", "LayerNormSimpleRNNCell"]
