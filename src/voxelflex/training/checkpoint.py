"""A VoxelFlex model rebuilt from its checkpoint (written by `pipekit.checkpoint`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pipekit.checkpoint import load_checkpoint
from pipekit.errors import InputDataError
from voxelflex.data.temperature import TemperatureScaler
from voxelflex.models import create_model


@dataclass
class LoadedModel:
    model: nn.Module
    scaler: TemperatureScaler
    architecture: str
    checkpoint: dict[str, Any]


def load_model(uri: str, device: torch.device) -> LoadedModel:
    """Rebuild the model from a checkpoint's own config; ready for inference on `device`."""
    hint = "run train first, or name one with --model"
    ckpt = load_checkpoint(uri, map_location=device, hint=hint)
    try:
        arch = ckpt["model_config"]["architecture"]
        hparams = {k: v for k, v in ckpt["model_config"].items() if k != "architecture"}
        model = create_model(arch, **hparams)
        model.load_state_dict(ckpt["model_state"])
        scaler = TemperatureScaler(**ckpt["temp_scaling"])
    except KeyError as exc:
        raise InputDataError(f"checkpoint {uri} lacks {exc}; is it a VoxelFlex model?") from None
    model.to(device).eval()
    return LoadedModel(model, scaler, arch, ckpt)
