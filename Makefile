# Two entry points, both self-contained on a fresh machine:
#   make demo   -> set up .venv and run the demo on built-in synthetic data
#   make test   -> set up .venv and run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.xhmm-installed

.PHONY: test test-min demo bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

# CI matrix: the whole suite with the default Config (RAM outputs, lazy
# results), then the numerics and xarray-layer tests again with memmap outputs,
# with eager results, and with both (flags defined in tests/conftest.py).
MATRIX_TESTS := tests/test_smoke.py tests/test_xarray_layer.py tests/test_netcdf.py \
	$(wildcard tests/test_golden.py tests/test_chunking.py)

# Cell 5 (`make test-min`) runs the numerics tests in .venv-min, built from
# .ci/min-versions.txt: the lowest versions pyproject.toml's ranges allow
# (JAX 0.4.30, numpy 1.26.0, xarray 2024.6.0, ...). MIN_CELL=0 leaves it out.
MIN_CELL ?= 1
CELLS := $(if $(filter 1,$(MIN_CELL)),5,4)

test: $(STAMP)
	@echo "=== matrix cell 1/$(CELLS): use_memmap=False lazy_expand=True (whole suite) ==="
	$(PY) -m pytest $(PYTEST_ARGS)
	@echo "=== matrix cell 2/$(CELLS): use_memmap=True lazy_expand=True ==="
	$(PY) -m pytest -q $(MATRIX_TESTS) --xhmm-memmap
	@echo "=== matrix cell 3/$(CELLS): use_memmap=False lazy_expand=False ==="
	$(PY) -m pytest -q $(MATRIX_TESTS) --xhmm-eager
	@echo "=== matrix cell 4/$(CELLS): use_memmap=True lazy_expand=False ==="
	$(PY) -m pytest -q $(MATRIX_TESTS) --xhmm-memmap --xhmm-eager
ifeq ($(MIN_CELL),1)
	@echo "=== matrix cell 5/5: minimum versions (.ci/min-versions.txt in $(MIN_VENV)) ==="
	$(MAKE) --no-print-directory test-min
endif

# The minimum-versions environment: rebuilt from scratch whenever the pins or
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

demo: $(STAMP)
	$(PY) -m xhmm demo $(DEMO_ARGS)

bench: $(STAMP)
	$(PY) -m xhmm bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(MIN_VENV) demo-output .pytest_cache
