# Entry points, each self-contained on a fresh machine (README, "Quick start"):
#   make demo      .venv with xhmm and the plot extra; runs the demo on built-in
#                  synthetic data, writes demo-output/
#   make test      adds the test extra to .venv; the whole behaviour suite
#                  except tests marked slow, small hypothesis searches, test
#                  files spread over the cores with pytest-xdist
#                  (under 5 min on 2 cores)
#   make test-all  what CI runs (.ci/run): the test matrix below, slow tests and
#                  full hypothesis searches included (about 11 min on 2 cores,
#                  building .venv and .venv-min included)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_STAMP := $(VENV)/.xhmm-plot
TEST_STAMP := $(VENV)/.xhmm-test

.PHONY: test test-all test-min demo bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(DEMO_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[plot]"
	touch $@

# The test extra includes the plot extra, so a later `make demo` installs nothing.
$(TEST_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@ $(DEMO_STAMP)

# Test files are spread over the cores (pytest-xdist); a file stays on one
# worker, so its module fixtures are built once. PYTEST_ARGS="-n 0" runs
# everything in one process.
XDIST := -n auto --dist loadfile

test: $(TEST_STAMP)
	$(PY) -m pytest -m "not slow" $(XDIST) $(PYTEST_ARGS)

# The CI matrix, five cells: (1) the whole suite with the default Config (RAM
# outputs, lazy results), slow tests included, each hypothesis search with its
# full example count (XHMM_TEST_BUDGET=full, see tests/conftest.py); (2-4) the
# numerics and xarray-layer tests again with memmap outputs, with eager results,
# and with both (flags defined in tests/conftest.py); (5) `make test-min`.
MATRIX_TESTS := tests/test_smoke.py tests/test_xarray_layer.py tests/test_netcdf.py \
	tests/test_golden.py tests/test_chunking.py

test-all: $(TEST_STAMP)
	@echo "=== matrix cell 1/5: use_memmap=False lazy_expand=True (whole suite, slow tests, full budgets) ==="
	XHMM_TEST_BUDGET=full $(PY) -m pytest $(XDIST) $(PYTEST_ARGS)
	@echo "=== matrix cell 2/5: use_memmap=True lazy_expand=True ==="
	$(PY) -m pytest -q $(MATRIX_TESTS) --xhmm-memmap
	@echo "=== matrix cell 3/5: use_memmap=False lazy_expand=False ==="
	$(PY) -m pytest -q $(MATRIX_TESTS) --xhmm-eager
	@echo "=== matrix cell 4/5: use_memmap=True lazy_expand=False ==="
	$(PY) -m pytest -q $(MATRIX_TESTS) --xhmm-memmap --xhmm-eager
	@echo "=== matrix cell 5/5: minimum versions (.ci/min-versions.txt in $(MIN_VENV)) ==="
	$(MAKE) --no-print-directory test-min

# Cell 5: the numerics tests in .venv-min, built from .ci/min-versions.txt:
# the lowest versions pyproject.toml's ranges allow (JAX 0.4.30, numpy 1.26.0,
# xarray 2024.6.0, ...). Rebuilt from scratch whenever the pins or
# pyproject.toml change, so that nothing newer lingers in it.
MIN_VENV ?= .venv-min
MIN_PY := $(MIN_VENV)/bin/python
MIN_STAMP := $(MIN_VENV)/.xhmm-installed
MIN_TESTS := tests/test_golden.py tests/test_chunking.py tests/test_smoke.py \
	tests/test_xarray_layer.py tests/test_netcdf.py tests/test_sequences.py \
	tests/test_selections.py

$(MIN_STAMP): .ci/min-versions.txt pyproject.toml
	rm -rf $(MIN_VENV)
	$(PYTHON) -m venv $(MIN_VENV)
	$(MIN_PY) -m pip install --quiet -r .ci/min-versions.txt
	$(MIN_PY) -m pip install --quiet --no-deps -e .
	$(MIN_PY) -m pip check
	$(MIN_PY) .ci/check_min_versions.py
	touch $(MIN_STAMP)

test-min: $(MIN_STAMP)
	$(MIN_PY) -m pytest -q $(MIN_TESTS)

demo: $(DEMO_STAMP)
	$(PY) -m xhmm demo $(DEMO_ARGS)

bench: $(DEMO_STAMP)
	$(PY) -m xhmm bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(MIN_VENV) demo-output .pytest_cache
