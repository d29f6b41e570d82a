"""Norm variants, the transformer's placement and Wu and He's protocol in the study's grid and CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from keras_norms import cli
from keras_norms.study.grid import GN_PAPER_ERRORS, GridError, GridSpec, check_names, parse_norm


def test_variants_parse_to_a_name_and_literal_arguments():
    assert parse_norm("batch(renorm=True, renorm_momentum=0.9)") == (
        "batch", {"renorm": True, "renorm_momentum": 0.9})
    assert parse_norm(" group(groups=8) ") == ("group", {"groups": 8})
    for bad in ("batch(True)", "batch(renorm=x)", "batch(", "batch(**kw)", "1+2", "a.b(c=1)"):
        with pytest.raises(GridError, match="bad norm"):
            parse_norm(bad)


def test_variant_cells_carry_their_label_and_arguments():
    spec = GridSpec(norms=("batch", "batch(renorm=True)", "batch(momentum=0.5)", "group(groups=8)"),
                    batch_sizes=(4,), seeds=(0,), bn_momentums=(0.9, 0.99))
    cells = spec.cells(input_shape=(32, 32, 1), target_accuracy=0.9)
    labels = [c.norm for c in cells]
    # Plain batch norm and the renorm variant run both momentum values; a variant that sets it does not.
    assert labels == ["batch", "batch", "batch(renorm=True)", "batch(renorm=True)", "batch(momentum=0.5)",
                      "group(groups=8)"]
    renorm = cells[2]
    assert renorm.norm_name == "batch" and renorm.norm_options() == {"renorm": True, "momentum": 0.9}
    assert cells[4].norm_options() == {"momentum": 0.5} and cells[5].norm_options() == {"groups": 8}
    assert len({c.key for c in cells}) == len(cells)


def test_cells_without_the_new_settings_keep_their_keys():
    # Keys of cells made before optimizer and placement existed (results already on disk match them).
    cells = GridSpec(norms=("batch", "group"), batch_sizes=(8,), seeds=(0,)).cells(
        input_shape=(32, 32, 1), target_accuracy=0.9)
    assert [c.key for c in cells] == ["164fe0a2b82b74a4", "adcf80de33c4f84d"]
    sgd = GridSpec(norms=("batch",), batch_sizes=(8,), seeds=(0,), optimizer="sgd").cells(
        input_shape=(32, 32, 1), target_accuracy=0.9)
    assert sgd[0].key != cells[0].key


def test_placements_only_for_the_transformer():
    spec = GridSpec(model="transformer", norms=("layer",), batch_sizes=(4,), seeds=(0,),
                    placements=("pre", "post"))
    assert [c.placement for c in spec.cells(input_shape=(8, 8), target_accuracy=0.9)] == ["pre", "post"]
    with pytest.raises(GridError, match="--placement is for --model transformer"):
        check_names(GridSpec(placements=("post",)))
    with pytest.raises(GridError, match="--placement takes pre and post, got middle"):
        check_names(GridSpec(model="transformer", placements=("middle",)))


@pytest.mark.parametrize(("norms", "message"), [
    ("batch,batch(renorm=maybe)", "bad norm 'batch(renorm=maybe)'"),
    ("batch,bacth(renorm=True)", "unknown norm 'bacth(renorm=True)'"),
    ("batch(virtual_batch_size=0)", "batch(virtual_batch_size=0)"),
    ("group(groups=5)", "group(groups=5)"),
])
def test_a_bad_variant_exits_2_naming_it_before_anything_trains(norms, message, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["compare", "--norms", norms, "--out", str(out), "--train-size", "100",
                     "--batch-sizes", "8"]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert not (out / "cells").exists()


def test_the_gn_paper_protocol_preset():
    import argparse

    from keras_norms.study.cli import add_parser, spec_from_args
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    spec = spec_from_args(parser.parse_args(["compare", "--protocol", "gn-paper", "--epochs", "5"]))
    assert spec.batch_sizes == (32, 16, 8, 4, 2) and spec.optimizer == "sgd" and spec.lr_scaling == "linear"
    assert spec.norms == ("batch", "group", "layer", "instance") and spec.epochs == 5 and len(spec.seeds) == 3
    cells = spec.cells(input_shape=(32, 32, 1), target_accuracy=0.9)
    expected = {b: pytest.approx(0.1 * b / 32) for b in (32, 16, 8, 4, 2)}
    assert {c.batch_size: c.learning_rate for c in cells} == expected


@pytest.mark.slow
def test_a_gn_paper_run_trains_with_sgd_and_prints_the_published_errors(tmp_path, capsys):
    out = tmp_path / "gn"
    args = ["compare", "--protocol", "gn-paper", "--norms", "batch,group,batch(renorm=True)",
            "--batch-sizes", "4,2", "--epochs", "1", "--seeds", "0,1", "--train-size", "120",
            "--out", str(out), "--no-progress"]
    assert cli.main(args) == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert {r["optimizer"] for r in rows} == {"sgd"} and len(rows) == 12
    assert all(r["learning_rate"] == pytest.approx(0.1 * r["batch_size"] / 32) for r in rows)
    assert {r["norm"] for r in rows} == {"batch", "group", "batch(renorm=True)"}
    report = (out / "report.md").read_text()
    assert "## Beside Wu and He (2018), Figure 1" in report and "SGD with momentum 0.9" in report
    # Our test error at batch size 2 beside Wu and He's published ImageNet error for it.
    at_two = [r["test_accuracy"] for r in rows if r["norm"] == "batch" and r["batch_size"] == 2]
    ours = 100 * (1 - np.mean(at_two))
    assert f"| {ours:.1f} | {GN_PAPER_ERRORS['batch'][2]:.1f} |" in report
    assert "batch(renorm=True) vs batch" in report  # the variants' claim, with its interval
    assert (out / "error_vs_batch_size.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_the_transformer_compares_placements_and_norms_on_sequences(tmp_path, capsys):
    out = tmp_path / "transformer"
    args = ["compare", "--model", "transformer", "--dataset", "seq-digits", "--placement", "pre,post",
            "--norms", "layer,rms,none", "--batch-sizes", "32", "--epochs", "2", "--seeds", "0,1",
            "--train-size", "300", "--out", str(out), "--no-progress"]
    assert cli.main(args) == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert len(rows) == 12 and {(r["placement"], r["norm"]) for r in rows} == {
        (p, n) for p in ("pre", "post") for n in ("layer", "rms", "none")}
    assert all(r["model"] == "transformer" for r in rows)
    report = (out / "report.md").read_text()
    for claim in ("**Pre-norm or post-norm in the transformer?** ",
                  "**Layer, RMS or no norm in the transformer?** "):
        line = next(x for x in report.splitlines() if claim in x)
        assert "interval" in line and "Not measured" not in line
    assert "| layer pre-norm | 32 |" in report and "| layer post-norm | 32 |" in report


@pytest.mark.slow
def test_the_transformer_reads_a_text_dataset_from_the_keras_cache(tmp_path, monkeypatch, capsys):
    from test_datasets import write_imdb

    home = tmp_path / "keras-home"
    write_imdb(home / "datasets")
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.setenv("KERAS_NORMS_OFFLINE", "1")
    out = tmp_path / "imdb"
    args = ["compare", "--model", "transformer", "--dataset", "imdb", "--norms", "layer,adaln",
            "--batch-sizes", "8", "--epochs", "1", "--seeds", "0", "--out", str(out), "--no-progress"]
    assert cli.main(args) == 0, capsys.readouterr().err
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["norm"] for r in rows] == ["layer", "adaln"] and rows[0]["input_shape"] == [200]
    assert all(r["heterogeneous_accuracy"] is None and 0 <= r["test_accuracy"] <= 1 for r in rows)
    assert (out / "learning_curves.png").exists() and not (out / "robustness.png").exists()
