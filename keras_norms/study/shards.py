"""Splitting the grid over machines: which shard this process runs, and the grid a results folder holds.

A shard K of N runs the cells whose index in the grid's order is K mod N. The
shard comes from `--shard K/N`, or from `--shards N` and the cluster's job
array (`SLURM_ARRAY_TASK_ID`, Kubernetes' `JOB_COMPLETION_INDEX`). The first
process to start on a results folder records the grid in `grid.json`; a shard
of another grid is refused there, and `keras-norms report` reads it to list
the cells still missing.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
from collections.abc import Mapping

from keras_norms.study.grid import Cell, GridSpec
from keras_norms.study.store import StoreError, atomic_write, create_exclusive

GRID_FILE = "grid.json"

#: The option that sets each recorded field of the grid, to name it when two grids differ.
OPTIONS = {"model": "--model", "dataset": "--dataset", "norms": "--norms", "batch_sizes": "--batch-sizes",
           "epochs": "--epochs", "seeds": "--seeds", "lrs": "--lr", "lr_scaling": "--lr-scaling",
           "bn_momentums": "--bn-momentum", "groups": "--groups", "target_accuracy": "--target-accuracy",
           "input_shape": "--input-shape", "train_size": "--train-size", "split_seed": "split_seed",
           "optimizer": "--optimizer", "placements": "--placement", "protocol": "--protocol",
           "qk_norms": "--qk-norm", "warmups": "--warmup", "depth": "--depth"}


class ShardError(ValueError):
    """A shard that cannot be resolved (a bad `--shard`/`--shards` or job-array variable)."""


@dataclasses.dataclass(frozen=True)
class Shard:
    """Shard `index` of `count`: the cells whose grid index is `index` mod `count`.

    Examples:
        >>> from keras_norms.study.shards import Shard
        >>> Shard(1, 3).select(["a", "b", "c", "d", "e"])
        ['b', 'e']
        >>> str(Shard(1, 3))
        '1/3'
    """

    index: int
    count: int

    def select(self, cells: list) -> list:
        """The items of `cells` (in grid order) that belong to this shard."""
        return [cell for i, cell in enumerate(cells) if i % self.count == self.index]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def _count(text: str, name: str) -> int:
    if not re.fullmatch(r"\s*\d+\s*", text):
        raise ShardError(f"{name} expects a positive integer, got {text!r}")
    if int(text) < 1:
        raise ShardError(f"{name} must be at least 1, got {text!r}")
    return int(text)


def _index_from_environment(environ: Mapping[str, str]) -> tuple[int, str] | None:
    """The shard index the job array gives this process, and where it came from; None outside an array."""
    for name, base in (("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN"), ("JOB_COMPLETION_INDEX", None)):
        if environ.get(name) is None:
            continue
        values = {name: environ[name]}
        if base is not None and environ.get(base) is not None:
            values[base] = environ[base]
        for variable, text in values.items():
            if not re.fullmatch(r"\s*\d+\s*", text):
                raise ShardError(f"{variable} must be a non-negative integer, got {text!r}")
        index = int(values[name]) - int(values.get(base, 0))
        source = f"{name}={values[name]}" + (f" - {base}={values[base]}" if base in values else "")
        return index, source
    return None


def resolve_shard(shard: str | None, shards: str | None, environ: Mapping[str, str]) -> Shard | None:
    """The shard this process runs, from `--shard K/N`, `--shards N` and the job array's variables.

    `shard` is the text of `--shard` (`"K/N"`); `shards` the text of `--shards`
    (`"N"`, or `"auto"` to take N from `SLURM_ARRAY_TASK_COUNT`). Without
    `--shard`, K comes from `SLURM_ARRAY_TASK_ID` (minus `SLURM_ARRAY_TASK_MIN`
    when set) or else from `JOB_COMPLETION_INDEX`. Neither option: None (the
    whole grid, whatever the environment says).

    Raises:
        ShardError: a malformed value, K >= N, N < 1, `--shard` and `--shards`
            (or the array's size) disagreeing, or `--shards` without an index in
            the environment; the message names the option and the value.

    Examples:
        >>> from keras_norms.study.shards import resolve_shard
        >>> resolve_shard("1/4", None, {})
        Shard(index=1, count=4)
        >>> resolve_shard(None, "4", {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "5"})
        Shard(index=2, count=4)
        >>> resolve_shard(None, "4", {"JOB_COMPLETION_INDEX": "3"})
        Shard(index=3, count=4)
    """
    count = None if shards in (None, "auto") else _count(shards, "--shards")
    if shard is not None:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", shard)
        if match is None:
            raise ShardError(f"--shard expects K/N (shard K of N, e.g. 0/4), got {shard!r}")
        index, total = int(match[1]), int(match[2])
        if total < 1:
            raise ShardError(f"--shard needs N >= 1 in K/N, got {shard!r}")
        if index >= total:
            raise ShardError(f"--shard needs K < N in K/N (K from 0 to N-1), got {shard!r}")
        if count is not None and count != total:
            raise ShardError(f"--shard {shard} and --shards {shards} disagree on the number of shards")
        return Shard(index, total)
    if shards is None:
        return None
    array_size = environ.get("SLURM_ARRAY_TASK_COUNT")
    if count is None:
        if array_size is None:
            raise ShardError("--shards without a number takes it from SLURM_ARRAY_TASK_COUNT, "
                             "which is not set")
        count = _count(array_size, "SLURM_ARRAY_TASK_COUNT")
    elif array_size is not None and _count(array_size, "SLURM_ARRAY_TASK_COUNT") != count:
        raise ShardError(f"--shards {shards} disagrees with SLURM_ARRAY_TASK_COUNT={array_size!r} "
                         "(the job array's size): some shards would never run or run twice; "
                         "to run one shard alone, give --shard K/N")
    found = _index_from_environment(environ)
    if found is None:
        raise ShardError(f"--shards {shards} takes the shard index from SLURM_ARRAY_TASK_ID or "
                         "JOB_COMPLETION_INDEX, and neither is set (or give --shard K/N)")
    index, source = found
    if not 0 <= index < count:
        raise ShardError(f"--shards {shards}: {source} gives shard index {index}, outside 0 to {count - 1}")
    return Shard(index, count)


# ----------------------------------------------------------------------------- the grid of a folder


def grid_record(spec: GridSpec, input_shape, target_accuracy: float, data: str) -> dict:
    """The content of `grid.json`: the grid with its input shape and target resolved, and its data.

    `data_dir` is left out: it says where one machine finds the data, not what
    the grid computes. `data` describes the data set for the report.

    Examples:
        >>> from keras_norms.study.grid import GridSpec
        >>> from keras_norms.study.shards import grid_cells, grid_record
        >>> record = grid_record(GridSpec(norms=("batch",), seeds=(0,)), (32, 32, 1), 0.9, "digits")
        >>> record["grid"]["norms"], record["grid"]["input_shape"], len(grid_cells(record))
        (['batch'], [32, 32, 1], 4)
    """
    resolved = dataclasses.replace(spec, input_shape=tuple(input_shape), target_accuracy=target_accuracy)
    grid = {k: v for k, v in dataclasses.asdict(resolved).items() if k != "data_dir"}
    return json.loads(json.dumps({"grid": grid, "data": data}))  # tuples as lists, as read back


def spec_from_record(record: dict) -> GridSpec:
    """The `GridSpec` that `grid_record` recorded (its `cells()` are the recorded grid's)."""
    grid = {k: tuple(v) if isinstance(v, list) else v for k, v in record["grid"].items()}
    return GridSpec(**grid)  # options a grid.json from before them lacks take their defaults


def grid_cells(record: dict) -> list[Cell]:
    """The cells of a recorded grid, in grid order."""
    spec = spec_from_record(record)
    return spec.cells(input_shape=spec.input_shape, target_accuracy=spec.target_accuracy)


def read_grid(out_dir) -> dict | None:
    """The `grid.json` of `out_dir`; None if there is none.

    Raises:
        StoreError: the file is not a grid written by `keras-norms compare`.
    """
    path = pathlib.Path(out_dir) / GRID_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        record = json.loads(text)
        spec_from_record(record)
    except (ValueError, KeyError, TypeError) as error:
        raise StoreError(f"{path} is not a grid file of keras-norms compare ({error}); "
                         "move it away or choose another --out") from None
    return record


def grid_differences(recorded: dict, wanted: dict) -> list[str]:
    """The options on which two grid records differ, as `keras-norms compare` names them.

    Examples:
        >>> from keras_norms.study.grid import GridSpec
        >>> from keras_norms.study.shards import grid_differences, grid_record
        >>> old = grid_record(GridSpec(epochs=1), (32, 32, 1), 0.9, "digits")
        >>> grid_differences(old, grid_record(GridSpec(epochs=2), (32, 32, 1), 0.9, "digits"))
        ['--epochs: 1 in grid.json, 2 here']
    """
    show = lambda v: ",".join(map(str, v)) if isinstance(v, list) else str(v)
    # A grid.json written before an option existed holds that option at its default.
    defaults = json.loads(json.dumps(dataclasses.asdict(GridSpec())))
    old, new = ({**defaults, **record["grid"]} for record in (recorded, wanted))
    return [f"{OPTIONS.get(k, k)}: {show(old.get(k))} in {GRID_FILE}, {show(new.get(k))} here"
            for k in dict.fromkeys([*old, *new]) if old.get(k) != new.get(k) and k != "data_dir"]


def claim_grid(out_dir, record: dict, *, strict: bool) -> None:
    """Records `record` as the grid of `out_dir`, or checks it against the grid recorded there.

    The first process creates `grid.json` exclusively (two shards starting
    together agree on one file). With `strict` (a shard), another grid in the
    folder is refused; without (an unsharded run, the folder's only writer), the
    new grid replaces the old one, whose finished cells stay in the folder.

    Args:
        out_dir: The results folder (created if missing).
        record: The grid (`grid_record`).
        strict: Refuse another grid instead of replacing it.

    Raises:
        StoreError: `strict` and the folder holds another grid (the message
            names each option that differs), or `grid.json` is unreadable.

    Examples:
        >>> import tempfile
        >>> from keras_norms.study.grid import GridSpec
        >>> from keras_norms.study.shards import claim_grid, grid_record
        >>> out = tempfile.mkdtemp()
        >>> claim_grid(out, grid_record(GridSpec(), (32, 32, 1), 0.9, "digits"), strict=True)
        >>> claim_grid(out, grid_record(GridSpec(seeds=(0,)), (32, 32, 1), 0.9, "digits"), strict=True)
        Traceback (most recent call last):
        ...
        keras_norms.study.store.StoreError: --out ... (--seeds: 0,1,2 in grid.json, 0 here): ...
    """
    out = pathlib.Path(out_dir)
    text = json.dumps(record, indent=1) + "\n"
    recorded = read_grid(out)
    if recorded is None:
        out.mkdir(parents=True, exist_ok=True)
        if create_exclusive(out / GRID_FILE, text):
            return
        recorded = read_grid(out)  # another shard created it first
    differences = grid_differences(recorded, record)
    if not differences:
        return
    if strict:
        raise StoreError(f"--out {out_dir} holds another grid than this shard's ("
                         + "; ".join(differences) + "): give the same options to every shard, "
                         "or choose another --out")
    atomic_write(out / GRID_FILE, text)
