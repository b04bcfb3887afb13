"""Which device a step runs on (its CPU threads sized to the container's CPU limit), and
whether it uses fp16 autocast there."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

from pipekit.cpus import use_cpu_limit
from pipekit.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    use_cpu_limit()  # every torch step resolves its device first: the place to size its threads
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"config key 'training.device': {name!r} requested but no CUDA GPU found")
    return device


def amp_enabled(device: torch.device, requested: bool) -> bool:
    # fp16 autocast pays off on CUDA (Turing and newer have tensor cores); on CPU it does not.
    return requested and device.type == "cuda"


def autocast(device: torch.device, amp: bool) -> AbstractContextManager:
    return torch.autocast(device.type, dtype=torch.float16) if amp else nullcontext()
