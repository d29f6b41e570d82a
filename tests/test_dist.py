"""The archives `make dist` builds: the wheel holds the package and nothing else, and works installed.

The source tree is copied first (its tracked kind of files only), so that building writes nothing
into the repository; `python -m build` makes the source archive, then the wheel from the unpacked
source archive, as pip does, which also shows that the source archive is complete. The wheel is
installed with pip into a directory of its own and run from there, not from this tree: it imports,
and its `keras-norms` command prints its help and exports a small model.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

# One build for the module: its tests run on one xdist worker (`make test` runs `--dist loadgroup`).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dist")]

ROOT = Path(__file__).resolve().parents[1]
_NOT_SOURCES = shutil.ignore_patterns(".git", ".venv*", "site", "build", "dist", "*.egg-info", "out",
                                      "demo-out", "__pycache__", ".pytest_cache", ".hypothesis",
                                      ".ruff_cache", "BENCHMARKS.*")


def _packages() -> dict[str, Path]:
    """setup.cfg's packages, each with the directory of its sources in this tree."""
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    options = parser["options"]
    mapped = dict(line.split(" = ") for line in options["package_dir"].strip().splitlines())
    return {name: ROOT / mapped.get(name, name.replace(".", "/")) for name in options["packages"].split()}


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> dict[str, Path]:
    source = tmp_path_factory.mktemp("source") / "keras-norms"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCES, symlinks=True)
    out = tmp_path_factory.mktemp("dist")
    build = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out),
                            str(source)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    wheel, = out.glob("*.whl")
    sdist, = out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def test_twine_accepts_both_archives(archives):
    done = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(archives["wheel"]),
                           str(archives["sdist"])], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("PASSED") == 2, done.stdout


def test_the_wheel_holds_every_module_the_license_and_the_command_and_nothing_else(archives):
    with zipfile.ZipFile(archives["wheel"]) as wheel:
        names = set(wheel.namelist())
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    expected = {f"{name.replace('.', '/')}/{path.relative_to(directory).as_posix()}"
                for name, directory in _packages().items() for path in directory.glob("*.py")}
    assert expected, "setup.cfg lists no packages"
    assert not expected - names, f"modules missing from the wheel: {sorted(expected - names)}"
    assert "_keras_norms_cli.py" in names
    assert {f"{info}/licenses/LICENSE", f"{info}/LICENSE"} & names, sorted(n for n in names if info in n)
    assert "keras-norms = _keras_norms_cli:main" in entry_points
    tops = {name.split("/")[0] for name in names}
    assert tops == {"keras_norms", "_keras_norms_cli.py", info}, tops  # no tests, docs, benchmarks
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_the_source_archive_holds_what_builds_the_wheel(archives):
    with tarfile.open(archives["sdist"]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"LICENSE", "README.md", "setup.cfg", "pyproject.toml", "_keras_norms_cli.py"} <= names
    assert {"models/__init__.py", "export/__init__.py", "keras_norms/kernels/__init__.py"} <= names


def test_the_installed_wheel_imports_and_exports_outside_the_tree(archives, tmp_path):
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                              "--target", str(target), str(archives["wheel"])],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stdout + install.stderr
    command = target / "bin" / "keras-norms"
    assert command.exists(), sorted(p.name for p in (target / "bin").iterdir())
    env = dict(os.environ, PYTHONPATH=str(target), TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("KERAS_BACKEND", None)

    # The package and its subpackages come from the installed wheel, and its command prints its help.
    script = ("import runpy, sys, keras_norms, keras_norms.export, keras_norms.models; "
              "print(keras_norms.__file__, keras_norms.export.__file__, keras_norms.models.__file__); "
              f"sys.argv = ['keras-norms', '--help']; runpy.run_path({str(command)!r}, run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    files, help_text = done.stdout.split("\n", 1)
    assert all(Path(f).is_relative_to(target) for f in files.split()), files
    assert "compare" in help_text and "export" in help_text, help_text

    # A small model with a keras-norms layer, saved here, exported by the installed command.
    import keras

    import keras_norms

    model = keras.Sequential([keras.Input((4, 4, 2)), keras.layers.Conv2D(4, 1),
                              keras_norms.GroupNormalization(groups=2), keras.layers.Flatten(),
                              keras.layers.Dense(3)])
    model.save(tmp_path / "small.keras")
    done = subprocess.run([sys.executable, str(command), "export", "small.keras", "--out", "exported"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "exported" / "model.tflite").stat().st_size > 0
    assert "model.tflite" in done.stdout
