"""keras_norms.study: data sets, corruptions, the grid runner, its results folder, report and CLI."""

from __future__ import annotations

import csv
import json
import pickle

import keras
import numpy as np
import pytest

from keras_norms import cli
from keras_norms.study import corruptions, datasets
from keras_norms.study.grid import REFERENCE_BATCH_SIZE, GridSpec
from keras_norms.study.runner import run_grid
from keras_norms.study.store import ResultsStore, atomic_write
from keras_norms.study.training import prepare, train_cell

# ----------------------------------------------------------------------------- data


def write_cifar_folder(root, per_batch=20, test=30, seed=0):
    """A small folder in the standard cifar-10-batches-py format (pickled dicts with bytes keys)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for index, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        count = test if name == "test_batch" else per_batch
        data = rng.integers(0, 256, size=(count, 3072), dtype=np.uint8)
        labels = [(index + k) % 10 for k in range(count)]
        batches[name] = (data, labels)
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [b"%d.png" % k for k in range(count)]}, f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog",
                                      b"frog", b"horse", b"ship", b"truck"],
                     b"num_cases_per_batch": per_batch, b"num_vis": 3072}, f, protocol=2)
    return folder, batches


def test_cifar10_folder_in_the_standard_format_loads(tmp_path):
    folder, batches = write_cifar_folder(tmp_path)
    data = datasets.cifar10(seed=0, data_dir=tmp_path)  # the parent of cifar-10-batches-py works too
    again = datasets.cifar10(seed=0, data_dir=folder)
    for a, b in zip(data, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert data.x_train.shape[1:] == (32, 32, 3) and data.x_train.dtype == np.float32
    assert len(data.y_train) + len(data.y_val) == 100 and len(data.y_val) == 10
    # The test set keeps its order; pixel (row 2, column 5) of image 3: R, G, B at 2*32+5 + 0/1024/2048.
    raw, labels = batches["test_batch"]
    np.testing.assert_array_equal(data.y_test, labels)
    np.testing.assert_allclose(data.x_test[3, 2, 5], raw[3, [69, 1024 + 69, 2048 + 69]] / 255.0, rtol=1e-6)
    # Training and validation images are the 100 training rows, each used once.
    rows = {r.tobytes() for name in batches if name != "test_batch" for r in batches[name][0]}
    seen = [np.round(x * 255).astype(np.uint8).transpose(2, 0, 1).reshape(-1).tobytes()
            for x in np.concatenate([data.x_train, data.x_val])]
    assert set(seen) == rows and len(seen) == len(rows)
    other = datasets.cifar10(seed=1, data_dir=folder)
    assert not np.array_equal(other.y_val, data.y_val)


def test_cli_compares_the_paper_cnn_on_a_cifar10_folder(tmp_path, capsys):
    write_cifar_folder(tmp_path / "data")
    out = tmp_path / "out"
    assert cli.main(["compare", "--dataset", "cifar10", "--data-dir", str(tmp_path / "data"), "--model",
                     "paper_cnn", "--norms", "group", "--batch-sizes", "30", "--epochs", "1", "--seeds", "0",
                     "--out", str(out), "--no-progress"]) == 0
    (row,) = json.loads((out / "results.json").read_text())["rows"]
    assert row["model"] == "paper_cnn" and row["input_shape"] == [32, 32, 3] and row["target_accuracy"] == 0.5
    assert "| group | 30 |" in capsys.readouterr().out


def test_cifar10_folder_missing_files_is_named(tmp_path):
    folder, _ = write_cifar_folder(tmp_path)
    (folder / "data_batch_3").unlink()
    (folder / "test_batch").unlink()
    with pytest.raises(datasets.DataError, match="missing data_batch_3, test_batch"):
        datasets.cifar10(data_dir=folder)


def test_seq_digits_are_the_digit_images_row_by_row():
    images, rows = datasets.digits(seed=3), datasets.seq_digits(seed=3)
    assert rows.x_train.shape[1:] == (8, 8)
    np.testing.assert_array_equal(rows.x_test, images.x_test[..., 0])
    np.testing.assert_array_equal(rows.y_val, images.y_val)


def test_fit_to_shape_resizes_and_replicates_channels():
    x = datasets.digits().x_test[:5]
    big = datasets.fit_to_shape(x, (32, 32, 3))
    assert big.shape == (5, 32, 32, 3)
    np.testing.assert_array_equal(big[..., 0], big[..., 2])
    # Each 8x8 pixel becomes a 4x4 block: block means follow the original image closely.
    blocks = big[..., 0].reshape(5, 8, 4, 8, 4).mean(axis=(2, 4))
    assert np.abs(blocks - x[..., 0]).mean() < 0.08
    assert datasets.fit_to_shape(x, (8, 8)).shape == (5, 8, 8)
    with pytest.raises(datasets.DataError, match="cannot map 3 channels to 2"):
        datasets.fit_to_shape(big, (32, 32, 2))


# ----------------------------------------------------------------------------- corruptions


@pytest.mark.parametrize("name", list(corruptions.CORRUPTIONS))
def test_corruptions_grow_monotonically_with_severity(name):
    x = datasets.fit_to_shape(datasets.digits().x_test[:64], (16, 16, 1))
    original = x.copy()
    distances = [0.0]
    for severity in corruptions.SEVERITIES:
        y = corruptions.corrupt(x, name, severity)
        assert y.shape == x.shape and y.min() >= 0.0 and y.max() <= 1.0
        distances.append(float(np.abs(y - x).mean()))
    np.testing.assert_array_equal(x, original)
    assert all(a < b for a, b in zip(distances, distances[1:], strict=False)), distances
    with pytest.raises(ValueError, match="severity=6"):
        corruptions.corrupt(x, name, 6)


def test_heterogeneous_set_mixes_clean_and_corrupted_examples():
    x = datasets.fit_to_shape(datasets.digits().x_test, (16, 16, 1))
    mixed, domains = corruptions.heterogeneous(x, seed=0)
    kinds = [d.split(":")[0] for d in domains]
    for kind in ("clean", *corruptions.CORRUPTIONS):
        assert 0.15 < kinds.count(kind) / len(x) < 0.35, kind
    for i, domain in enumerate(domains[:60]):
        if domain == "clean":
            np.testing.assert_array_equal(mixed[i], x[i])
        elif not domain.startswith("gaussian_noise"):
            # Deterministic corruptions act per example: recompute one alone.
            name, severity = domain.split(":")
            alone = corruptions.corrupt(x[i : i + 1], name, int(severity))[0]
            np.testing.assert_allclose(mixed[i], alone, atol=1e-6)
        else:
            assert not np.array_equal(mixed[i], x[i])


# ----------------------------------------------------------------------------- grid and report


def test_grid_varies_bn_momentum_and_groups_only_for_their_norms():
    spec = GridSpec(norms=("batch", "group", "layer"), batch_sizes=(8, 64), seeds=(0, 1),
                    bn_momentums=(0.9, 0.99), groups=("auto", 2), lrs=(1e-3,), lr_scaling="linear")
    cells = spec.cells(input_shape=(32, 32, 1), target_accuracy=0.9)
    assert len(cells) == 2 * 2 * (2 + 2 + 1)
    assert {c.bn_momentum for c in cells if c.norm == "batch"} == {0.9, 0.99}
    assert {c.bn_momentum for c in cells if c.norm != "batch"} == {None}
    assert {c.groups for c in cells if c.norm == "group"} == {"auto", 2}
    assert len({c.key for c in cells}) == len(cells)
    cell = cells[0]
    assert cell.learning_rate == pytest.approx(1e-3 * cell.batch_size / REFERENCE_BATCH_SIZE)
    assert cells[0].seed == 0 and cells[-1].seed == 1  # seed by seed


# ----------------------------------------------------------------------------- runner, store, CLI

TINY_GRID = dict(model="lenet", dataset="digits", norms=("batch", "group", "none"), batch_sizes=(50,),
                 epochs=1, seeds=(0,), train_size=100)


@pytest.fixture(scope="module")
def tiny():
    spec = GridSpec(**TINY_GRID)
    return spec, prepare(spec)


def test_train_cell_measures_a_real_run(tiny):
    spec, prepared = tiny
    cell = spec.cells(input_shape=prepared.input_shape, target_accuracy=0.2)[0]
    metrics = train_cell(cell, prepared)
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["epochs_run"] == 1
    gap = metrics["train_accuracy"] - metrics["test_accuracy"]
    assert metrics["generalization_gap"] == pytest.approx(gap)
    assert len(metrics["curves"]["val_accuracy"]) == 1 and metrics["ms_per_step"] > 0
    reached = metrics["curves"]["val_accuracy"][0] >= 0.2
    assert (metrics["epochs_to_target"] == 1) == reached
    robustness = {f"acc_{n}_s{s}" for n in corruptions.CORRUPTIONS for s in corruptions.SEVERITIES}
    assert robustness <= set(metrics)


def test_the_sequence_model_trains_on_seq_digits():
    spec = GridSpec(model="sequence", dataset="seq-digits", norms=("layer",), batch_sizes=(50,), epochs=1,
                    seeds=(0,), train_size=100)
    prepared = prepare(spec)
    assert prepared.input_shape == (8, 8) and prepared.eval_x.shape[1:] == (8, 8)
    metrics = train_cell(spec.cells(input_shape=(8, 8), target_accuracy=0.85)[0], prepared)
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["ms_per_step"] > 0


class Interrupt(Exception):
    pass


@pytest.mark.slow
def test_an_interrupted_run_resumes_without_retraining_or_losing_cells(tiny, tmp_path):
    spec, prepared = tiny
    trained = []

    def train(cell, prepared, on_epoch, model_path):
        if fail_at is not None and len(trained) == fail_at:
            raise Interrupt("injected crash")
        trained.append(cell.norm)
        return train_cell(cell, prepared, on_epoch, model_path)

    fail_at = 1
    with pytest.raises(Interrupt):
        run_grid(spec, prepared, tmp_path, progress=False, train=train)
    first = ResultsStore(tmp_path).rows
    assert [r["norm"] for r in first] == ["batch"]
    assert "| batch | 50 |" in (tmp_path / "report.md").read_text()  # the report covers what finished

    fail_at = None
    summary = run_grid(spec, prepared, tmp_path, progress=False, train=train)
    assert trained == ["batch", "group", "none"]  # batch was not trained again
    assert (summary.trained, summary.skipped) == (2, 1)
    rows = ResultsStore(tmp_path).rows
    assert rows[0] == first[0]  # the finished cell is kept as it was
    assert [r["norm"] for r in rows] == ["batch", "group", "none"]

    summary = run_grid(spec, prepared, tmp_path, progress=False, train=train)
    assert len(trained) == 3 and summary.skipped == 3
    summary = run_grid(spec, prepared, tmp_path, force=True, progress=False, train=train)
    assert len(trained) == 6 and summary.trained == 3 and len(ResultsStore(tmp_path).rows) == 3


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    atomic_write(path, "old")
    monkeypatch.setattr("os.replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, "new")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["results.json"]


@pytest.mark.slow
def test_cli_compare_writes_results_report_and_plots_then_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["compare", "--model", "lenet", "--norms", "batch,layer", "--batch-sizes", "25,100",
            "--epochs", "2",
            "--seeds", "0", "--train-size", "100", "--out", str(out), "--no-progress"]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "Does batch norm lead at large batch sizes?" in printed and "| layer | 100 |" in printed
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert len(rows) == 4 and {(r["norm"], r["batch_size"]) for r in rows} == {
        ("batch", 25), ("batch", 100), ("layer", 25), ("layer", 100)}
    for row in rows:
        assert row["model"] == "lenet" and row["train_size"] == 100 and row["epochs"] == 2
        assert len(row["curves"]["val_accuracy"]) == 2
        recalibrated = row["test_accuracy_recalibrated"]
        assert (0.0 <= recalibrated <= 1.0) if row["norm"] == "batch" else recalibrated is None
    with open(out / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["key"] for r in table] == [r["key"] for r in rows]
    assert float(table[0]["test_accuracy"]) == rows[0]["test_accuracy"]
    report = (out / "report.md").read_text()
    for text in ("## The paper's claims", "Does group norm help on heterogeneous data?", "Not measured",
                 "| batch | 25 |", "![robustness.png](robustness.png)", "CPU cores"):
        assert text in report
    for name in ("accuracy_vs_batch_size.png", "learning_curves.png", "robustness.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    before = (out / "results.json").read_text()
    assert cli.main(args) == 0
    assert "4 of 4 runs were already finished" in capsys.readouterr().out
    assert (out / "results.json").read_text() == before

    # The best run's model is kept; reloaded, it scores what its row says on the same test set.
    best = json.loads((out / "best_model.json").read_text())
    assert best["test_accuracy"] == max(r["test_accuracy"] for r in rows)
    row = next(r for r in rows if r["key"] == best["key"])
    assert best["configuration"]["norm"] == row["norm"]
    data = datasets.digits(seed=0)
    x_test = datasets.fit_to_shape(data.x_test, tuple(row["input_shape"]))
    logits = keras.models.load_model(out / "best_model.keras").predict(x_test, verbose=0)
    assert np.mean(np.argmax(logits, axis=-1) == data.y_test) == pytest.approx(row["test_accuracy"])

    assert cli.main([*args, "--export-best"]) == 0
    printed = capsys.readouterr().out
    assert f"Exporting the best run ({row['norm']} norm" in printed and "model.tflite" in printed
    manifest = json.loads((out / "export" / "manifest.json").read_text())
    assert manifest["parity"]["model.tflite"]["accuracy"]["change"] == 0.0


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "vgg"], "unknown model 'vgg'; valid names: paper_cnn, lenet, resnet, sequence"),
    (["--norms", "batch,nope"], "unknown norm 'nope'; valid names: batch, layer"),
    (["--dataset", "svhn"], "unknown dataset 'svhn'; valid names: digits, cifar10, seq-digits, mnist"),
    (["--batch-sizes", "8,5000"],
     "batch size 5000 is larger than the training set (1077 examples of digits)"),
    (["--dataset", "cifar10", "--data-dir", "{empty}"], "missing data_batch_1, data_batch_2"),
    (["--norms", "group", "--groups", "4"], "cannot build lenet with norm 'group'"),
])
def test_cli_bad_input_exits_2_with_one_line_and_writes_nothing(args, message, tmp_path, capsys):
    out = tmp_path / "existing"
    out.mkdir()
    (out / "results.json").write_text(json.dumps({"rows": [{"key": "k", "norm": "batch"}]}))
    (out / "report.md").write_text("an earlier report")
    (tmp_path / "empty").mkdir()
    before = _snapshot(out)
    args = [a.replace("{empty}", str(tmp_path / "empty")) for a in args]
    assert cli.main(["compare", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("keras-norms compare: error: ")
    assert message in err
    assert _snapshot(out) == before


def test_cli_refuses_an_unreadable_results_file(tmp_path, capsys):
    (tmp_path / "results.json").write_text("{not json")
    assert cli.main(["compare", "--quick", "--out", str(tmp_path)]) == 2
    assert "is not a results file of keras-norms compare" in capsys.readouterr().err
    assert (tmp_path / "results.json").read_text() == "{not json"
    (tmp_path / "a-file").write_text("x")
    assert cli.main(["compare", "--quick", "--out", str(tmp_path / "a-file")]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err


def test_plot_bars_span_the_lowest_to_the_highest_seed_and_stay_in_range():
    from keras_norms.study.plots import _range
    from keras_norms.study.report import group_rows

    # One seed stuck at chance (0.1) beside two that trained: a standard deviation (0.49) would draw
    # the bar below 0 and above 1; the bars go from 0.1 to 0.95 around the mean 0.65.
    rows = [{"key": f"layer{s}", "norm": "layer", "batch_size": 32, "seed": s, "lr": 0.1,
             "bn_momentum": None, "groups": None, "model": "lenet", "test_accuracy": accuracy}
            for s, accuracy in enumerate((0.1, 0.9, 0.95))]
    means, (below, above) = _range(group_rows(rows), "test_accuracy")
    np.testing.assert_allclose([means[0], below[0], above[0]], [0.65, 0.55, 0.30], atol=1e-12)
    errors, (below, above) = _range(group_rows(rows), "test_accuracy", scale=-100.0, offset=100.0)
    np.testing.assert_allclose([errors[0], below[0], above[0]], [35.0, 30.0, 55.0], atol=1e-9)
