"""Norm variants, the transformer's settings (placement, QK-norm, depth), the learning-rate warm-up
and Wu and He's protocol in the study's grid, CLI, claims and report."""

from __future__ import annotations

import argparse
import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_norms import cli
from keras_norms.study.grid import (
    GN_PAPER_ERRORS,
    TRANSFORMER_DEPTH,
    GridError,
    GridSpec,
    check_names,
    parse_norm,
)
from keras_norms.study.report import group_rows
from keras_norms.study.verdicts import MATCH_MARGIN, Paired, verdicts


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
    with pytest.raises(GridError, match="--placement takes pre, post, peri, deepnorm, got middle"):
        check_names(GridSpec(model="transformer", placements=("middle",)))


def _parse(*argv):
    from keras_norms.study.cli import add_parser, spec_from_args

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return spec_from_args(parser.parse_args(["compare", *argv]))


def test_qk_norm_warm_up_and_depth_expand_into_cells():
    spec = _parse("--model", "transformer", "--norms", "layer", "--batch-sizes", "4", "--seeds", "0",
                  "--epochs", "2", "--qk-norm", "none,rms", "--warmup", "0,1", "--depth", "4")
    assert spec.qk_norms == ("none", "rms") and spec.warmups == (0, 1) and spec.depth == 4
    check_names(spec)
    cells = spec.cells(input_shape=(8, 8), target_accuracy=0.9)
    assert [(c.qk_norm, c.warmup_epochs, c.depth) for c in cells] == [
        (None, 0, 4), (None, 1, 4), ("rms", 0, 4), ("rms", 1, 4)]
    assert cells[0].model_options() == {"placement": "pre", "depth": 4}
    assert cells[3].model_options() == {"placement": "pre", "qk_norm": "rms", "depth": 4}
    assert len({c.key for c in cells}) == 4
    # Each new setting away from its default is in the key; at its default it is not.
    plain = GridSpec(model="transformer", norms=("layer",), batch_sizes=(4,), seeds=(0,), epochs=2).cells(
        input_shape=(8, 8), target_accuracy=0.9)[0]
    assert plain.model_options() == {"placement": "pre"} and plain.depth is None
    assert plain.key not in {c.key for c in cells}
    config = json.loads(json.dumps(plain.config()))
    assert (config["qk_norm"], config["warmup_epochs"], config["depth"]) == (None, 0, None)


def test_cells_at_the_new_defaults_key_like_rows_written_before_them():
    # Keys that the grid wrote before qk_norm, warmup_epochs and depth existed, for the transformer (the
    # lenet keys are in test_cells_without_the_new_settings_keep_their_keys): the rows on disk keep matching.
    old_keys = ["f140be326591174b", "2f26f1609cd49dd8"]
    common = dict(model="transformer", dataset="seq-digits", norms=("layer",), batch_sizes=(32,), seeds=(0,),
                  placements=("pre", "post"), epochs=1, train_size=300)
    for extra in ({}, {"qk_norms": ("none",), "warmups": (0,), "depth": TRANSFORMER_DEPTH}):
        cells = GridSpec(**common, **extra).cells(input_shape=(8, 8), target_accuracy=0.85)
        assert [c.key for c in cells] == old_keys
        assert [c.depth for c in cells] == [None, None]  # --depth 2 is the factory's default
    # An old row (no new fields) reads as no QK-norm, no warm-up, the default depth in claims and tables.
    old_rows = [_transformer_row("layer", s, 0.9 + 0.01 * s) for s in (0, 1, 2)]
    for row in old_rows:
        for field in ("qk_norm", "warmup_epochs", "depth"):
            del row[field]
    new_rows = [_transformer_row("layer", s, 0.8 + 0.01 * s, warmup_epochs=1) for s in (0, 1, 2)]
    assert [g.variant for g in group_rows(old_rows + new_rows)] == ["layer warm-up=0", "layer warm-up=1"]
    assert [g.variant for g in group_rows(old_rows)] == ["layer"]


def test_the_transformer_settings_and_warm_up_are_checked():
    from keras_norms.models import transformer

    assert transformer.__kwdefaults__["depth"] == TRANSFORMER_DEPTH
    with pytest.raises(GridError, match="--qk-norm is for --model transformer, got --model lenet"):
        check_names(GridSpec(qk_norms=("rms",)))
    with pytest.raises(GridError, match="--depth is for --model transformer, got --model lenet"):
        check_names(GridSpec(depth=4))
    with pytest.raises(GridError, match="--qk-norm takes none, rms, layer, got l2"):
        check_names(GridSpec(model="transformer", qk_norms=("l2",)))
    with pytest.raises(GridError, match="--qk-norm lists a value twice"):
        check_names(GridSpec(model="transformer", qk_norms=("rms", "rms")))
    with pytest.raises(GridError, match=r"--warmup 3 is longer than the training \(--epochs 2\)"):
        check_names(GridSpec(warmups=(0, 3), epochs=2))
    check_names(GridSpec(warmups=(0, 1), epochs=2))  # warm-up is for every model
    with pytest.raises(SystemExit):
        _parse("--warmup", "-1")


def test_the_warm_up_rises_linearly_per_step_then_holds(tmp_path):
    import keras

    from keras_norms.study.training import LinearWarmUp, learning_rate_of

    schedule = LinearWarmUp(0.01, warmup_steps=8)
    for step in (0, 1, 3, 7, 8, 50):
        assert float(schedule(step)) == pytest.approx(0.01 * min(1.0, (step + 1) / 8), rel=1e-6)
    # A cell warms up over warmup_epochs x steps per epoch; without warm-up the rate is a plain float.
    spec = GridSpec(norms=("layer",), batch_sizes=(32,), seeds=(0,), warmups=(0, 2), lrs=(0.004,))
    cold, warm = spec.cells(input_shape=(32, 32, 1), target_accuracy=0.9)
    assert learning_rate_of(cold, 10) == 0.004
    schedule = learning_rate_of(warm, 10)
    assert schedule.warmup_steps == 20 and schedule.learning_rate == 0.004
    # The optimizer reads it at its iteration count.
    optimizer = keras.optimizers.Adam(schedule)
    optimizer.build([keras.Variable(np.zeros(2, "float32"))])
    for iterations, expected in ((0, 0.004 / 20), (9, 0.004 * 10 / 20), (19, 0.004), (100, 0.004)):
        optimizer.iterations.assign(iterations)
        assert float(optimizer.learning_rate) == pytest.approx(expected, rel=1e-6)
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert isinstance(restored, LinearWarmUp) and restored.get_config() == schedule.get_config()


# ------------------------------------------------------------------ the transformer's claims, on rows


def _transformer_row(norm, seed, test, *, placement="pre", qk_norm=None, warmup_epochs=0, depth=None,
                     lr=1e-3, batch_size=32):
    return {"key": f"{norm}{seed}{placement}{qk_norm}{warmup_epochs}{lr}{batch_size}", "model": "transformer",
            "norm": norm, "batch_size": batch_size, "seed": seed, "lr": lr, "bn_momentum": None,
            "groups": None, "placement": placement, "qk_norm": qk_norm, "warmup_epochs": warmup_epochs,
            "depth": depth, "test_accuracy": test, "heterogeneous_accuracy": None, "epochs_to_target": None,
            "target_accuracy": 0.85, "curves": {"val_accuracy": [test]}}


def _dyt_rows(differences, norm="dyt"):
    rows = []
    for seed, difference in enumerate(differences):
        for batch_size in (16, 32):  # the claim takes the mean over batch sizes
            rows += [_transformer_row("layer", seed, 0.90 + 0.01 * seed, batch_size=batch_size),
                     _transformer_row(norm, seed, 0.90 + 0.01 * seed + difference, batch_size=batch_size)]
    return rows


@pytest.mark.parametrize(("differences", "start", "ahead"), [
    # Within the margin, on either side: a match, even where the difference is clearly not zero.
    ((0.004, 0.006, 0.002), "Yes: dyt matches layer norm: the whole 95% interval of dyt minus layer lies "
     "within the margin of ±0.02 test accuracy (2 points) of a match", "dyt is ahead by 0.004"),
    ((-0.004, -0.006, -0.002), "Yes: dyt matches layer norm", "layer is ahead by 0.004"),
    ((0.015, 0.016, 0.014), "Yes: dyt matches layer norm", "dyt is ahead by 0.015"),
    # Wholly beyond the margin: clearly worse, or clearly better.
    ((-0.06, -0.05, -0.07), "No: dyt is clearly worse than layer norm: the whole 95% interval of dyt minus "
     "layer lies below -0.02, outside the margin", "layer is ahead by 0.060"),
    ((0.025, 0.026, 0.024), "No: dyt is clearly better than layer norm: the whole 95% interval of dyt minus "
     "layer lies above +0.02", "dyt is ahead by 0.025"),
    # Crossing the margin: neither a match nor a clear difference (here even with zero outside it).
    ((0.03, 0.01, 0.02), "Not resolved with 3 seeds: the 95% interval of dyt minus layer crosses the margin",
     "dyt is ahead by 0.020"),
    ((0.0, -0.03, 0.01), "Not resolved with 3 seeds:", "layer is ahead by 0.007"),
    ((-0.001,), "Not resolved with 1 seed: one seed gives no interval", "layer is ahead by 0.001"),
])
def test_dyt_matches_layer_norm_within_the_margin(differences, start, ahead):
    answers = dict(verdicts(_dyt_rows(differences)))
    text = answers["Does DyT match layer norm?"]
    assert text.startswith(start), text
    mean = np.mean(differences)
    assert f"{ahead} on average (difference dyt minus layer {mean:+.3f}" in text, text
    assert "Does Derf match layer norm?" not in answers  # not measured: no derf in the grid
    if len(differences) > 1:
        low, high = Paired(tuple(differences)).interval
        inside = -MATCH_MARGIN < low and high < MATCH_MARGIN
        assert text.startswith("Yes:") == inside
        assert text.startswith("No:") == (high < -MATCH_MARGIN or low > MATCH_MARGIN)


def test_derf_has_its_own_match_claim():
    rows = _dyt_rows((-0.06, -0.05, -0.07), norm="derf") + [
        r for r in _dyt_rows((0.001, 0.0, -0.001)) if r["norm"] == "dyt"]
    answers = dict(verdicts(rows))
    assert answers["Does Derf match layer norm?"].startswith("No: derf is clearly worse than layer norm")
    assert "difference derf minus layer -0.060" in answers["Does Derf match layer norm?"]
    assert answers["Does DyT match layer norm?"].startswith("Yes: dyt matches layer norm")
    assert "dyt and layer are level on average" in answers["Does DyT match layer norm?"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-0.1, 0.1, allow_nan=False), min_size=1, max_size=6))
def test_a_match_only_when_the_interval_is_within_the_margin(differences):
    result = Paired(tuple(differences))
    answer, interval = result.matches(), result.interval
    if answer == "Yes":
        assert -MATCH_MARGIN < interval[0] and interval[1] < MATCH_MARGIN
    elif answer == "Worse":
        assert interval[1] < -MATCH_MARGIN
    elif answer == "Better":
        assert interval[0] > MATCH_MARGIN
    else:
        assert answer.startswith("Not resolved with")
        assert interval is None or (interval[0] <= MATCH_MARGIN and interval[1] >= -MATCH_MARGIN
                                    and not (-MATCH_MARGIN < interval[0] and interval[1] < MATCH_MARGIN))


def _placement_rows(norm, accuracies, noise=(0.0, 0.01, -0.01)):
    return [_transformer_row(norm, seed, accuracy + jitter, placement=placement)
            for seed, jitter in enumerate(noise) for placement, accuracy in accuracies.items()]


@pytest.mark.parametrize(("peri", "answer"), [
    (0.93, "Yes"), (0.86, "No"), (0.90, "Not resolved with 3 seeds")])
def test_peri_norm_against_pre_norm(peri, answer):
    rows = _placement_rows("layer", {"pre": 0.90, "post": 0.80, "peri": peri}, noise=(0.0, 0.01, -0.01))
    if answer.startswith("Not"):
        spread = lambda r: 0.02 * (r["seed"] - 1) * (r["placement"] == "peri")
        rows = [{**r, "test_accuracy": r["test_accuracy"] + spread(r)} for r in rows]
    answers = dict(verdicts(rows))
    text = answers["Does peri-norm beat pre-norm?"]
    leader = {"Yes": "peri is ahead by 0.030", "No": "pre is ahead by 0.040"}.get(answer, "")
    assert text.startswith(f"{answer}: test accuracy with layer norm (mean over batch sizes), peri-norm "
                           f"(a norm before and after each sublayer) against pre-norm: {leader}"), text
    assert f"difference peri minus pre {peri - 0.90:+.3f}" in text
    # Pre against post still answers with a third placement in the grid.
    assert answers["Pre-norm or post-norm in the transformer?"].startswith(
        "Yes: test accuracy with layer norm (mean over batch sizes): pre is ahead by 0.100 on average "
        "(difference pre minus post +0.100")


def test_placement_claims_take_rms_norm_without_layer_norm_and_say_what_they_need():
    rows = _placement_rows("rms", {"pre": 0.90, "peri": 0.93})
    answers = dict(verdicts(rows, measured_only=False))
    assert answers["Does peri-norm beat pre-norm?"].startswith(
        "Yes: test accuracy with rms norm (mean over batch sizes), peri-norm")
    assert answers["Pre-norm or post-norm in the transformer?"] == (
        "Not measured: the grid needs the transformer with `--placement pre,post`.")
    for question in ("Does QK-norm let a higher learning rate train?",
                     "Does post-norm fail without warm-up at depth?", "Does DyT match layer norm?",
                     "Does Derf match layer norm?"):
        assert answers[question].startswith("Not measured: the grid needs"), question


def _qk_rows(gain_high, gain_low=0.0, qk="rms"):
    rows = []
    for seed, jitter in enumerate((0.0, 0.01, -0.01)):
        for lr, base, gain in ((1e-3, 0.90, gain_low), (1e-2, 0.70, gain_high)):
            rows += [_transformer_row("layer", seed, base + jitter, lr=lr),
                     _transformer_row("layer", seed, base + gain + jitter / 2, lr=lr, qk_norm=qk)]
    return rows


@pytest.mark.parametrize(("gain", "answer"), [(0.15, "Yes"), (-0.05, "No")])
def test_qk_norm_is_judged_at_the_higher_learning_rate(gain, answer):
    text = dict(verdicts(_qk_rows(gain)))["Does QK-norm let a higher learning rate train?"]
    assert text.startswith(f"{answer}: test accuracy at the higher learning rate, 0.01, with layer norm "
                           "(mean over batch sizes), rms QK-norm against none: "), text
    leader = ("rms QK-norm and none are level" if round(gain, 3) == 0 else
              f"{'rms QK-norm' if gain > 0 else 'none'} is ahead by {abs(gain):.3f}")
    assert f"{leader} on average (difference rms QK-norm minus none {gain:+.3f}" in text
    # The lower learning rate is reported for context: there QK-norm changes nothing on average.
    assert "; at the lower learning rate, 0.001: difference rms QK-norm minus none +0.000" in text
    # The other claims keep to the grid's first QK-norm value (none), whatever QK-norm does.
    rms = [_transformer_row("rms", s, 0.80, lr=1e-3) for s in range(3)]
    layer = dict(verdicts(_qk_rows(gain) + rms))["Layer, RMS or no norm in the transformer?"]
    assert ("layer against rms: layer leads; layer is ahead by 0.100 on average (difference layer minus rms "
            "+0.100") in layer


def test_qk_norm_layer_is_used_without_rms():
    text = dict(verdicts(_qk_rows(0.1, qk="layer")))["Does QK-norm let a higher learning rate train?"]
    assert text.startswith("Yes: test accuracy at the higher learning rate, 0.01, with layer norm (mean over "
                           "batch sizes), layer QK-norm against none: layer QK-norm is ahead")


def _warmup_rows(post_cold, post_warm, pre_cold=0.85, depth=6):
    rows = []
    for seed, jitter in enumerate((0.0, 0.01, -0.01)):
        for placement, warmup, accuracy in (("pre", 0, pre_cold), ("pre", 1, pre_cold + 0.01),
                                            ("post", 0, post_cold), ("post", 1, post_warm)):
            rows.append(_transformer_row("layer", seed, accuracy + jitter * (1 + warmup), placement=placement,
                                         warmup_epochs=warmup, depth=depth))
    return rows


@pytest.mark.parametrize(("post_cold", "post_warm", "answer"), [
    (0.50, 0.80, "Yes"), (0.80, 0.70, "No"), (0.80, 0.80, "Not resolved with 3 seeds")])
def test_post_norm_without_warm_up_against_with_it(post_cold, post_warm, answer):
    question = "Does post-norm fail without warm-up at depth?"
    text = dict(verdicts(_warmup_rows(post_cold, post_warm)))[question]
    assert text.startswith(f"{answer}: post-norm's test accuracy at depth 6 (layer norm), 1 epoch of warm-up "
                           "against none: "), text
    gain = post_warm - post_cold
    leader = ("warm-up and none are level" if round(gain, 3) == 0 else
              f"{'warm-up' if gain > 0 else 'none'} is ahead by {abs(gain):.3f}")
    assert f"{leader} on average (difference warm-up minus none {gain:+.3f}" in text
    context = f"difference pre minus post {0.85 - post_cold:+.3f}"
    assert f"; without warm-up, pre-norm against post-norm: {context}" in text
    # Without a depth in the rows, the transformer's default depth is stated.
    default = dict(verdicts(_warmup_rows(0.5, 0.8, depth=None)))[question]
    assert default.startswith(f"Yes: post-norm's test accuracy at depth {TRANSFORMER_DEPTH} (layer norm)")


def test_the_table_labels_the_settings_that_vary():
    labels = {g.variant for g in group_rows(_warmup_rows(0.5, 0.8))}
    assert labels == {"layer pre-norm warm-up=0", "layer pre-norm warm-up=1", "layer post-norm warm-up=0",
                      "layer post-norm warm-up=1"}
    labels = {g.variant for g in group_rows(_qk_rows(0.1))}
    assert labels == {f"layer qk-norm={q} lr={lr}" for q in ("none", "rms") for lr in ("0.001", "0.01")}


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
    args = ["compare", "--protocol", "gn-paper", "--norms", "batch,batch(renorm=True)",
            "--batch-sizes", "4,2", "--epochs", "1", "--seeds", "0", "--train-size", "64",
            "--out", str(out), "--no-progress"]
    assert cli.main(args) == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert {r["optimizer"] for r in rows} == {"sgd"} and len(rows) == 4
    assert all(r["learning_rate"] == pytest.approx(0.1 * r["batch_size"] / 32) for r in rows)
    assert {r["norm"] for r in rows} == {"batch", "batch(renorm=True)"}
    report = (out / "report.md").read_text()
    assert "## Beside Wu and He (2018), Figure 1" in report and "SGD with momentum 0.9" in report
    # Our test error at batch size 2 beside Wu and He's published ImageNet error for it.
    at_two = [r["test_accuracy"] for r in rows if r["norm"] == "batch" and r["batch_size"] == 2]
    ours = 100 * (1 - np.mean(at_two))
    assert f"| {ours:.1f} | {GN_PAPER_ERRORS['batch'][2]:.1f} |" in report
    assert "batch(renorm=True) against batch" in report  # the variants' claim
    assert (out / "error_vs_batch_size.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _claim_line(report: str, question: str) -> str:
    line = next(x for x in report.splitlines() if f"**{question}** " in x)
    assert "interval" in line and "Not measured" not in line, line
    return line


@pytest.mark.slow
def test_the_transformer_compares_placements_and_norms_on_sequences(tmp_path, capsys):
    out = tmp_path / "transformer"
    # One seed keeps it short: the claims print their difference, without an interval.
    args = ["compare", "--model", "transformer", "--dataset", "seq-digits", "--placement", "pre,peri",
            "--norms", "layer,dyt", "--batch-sizes", "32", "--epochs", "1", "--seeds", "0",
            "--train-size", "200", "--depth", "1", "--out", str(out), "--no-progress"]
    assert cli.main(args) == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert len(rows) == 4 and {(r["placement"], r["norm"]) for r in rows} == {
        (p, n) for p in ("pre", "peri") for n in ("layer", "dyt")}
    assert all(r["model"] == "transformer" and r["qk_norm"] is None and r["warmup_epochs"] == 0
               and r["depth"] == 1 for r in rows)
    report = (out / "report.md").read_text()
    assert "peri minus pre" in _claim_line(report, "Does peri-norm beat pre-norm?")
    dyt = _claim_line(report, "Does DyT match layer norm?")
    assert "difference dyt minus layer" in dyt and f"±{MATCH_MARGIN:.2f}" in dyt
    assert re.match(r"- \*\*Does DyT match layer norm\?\*\* Not resolved with 1 seed: ", dyt)
    assert "**Does Derf match layer norm?** Not measured" in report
    for label in ("layer pre-norm", "layer peri-norm", "dyt pre-norm", "dyt peri-norm"):
        assert f"| {label} | 32 |" in report


@pytest.mark.slow
def test_qk_norm_and_warm_up_at_depth_reach_the_cells_and_their_claims(tmp_path, capsys):
    """One seed keeps it short: the claims print their difference without an interval."""
    out = tmp_path / "qk-warmup"
    args = ["compare", "--model", "transformer", "--dataset", "seq-digits", "--placement", "post",
            "--qk-norm", "none,rms", "--warmup", "0,1", "--depth", "1", "--norms", "layer",
            "--batch-sizes", "32", "--epochs", "1", "--seeds", "0", "--train-size", "120",
            "--out", str(out), "--no-progress"]
    assert cli.main(args) == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert len(rows) == 4 and {r["depth"] for r in rows} == {1}  # not the default, 2
    assert {(r["qk_norm"] or "none", r["warmup_epochs"]) for r in rows} == {
        (q, w) for q in ("none", "rms") for w in (0, 1)}
    by = {(r["qk_norm"], r["warmup_epochs"]): r["curves"]["loss"] for r in rows}
    assert by[(None, 0)] != by[(None, 1)]  # the warm-up changed the training
    assert by[(None, 0)] != by[("rms", 0)]  # and so did QK-norm
    report = (out / "report.md").read_text()
    line = _claim_line(report, "Does post-norm fail without warm-up at depth?")
    assert "post-norm's test accuracy at depth 1 (layer norm), 1 epoch of warm-up against none: " in line
    assert "The transformer has 1 block;" in report
    assert "qk-norm=rms" in report and "warm-up=1" in report


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
