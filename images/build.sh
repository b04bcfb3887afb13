#!/usr/bin/env bash
# `make images`: the CPU image from images/Dockerfile, tagged as the components name it, on
# any machine with Docker. Where the production base cannot be pulled (no registry), it
# builds on a base made from Debian packages (images/base.sh); where this machine's pip has
# the torch wheel locally (pip's find-links), the build takes it from there, served on
# loopback for the build's duration, else from PyTorch's CPU index; where pip trusts an
# extra CA bundle (a proxy in front of PyPI), the build's pip trusts it too.
#   images/build.sh [cpu|cuda]     env: BASE (base image), IMAGE (tag), WHEELS_PORT
set -euo pipefail
cd "$(dirname "$0")/.."

kind=${1:-cpu}
case "$kind" in
cpu) dockerfile=images/Dockerfile suffix="" ;;
cuda) dockerfile=images/Dockerfile.cuda suffix="-cuda" ;;
*) echo "images/build.sh: cpu or cuda, not '$kind'" >&2; exit 2 ;;
esac

if ! docker info >/dev/null 2>&1; then
    echo "images/build.sh: no Docker daemon answers (start dockerd, or see docs/platform.md: images)" >&2
    exit 1
fi

py=${PYTHON:-python3}
version=$($py -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
torch_version=$(sed -n 's/^ARG TORCH_VERSION=//p' "$dockerfile")
variant=$(sed -n 's/^ARG TORCH_VARIANT=//p' "$dockerfile")
tag=${IMAGE:-ghcr.io/lab-pipelines/pipelines:${version}${suffix}}
production_base=$(sed -n 's/^ARG BASE=//p' "$dockerfile")

base=${BASE:-}
if [ -z "$base" ]; then
    if docker image inspect "$production_base" >/dev/null 2>&1 \
        || docker pull -q "$production_base" >/dev/null 2>&1; then
        base=$production_base
    elif [ "$kind" = cpu ]; then
        base=lab-pipelines/base:bookworm-py311
        echo "$production_base cannot be pulled here: building on $base (Debian packages)"
        images/base.sh "$base"
    else
        echo "images/build.sh: $production_base cannot be pulled here, and the CUDA image has" \
            "no stand-in base (docs/platform.md: images)" >&2
        exit 1
    fi
fi

# pip's CA bundle, for the build's pip only (install.sh)
rm -f images/build-ca.pem
ca=${PIP_CERT:-$($py -m pip config get global.cert 2>/dev/null || true)}
if [ -n "$ca" ] && [ -s "$ca" ]; then
    cp "$ca" images/build-ca.pem
fi

# a local torch wheel for the image's Python (3.11) where pip's find-links has one
find_links=""
wheel=""
links="${PIP_FIND_LINKS:-} $($py -m pip config get global.find-links 2>/dev/null || true)"
for dir in $links; do
    dir=${dir#file://}
    [ -d "$dir" ] || continue
    wheel=$(ls "$dir"/torch-"$torch_version"+"$variant"-cp311-cp311-*_"$(uname -m)".whl 2>/dev/null | head -1 || true)
    [ -n "$wheel" ] && break
done
server=""
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null || true
    rm -f images/build-ca.pem
    [ -n "${serve_dir:-}" ] && rm -rf "$serve_dir"
}
trap cleanup EXIT
if [ -n "$wheel" ]; then
    # a fixed port keeps the build argument, and so the cached torch layer, the same
    port=${WHEELS_PORT:-38111}
    serve_dir=$(mktemp -d)
    ln -s "$wheel" "$serve_dir/"
    $py -m http.server --bind 127.0.0.1 --directory "$serve_dir" "$port" >/dev/null 2>&1 &
    server=$!
    for _ in $(seq 50); do
        $py -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/')" \
            2>/dev/null && break
        sleep 0.1
    done
    find_links="http://127.0.0.1:$port/"
    echo "torch from the local wheel $(basename "$wheel")"
fi

# the classic builder where BuildKit's buildx plugin is missing (Debian's docker.io)
docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0

start=$(date +%s)
docker build --network host -f "$dockerfile" \
    --build-arg BASE="$base" \
    --build-arg PIPELINES_VERSION="$version" \
    --build-arg TORCH_FIND_LINKS="$find_links" \
    -t "$tag" .
took=$(($(date +%s) - start))
size=$(docker image inspect -f '{{.Size}}' "$tag" | numfmt --to=iec)
echo "built $tag on $base in ${took} s; image size $size"
