# mfpde: `make run` solves the embedded default, `make test` runs the test suite.
# Both create .venv on first use and install mfpde with the exact pins of constraints.txt.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.mfpde-installed
# make bench: the optional bench extra (torch==2.13.0, the PyTorch baselines of benchmarks/), own stamp
BENCH_STAMP = $(VENV)/.mfpde-bench-installed
PYTEST_ARGS ?= -n 2
# two pytest workers on two cores: one Numba and one BLAS thread each
TEST_ENV ?= NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1

# make fuzz: every hypothesis test with a fresh random seed at the larger budget of tests/fuzzing.py
# (20 000 mutated configurations, 3 000 command lines, 10 000 API calls, ...); run it before each stop.
# Reproduce a failure with the seed it prints: make fuzz FUZZ_SEED=<seed>
ifndef FUZZ_SEED
FUZZ_SEED := $(shell od -An -N4 -tu4 /dev/urandom | tr -d ' ')
endif
FUZZ_SCALE ?= 1

.PHONY: run test test-fast fuzz bench clean

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

fuzz: $(STAMP)
	@echo "make fuzz: hypothesis seed $(FUZZ_SEED), budget scale $(FUZZ_SCALE) (reproduce: make fuzz FUZZ_SEED=$(FUZZ_SEED))"
	$(TEST_ENV) MFPDE_FUZZ=1 MFPDE_FUZZ_SCALE=$(FUZZ_SCALE) $(PY) -m pytest $(PYTEST_ARGS) -m hypothesis \
		--hypothesis-seed=$(FUZZ_SEED) --hypothesis-show-statistics -q

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q -c constraints.txt --no-build-isolation -e ".[bench]"
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis
