# Each target creates .venv when it is missing or when the package metadata changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: test docs demo bench lint clean dist

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all]'
	touch $(STAMP)

# The site: the guides in docs/ and the API reference from the docstrings (mkdocstrings), into site/;
# strict: any warning (a broken link, a docstring argument that is not in the signature) fails it.
MKDOCS := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

docs: $(STAMP)
	$(MKDOCS)

# The site build, then the whole suite on TensorFlow, then its channels-first and data-format tests
# again without oneDNN (where TensorFlow's CPU kernels take NHWC convolutions only), then the backend
# contract suite (test_backend_*.py) on JAX (and on PyTorch when it is installed, e.g. a CPU wheel of
# torch), each backend in its own process; float64 on JAX runs in a process of its own with jax_enable_x64.
test: $(STAMP)
	$(MKDOCS)
	$(call suites,$(BIN))

# The suites of `make test` and `make test-oldest`, run with the Python of the environment $(1).
define suites
	$(1)/python -m pytest -n 2 --dist loadgroup
	TF_ENABLE_ONEDNN_OPTS=0 $(1)/python -m pytest -n 2 -q -m data_format
	KERAS_BACKEND=jax $(1)/python -m pytest -n 2 -q $(BACKEND_SUITE)
	JAX_ENABLE_X64=1 KERAS_BACKEND=jax $(1)/python -m pytest -n 2 -q tests/test_backend_contract.py -k float64
	@if $(1)/python -c "import torch" 2>/dev/null; then \
		KERAS_BACKEND=torch $(1)/python -m pytest -n 2 -q $(BACKEND_SUITE) && \
		echo "Backends tested: tensorflow (whole suite), jax, torch (contract suite)"; \
	else echo "Backends tested: tensorflow (whole suite), jax (contract suite); PyTorch is not installed"; fi
endef
BACKEND_SUITE := tests/test_backend_contract.py tests/test_backend_layers.py tests/test_reliability.py tests/test_masks.py \
	tests/test_torch_kernels.py

# The oldest supported stack, setup.cfg's floor (TensorFlow 2.18, Keras 3.10), in .venv-oldest: the
# versions pinned in .ci/oldest-constraints.txt; the suites of `make test` (but the site build) there.
OLDEST := .venv-oldest
OLDEST_STAMP := $(OLDEST)/.installed
OLDEST_CONSTRAINTS := .ci/oldest-constraints.txt

.PHONY: test-oldest

$(OLDEST_STAMP): setup.cfg pyproject.toml $(OLDEST_CONSTRAINTS)
	test -x $(OLDEST)/bin/python || $(PYTHON) -m venv $(OLDEST)
	$(OLDEST)/bin/python -m pip install --quiet --upgrade pip
	$(OLDEST)/bin/python -m pip install --quiet -c $(OLDEST_CONSTRAINTS) -e '.[all]'
	$(OLDEST)/bin/python -c "import tensorflow as tf, keras, jax; print('oldest stack: tensorflow', tf.__version__, 'keras', keras.__version__, 'jax', jax.__version__)"
	touch $(OLDEST_STAMP)

test-oldest: $(OLDEST_STAMP)
	$(call suites,$(OLDEST)/bin)

# The comparison study's quick grid (about a minute on 2 CPU cores): prints the verdicts and the table,
# then exports the best run's model to demo-out/export (SavedModel + TFLite, verified).
demo: $(STAMP)
	$(BIN)/keras-norms demo

# Speed and memory against keras.layers, PyTorch (when installed: pip install -e '.[bench]') and the
# memory floor, on JAX too, and whole-model steps; writes BENCHMARKS.md and BENCHMARKS.json (about 8 minutes
# on 2 CPU cores).
# BENCH_ARGS=--quick for a short run; python -m benchmarks --help for the options.
bench: $(STAMP)
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

# The site checked in headless Chromium (docs/_check/browser.py; not part of `make test`): it builds
# the site and serves it on localhost; every page loads without a console error or a failed request,
# its images load, its math is typeset by KaTeX, and the nav and the search find a layer by name.
# Playwright from setup.cfg's docs-check extra; the browser is Debian's chromium, installed here when
# it is missing and make runs as root (Playwright's own browser download is not used).
DOCS_CHECK_STAMP := $(VENV)/.installed-docs-check
CHROMIUM ?= /usr/bin/chromium

.PHONY: docs-check

$(DOCS_CHECK_STAMP): $(STAMP) setup.cfg
	$(BIN)/python -m pip install --quiet -e '.[docs-check]'
	touch $(DOCS_CHECK_STAMP)

docs-check: $(DOCS_CHECK_STAMP)
	@test -x $(CHROMIUM) || if [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; \
	else echo "make docs-check needs Chromium at $(CHROMIUM): apt-get install chromium as root" \
		"(Debian), or CHROMIUM=/path/to/chromium" >&2; exit 1; fi
	$(BIN)/python docs/_check/browser.py --chromium $(CHROMIUM)

# The source archive and the wheel into dist/ (the wheel built from the unpacked source archive, as
# pip would), then twine's check of both (the metadata, and README.md as PyPI renders it).
# tests/test_dist.py checks what the wheel holds and that it installs and runs outside this tree.
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --no-isolation --outdir dist .
	$(BIN)/python -m twine check --strict dist/*

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(OLDEST) build dist site *.egg-info .pytest_cache .hypothesis
