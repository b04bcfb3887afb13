"""ESM-2 through `transformers`: the model from a hub name, a folder, or a folder's URI (a
lab's mirror of `facebook/esm2_t33_650M_UR50D` in object storage); length-sorted batches
under a token budget; pooled per-sequence embeddings from the chosen layer."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipekit.device import amp_enabled, autocast, resolve_device
from pipekit.errors import ConfigError, InputDataError
from pipekit.uri import is_local, local_path

log = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
ENV_MODEL_CACHE = "ESM2PAIRS_MODEL_CACHE"  # where models read from a URI are kept locally


def _quiet_transformers() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def resolve_model_dir(model_ckpt: str) -> Path:
    """A local folder holding the model: the folder itself, a copy of a URI's folder (kept
    under ESM2PAIRS_MODEL_CACHE, reused by later runs), or the hub's download."""
    if is_local(model_ckpt) and Path(local_path(model_ckpt)).is_dir():
        return Path(local_path(model_ckpt))
    if "://" in model_ckpt:
        from fsspec.core import url_to_fs

        fs, path = url_to_fs(model_ckpt)
        if not fs.isdir(path):
            raise InputDataError(f"embeddings.model_ckpt: no model folder at {model_ckpt}")
        root = Path(os.environ.get(ENV_MODEL_CACHE) or Path(tempfile.gettempdir()) / "esm2pairs")
        root.mkdir(parents=True, exist_ok=True)
        dest = root / hashlib.sha256(model_ckpt.encode()).hexdigest()[:16]
        if not (dest / "config.json").is_file():
            tmp = Path(tempfile.mkdtemp(dir=root))  # whole or not at all: renamed when copied
            fs.get(path.rstrip("/") + "/", str(tmp) + "/", recursive=True)
            try:
                tmp.rename(dest)
            except OSError:  # another process put its copy there first
                shutil.rmtree(tmp, ignore_errors=True)
        return dest
    if model_ckpt.startswith((".", "/")):
        raise InputDataError(f"embeddings.model_ckpt: no model folder at {model_ckpt}")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model_ckpt))
    except Exception as exc:  # offline, unknown name, no access
        raise InputDataError(
            f"embeddings.model_ckpt {model_ckpt!r}: cannot fetch it from the hub ({exc}); "
            "on a cluster without internet, point it at a mirrored model folder (a URI)"
        ) from None


def model_signature(folder: Path, pooling: str, layer: str | int, max_residues: int) -> str:
    """What makes an embedding: the model (its config and weights, wherever the folder
    lives), the pooling, the layer and the truncation length. Equal signatures mean equal
    embeddings, so a cache made with another one is refused, not mixed."""
    weights = next((folder / n for n in WEIGHT_FILES if (folder / n).is_file()), None)
    if weights is None:
        raise InputDataError(f"model folder {folder} has no {' or '.join(WEIGHT_FILES)}")
    config = json.loads((folder / "config.json").read_text())
    for volatile in ("_name_or_path", "transformers_version", "torch_dtype", "dtype"):
        config.pop(volatile, None)
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    h.update(str(weights.stat().st_size).encode())
    with open(weights, "rb") as fh:  # the header (tensor table) and the first weights
        h.update(fh.read(1 << 20))
    h.update(f"|{pooling}|{layer}|{max_residues}".encode())
    return h.hexdigest()[:16]


def length_batches(lengths: Sequence[int], batch_size: int, max_tokens: int) -> Iterator[list[int]]:
    """Indices in batches of similar length, longest first (an out-of-memory error shows at
    once), each within `batch_size` sequences and `max_tokens` padded tokens (+2 for the
    CLS and EOS tokens)."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    batch: list[int] = []
    width = 0
    for i in order.tolist():
        w = max(width, int(lengths[i]) + 2)
        if batch and (len(batch) + 1 > batch_size or w * (len(batch) + 1) > max_tokens):
            yield batch
            batch, w = [], int(lengths[i]) + 2
        batch.append(i)
        width = w
    if batch:
        yield batch


class Embedder:
    """One ESM-2 model on one device; `embed` returns float32 (B, D) pooled embeddings."""

    def __init__(
        self,
        folder: Path,
        pooling: str,
        layer: str | int,
        max_residues: int,
        device: str = "auto",
        mixed_precision: bool = True,
    ) -> None:
        from transformers import AutoTokenizer, EsmModel

        _quiet_transformers()
        self.device = resolve_device(device)
        self.amp = amp_enabled(self.device, mixed_precision)
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.model = EsmModel.from_pretrained(str(folder), add_pooling_layer=False)
        self.model.to(self.device).eval()
        self.pooling = pooling
        self.max_residues = max_residues
        n_layers = self.model.config.num_hidden_layers
        index = {"last": n_layers, "second_last": n_layers - 1}.get(str(layer), layer)
        if not isinstance(index, int) or not 0 <= index <= n_layers:
            raise ConfigError(
                f"config key 'embeddings.layer': {layer!r} is not a layer of this model "
                f"(0..{n_layers}, last or second_last)"
            )
        self.layer = index
        self.dim = int(self.model.config.hidden_size)
        self.calls = 0  # forward passes (a fully cached re-run makes none)
        special = [self.tokenizer.cls_token_id, self.tokenizer.eos_token_id]
        self._special = torch.tensor([t for t in special if t is not None], device=self.device)

    @torch.inference_mode()
    def embed(self, seqs: Sequence[str]) -> np.ndarray:
        enc = self.tokenizer(
            list(seqs),
            padding=True,
            truncation=True,
            max_length=self.max_residues + 2,
            return_tensors="pt",
        )
        ids = enc["input_ids"].to(self.device)  # (B, T)
        mask = enc["attention_mask"].to(self.device)
        self.calls += 1
        with autocast(self.device, self.amp):
            out = self.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        hidden = out.hidden_states[self.layer].float()  # (B, T, D)
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            residues = mask.bool() & ~torch.isin(ids, self._special)  # (B, T)
            if self.pooling == "mean":
                w = residues.unsqueeze(-1).float()
                pooled = (hidden * w).sum(1) / w.sum(1).clamp_min(1.0)
            else:
                pooled = hidden.masked_fill(~residues.unsqueeze(-1), float("-inf")).amax(1)
        return pooled.cpu().numpy().astype(np.float32)

    def describe(self) -> dict[str, Any]:
        return {"layers": self.model.config.num_hidden_layers, "dim": self.dim}
