"""The `keras-norms` command: its demo, its start-up lines, `report` without TensorFlow."""

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import _keras_norms_cli
from keras_norms import cli
from keras_norms.study.datasets import digits


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


def test_demo_is_the_quick_comparison_with_an_export_of_the_best_model(monkeypatch):
    # `keras-norms demo` (and `make demo`) is `keras-norms compare --quick --out OUT --export-best`: the
    # comparison itself runs in tests/test_study.py.
    from keras_norms.study import cli as compare_cli

    calls = []
    monkeypatch.setattr(compare_cli, "run", lambda args, export: calls.append((args, export)) or 0)
    assert cli.main(["demo"]) == 0
    assert cli.main(["demo", "--out", "elsewhere", "--no-progress"]) == 0
    (first, export), (second, _) = calls
    assert export is cli._export_best
    expected = cli.build_parser().parse_args(["compare", "--quick", "--out", "demo-out", "--export-best"])
    assert vars(first) == vars(expected)
    assert (second.out, second.no_progress, second.quick, second.export_best) == ("elsewhere", True, True,
                                                                                  True)
    assert compare_cli.spec_from_args(first).norms == ("batch", "layer", "group", "none")


def _finished_results_folder(out: Path) -> None:
    """A `keras-norms compare` folder with its four cells finished (by a stand-in for training)."""
    from keras_norms.study.grid import GridSpec
    from keras_norms.study.runner import run_grid
    from keras_norms.study.shards import GRID_FILE, grid_record
    from keras_norms.study.training import prepare

    spec = GridSpec(model="lenet", dataset="digits", norms=("batch", "none"), batch_sizes=(50, 100),
                    epochs=1, seeds=(0,), train_size=200)
    prepared = prepare(spec)

    def train(cell, prepared, on_epoch, model_path):
        accuracy = 0.5 + cell.batch_size / 1000
        return {"test_accuracy": accuracy, "train_accuracy": accuracy, "generalization_gap": 0.0,
                "final_val_accuracy": accuracy, "epochs_run": 1, "diverged": False, "epochs_to_target": None,
                "seconds_to_target": None, "ms_per_step": 1.0, "train_seconds": 0.1,
                "curves": {"loss": [1.0], "accuracy": [accuracy], "val_accuracy": [accuracy]}}

    run_grid(spec, prepared, out, progress=False, train=train)
    record = grid_record(spec, prepared.input_shape, prepared.target_accuracy, "digits")
    (out / GRID_FILE).write_text(json.dumps(record))
    for written in ("report.md", "results.csv", "results.json"):
        (out / written).unlink()


def test_report_and_help_run_without_tensorflow(tmp_path):
    # `keras-norms report` reads results files and writes tables and plots: it imports neither Keras nor
    # TensorFlow (whose import alone takes seconds), nor does `--help`.
    _finished_results_folder(tmp_path)
    code = ("import sys, _keras_norms_cli\n"
            "try:\n    code = _keras_norms_cli.main(sys.argv[1:])\nexcept SystemExit as exit:\n"
            "    code = exit.code\n"
            "heavy = sorted(m for m in ('tensorflow', 'keras', 'jax', 'torch') if m in sys.modules)\n"
            "print('imported:', heavy)\nsys.exit(code)")
    for argv, expected_code in ((["report", str(tmp_path)], 0), (["--help"], 0), (["report", "--help"], 0),
                                (["compare", "--help"], 0), (["export", "--help"], 0), (["--version"], 0)):
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                                env=_env(), timeout=120)
        seconds = time.perf_counter() - start
        assert result.returncode == expected_code, (argv, result.stderr)
        assert result.stdout.splitlines()[-1] == "imported: []", (argv, result.stdout)
        assert seconds < 30, (argv, seconds)  # TensorFlow's import alone takes ~5 s on 2 cores
    report = subprocess.run([*_command(), "report", str(tmp_path)], capture_output=True, text=True,
                            env=_env(), timeout=120)
    assert "All 4 runs of the grid are finished." in report.stdout
    assert (tmp_path / "report.md").exists() and list(tmp_path.glob("*.png"))


def test_the_light_commands_leave_the_whole_package_importable():
    # In one process, after `report` ran on stand-ins of the packages, `import keras_norms` is the package.
    code = ("import sys, _keras_norms_cli\n_keras_norms_cli.main(['report', 'nowhere'])\n"
            "import keras_norms, keras_norms.export\n"
            "print(keras_norms.GroupNormalization.__name__, keras_norms.export.export_model.__name__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(),
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["GroupNormalization", "export_model"]


def test_the_grid_facts_of_the_builtin_norms_are_the_registrys():
    # `keras-norms report` lists a grid's cells without the registry (so without Keras), from this table.
    from keras_norms.models.transformer import EXTRA_NORMS

    import keras_norms
    from keras_norms.study.grid import BUILTIN_GRID_FACTS, describe_norm

    assert set(BUILTIN_GRID_FACTS) == set(keras_norms.names()) | set(EXTRA_NORMS)
    for name, facts in BUILTIN_GRID_FACTS.items():
        assert facts == (describe_norm(name).batch_norm, describe_norm(name).takes_groups), name


def test_the_commands_that_run_without_tensorflow():
    assert _keras_norms_cli.runs_without_tensorflow(["report", "out"])
    assert _keras_norms_cli.runs_without_tensorflow([])
    assert _keras_norms_cli.runs_without_tensorflow(["compare", "--quick", "--help"])
    assert not _keras_norms_cli.runs_without_tensorflow(["compare", "--quick"])
    assert not _keras_norms_cli.runs_without_tensorflow(["export", "model.keras", "--", "--help"])


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
    # A command that imports TensorFlow: a comparison refused for its unknown norm, after the import.
    result = subprocess.run([*_command(), "compare", "--norms", "nope", "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, env=_env(KERAS_BACKEND="tensorflow"), timeout=120)
    assert result.returncode == 2, result.stderr
    assert "nope" in result.stderr
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
