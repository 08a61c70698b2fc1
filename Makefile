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

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) -m xhmm demo $(DEMO_ARGS)

bench: $(STAMP)
	$(PY) -m xhmm bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) demo-output .pytest_cache
