# Two entry points, both self-contained on a fresh machine:
#   make demo   -> set up .venv and run the demo on built-in synthetic data
#   make test   -> set up .venv and run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.xhmm-installed

.PHONY: test demo bench clean

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

test: $(STAMP)
	@echo "=== matrix cell 1/4: use_memmap=False lazy_expand=True (whole suite) ==="
	$(PY) -m pytest $(PYTEST_ARGS)
	@echo "=== matrix cell 2/4: use_memmap=True lazy_expand=True ==="
	$(PY) -m pytest -q $(MATRIX_TESTS) --xhmm-memmap
	@echo "=== matrix cell 3/4: use_memmap=False lazy_expand=False ==="
	$(PY) -m pytest -q $(MATRIX_TESTS) --xhmm-eager
	@echo "=== matrix cell 4/4: use_memmap=True lazy_expand=False ==="
	$(PY) -m pytest -q $(MATRIX_TESTS) --xhmm-memmap --xhmm-eager

demo: $(STAMP)
	$(PY) -m xhmm demo $(DEMO_ARGS)

bench: $(STAMP)
	$(PY) -m xhmm bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) demo-output .pytest_cache
