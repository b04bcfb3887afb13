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

from pipekit.atomic import replacing_path
from pipekit.device import amp_enabled, autocast, resolve_device
from pipekit.errors import ConfigError, InputDataError
from pipekit.fingerprint import content_digest
from pipekit.uri import is_local, local_path

log = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
SHARD_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
DIGESTS = ".esm2pairs-weights.json"  # beside the weights: each file's SHA-256, size, mtime
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


def weight_files(folder: Path) -> list[Path]:
    """The files holding the model's weights: one file, or every shard a sharded checkpoint's
    index names (how the 3B and 15B models ship)."""
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return [folder / name]
    for name in SHARD_INDEXES:
        index = folder / name
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (ValueError, KeyError, AttributeError) as exc:
                raise InputDataError(f"{index}: not a checkpoint index ({exc})") from None
            missing = [s for s in shards if not (folder / s).is_file()]
            if missing or not shards:
                raise InputDataError(f"{index} names shard(s) the folder lacks: {missing}")
            return [folder / s for s in shards]
    names = " or ".join(WEIGHT_FILES + SHARD_INDEXES)
    raise InputDataError(f"model folder {folder} has no {names}")


def _digest_store(folder: Path) -> Path:
    """Where a folder's weight digests are kept: beside the weights when the folder is
    writable, else (a read-only mount, another user's hub cache) in ESM2PAIRS_MODEL_CACHE."""
    if os.access(folder, os.W_OK):
        return folder / DIGESTS
    root = Path(os.environ.get(ENV_MODEL_CACHE) or Path(tempfile.gettempdir()) / "esm2pairs")
    root.mkdir(parents=True, exist_ok=True)
    return root / f"{hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]}.json"


def weight_digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every weight file, by name. Each file is streamed once and its digest
    kept with its size and modification time; a later run reuses it while both are unchanged
    (a multi-GB model is not read twice per run), and reads the file again when either
    differs (a fine-tuned model saved over the old one)."""
    store = _digest_store(folder)
    try:
        kept = json.loads(store.read_text())
    except (OSError, ValueError):
        kept = {}
    out: dict[str, str] = {}
    fresh = {}
    for path in weight_files(folder):
        st = path.stat()
        seen = kept.get(path.name, {})
        if seen.get("size") == st.st_size and seen.get("mtime_ns") == st.st_mtime_ns:
            digest = seen["sha256"]
        else:
            log.info("hashing %s (%.0f MB, once per version of the file)", path, st.st_size / 1e6)
            digest = content_digest(str(path))["sha256"]
        out[path.name] = digest
        fresh[path.name] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
    if fresh != kept:
        try:
            with replacing_path(str(store)) as tmp:
                Path(tmp).write_text(json.dumps(fresh, indent=1))
        except OSError as exc:  # the digests are then computed again next time
            log.warning("cannot keep the weight digests at %s: %s", store, exc)
    return out


def model_signature(folder: Path, pooling: str, layer: str | int, max_residues: int) -> str:
    """What makes an embedding: the model (its config and the SHA-256 of every weight file,
    wherever the folder lives), the pooling, the layer and the truncation length. Equal
    signatures mean equal embeddings, so a cache made with another one is refused, not
    mixed."""
    digests = weight_digests(folder)
    config = json.loads((folder / "config.json").read_text())
    for volatile in ("_name_or_path", "transformers_version", "torch_dtype", "dtype"):
        config.pop(volatile, None)
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    h.update(json.dumps(sorted(digests.values())).encode())  # not names: shard names vary
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
        # attention pooling needs the attention weights, which only the eager
        # implementation computes (the fused kernels never form them)
        extra: dict[str, Any] = {"attn_implementation": "eager"} if pooling == "attention" else {}
        self.model = EsmModel.from_pretrained(str(folder), add_pooling_layer=False, **extra)
        self.model.to(self.device).eval()  # type: ignore[arg-type]
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
        self._cls_attention: torch.Tensor | None = None
        if pooling == "attention":
            # the layer that made the pooled hidden states (the first one for layer 0, the
            # embeddings); only the CLS token's row is kept, not the (B, H, T, T) weights
            block = self.model.encoder.layer[max(self.layer, 1) - 1].attention.self
            block.register_forward_hook(self._keep_cls_attention)

    def _keep_cls_attention(self, _module: Any, _inputs: Any, output: Any) -> None:
        self._cls_attention = output[1][:, :, 0, :].float().mean(1)  # (B, T), heads averaged

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
            if self.pooling in ("mean", "attention"):
                w = residues.float()
                if self.pooling == "attention":
                    assert self._cls_attention is not None
                    w = w * self._cls_attention  # how much CLS attends to each residue
                w = w.unsqueeze(-1)
                pooled = (hidden * w).sum(1) / w.sum(1).clamp_min(1e-12)
            else:
                pooled = hidden.masked_fill(~residues.unsqueeze(-1), float("-inf")).amax(1)
        return pooled.cpu().numpy().astype(np.float32)

    def describe(self) -> dict[str, Any]:
        return {"layers": self.model.config.num_hidden_layers, "dim": self.dim}
