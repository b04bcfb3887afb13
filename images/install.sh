#!/bin/sh
# The Python layer of both images (CPU and CUDA), in one script so the two cannot drift:
# a venv at /opt/venv with torch, then every dependency at the version images/constraints.txt
# pins, then the project itself. Three stages, three image layers: a source change rebuilds
# only the last one (seconds), a dependency change the last two, torch almost never.
#
#   install.sh torch     torch==$TORCH_VERSION+$TORCH_VARIANT: from $TORCH_FIND_LINKS when set
#                        (a wheel this machine's pip has locally, served for the build by
#                        images/build.sh), else from PyTorch's index for the variant
#   install.sh deps      pyproject's dependencies and its s3 and kfp extras, constrained
#   install.sh project   the project, without dependencies (all installed by now)
#
# A CA bundle staged at /tmp/build/build-ca.pem (images/build.sh does it where PyPI is reached
# through an inspecting proxy) is used by pip only; nothing at run time trusts it.
set -eu

stage=${1:?usage: install.sh torch|deps|project}
build=/tmp/build
if [ -s "$build/build-ca.pem" ]; then
    export PIP_CERT="$build/build-ca.pem"
fi

case "$stage" in
torch)
    # the venv, not the system Python: Debian's is externally managed (PEP 668)
    [ -x /opt/venv/bin/python ] || python3 -m venv /opt/venv
    pip install --quiet --upgrade pip
    want="torch==${TORCH_VERSION:?}+${TORCH_VARIANT:?}"
    if [ -n "${TORCH_FIND_LINKS:-}" ]; then
        # the local +variant wheel; its own dependencies come from PyPI
        pip install --quiet --find-links "$TORCH_FIND_LINKS" "$want"
    else
        pip install --quiet --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" \
            --extra-index-url https://pypi.org/simple "$want"
    fi
    ;;
deps)
    python - "$build/pyproject.toml" >"$build/requirements.txt" <<'EOF'
import sys
import tomllib

project = tomllib.load(open(sys.argv[1], "rb"))["project"]
extras = project["optional-dependencies"]
print("\n".join(project["dependencies"] + extras["s3"] + extras["kfp"]))
EOF
    pip install --quiet -c "$build/constraints.txt" -r "$build/requirements.txt"
    ;;
project)
    pip install --quiet --no-deps .
    # fail the build, not the first pipeline run, when something is missing
    python -c "import kfp, pipekit, voxelflex, esm2pairs, rheidae, belka, torch, rdkit, s3fs"
    test "$(python -c 'import pipekit; print(pipekit.__version__)')" = "${PIPELINES_VERSION:?}"
    ;;
*)
    echo "install.sh: unknown stage '$stage' (torch, deps or project)" >&2
    exit 2
    ;;
esac
