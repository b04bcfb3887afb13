#!/usr/bin/env bash
# The GPU kit in one command (bench/gpu_kit.py; on one GPU it ends within about 8 minutes):
# every system's demo trained with AMP on and off, samples/s, data wait, peak GPU memory,
# resume on the GPU and on-device unpacking. On a machine without CUDA it runs on the CPU
# and marks what needs CUDA as skipped.
#
# Python: $PYTHON, else .venv/bin/python, else python3 (a GPU image's own, holding torch).
# The project runs from this checkout (PYTHONPATH=src), so nothing is built. Packages the
# machine lacks install offline from wheels in .whl/: make them with bench/gpu_wheels.sh
# where pip reaches PyPI, and bring .whl/ along.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/gpu_kit_site .whl/*.whl
  export PYTHONPATH=/tmp/gpu_kit_site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
missing=$("$PY" - <<'PYEOF'
import importlib.util
need = ["torch", "numpy", "pandas", "pyarrow", "h5py", "fsspec", "yaml", "tqdm", "scipy",
        "matplotlib", "zarr", "hdf5plugin", "prometheus_client", "biotite", "transformers",
        "torchjd", "rdkit"]
print(" ".join(n for n in need if importlib.util.find_spec(n) is None))
PYEOF
)
if [ -n "$missing" ]; then
  echo "gpu.sh: $PY lacks: $missing (run bench/gpu_wheels.sh where pip reaches PyPI, bring .whl/)"
  exit 3
fi
exec "$PY" bench/gpu_kit.py "$@"
