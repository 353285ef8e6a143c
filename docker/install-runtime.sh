#!/bin/sh
# Install torch and the gradwire wheel from WHEEL_DIR, then check that the result works.
# The Dockerfile's runtime stage runs this; so do the tests, outside Docker.
#   TORCH_SPEC, TORCH_INDEX_URL, PYTHON: as in build-wheel.sh
set -eu
wheels=${1:?usage: install-runtime.sh WHEEL_DIR}
py=${PYTHON:-python3}
$py -m pip install --no-cache-dir ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} \
  "${TORCH_SPEC:-torch==2.13.0}"
$py -m pip install --no-cache-dir "$wheels"/gradwire-*.whl
# The native core loads, the backend registers, the launcher plans a run.
$py -m gradwire.cli info
$py -m gradwire.run --standalone --dry-run --nproc-per-node 2 train.py >/dev/null
