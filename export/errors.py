"""The errors of the exporter."""

from __future__ import annotations


class ExportError(RuntimeError):
    """The model could not be exported as a verified artefact; the message says why and what to do."""


class UnsupportedOpError(ExportError):
    """TFLite conversion needs an op that is not a TFLite built-in (it would need Flex or a custom op).

    Attributes:
        ops: The offending TensorFlow op types, e.g. `["BesselI0"]`.
        layers: The Keras layers they come from, where the op's name scope says it.
    """

    def __init__(self, message: str, ops: list[str], layers: list[str]):
        super().__init__(message)
        self.ops = ops
        self.layers = layers


class ParityError(ExportError):
    """An exported float32 artefact does not reproduce the Keras model within the tolerance."""
