# mfpde: `make run` solves the embedded default, `make test` runs the test suite.
# Both create .venv on first use and install mfpde with the exact pins of constraints.txt.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.mfpde-installed
PYTEST_ARGS ?= -n 2
# two pytest workers on two cores: one Numba and one BLAS thread each
TEST_ENV ?= NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1

.PHONY: run test test-fast bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24"
	$(PY) -m pip install -q -c constraints.txt setuptools wheel
	$(PY) -m pip install -q -c constraints.txt --no-build-isolation -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	mkdir -p out
	$(VENV)/bin/mfpde solve -o out/default.nc

test: $(STAMP)
	$(TEST_ENV) $(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(TEST_ENV) $(PY) -m pytest $(PYTEST_ARGS) -m "not slow"

bench: $(STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis
