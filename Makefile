# Two commands do all the set-up on a fresh machine:  make demo  and  make test.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
SOURCES := $(shell find csrc python -name '*.cc' -o -name '*.h' -o -name '*.inc' -o -name '*.cu' -o -name '*.py') $(wildcard cmake/*) CMakeLists.txt pyproject.toml
TORCH_SPEC ?= torch==2.13.0
# With ccache installed, the builds of tests/test_install.py (the package built again in fresh
# directories) reuse this build's objects of the engine core.
CCACHE := $(if $(shell command -v ccache 2>/dev/null),CMAKE_CXX_COMPILER_LAUNCHER=ccache)

.PHONY: setup demo test lint format cuda-check bench frameworks clean

setup: $(VENV)/.gradwire-installed

# Re-run when this file changes, so existing environments get newly added packages.
$(VENV)/.deps-installed: Makefile
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first (the CPU wheel): the torch adapter is compiled against the torch installed
	# in the target environment, and the build fails without one (README: Install).
	$(PIP) install -q "$(TORCH_SPEC)" numpy
	$(PIP) install -q "scikit-build-core>=0.10" "pybind11>=2.12" ninja cmake pytest pytest-timeout expecttest ruff clang-format matplotlib
	# the compression experiments train on scikit-learn's bundled digits data set (no download)
	$(PIP) install -q scikit-learn
	# the launcher (python-hostlist, pyyaml) and its manifest tests (kubernetes-validate)
	$(PIP) install -q python-hostlist pyyaml kubernetes-validate
	# mpi4py builds against an installed MPI (Debian: openmpi-bin libopenmpi-dev); without one,
	# the MPI comparisons are skipped with that reason.
	$(PIP) install -q mpi4py || echo "mpi4py not installed: no MPI library found; MPI benchmarks will be skipped"
	# third-party trainers the framework tests run on gradwire (examples/frameworks; ~70 MB);
	# torch named again so that pip keeps the CPU wheel
	$(PIP) install -q "$(TORCH_SPEC)" "lightning==2.6.6" "accelerate==1.16.0"
	touch $@

$(VENV)/.gradwire-installed: $(VENV)/.deps-installed $(SOURCES)
	$(CCACHE) $(PIP) install -q --no-build-isolation --no-deps .
	touch $@

demo: setup
	$(PY) examples/demo.py

test: setup
	$(PY) -m pytest -q tests

lint: setup
	$(VENV)/bin/ruff check python tests examples bench
	$(VENV)/bin/ruff format --check python tests examples bench
	$(VENV)/bin/clang-format --dry-run --Werror $$(find csrc -name '*.cc' -o -name '*.h' -o -name '*.cu')

format: setup
	$(VENV)/bin/ruff format python tests examples bench
	$(VENV)/bin/ruff check --fix python tests examples bench
	$(VENV)/bin/clang-format -i $$(find csrc -name '*.cc' -o -name '*.h' -o -name '*.cu')

# Compiles the CUDA kernels when nvcc exists (nothing CUDA runs on a machine without a GPU).
cuda-check: setup
	@if command -v nvcc >/dev/null 2>&1; then \
	  cmake -S . -B build/cuda -G Ninja -DGRADWIRE_CUDA=ON -DCMAKE_MAKE_PROGRAM=$(abspath $(VENV))/bin/ninja >/dev/null && \
	  cmake --build build/cuda --target gradwire_cuda && echo "cuda-check: CUDA kernels compiled"; \
	else echo "cuda-check: nvcc not found, skipped"; fi

# The comparison the "fast collectives" issue asks for (gradwire vs gloo vs OpenMPI, 2 ranks and
# 4 oversubscribed, 4 B-256 MB): 20-30 minutes on 2 cores. See docs/benchmarks.md.
bench: setup
	bench/compare --preset targets --name $${NAME:-targets-$$(date -u +%Y%m%d)}

# Lightning (DDPStrategy, ModelParallelStrategy) and Accelerate on gloo and on gradwire, 2 CPU
# processes each: final weights compared bit for bit. Results: docs/frameworks.md.
frameworks: setup
	$(PY) examples/frameworks/compare.py --out bench/results/frameworks-$$(date -u +%Y%m%d)

# torch's own distributed test suite (DistributedTest from the torch wheel) on gloo and gradwire
# at 2 and 3 ranks, side by side: about 15 minutes on 2 cores; tables in
# bench/results/torch-suite/ (docs/torch-suite.md). TORCH_SUITE_ARGS=--resume continues an
# interrupted run; --world-sizes 2, --tests NAME,... narrow it.
.PHONY: torch-suite
torch-suite: setup $(VENV)/.torch-suite-deps
	$(PY) tests/torch_suite/run.py $(TORCH_SUITE_ARGS)

# torch's test helpers import expecttest, which the torch wheel does not depend on.
$(VENV)/.torch-suite-deps: $(VENV)/.deps-installed
	$(PIP) install -q expecttest
	touch $@

clean:
	rm -rf build $(VENV)
