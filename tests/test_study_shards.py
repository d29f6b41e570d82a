"""The study across machines: shards, per-cell files, resuming, racing, job-array variables, `report`."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from keras_norms import cli
from keras_norms.study import corruptions
from keras_norms.study.grid import GridSpec
from keras_norms.study.runner import BEST_MODEL, run_grid
from keras_norms.study.shards import Shard, claim_grid, grid_record, resolve_shard
from keras_norms.study.store import CellStore, ResultsStore, StoreError, create_exclusive
from keras_norms.study.training import prepare

ARRAY_VARIABLES = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_COUNT",
                   "JOB_COMPLETION_INDEX")


def grid_options(norms="batch,none", batch_sizes="50,100", epochs="1") -> list[str]:
    return ["--model", "lenet", "--norms", norms, "--batch-sizes", batch_sizes, "--epochs", epochs,
            "--seeds", "0", "--train-size", "200", "--no-progress"]


#: Four cells of a few seconds each; GRID_SPEC is the same grid.
GRID = grid_options()
GRID_SPEC = GridSpec(model="lenet", dataset="digits", norms=("batch", "none"), batch_sizes=(50, 100),
                     epochs=1, seeds=(0,), train_size=200)


@pytest.fixture(autouse=True)
def _outside_a_job_array(monkeypatch):
    """Tests may run inside a SLURM job: its array variables must not shard the runs here."""
    for name in ARRAY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def grid_keys(spec: GridSpec = GRID_SPEC) -> list[str]:
    return [c.key for c in spec.cells(input_shape=(32, 32, 1), target_accuracy=0.9)]


def cell_files(out: pathlib.Path) -> dict[str, tuple[str, int]]:
    """Each cell file's name -> (content, mtime in ns)."""
    return {p.name: (p.read_text(), p.stat().st_mtime_ns) for p in sorted((out / "cells").glob("*.json"))}


def start_compare(out, log: pathlib.Path, *options: str, grid: list[str] = GRID) -> subprocess.Popen:
    """`keras-norms compare` on `grid` in a process of its own, its output in `log`."""
    env = {k: v for k, v in os.environ.items() if k not in ARRAY_VARIABLES}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    with open(log, "w") as f:
        return subprocess.Popen([sys.executable, "-m", "keras_norms.cli", "compare", *grid, "--out", str(out),
                                 *options], stdout=f, stderr=subprocess.STDOUT, env=env)


def finish(process: subprocess.Popen, log: pathlib.Path, timeout: float = 240) -> str:
    assert process.wait(timeout=timeout) == 0, log.read_text()[-3000:]
    return log.read_text()


def report(out, capsys) -> tuple[int, str]:
    code = cli.main(["report", str(out)])
    return code, capsys.readouterr().out


def merged_keys(out) -> list[str]:
    return [row["key"] for row in json.loads((out / "results.json").read_text())["rows"]]


def assert_valid_cell_files(out, keys: list[str]):
    names = sorted(p.name for p in (out / "cells").iterdir())
    assert names == sorted(f"{key}.json" for key in keys)  # no temporary file left either
    for name in names:
        assert json.loads((out / "cells" / name).read_text())["key"] == name[:-5]


# ----------------------------------------------------------------------------- real processes


def test_two_shards_started_together_merge_into_the_whole_grid(tmp_path, capsys):
    out, grid = tmp_path / "out", grid_options(batch_sizes="100")
    keys = grid_keys(dataclasses.replace(GRID_SPEC, batch_sizes=(100,)))
    logs = [tmp_path / "shard0.log", tmp_path / "shard1.log"]
    processes = [start_compare(out, logs[k], "--shard", f"{k}/2", grid=grid) for k in range(2)]
    printed = [finish(p, log) for p, log in zip(processes, logs, strict=True)]
    for k, text in enumerate(printed):
        assert f"shard {k}/2, 1 of 2 runs" in text and f"Shard {k}/2 is done" in text
    # A shard writes its cell and the grid, and neither a report nor a model.
    assert {p.name for p in out.iterdir()} == {"cells", "grid.json"}
    assert_valid_cell_files(out, keys)

    code, text = report(out, capsys)
    assert code == 0 and "All 2 runs of the grid are finished." in text and "| none | 100 |" in text
    assert merged_keys(out) == keys  # each cell once, in grid order
    assert "2 runs:" in (out / "report.md").read_text()
    for name in ("results.csv", "accuracy_vs_batch_size.png", "learning_curves.png", "robustness.png"):
        assert (out / name).stat().st_size > 0


def test_a_killed_shard_resumes_without_retraining_its_finished_cells(tmp_path, capsys):
    out, log, grid = tmp_path / "out", tmp_path / "first.log", grid_options(batch_sizes="100")
    process = start_compare(out, log, "--shard", "0/1", grid=grid)
    deadline = time.monotonic() + 180
    while not list((out / "cells").glob("*.json")):
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "no cell finished in 180 s"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = cell_files(out)
    assert len(before) == 1

    code, text = report(out, capsys)  # a merge in the middle lists what is missing
    assert code == 0 and "1 of 2 runs are missing" in text and "(1 of 2 runs)" in text
    assert "  1: norm=none batch_size=100 lr=0.001 seed=0" in text

    second = tmp_path / "second.log"
    printed = finish(start_compare(out, second, "--shard", "0/1", grid=grid), second)
    assert "1 of 2 runs were already finished" in printed and printed.count("test accuracy") == 1
    after = cell_files(out)
    assert {name: after[name] for name in before} == before  # not retrained, not rewritten
    code, text = report(out, capsys)
    assert code == 0 and "All 2 runs of the grid are finished." in text
    assert merged_keys(out) == grid_keys(dataclasses.replace(GRID_SPEC, batch_sizes=(100,)))


def test_two_processes_racing_on_the_same_shard_keep_each_cell_once(tmp_path, capsys):
    out, grid = tmp_path / "out", grid_options(batch_sizes="100")
    keys = grid_keys(dataclasses.replace(GRID_SPEC, batch_sizes=(100,)))
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    processes = [start_compare(out, log, "--shard", "0/1", grid=grid) for log in logs]
    printed = [finish(p, log) for p, log in zip(processes, logs, strict=True)]
    assert_valid_cell_files(out, keys)
    # Every cell was saved by exactly one of them: the other skipped it or kept the first result.
    saved = sum(text.count("test accuracy") for text in printed)
    duplicates = sum(int(line.split()[0]) for text in printed for line in text.splitlines()
                     if "finished by another process" in line)
    assert saved - duplicates == 2, printed
    code, _ = report(out, capsys)
    assert code == 0 and merged_keys(out) == keys


# ----------------------------------------------------------------------------- the job array


@pytest.mark.parametrize("environment", [
    {"SLURM_ARRAY_TASK_ID": "1"},
    {"SLURM_ARRAY_TASK_ID": "8", "SLURM_ARRAY_TASK_MIN": "7", "SLURM_ARRAY_TASK_COUNT": "2"},
    {"JOB_COMPLETION_INDEX": "1"},
])
def test_shards_takes_the_shard_index_from_slurm_or_kubernetes(environment, tmp_path, monkeypatch, capsys):
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "out"
    options = grid_options(norms="none")  # two cells: shard 1 of 2 is the second
    assert cli.main(["compare", *options, "--shards", "2", "--out", str(out)]) == 0
    assert "shard 1/2, 1 of 2 runs" in capsys.readouterr().out
    spec = GridSpec(model="lenet", norms=("none",), batch_sizes=(50, 100), epochs=1, seeds=(0,),
                    train_size=200)
    assert list(cell_files(out)) == [f"{grid_keys(spec)[1]}.json"]


def test_resolve_shard_reads_the_options_then_the_array():
    assert resolve_shard(None, None, {"SLURM_ARRAY_TASK_ID": "3"}) is None  # no option: the whole grid
    assert resolve_shard("2/3", None, {"SLURM_ARRAY_TASK_ID": "0"}) == Shard(2, 3)  # --shard wins
    assert resolve_shard("2/3", "3", {}) == Shard(2, 3)
    slurm = {"SLURM_ARRAY_TASK_ID": "12", "SLURM_ARRAY_TASK_MIN": "10", "SLURM_ARRAY_TASK_COUNT": "4",
             "JOB_COMPLETION_INDEX": "0"}
    assert resolve_shard(None, "auto", slurm) == Shard(2, 4)  # bare --shards: N from the array's size
    assert resolve_shard(None, "4", slurm) == Shard(2, 4)
    cells = list(range(10))
    assert Shard(2, 4).select(cells) == [2, 6]
    assert sorted(sum((Shard(k, 4).select(cells) for k in range(4)), [])) == cells


@pytest.mark.parametrize(("options", "environment", "message"), [
    (["--shard", "2/2"], {}, "--shard needs K < N in K/N (K from 0 to N-1), got '2/2'"),
    (["--shard", "0/0"], {}, "--shard needs N >= 1 in K/N, got '0/0'"),
    (["--shard", "one/2"], {}, "--shard expects K/N (shard K of N, e.g. 0/4), got 'one/2'"),
    (["--shard=-1/2"], {}, "got '-1/2'"),
    (["--shards", "0"], {"SLURM_ARRAY_TASK_ID": "0"}, "--shards must be at least 1, got '0'"),
    (["--shards", "2.5"], {"SLURM_ARRAY_TASK_ID": "0"}, "--shards expects a positive integer, got '2.5'"),
    (["--shard", "1/4", "--shards", "2"], {}, "--shard 1/4 and --shards 2 disagree on the number of shards"),
    (["--shards", "2"], {},
     "--shards 2 takes the shard index from SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX, and neither is set"),
    (["--shards", "2"], {"SLURM_ARRAY_TASK_ID": "2"},
     "--shards 2: SLURM_ARRAY_TASK_ID=2 gives shard index 2, outside 0 to 1"),
    (["--shards", "2"], {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "5"}, "gives shard index -1"),
    (["--shards", "2"], {"SLURM_ARRAY_TASK_ID": "x"},
     "SLURM_ARRAY_TASK_ID must be a non-negative integer, got 'x'"),
    (["--shards", "2"], {"JOB_COMPLETION_INDEX": "-1"},
     "JOB_COMPLETION_INDEX must be a non-negative integer, got '-1'"),
    (["--shards", "4"], {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "2"},
     "--shards 4 disagrees with SLURM_ARRAY_TASK_COUNT='2'"),
    (["--shards"], {"SLURM_ARRAY_TASK_ID": "0"}, "takes it from SLURM_ARRAY_TASK_COUNT, which is not set"),
    (["--shard", "0/2", "--export-best"], {}, "--export-best needs an unsharded run, and this is shard 0/2"),
])
def test_bad_shards_exit_2_with_one_line_before_anything_runs(options, environment, message, tmp_path,
                                                             monkeypatch, capsys):
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["compare", *GRID, "--out", str(tmp_path / "out"), *options]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("keras-norms compare: error: ") and message in err
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- the grid of a folder


def test_a_shard_of_another_grid_is_refused_naming_what_differs(tmp_path, capsys):
    out = tmp_path / "out"
    claim_grid(out, grid_record(GRID_SPEC, (32, 32, 1), 0.9, "data"), strict=True)
    before = (out / "grid.json").read_text()
    other = grid_options(norms="batch,layer", epochs="2")
    assert cli.main(["compare", *other, "--shard", "1/2", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--out {out} holds another grid than this shard's" in err
    assert "--norms: batch,none in grid.json, batch,layer here; --epochs: 1 in grid.json, 2 here" in err
    assert (out / "grid.json").read_text() == before and not (out / "cells").exists()


def test_report_lists_the_missing_cells_and_exits_1_when_none_is_finished(tmp_path, capsys):
    claim_grid(tmp_path / "out", grid_record(GRID_SPEC, (32, 32, 1), 0.9, "data"), strict=True)
    code, text = report(tmp_path / "out", capsys)
    assert code == 1 and "4 of 4 runs are missing" in text
    assert "  3: norm=none batch_size=100 lr=0.001 seed=0" in text
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["grid.json"]
    assert cli.main(["report", str(tmp_path / "nowhere")]) == 2
    error = capsys.readouterr().err.strip()
    assert error == f"keras-norms report: error: {tmp_path / 'nowhere'} is not a folder"


def test_claim_grid_agrees_once_and_an_unsharded_run_replaces_the_grid(tmp_path):
    record = grid_record(GRID_SPEC, (32, 32, 1), 0.9, "data")
    errors = []

    def claim():
        try:
            claim_grid(tmp_path, record, strict=True)
        except StoreError as error:  # pragma: no cover - the failure the test looks for
            errors.append(error)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and [p.name for p in tmp_path.iterdir()] == ["grid.json"]
    other = grid_record(GridSpec(norms=("group",)), (32, 32, 1), 0.9, "data")
    with pytest.raises(StoreError, match="--norms: batch,none in grid.json, group here"):
        claim_grid(tmp_path, other, strict=True)
    claim_grid(tmp_path, other, strict=False)
    assert json.loads((tmp_path / "grid.json").read_text()) == other


def test_create_exclusive_keeps_exactly_one_of_racing_writers(tmp_path):
    path, barrier, won = tmp_path / "cell.json", threading.Barrier(16), []

    def write(n):
        barrier.wait()
        if create_exclusive(path, json.dumps({"writer": n})):
            won.append(n)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1 and json.loads(path.read_text()) == {"writer": won[0]}
    assert [p.name for p in tmp_path.iterdir()] == ["cell.json"]


# ----------------------------------------------------------------------------- the runner, in process


def fake_metrics(accuracy: float) -> dict:
    """Measurements shaped like `train_cell`'s, for runner tests that need no training."""
    corrupted = {f"acc_{name}_s{severity}": accuracy / 2
                 for name in corruptions.CORRUPTIONS for severity in corruptions.SEVERITIES}
    return {"test_accuracy": accuracy, "train_accuracy": accuracy, "generalization_gap": 0.0,
            "final_val_accuracy": accuracy, "epochs_run": 1, "diverged": False, "epochs_to_target": None,
            "seconds_to_target": None, "ms_per_step": 1.0, "train_seconds": 0.1,
            "corrupted_accuracy": accuracy / 2, "heterogeneous_accuracy": accuracy / 2, **corrupted,
            "curves": {"loss": [1.0], "accuracy": [accuracy], "val_accuracy": [accuracy]}}


@pytest.fixture(scope="module")
def prepared():
    return prepare(GRID_SPEC)


class FakeTraining:
    """A `train` function for `run_grid` that records the cells it trains; `during` runs while one trains."""

    def __init__(self, during=None):
        self.trained, self.during = [], during

    def __call__(self, cell, prepared, on_epoch, model_path):
        if self.during is not None:
            self.during(cell)
        self.trained.append(cell.key)
        if model_path is not None:
            model_path.write_text("a model")
        return fake_metrics(0.5 + len(self.trained) / 100)


def test_a_shard_writes_only_its_cells_and_the_unsharded_run_completes_the_grid(prepared, tmp_path):
    keys = grid_keys()
    shard = FakeTraining()
    summary = run_grid(GRID_SPEC, prepared, tmp_path, progress=False, train=shard, shard=Shard(1, 2))
    assert shard.trained == keys[1::2] and summary.report_path is None and len(summary.rows) == 2
    assert {p.name for p in tmp_path.iterdir()} == {"cells"}

    whole = FakeTraining()
    summary = run_grid(GRID_SPEC, prepared, tmp_path, progress=False, train=whole)
    assert whole.trained == keys[0::2] and (summary.trained, summary.skipped) == (2, 2)
    assert merged_keys(tmp_path) == keys and summary.report_path == tmp_path / "report.md"
    assert json.loads((tmp_path / "best_model.json").read_text())["key"] == keys[2]
    assert (tmp_path / BEST_MODEL).read_text() == "a model"


def test_an_old_results_json_counts_as_finished(prepared, tmp_path):
    keys = grid_keys()
    run_grid(GRID_SPEC, prepared, tmp_path, progress=False, train=FakeTraining())
    # A folder of an earlier version: results.json (here without the last cell), no cell files, no grid.
    shutil.rmtree(tmp_path / "cells")
    old = json.loads((tmp_path / "results.json").read_text())["rows"][:3]
    ResultsStore(tmp_path).replace(old)
    code = cli.main(["report", str(tmp_path)])
    assert code == 2  # no grid.json: the grid, and so what is missing, is unknown

    training = FakeTraining()
    summary = run_grid(GRID_SPEC, prepared, tmp_path, progress=False, train=training)
    assert training.trained == keys[3:] and (summary.trained, summary.skipped) == (1, 3)
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert rows[:3] == old and [r["key"] for r in rows] == keys

    summary = run_grid(GRID_SPEC, prepared, tmp_path, force=True, progress=False, train=FakeTraining())
    assert summary.trained == 4 and sorted(cell_files(tmp_path)) == sorted(f"{k}.json" for k in keys)


def test_cells_finished_by_another_process_meanwhile_are_kept(prepared, tmp_path):
    keys, store = grid_keys(), CellStore(tmp_path)

    def another_process(cell):
        if cell.key == keys[0]:  # while cell 0 trains here, another process finishes cells 0 and 1
            for key in keys[:2]:
                store.save({"key": key, **next(c.config() for c in GRID_SPEC.cells(
                    input_shape=(32, 32, 1), target_accuracy=0.9) if c.key == key), **fake_metrics(0.9)})

    training = FakeTraining(during=another_process)
    summary = run_grid(GRID_SPEC, prepared, tmp_path, progress=False, train=training)
    assert training.trained == [keys[0], keys[2], keys[3]]  # cell 1 was skipped
    assert (summary.trained, summary.duplicates, summary.skipped) == (2, 1, 1)
    assert store.load(keys[0])["test_accuracy"] == 0.9  # the first result stays
    assert json.loads((tmp_path / "best_model.json").read_text())["key"] != keys[0]


def test_a_grid_recorded_before_an_option_existed_reads_it_at_its_default():
    from keras_norms.study.grid import GridSpec
    from keras_norms.study.shards import grid_differences, grid_record

    now = grid_record(GridSpec(norms=("batch",), seeds=(0,)), (32, 32, 1), 0.9, "digits")
    before = json.loads(json.dumps(now))
    for option in ("qk_norms", "warmups", "depth", "placements"):
        del before["grid"][option]
    assert grid_differences(before, now) == []
    deeper = grid_record(GridSpec(norms=("batch",), seeds=(0,), depth=4), (32, 32, 1), 0.9, "digits")
    assert grid_differences(before, deeper) == ["--depth: None in grid.json, 4 here"]
