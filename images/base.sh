#!/usr/bin/env bash
# A Debian bookworm base with Python 3.11, made from Debian's packages, for machines that
# reach Debian's mirror and PyPI but no image registry (the production base,
# python:3.11.11-slim-bookworm, cannot be pulled there). Needs root, debootstrap and Docker.
#   images/base.sh [NAME]        (default lab-pipelines/base:bookworm-py311)
# The Dockerfile builds on it unchanged: `--build-arg BASE=NAME` (images/build.sh does this).
set -euo pipefail

name=${1:-lab-pipelines/base:bookworm-py311}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if docker image inspect "$name" >/dev/null 2>&1; then
    echo "base image $name already made"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "images/base.sh: debootstrap needs root (run it with sudo)" >&2
    exit 1
fi
if ! command -v debootstrap >/dev/null; then
    echo "images/base.sh: debootstrap is missing (apt-get install -y debootstrap)" >&2
    exit 1
fi

rootfs=$(mktemp -d)
log=$(mktemp)
trap 'rm -rf "$rootfs" "$log"' EXIT
echo "debootstrap bookworm into $rootfs from $mirror"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$rootfs" "$mirror" >"$log" 2>&1 || {
    tail -20 "$log" >&2
    exit 1
}
# what a registry's slim image also leaves out: downloaded packages, package lists
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    - "$name" >/dev/null
echo "base image $name made ($(docker image inspect -f '{{.Size}}' "$name" | numfmt --to=iec) )"
