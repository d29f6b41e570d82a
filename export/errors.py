"""The errors of the exporter."""

from __future__ import annotations


class ExportError(RuntimeError):
    """The model could not be exported as a verified artefact; the message says why and what to do.

    The base class of the exporter's errors: `export_model` raises it (or
    `UnsupportedOpError`, `ParityError`) when conversion or verification
    fails, and leaves nothing in the export directory. Arguments that are wrong
    before any work raise `ValueError` instead. Catch `ExportError` to handle
    every export failure at once. It is created, like any exception, with
    its message.

    Examples:
        A TFLite graph may not hold a tensor of a higher rank than the model's
        input (rank 4 is always allowed):

        >>> import os, tempfile, keras
        >>> from keras_norms.export import ExportError, export_model
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Reshape((1, 1, 1, 4))])
        >>> directory = os.path.join(tempfile.mkdtemp(), "out")
        >>> try:
        ...     export_model(model, directory, formats=("tflite",))
        ... except ExportError as error:
        ...     print(str(error)[:44], "...", os.path.exists(directory))
        model.tflite has 1 tensor(s) of rank above 4 ... False
    """


class UnsupportedOpError(ExportError):
    """TFLite conversion needs an op that is not a TFLite built-in (it would need Flex or a custom op).

    The exporter never enables Flex (SELECT_TF_OPS), which the LiteRT
    interpreter cannot run, so such a model cannot be exported as it is:
    replace the named layers with built-in operations, or keep them out of
    the exported model. The arguments are kept as attributes of the same names.

    Args:
        message: What failed, naming the ops and layers.
        ops: The offending TensorFlow op types, e.g. `["BesselI0"]`.
        layers: The Keras layers they come from, where the op's name scope
            says it (may be empty).

    Examples:
        >>> import os, tempfile, keras
        >>> import tensorflow as tf
        >>> from keras_norms.export import UnsupportedOpError, export_model
        >>> model = keras.Sequential([keras.Input((4,)),
        ...                           keras.layers.Lambda(tf.math.bessel_i0, name="bessel")])
        >>> try:
        ...     export_model(model, os.path.join(tempfile.mkdtemp(), "out"), formats=("tflite",))
        ... except UnsupportedOpError as error:
        ...     print(error.ops, error.layers)
        ['BesselI0'] ['bessel']
    """

    def __init__(self, message: str, ops: list[str], layers: list[str]):
        super().__init__(message)
        self.ops = ops
        self.layers = layers


class ParityError(ExportError):
    """An exported float32 artefact does not reproduce the Keras model within the tolerance.

    `export_model` compares the reloaded SavedModel and `model.tflite` with
    the Keras model in inference mode; a max absolute error above 1e-5 (and
    above 1e-5 relative to the largest output) raises it, and nothing is
    written. The message gives the error and the input set it was measured
    on. Quantized files are never checked against the tolerance. It is
    created, like any exception, with its message.

    Examples:
        `export_model(model, directory)` raises it for a model whose export does
        not match; it is an `ExportError`, so one `except` handles both:

        >>> from keras_norms.export import ExportError, ParityError
        >>> error = ParityError("model.tflite differs from the Keras model by 0.02")
        >>> isinstance(error, ExportError), str(error)
        (True, 'model.tflite differs from the Keras model by 0.02')
    """
