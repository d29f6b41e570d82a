"""SavedModel and TFLite/LiteRT export (`keras_norms.export`)."""
