"""Verdicts from paired differences over seeds: scipy's t-interval, and never "Yes" across zero."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from keras_norms.study.report import summary_text
from keras_norms.study.verdicts import Paired, verdicts


def _row(norm, batch_size, seed, test, **extra):
    base = norm.split("(")[0]
    return {"key": f"{norm}{batch_size}{seed}{extra}", "norm": norm, "batch_size": batch_size, "seed": seed,
            "model": extra.pop("model", "lenet"), "lr": extra.pop("lr", 1e-3),
            "bn_momentum": extra.pop("bn_momentum", 0.9 if base == "batch" else None),
            "groups": "auto" if base == "group" else None, "test_accuracy": test,
            "heterogeneous_accuracy": extra.pop("heterogeneous", test - 0.1), "epochs_to_target": 1,
            "target_accuracy": 0.9, "curves": {"val_accuracy": extra.pop("curve", [test])}, **extra}


def _answers(rows) -> dict[str, str]:
    return dict(verdicts(rows))


def _interval(text: str) -> tuple[float, float]:
    low, high = re.search(r"interval \[([-+.\d]+), ([-+.\d]+)\]", text).groups()
    return float(low), float(high)


def test_the_interval_is_scipys_t_interval_of_the_mean_difference():
    differences = (0.012, 0.004, 0.02, -0.001)
    expected = stats.t.interval(0.95, len(differences) - 1, loc=np.mean(differences),
                                scale=stats.sem(differences))
    np.testing.assert_allclose(Paired(differences).interval, expected, rtol=1e-12)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-0.2, 0.2, allow_nan=False), min_size=1, max_size=8))
def test_yes_and_no_only_when_the_interval_excludes_zero(differences):
    result = Paired(tuple(differences))
    answer, interval = result.answer(), result.interval
    if answer == "Yes":
        assert interval[0] > 0
    elif answer == "No":
        assert interval[1] < 0
    else:
        assert answer == f"Not resolved with {len(differences)} seed{'s' if len(differences) > 1 else ''}"
        assert interval is None or interval[0] <= 0 <= interval[1]


def _grid(bn_small, gn_small, seeds=(0, 1, 2), noise=(0.0, 0.01, -0.01)):
    rows = []
    for seed, jitter in zip(seeds, noise, strict=True):
        rows += [_row("batch", 2, seed, bn_small + jitter,
                      test_accuracy_recalibrated=bn_small + 0.05 + jitter),
                 _row("batch", 128, seed, 0.96 + jitter, test_accuracy_recalibrated=0.96 + jitter),
                 _row("group", 2, seed, gn_small + jitter, heterogeneous=0.8 + jitter),
                 _row("group", 128, seed, 0.94 + jitter, heterogeneous=0.8 + jitter),
                 _row("none", 2, seed, 0.85 + jitter, curve=[0.5, 0.8]),
                 _row("none", 128, seed, 0.85 + jitter, curve=[0.5, 0.8])]
    return rows


def test_clear_differences_are_decided_with_their_interval():
    answers = _answers(_grid(bn_small=0.70, gn_small=0.93))
    leads = answers["Does batch norm lead at large batch sizes?"]
    assert leads.startswith("Yes: test accuracy at batch size 128, the largest here, against the best "
                            "other norm, group: batch is ahead by 0.020 on average (difference batch minus "
                            "group +0.020")
    low, high = _interval(leads)
    assert low == pytest.approx(0.02, abs=1e-3) and high == pytest.approx(0.02, abs=1e-3)  # 0.96 - 0.94
    small = answers["Do small batches hurt batch norm more than group norm?"]
    # Batch norm loses 0.96 - 0.70 = 0.26; group norm 0.94 - 0.93 = 0.01.
    assert small.startswith("Yes: test accuracy from batch size 128 to 2: batch norm loses 0.260 and group "
                            "norm loses 0.010 on average (difference batch norm's loss minus group norm's "
                            "+0.250")
    recalibration = answers["Does recalibration recover batch norm's small-batch loss?"]
    assert recalibration.startswith("Yes:") and "recovers 19% of it" in recalibration  # 0.05 of 0.26
    # Heterogeneous accuracy: group 0.8 at both sizes, batch 0.6 and 0.86 (mean 0.73).
    assert answers["Does group norm help on heterogeneous data?"].startswith("Yes:")
    # Claims this grid cannot test are left out of the report.
    assert not any(q.startswith("Is layer norm") or "learning rate" in q for q in answers)


def test_a_difference_within_the_noise_is_not_resolved():
    rows = _grid(bn_small=0.70, gn_small=0.93, noise=(0.0, 0.03, -0.03))
    for row in rows:  # batch norm (0.96, 0.99, 0.93) leads group norm by +0.02, +0.07, -0.07
        if row["norm"] == "group" and row["batch_size"] == 128:
            row["test_accuracy"] = 0.94 + {0: 0.0, 1: -0.02, 2: 0.06}[row["seed"]]
    leads = _answers(rows)["Does batch norm lead at large batch sizes?"]
    low, high = _interval(leads)
    assert leads.startswith("Not resolved with 3 seeds") and low < 0 < high
    # The side ahead on average is named, with the signed difference that says so.
    assert "batch is ahead by 0.007 on average (difference batch minus group +0.007" in leads


def test_one_seed_is_never_resolved():
    answers = _answers([r for r in _grid(0.70, 0.93) if r["seed"] == 0])
    assert all(v.startswith("Not resolved with 1 seed:") for v in answers.values() if v[0] != "A")


def test_reordering_the_rows_or_the_seeds_changes_no_verdict():
    rows = _grid(bn_small=0.70, gn_small=0.93)
    expected = _answers(rows)
    shuffled = rows[:]
    random.Random(0).shuffle(shuffled)
    # The grid's first learning rate etc. come from the first row, which all rows share here.
    assert _answers(shuffled) == expected
    renamed = [{**r, "seed": {0: 7, 1: 3, 2: 5}[r["seed"]]} for r in rows]
    assert _answers(renamed) == expected


def test_learning_rate_momentum_recurrent_and_variants_claims():
    rows = []
    for seed, jitter in enumerate((0.0, 0.01, -0.01)):
        for lr, bn, none in ((1e-3, 0.95, 0.94), (1e-2, 0.94, 0.80)):
            rows += [_row("batch", 4, seed, bn + jitter, lr=lr, model="sequence"),
                     _row("none", 4, seed, none + jitter, lr=lr, model="sequence")]
        rows += [_row("batch", 4, seed, 0.90 + jitter, bn_momentum=0.99, model="sequence"),
                 _row("layer", 4, seed, 0.97 + jitter, model="sequence"),
                 _row("batch(renorm=True)", 4, seed, 0.93 + jitter, model="sequence")]
    answers = _answers(rows)
    assert answers["Does batch norm tolerate a higher learning rate?"].startswith(
        "Yes: test accuracy from the learning rate 0.001 to 0.01 (mean over batch sizes): no norm loses "
        "0.140 and batch norm loses 0.010 on average (difference no norm's loss minus batch norm's +0.130")
    assert answers["What does batch norm momentum change?"].startswith(
        "No: batch norm's test accuracy at batch size 4: momentum 0.9 is ahead by 0.050 on average "
        "(difference momentum 0.99 minus momentum 0.9 -0.050")
    recurrent = answers["Is layer norm the better choice for the recurrent model at small batch?"]
    assert recurrent.startswith("Yes:")
    assert answers["Do the batch norm variants help at small batch sizes?"].startswith(
        "At batch size 4, the smallest here: batch(renorm=True) against batch: batch leads; batch is ahead "
        "by 0.020 on average (difference batch(renorm=True) minus batch -0.020")


def test_the_summary_prints_every_measured_verdict_and_the_table():
    text = summary_text(_grid(0.70, 0.93), target=0.9)
    assert text.count("- **") == len(verdicts(_grid(0.70, 0.93)))
    assert "| batch | 2 | 0.700 ± 0.010 | 0.750 | 3 |" in text
