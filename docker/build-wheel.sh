#!/bin/sh
# Build the gradwire wheel into OUT_DIR. The Dockerfile's build stage runs this; so do the
# tests (tests/test_launch_docker.py), outside Docker.
#   TORCH_SPEC       torch requirement the build compiles against (default torch==2.13.0)
#   TORCH_INDEX_URL  package index for torch, e.g. a CPU-only wheel index (default: PyPI)
#   PYTHON           interpreter to build with (default python3)
set -eu
out=${1:?usage: build-wheel.sh OUT_DIR}
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
# torch must be importable at build time: the torch adapter compiles against its headers.
$py -m pip install --no-cache-dir ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} \
  "${TORCH_SPEC:-torch==2.13.0}" numpy
$py -m pip install --no-cache-dir "scikit-build-core>=0.10" "pybind11>=2.12" ninja cmake
$py -m pip wheel --no-build-isolation --no-deps -w "$out" .
