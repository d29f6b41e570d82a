"""`.keras` files saved by earlier versions load, and compute what they computed then.

tests/data/keras_files_<version>/ holds models saved by that version (its
make_files.py wrote them) with their inputs and outputs, in inference and then
in training mode: every registry norm in one model, and each conditional,
adaptive, weight-reparametrized and recurrent layer in a model of its own.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_norms  # noqa: F401  (registers the layers, as any user of the files does)

DATA = Path(__file__).resolve().parent / "data"
FILES = sorted(DATA.glob("keras_files_*/*.keras"))


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3] if part.isdigit())


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.stem}" for p in FILES])
def test_a_saved_file_loads_and_gives_its_recorded_outputs(path):
    with zipfile.ZipFile(path) as archive:
        saved_by = json.loads(archive.read("metadata.json"))["keras_version"]
    if _version(keras.__version__) < _version(saved_by):
        # Keras reads older files, not newer ones: a newer Keras writes arguments an older one does not
        # take (Keras 3.15's GlorotUniform config has `input_axes`, which Keras 3.10 refuses).
        pytest.skip(f"saved with Keras {saved_by}, which Keras {keras.__version__} cannot read")
    recorded = np.load(path.with_suffix(".npz"))
    xs = [recorded[f"x{i}"] for i in range(sum(key.startswith("x") for key in recorded))]
    model = keras.saving.load_model(path, safe_mode=True)
    for mode, training in (("inference", False), ("training", True)):
        ys = model(xs if len(xs) > 1 else xs[0], training=training)
        ys = ys if isinstance(ys, (list, tuple)) else [ys]
        for i, y in enumerate(ys):
            np.testing.assert_allclose(keras.ops.convert_to_numpy(y), recorded[f"{mode}{i}"], rtol=1e-5,
                                       atol=1e-5, err_msg=f"{path.stem}, {mode}, output {i}")


def test_every_layer_has_a_saved_file():
    assert len(FILES) >= 14, FILES
