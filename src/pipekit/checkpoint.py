"""Checkpoints that load with `torch.load(..., weights_only=True)`: tensors and plain data
only, written whole or not at all."""

from __future__ import annotations

from typing import Any

import torch

from pipekit.atomic import replacing_uri
from pipekit.errors import InputDataError, not_found
from pipekit.uri import open_uri

FORMAT_VERSION = 1


def rng_state() -> dict[str, Any]:
    # Only torch draws at random in training (init, dropout, worker seeds); the loader's
    # shuffles come from generators seeded by (seed, epoch), so they need no saved state.
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(uri: str, payload: dict[str, Any]) -> None:
    """Whole or not at all (a unique temporary name, fsync, rename), so a kill never leaves
    half a file and two writers never share a temporary file."""
    with replacing_uri(uri, "wb") as fh:
        torch.save({"format_version": FORMAT_VERSION, **payload}, fh)


def load_checkpoint(
    uri: str, map_location: str | torch.device = "cpu", hint: str | None = None
) -> dict[str, Any]:
    """A checkpoint's payload; a missing one is one line naming it and `hint` (what makes
    it: "run train first")."""
    try:
        with open_uri(uri, "rb") as fh:
            return torch.load(fh, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise not_found(f"model checkpoint not found: {uri}", hint) from None
    except Exception as exc:  # a truncated or foreign file: say which
        raise InputDataError(f"cannot load model checkpoint {uri}: {exc}") from None
