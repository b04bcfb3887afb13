"""Promoted models in the Kubeflow Model Registry, through its own client (`model-registry`).

A registered model (`voxelflex`) gets one version per promotion, named by the pipeline run
that produced it (else the promotion time), whose model artifact points at the model's URI;
the headline metrics, the run and the promotion time are the version's custom properties.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlparse

from voxelflex.errors import VoxelFlexError

log = logging.getLogger(__name__)

MODEL_NAME = "voxelflex"
AUTHOR = "voxelflex evaluation gate"


def version_properties(entry: dict[str, Any]) -> dict[str, Any]:
    """What a version records besides its URI: headline metrics (floats) and provenance."""
    model = entry["metrics"]["model"]
    props: dict[str, Any] = {
        f"pooled_{k}": float(v) for k, v in model.get("pooled", {}).items() if v is not None
    }
    for temp, m in model.get("per_temperature", {}).items():
        if m.get("mean_per_domain_pearson") is not None:
            props[f"per_domain_r_{temp}K"] = float(m["mean_per_domain_pearson"])
    props["run_id"] = str(entry.get("run_id") or "")
    props["promoted_at"] = str(entry["promoted_at"])
    return props


def register(url: str, entry: dict[str, Any], name: str = MODEL_NAME) -> str:
    """Register `entry` (a promotion record entry) as a new version of `name`; returns the
    version name. A version that exists already (a retried gate) is left as it is."""
    import torch
    from model_registry import ModelRegistry
    from model_registry.exceptions import StoreError

    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise VoxelFlexError(f"model registry URL must be http(s)://host[:port], not {url!r}")
    secure = parsed.scheme == "https"
    port = parsed.port or (443 if secure else 80)
    version = str(entry.get("run_id") or entry["promoted_at"])
    try:
        registry = ModelRegistry(
            f"{parsed.scheme}://{parsed.hostname}", port, author=AUTHOR, is_secure=secure
        )
        registry.register_model(
            name,
            str(entry["model_uri"]),
            model_format_name="pytorch",
            model_format_version=torch.__version__.split("+")[0],
            version=version,
            version_description="promoted by the VoxelFlex evaluation gate",
            metadata=version_properties(entry),
        )
    except StoreError as exc:
        if "already exists" not in str(exc):
            raise VoxelFlexError(f"model registry at {url}: {exc}") from None
        log.info("model registry: %s version %s is registered already", name, version)
        return version
    except Exception as exc:  # the service down, refused, or answering in another dialect
        raise VoxelFlexError(
            f"could not register {name} version {version} in the model registry at {url}: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    log.info("model registry: %s version %s -> %s", name, version, entry["model_uri"])
    return version
