"""Promoted models in the Kubeflow Model Registry, through its own client (`model-registry`).

A registered model gets one version per promotion, named by the pipeline run that produced it
(else the promotion time), whose model artifact points at the model's URI; the system's
headline metrics and provenance are the version's custom properties.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlparse

from pipekit.errors import PipelineError

log = logging.getLogger(__name__)


def register(
    url: str, name: str, entry: dict[str, Any], properties: dict[str, Any], author: str
) -> str:
    """Register `entry` (a promotion record entry: `model_uri`, `run_id`, `promoted_at`) as a
    new version of `name` with `properties`; returns the version name. A version that exists
    already (a retried gate) is left as it is."""
    import torch
    from model_registry import ModelRegistry
    from model_registry.exceptions import StoreError

    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise PipelineError(f"model registry URL must be http(s)://host[:port], not {url!r}")
    secure = parsed.scheme == "https"
    port = parsed.port or (443 if secure else 80)
    version = str(entry.get("run_id") or entry["promoted_at"])
    try:
        registry = ModelRegistry(
            f"{parsed.scheme}://{parsed.hostname}", port, author=author, is_secure=secure
        )
        registry.register_model(
            name,
            str(entry["model_uri"]),
            model_format_name="pytorch",
            model_format_version=torch.__version__.split("+")[0],
            version=version,
            version_description=f"promoted by the {author}",
            metadata=properties,
        )
    except StoreError as exc:
        if "already exists" not in str(exc):
            raise PipelineError(f"model registry at {url}: {exc}") from None
        log.info("model registry: %s version %s is registered already", name, version)
        return version
    except Exception as exc:  # the service down, refused, or answering in another dialect
        raise PipelineError(
            f"could not register {name} version {version} in the model registry at {url}: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    log.info("model registry: %s version %s -> %s", name, version, entry["model_uri"])
    return version
