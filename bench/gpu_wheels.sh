#!/usr/bin/env bash
# Wheels for bench/gpu.sh on a GPU machine that cannot reach PyPI: the packages a CUDA image
# with PyTorch usually lacks, for its Python (default 3.12, x86-64 Linux), into .whl/ (kept
# out of git). Versions follow images/constraints.txt where it pins them.
set -euo pipefail
cd "$(dirname "$0")/.."
PYV=${PYV:-3.12}
PKGS=${PKGS:-"zarr numcodecs donfig crc32c hdf5plugin biotite biotraj torchjd rdkit"}
mkdir -p .whl
for pkg in $PKGS; do
  pin=$(grep -i "^${pkg}==" images/constraints.txt || true)
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYV" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d .whl "${pin:-$pkg}"
done
ls -la .whl
