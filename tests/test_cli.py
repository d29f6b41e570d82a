"""The `keras-norms` command and the demo it runs."""

import pytest

from keras_norms import cli
from keras_norms.study.datasets import digits
from keras_norms.study.demo import format_results, run_demo


def test_digits_splits_are_disjoint_stratified_and_seeded():
    a, b = digits(seed=0), digits(seed=0)
    assert sum(len(x) for x in (a.x_train, a.x_val, a.x_test)) == 1797
    for x, y in zip(a, b, strict=True):
        assert (x == y).all()
    train = {row.tobytes() for row in a.x_train}
    assert not any(row.tobytes() in train for row in a.x_test)
    assert a.x_train.min() >= 0.0 and a.x_train.max() <= 1.0
    assert set(a.y_test.tolist()) == set(range(10))
    assert not (digits(seed=1).y_test == a.y_test).all()


@pytest.mark.parametrize("kwargs", [{"validation_fraction": 0.0}, {"test_fraction": 1.0},
                                    {"validation_fraction": 0.6, "test_fraction": 0.5}])
def test_digits_rejects_bad_fractions(kwargs):
    with pytest.raises(ValueError, match="fraction"):
        digits(**kwargs)


def test_demo_learns_the_digits_with_each_norm():
    results = run_demo(["batch", "group"], epochs=3)
    assert [r.norm for r in results] == ["batch", "group"]
    for result in results:
        # Chance is 0.1: three epochs of a small CNN already recognise most digits.
        assert result.test_accuracy > 0.5, result
        assert result.seconds_per_epoch > 0
    table = format_results(results)
    assert table.splitlines()[0].split() == ["norm", "test", "accuracy", "s/epoch"]
    assert len(table.splitlines()) == 3


def test_demo_rejects_bad_arguments():
    with pytest.raises(ValueError, match="Unknown normalization 'batchnorm'"):
        run_demo(["batchnorm"], epochs=1)
    with pytest.raises(ValueError, match="epochs=0"):
        run_demo(["batch"], epochs=0)


def test_cli_demo_prints_one_line_per_norm(capsys):
    assert cli.main(["demo", "--norms", "layer,none", "--epochs", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-3].split()[0] == "norm"
    assert [line.split()[0] for line in lines[-2:]] == ["layer", "none"]


def test_cli_refuses_unknown_norm_and_bad_epochs(capsys):
    assert cli.main(["demo", "--norms", "nope"]) == 2
    assert "valid names: batch, layer, group" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["demo", "--epochs", "0"])
    assert "expected a positive integer, got '0'" in capsys.readouterr().err
