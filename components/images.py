"""The images the components run in, pinned to the package version (never `:latest`).

`images/Dockerfile` builds CPU_IMAGE and `images/Dockerfile.cuda` builds GPU_IMAGE, each
installing voxelflex at IMAGE_VERSION; a test checks the three agree with `pyproject.toml`.
"""

REGISTRY = "ghcr.io/voxelflex"
IMAGE_VERSION = "0.1.0"
CPU_IMAGE = f"{REGISTRY}/voxelflex:{IMAGE_VERSION}"
GPU_IMAGE = f"{REGISTRY}/voxelflex:{IMAGE_VERSION}-cuda"
