"""`manifest.json`: versions, signature, op lists, checksums and parity of an export."""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

MANIFEST = "manifest.json"


def versions() -> dict:
    """Versions of keras-norms, TensorFlow, Keras, LiteRT (None when not installed), NumPy, Python."""
    import keras_norms

    def installed(name):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "keras_norms": keras_norms.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "ai_edge_litert": installed("ai-edge-litert"),
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def sha256(path: Path) -> str:
    """The hex sha256 digest of the file at `path`."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksums(directory: Path) -> dict:
    """sha256 and size of every file under `directory` (but the manifest), by relative POSIX path."""
    return {
        path.relative_to(directory).as_posix(): {"sha256": sha256(path), "bytes": path.stat().st_size}
        for path in sorted(directory.rglob("*")) if path.is_file() and path.name != MANIFEST
    }
