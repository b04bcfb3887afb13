"""The images the components run in, pinned to the package version (never `:latest`).

One image pair serves every pipeline: `images/Dockerfile` builds CPU_IMAGE and
`images/Dockerfile.cuda` builds GPU_IMAGE, each installing the project (pipekit and every
system) at IMAGE_VERSION; a test checks the three agree with `pyproject.toml`.
"""

REGISTRY = "ghcr.io/lab-pipelines"
IMAGE_VERSION = "0.1.0"
CPU_IMAGE = f"{REGISTRY}/pipelines:{IMAGE_VERSION}"
GPU_IMAGE = f"{REGISTRY}/pipelines:{IMAGE_VERSION}-cuda"
