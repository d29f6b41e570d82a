"""The comparison loop: train every unfinished cell, save it at once, then write the report and plots."""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import pathlib
import platform
import sys
import time
from collections.abc import Callable

from keras_norms.study import report
from keras_norms.study.grid import Cell, GridSpec
from keras_norms.study.plots import write_plots
from keras_norms.study.store import ResultsStore, atomic_write
from keras_norms.study.training import Prepared, train_cell

#: The progress bar's cost model of a cell, in units of one small training step (about 2.5 ms on
#: 2 CPU cores): each step, plus a share per example, plus building, tracing and evaluating.
#: It only shapes the ETA, which then accounts for the many cheap steps of small batches.
EXAMPLE_COST = 0.08
CELL_COST = 1200

TrainFn = Callable[[Cell, Prepared, Callable[[int], None], pathlib.Path], dict]

#: The model of the best finished cell (highest test accuracy), and which cell it is.
BEST_MODEL = "best_model.keras"
BEST_MODEL_INFO = "best_model.json"


@dataclasses.dataclass
class RunSummary:
    """What a run did: cells trained now, cells found finished, and the rows of the whole grid."""

    trained: int
    skipped: int
    rows: list[dict]
    report_path: pathlib.Path | None


def run_context(prepared: Prepared, rows: list[dict]) -> dict:
    """The description of the machine and data that heads the report."""
    import keras
    import tensorflow as tf

    import keras_norms

    data = prepared.data
    return {
        "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores",
        "versions": f"keras-norms {keras_norms.__version__}, TensorFlow {tf.__version__}, "
        f"Keras {keras.__version__}",
        "data": f"{len(data.y_train)} training, {len(data.y_val)} validation and "
        f"{len(data.y_test)} test examples",
        "train_minutes": sum(r.get("train_seconds", 0.0) for r in rows) / 60.0,
        "run_minutes": sum(r.get("cell_seconds", 0.0) for r in rows) / 60.0,
    }


def write_report(rows: list[dict], prepared: Prepared, out_dir) -> pathlib.Path:
    """Writes `report.md` and the plots for `rows` into `out_dir`."""
    from keras_norms.study.store import atomic_write

    out = pathlib.Path(out_dir)
    plots = write_plots(rows, out)
    path = out / "report.md"
    atomic_write(path, report.render(rows, run_context(prepared, rows), plots))
    return path


class _Progress:
    """A progress bar over the grid (stderr), weighted by training steps, with an ETA."""

    def __init__(self, cells: list[Cell], train_size: int, enabled: bool):
        from tqdm.auto import tqdm

        self.epoch_cost = {c.key: math.ceil(train_size / c.batch_size) + EXAMPLE_COST * train_size
                           for c in cells}
        total = sum(c.epochs * self.epoch_cost[c.key] + CELL_COST for c in cells)
        self.count, self.done = len(cells), 0
        self.bar = tqdm(total=total, disable=not enabled or not cells, file=sys.stderr, dynamic_ncols=True,
                        desc=f"cell 1/{len(cells)}",
                        bar_format="{desc} {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]")
        self.write = tqdm.write if enabled else (lambda text: print(text, file=sys.stderr))

    def start(self, cell: Cell):
        self.cell, self.epochs_done = cell, 0
        self.bar.set_description_str(f"cell {self.done + 1}/{self.count}", refresh=False)
        self.bar.set_postfix_str(cell.label())

    def epoch(self, epoch: int):
        self.epochs_done += 1
        self.bar.update(self.epoch_cost[self.cell.key])

    def finish(self, cell: Cell, row: dict):
        self.done += 1
        remaining = (cell.epochs - self.epochs_done) * self.epoch_cost[cell.key] + CELL_COST
        self.bar.update(remaining)
        self.write(f"[{self.done}/{self.count}] {cell.label()}: test accuracy {row['test_accuracy']:.3f}, "
                   f"{row['train_seconds']:.1f} s of training")

    def close(self):
        self.bar.close()


def _keep_if_best(out_dir: pathlib.Path, row: dict, candidate: pathlib.Path) -> None:
    """Moves the model just trained to `best_model.keras` if its test accuracy is the best so far."""
    info_path = out_dir / BEST_MODEL_INFO
    best = json.loads(info_path.read_text()) if info_path.exists() else None
    if candidate.exists() and (best is None or best["key"] == row["key"]
                               or row["test_accuracy"] > best["test_accuracy"]):
        os.replace(candidate, out_dir / BEST_MODEL)
        info = {"key": row["key"], "test_accuracy": row["test_accuracy"],
                "configuration": {k: row[k] for k in ("model", "norm", "batch_size", "seed") if k in row}}
        atomic_write(info_path, json.dumps(info, indent=1) + "\n")
    candidate.unlink(missing_ok=True)


def run_grid(spec: GridSpec, prepared: Prepared, out_dir, *, force: bool = False, progress: bool = True,
             train: TrainFn = train_cell) -> RunSummary:
    """Trains the cells of `spec` not yet in `out_dir` (all of them with `force`), saving each at once.

    Each finished cell is added to `results.json`/`results.csv` before the next
    starts, so an interruption loses only the cell in progress; the same call
    again resumes. `report.md` and the plots cover the grid's finished cells and
    are written at the end, also after an interruption. The model of the best
    finished cell is kept as `best_model.keras` (which cell: `best_model.json`).

    Args:
        spec: The grid.
        prepared: Its data (`training.prepare(spec)`).
        out_dir: The results folder (created if missing).
        force: Retrain cells that are already finished.
        progress: Show a progress bar; otherwise print one line per cell.
        train: Trains one cell and saves its model to the path it is given
            (`training.train_cell`; tests inject failures here).

    Returns:
        A `RunSummary`.
    """
    cells = spec.cells(input_shape=prepared.input_shape, target_accuracy=prepared.target_accuracy)
    store = ResultsStore(out_dir)
    pathlib.Path(out_dir).mkdir(parents=True, exist_ok=True)
    finished = store.finished_keys()
    todo = [c for c in cells if force or c.key not in finished]
    bar = _Progress(todo, len(prepared.data.y_train), progress and sys.stderr.isatty())
    trained = 0
    try:
        for cell in todo:
            bar.start(cell)
            started = time.perf_counter()
            candidate = pathlib.Path(out_dir) / f".candidate-{BEST_MODEL}"
            metrics = train(cell, prepared, bar.epoch, candidate)
            row = {"key": cell.key, **cell.config(), **metrics,
                   "cell_seconds": time.perf_counter() - started,
                   "finished_at": datetime.datetime.now().isoformat(timespec="seconds")}
            store.add(row)
            _keep_if_best(pathlib.Path(out_dir), row, candidate)
            trained += 1
            bar.finish(cell, row)
    finally:
        bar.close()
        rows = [store.get(c.key) for c in cells if store.get(c.key) is not None]
        path = write_report(rows, prepared, out_dir) if rows else None
    return RunSummary(trained, len(cells) - len(todo), rows, path)

