"""The `keras-norms` command and the demo it runs."""

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import _keras_norms_cli
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


#: What TensorFlow, XLA and CUDA write while they start (none of it may reach the command's output).
TF_STARTUP_PATTERNS = ("E0000", "W0000", "I0000", "cuda_platform", "cuInit", "oneDNN custom operations",
                       "absl::InitializeLog", "This TensorFlow binary is optimized", "Unable to register cu")


def _env(**variables):
    """This environment without TF_CPP_MIN_LOG_LEVEL (the suite's conftest sets it), plus `variables`."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return {**env, **variables}


def _command() -> list[str]:
    """The installed `keras-norms` script (its entry point is the module that hides the lines)."""
    script = Path(sys.executable).with_name("keras-norms")
    return [str(script)] if script.exists() else [sys.executable, "-m", "_keras_norms_cli"]


@pytest.mark.parametrize(("line", "level", "kept"), [
    ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR", 2, False),
    ("I0000 00:00:1796665389.668557    2940 port.cc:153] oneDNN custom operations are on.", 1, False),
    ("I0000 00:00:1796665389.668948    2940 cudart_stub.cc:31] Could not find cuda drivers", 2, False),
    ("E0000 00:00:1796665431.515927    3855 cuda_platform.cc:52] failed call to cuInit: UNKNOWN", 1, False),
    ("2025-01-01 12:00:00.123456: E external/cuda_fft.cc:477] Unable to register cuFFT factory", 2, False),
    ("To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow", 2, False),
    ("W0000 00:00:1796665389.1    2940 some_op.cc:1] a warning of TensorFlow", 2, False),
    ("W0000 00:00:1796665389.1    2940 some_op.cc:1] a warning of TensorFlow", 1, True),
    ("E0000 00:00:1796665389.1    2940 some_op.cc:1] an error of TensorFlow", 2, True),
    ("E0000 00:00:1796665389.1    2940 some_op.cc:1] an error of TensorFlow", 3, False),
    ("F0000 00:00:1796665389.1    2940 some_op.cc:1] Check failed: a fatal error", 3, True),
    ("I0000 00:00:1796665389.668557    2940 port.cc:153] oneDNN custom operations are on.", 0, True),
    ("/work/x.py:3: UserWarning: a warning of ours", 3, True),
    ("keras-norms report: error: a message of ours", 3, True),
])
def test_startup_filter_drops_tensorflows_lines_below_the_level_and_keeps_ours(line, level, kept):
    assert _keras_norms_cli.keep_line(line.encode() + b"\n", level) is kept


def test_the_installed_command_is_the_entry_point_that_hides_the_startup_lines():
    (script,) = importlib.metadata.entry_points(group="console_scripts", name="keras-norms")
    assert script.value == "_keras_norms_cli:main"


@pytest.mark.slow
def test_the_command_prints_no_tensorflow_startup_lines(tmp_path):
    from keras_norms.study.grid import GridSpec
    from keras_norms.study.shards import GRID_FILE, grid_record

    # A results folder whose grid has no finished cell yet: a real `report`, which imports TensorFlow.
    record = grid_record(GridSpec(norms=("batch",), seeds=(0,)), (32, 32, 1), 0.9, "digits")
    (tmp_path / GRID_FILE).write_text(json.dumps(record))
    result = subprocess.run([*_command(), "report", str(tmp_path)], capture_output=True, text=True,
                            env=_env(KERAS_BACKEND="tensorflow"), timeout=120)
    assert result.returncode == 1, result.stderr
    assert "4 of 4 runs are missing" in result.stdout
    lines = (result.stderr + result.stdout).splitlines()
    assert not [line for line in lines if any(p in line for p in TF_STARTUP_PATTERNS)], result.stderr


FAKE_TENSORFLOW = textwrap.dedent("""\
    import os, types, warnings
    os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n")
    os.write(2, b"I0000 00:00:1796665389.6  2940 port.cc:153] oneDNN custom operations are on.\\n")
    os.write(2, b"E0000 00:00:1796665389.6  2940 some_op.cc:1] an error of TensorFlow\\n")
    warnings.warn("a warning while TensorFlow imports")

    def list_physical_devices():
        os.write(2, b"E0000 00:00:1796665389.7  2940 cuda_platform.cc:52] failed call to cuInit: UNKNOWN\\n")
        return []

    config = types.SimpleNamespace(list_physical_devices=list_physical_devices)
""")


@pytest.mark.parametrize(("level", "shown"), [
    (None, ["a warning while TensorFlow imports", "an error of TensorFlow"]),
    ("3", ["a warning while TensorFlow imports"]),
    # Level 0: nothing is hidden (nor are the devices listed on import: TensorFlow does that when it needs).
    ("0", ["absl::InitializeLog", "oneDNN custom operations", "an error of TensorFlow",
           "a warning while TensorFlow imports"]),
])
def test_the_startup_lines_are_hidden_unless_the_user_sets_level_0(tmp_path, level, shown):
    # A stand-in `tensorflow` that writes TensorFlow's start-up lines as its shared libraries do (to file
    # descriptor 2, not through sys.stderr); the entry point hides them in whatever imports it.
    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "__init__.py").write_text(FAKE_TENSORFLOW)
    code = ("import sys, _keras_norms_cli; _keras_norms_cli.quiet_tensorflow_startup(); "
            "import tensorflow; print('ours', file=sys.stderr)")
    env = _env(PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path]), PYTHONWARNINGS="always",
               **({} if level is None else {"TF_CPP_MIN_LOG_LEVEL": level}))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-1] == "ours"
    for text in ("absl::InitializeLog", "oneDNN custom operations", "an error of TensorFlow", "cuInit",
                 "a warning while TensorFlow imports"):
        assert (text in result.stderr) == (text in shown), (text, result.stderr)
