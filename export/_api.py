"""`export_model`: a verified SavedModel and TFLite export, written atomically, with a manifest."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
from keras_norms.export import manifest as manifests
from keras_norms.export import signature, tflite, verify
from keras_norms.export.errors import ParityError
from keras_norms.export.folding import FoldRecord, fold_batch_norms
from keras_norms.export.options import FORMATS, ExportPlan, make_plan

#: float32 artefacts must reproduce the Keras model within this max absolute error (relative to the
#: largest output where outputs exceed 1).
FLOAT32_TOLERANCE = 1e-5
RANDOM_EXAMPLES = 8


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What `export_model` wrote and measured.

    `export_model` returns it; the fields are its attributes (frozen).
    `table()` summarizes it in a few lines.

    Args:
        directory: The export directory (absolute).
        paths: Path of each artefact by name: `"saved_model"`, `"model.tflite"`,
            `"model_int8.tflite"`, ..., `"manifest.json"`.
        ops: The TFLite op list (execution order) of each `.tflite` file.
        parity: Per artefact, the max absolute and relative error against the
            Keras model (`max_abs_error`, `max_rel_error`, and `by_data` per
            input set: `random`, `representative`, `eval`) and, with
            `eval_data`, `accuracy` (`keras`, `exported`, `change`). Empty when
            `verify=False`.
        batch_norms: What happened to each batch norm (`FoldRecord`s; empty
            with `fold_batch_norm=False`).
        manifest: The content of `manifest.json`.

    Examples:
        >>> import os, tempfile, keras
        >>> from keras_norms.export import export_model
        >>> model = keras.Sequential([keras.Input((4,), name="features"),
        ...                           keras.layers.Dense(3, name="logits")])
        >>> result = export_model(model, os.path.join(tempfile.mkdtemp(), "out"), formats=("tflite",))
        >>> result.manifest["model"]["inputs"], result.ops
        ([{'name': 'features', 'shape': [1, 4], 'dtype': 'float32'}], {'model.tflite': ['FULLY_CONNECTED']})
        >>> print(result.table())
        file                         size   ops  max abs err
        model.tflite ... 1 ...
        manifest.json ... - -
    """

    directory: Path
    paths: dict[str, Path]
    ops: dict[str, list[str]]
    parity: dict[str, dict]
    batch_norms: list[FoldRecord]
    manifest: dict

    def table(self) -> str:
        """Summarizes the export as a short plain-text table, one line per file.

        Returns:
            The table as a str (a header, then one line per file with its
                size, TFLite op count and max abs error against Keras, `-` where
                not applicable; with `eval_data`, also the exported accuracy and
                its change in points).
        """
        with_accuracy = any("accuracy" in p for p in self.parity.values())
        header = f"{'file':<22} {'size':>10} {'ops':>5} {'max abs err':>12}"
        header += f" {'accuracy (change)':>19}" if with_accuracy else ""
        lines = [header]
        for name, path in self.paths.items():
            files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
            size = sum(p.stat().st_size for p in files)
            ops = str(len(self.ops[name])) if name in self.ops else "-"
            parity = self.parity.get(name, {})
            error = f"{parity['max_abs_error']:.2e}" if parity else "-"
            line = f"{name + ('/' if path.is_dir() else ''):<22} {_size(size):>10} {ops:>5} {error:>12}"
            if with_accuracy:
                acc = parity.get("accuracy")
                text = f"{acc['exported']:.4f} ({100 * acc['change']:+.2f})" if acc else "-"
                line += f" {text:>19}"
            lines.append(line)
        return "\n".join(lines)


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    return f"{size / 1024:.1f} KiB" if size < 1024**2 else f"{size / 1024**2:.1f} MiB"


@contextlib.contextmanager
def _staging(directory: Path, overwrite: bool):
    """Yields a temporary directory beside `directory`, renamed to it if the block succeeds.

    On any failure (an interrupt included) the temporary directory, and any
    parent directory created for it, is removed and `directory` is untouched.
    """
    created = []
    for parent in reversed(directory.parents):
        if not parent.exists():
            parent.mkdir()
            created.append(parent)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        yield staging
        _check_destination(directory, overwrite)
        if directory.exists():
            backup = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
            os.replace(directory, backup / directory.name)
            try:
                os.replace(staging, directory)
            except BaseException:
                os.replace(backup / directory.name, directory)
                raise
            finally:
                shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for parent in reversed(created):
            with contextlib.suppress(OSError):
                parent.rmdir()
        raise


def _check_destination(directory: Path, overwrite: bool) -> None:
    if directory.exists() and not directory.is_dir():
        raise FileExistsError(f"{directory} exists and is not a directory; choose another export directory.")
    if directory.exists() and not overwrite:
        raise FileExistsError(f"{directory} already exists; pass overwrite=True to replace it.")


def _representative_dataset(batch: verify.Batch, batch_size: int | None):
    step = batch_size or 1
    count = verify.num_examples(batch)
    if count < step:  # too few examples for one static batch: repeat them
        batch = {k: np.resize(v, (step, *v.shape[1:])) for k, v in batch.items()}
        count = step

    def dataset():
        for start in range(0, count - step + 1, step):
            yield {name: value[start:start + step] for name, value in batch.items()}

    return dataset


def _measure(run, plan: ExportPlan, data: dict, expected: dict, keras_accuracy) -> dict:
    """Errors of `run` against the Keras outputs on each input set (and accuracy on `eval`)."""
    by_data, report = {}, {}
    for name, batch in data.items():
        outputs = run(batch)
        by_data[name] = {**verify.errors(expected[name], outputs), "examples": verify.num_examples(batch)}
        if name == "eval":
            exported = verify.accuracy(outputs, plan.output_names, plan.eval_labels)
            report["accuracy"] = {"keras": keras_accuracy, "exported": exported,
                                  "change": exported - keras_accuracy}
    return {
        "max_abs_error": max(e["max_abs_error"] for e in by_data.values()),
        "max_rel_error": max(e["max_rel_error"] for e in by_data.values()),
        "by_data": by_data,
        **report,
    }


def _check_float32(name: str, parity: dict) -> None:
    # 1e-5 absolute, measured relative to the largest output once outputs exceed 1 in magnitude:
    # float32 logits of size 20 carry rounding errors of about 20 * 6e-8 per operation.
    failing = {k: e for k, e in parity["by_data"].items()
               if e["max_abs_error"] > FLOAT32_TOLERANCE and e["max_rel_error"] > FLOAT32_TOLERANCE}
    if failing:
        worst = max(failing, key=lambda k: failing[k]["max_abs_error"])
        raise ParityError(
            f"{name} differs from the Keras model by {failing[worst]['max_abs_error']:.3g} (max abs error on "
            f"the {worst} inputs; relative to the largest output {failing[worst]['max_rel_error']:.3g}), "
            f"above the float32 tolerance {FLOAT32_TOLERANCE:g}. Nothing was written. Export with "
            "fold_batch_norm=False to rule out folding, and check the model for ops that behave "
            "differently in inference."
        )


def _export_into(staging: Path, model, plan: ExportPlan, *, fold_batch_norm: bool, verify_outputs: bool):
    records: list[FoldRecord] = []
    serving = fold_batch_norms(model, records=records) if fold_batch_norm else model
    function = signature.frozen_serving_function(serving, plan.inputs, plan.output_names)
    saved_model = staging / "saved_model"
    signature.write_saved_model(function, str(saved_model))

    input_rank = max(len(info.shape) for info in plan.inputs)
    layer_names = [layer.name for layer in model._flatten_layers(include_self=False)]
    contents, graphs = {}, {}
    if "tflite" in plan.formats:
        representative = (_representative_dataset(plan.calibration, plan.batch_size)
                          if plan.calibration is not None else None)
        for quantize in (None, *plan.quantizations):
            name = tflite.FILE_NAMES[quantize]
            contents[name] = tflite.convert(str(saved_model), quantize, representative=representative,
                                            layer_names=layer_names)
            graphs[name] = tflite.inspect(contents[name])
            tflite.check_graph(graphs[name], input_rank, name)
            (staging / name).write_bytes(contents[name])

    parity = {}
    if verify_outputs:
        data = {"random": verify.random_inputs(plan.inputs, RANDOM_EXAMPLES)}
        if plan.representative is not None:
            data["representative"] = plan.representative
        if plan.eval_inputs is not None:
            data["eval"] = plan.eval_inputs
        expected = {k: verify.run_keras(model, plan.inputs, plan.output_names, v) for k, v in data.items()}
        keras_accuracy = (verify.accuracy(expected["eval"], plan.output_names, plan.eval_labels)
                          if "eval" in data else None)
        if "saved_model" in plan.formats:
            parity["saved_model"] = _measure(
                lambda b: verify.run_saved_model(str(saved_model), b, plan.batch_size),
                plan, data, expected, keras_accuracy)
            _check_float32("saved_model", parity["saved_model"])
        for name, content in contents.items():
            parity[name] = _measure(lambda b, c=content: verify.run_tflite(c, b, plan.batch_size),
                                    plan, data, expected, keras_accuracy)
            if name == tflite.FILE_NAMES[None]:
                _check_float32(name, parity[name])
    if "saved_model" not in plan.formats:
        shutil.rmtree(saved_model)

    quantization_of = {file_name: q for q, file_name in tflite.FILE_NAMES.items()}
    manifest = {
        "format": "keras-norms-export/1",
        "versions": manifests.versions(),
        "model": {
            "name": model.name,
            "inputs": [info.to_json() for info in plan.inputs],
            "outputs": [{"name": n, "shape": list(function.structured_outputs[n].shape),
                         "dtype": function.structured_outputs[n].dtype.name} for n in plan.output_names],
        },
        "options": {
            "formats": list(plan.formats), "quantize": list(plan.quantizations),
            "batch_size": plan.batch_size, "fold_batch_norm": fold_batch_norm, "verify": verify_outputs,
        },
        "batch_norms": [dataclasses.asdict(r) for r in records],
        "saved_model": ({"path": "saved_model", "signature": signature.SIGNATURE_KEY}
                        if "saved_model" in plan.formats else None),
        "tflite": {
            name: {
                "quantization": quantization_of[name], "inputs": graph.inputs, "outputs": graph.outputs,
                "ops": graph.ops, "op_counts": graph.op_counts, "max_tensor_rank": graph.max_rank,
                "dynamic_tensors": len(graph.dynamic_tensors()),
            }
            for name, graph in graphs.items()
        },
        "parity": parity,
        "files": manifests.checksums(staging),
    }
    (staging / manifests.MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    artefacts = ["saved_model"] if "saved_model" in plan.formats else []
    artefacts += [*contents, manifests.MANIFEST]
    return artefacts, {name: g.ops for name, g in graphs.items()}, parity, records, manifest


def export_model(
    model: keras.Model,
    directory,
    *,
    formats: Sequence[str] = FORMATS,
    quantize: str | Sequence[str] | None = None,
    representative_data=None,
    batch_size: int | None = 1,
    fold_batch_norm: bool = True,
    verify: bool = True,
    overwrite: bool = False,
    eval_data=None,
) -> ExportResult:
    """Exports `model` for inference as a SavedModel and TFLite files, verified against Keras.

    Writes into `directory`, atomically (a temporary directory beside it,
    renamed into place only after verification passed; on any failure nothing
    is left behind):

    - `saved_model/`: the `serving_default` signature in inference mode, every
      weight (batch norm moving statistics included) a graph constant;
    - `model.tflite` (float32), and `model_float16.tflite`,
      `model_dynamic.tflite`, `model_int8.tflite` (full integer, int8 input and
      output) for the requested `quantize` values;
    - `manifest.json`: package, TensorFlow, Keras and LiteRT versions; input and
      output names, shapes and dtypes; each TFLite file's op list; the sha256
      of every file; the measured parity.

    Batch norms are folded into the preceding Conv/Dense layer or turned into
    a constant multiply-add (`fold_batch_norms`). TFLite files use built-in ops
    only: Flex (SELECT_TF_OPS) is never enabled, and an op without a built-in
    raises `UnsupportedOpError` naming the op and its layer. No tensor of the
    TFLite graph may have a higher rank than the model's input (rank 4 is
    always allowed: TFLite runs Conv1D on rank-4 views). Verification runs each
    file with the LiteRT interpreter, and the reloaded SavedModel, on random
    inputs, on `representative_data` and on `eval_data`; float32 artefacts must
    match the Keras model within 1e-5 (max abs error; relative to the largest
    output where outputs exceed 1) or `ParityError` is
    raised; quantized files report their error and, with `eval_data`, the
    accuracy change.

    Args:
        model: A built Sequential or functional Keras model with fixed input
            shapes (the batch axis aside). Multi-input models export with the
            inputs named after their `keras.Input` names (or dict keys).
        directory: The export directory; must not exist unless `overwrite`.
        formats: A tuple of `"saved_model"` and/or `"tflite"`.
        quantize: `None`, `"float16"`, `"dynamic"`, `"int8"`, or a tuple of them.
        representative_data: Typical inputs (an array; for several inputs a
            dict by input name or a list in input order): int8 calibration
            (required for `"int8"`; up to 1024 examples) and verification (up
            to 256).
        batch_size: The static batch size of the exported signature (static
            shapes run fully under XNNPACK), or `None` for a dynamic batch.
        fold_batch_norm: Fold batch norms (see `fold_batch_norms`).
        verify: Measure parity (and enforce it for float32 files).
        overwrite: Replace an existing `directory`.
        eval_data: Optional `(x, y)` with class labels: the accuracy of every
            artefact (argmax of the first output) and its change from Keras.

    Returns:
        An `ExportResult` (paths, TFLite op lists, parity numbers, manifest).

    Raises:
        ValueError: Before any work: another Keras backend than TensorFlow (save
            the model and export the `.keras` file), an unbuilt model, a model without input
            shape, bad `formats`/`quantize`/`batch_size`, `"int8"` without
            `representative_data`, data of the wrong shape.
        FileExistsError: `directory` exists and `overwrite` is False.
        UnsupportedOpError: TFLite conversion needs an op that is not a built-in.
        ParityError: A float32 artefact differs from Keras by more than 1e-5.
        ExportError: Any other reason the export cannot be verified.

    Examples:
        >>> import os, tempfile, keras, keras_norms
        >>> from keras_norms.export import export_model
        >>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="conv"),
        ...                           keras_norms.BatchNormalization(name="bn"), keras.layers.ReLU()])
        >>> directory = os.path.join(tempfile.mkdtemp(), "exported")
        >>> result = export_model(model, directory, formats=("tflite",))
        >>> sorted(os.listdir(directory))
        ['manifest.json', 'model.tflite']
        >>> result.batch_norms, result.ops["model.tflite"]
        ([FoldRecord(batch_norm='bn', folded_into='conv')], ['CONV_2D'])
        >>> result.parity["model.tflite"]["max_abs_error"] < 1e-5
        True

        The default `formats` also writes `saved_model/`; `quantize="int8"`
        with `representative_data` adds `model_int8.tflite`.
    """
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            "The exporter writes TensorFlow SavedModel and TFLite files, so it runs on the TensorFlow "
            f"backend; this process uses {keras.backend.backend()!r}. Save the model (model.save("
            "'model.keras')) and export that file with `keras-norms export model.keras`, which runs "
            "on TensorFlow, or from a process started with KERAS_BACKEND=tensorflow."
        )
    plan = make_plan(model, formats, quantize, representative_data, batch_size, eval_data)
    directory = Path(os.fspath(directory)).absolute()
    _check_destination(directory, overwrite)
    with _staging(directory, overwrite) as staging:
        artefacts, ops, parity, records, manifest = _export_into(
            staging, model, plan, fold_batch_norm=fold_batch_norm, verify_outputs=verify
        )
    return ExportResult(directory, {name: directory / name for name in artefacts}, ops, parity, records,
                        manifest)
