"""train_model --mode mlm|fps|clf: the encoder with one head, early stopping, checkpoints.

MLM and FPS learn from every molecule outside validation (test molecules too: they need no
label); CLF from the labelled training molecules. `model_path` starts the encoder (and the
head, for the same mode) from an earlier model: MLM -> FPS -> CLF. `resume` continues from
`latest_model.pt` (or `model_path`), at `initial_epoch` when given. Under `torchrun` it
trains data-parallel; AMP (fp16) on CUDA.

Outputs in `<working>/models/<mode>/`: `best_model.pt` (lowest validation loss),
`latest_model.pt` (everything a resume needs), `training_history.json`,
`resolved_config.yaml`."""

from __future__ import annotations

import json
import logging
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.distributed.algorithms.join import Join
from torch.nn.parallel import DistributedDataParallel

from belka.config import SCHEMA, Config
from belka.data.dataset import StoreStream, buffer_rows, make_loader
from belka.data.store import Store
from belka.metrics import masked_scores, mean_ap
from belka.models import BelkaSpec, create_model
from belka.objectives import loss_and_output
from belka.paths import BEST_MODEL, HISTORY, LATEST_MODEL, Layout
from belka.steps.generate_parquet import SUBSET_TEST, SUBSET_TRAIN, SUBSET_VAL
from belka.tokenizer import Vocab
from pipekit.atomic import replacing_uri
from pipekit.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from pipekit.device import amp_enabled, autocast
from pipekit.distributed import Dist, all_gathered, distributed, gather_arrays
from pipekit.errors import ConfigError, InputDataError, PipelineError
from pipekit.faults import crashpoint
from pipekit.monitoring import StepMetrics, run_id, step_metrics
from pipekit.progress import progress
from pipekit.runlock import run_lock
from pipekit.timing import DataWait, peak_memory_gib, reset_peak_memory
from pipekit.uri import apply_storage_options, join_uri, uri_exists

log = logging.getLogger(__name__)
TRAIN_SUBSETS = {
    "mlm": (SUBSET_TRAIN, SUBSET_TEST),
    "fps": (SUBSET_TRAIN, SUBSET_TEST),
    "clf": (SUBSET_TRAIN,),
}


@dataclass(frozen=True)
class TrainResult:
    mode: str
    model_dir: str
    best_epoch: int
    best_val_loss: float
    epochs_run: int
    samples_per_s: float
    val_metrics: dict[str, Any] = field(default_factory=dict)


def model_spec(cfg: Config, vocab: Vocab, store: Store, mode: str) -> BelkaSpec:
    m = cfg.model
    size = m.vocab_size or len(vocab)
    if size < len(vocab):
        raise ConfigError(
            f"config key 'model.vocab_size': {size} is smaller than vocab.txt ({len(vocab)} "
            "tokens); set it to null"
        )
    return BelkaSpec(
        vocab_size=size,
        max_length=m.max_length,
        depth=m.depth,
        num_heads=m.num_heads,
        num_layers=m.num_layers,
        ff_dim=m.ff_dim,
        dropout_rate=m.dropout_rate,
        activation=m.activation,
        mode=mode,
        ecfp_bits=int(store.manifest["ecfp_bits"]),
    )


def start_from(model: torch.nn.Module, spec: BelkaSpec, uri: str) -> int:
    """Load an earlier model's encoder (and head, same mode); returns its epoch."""
    ckpt = load_checkpoint(uri)
    theirs = BelkaSpec(**ckpt["model_spec"])
    if theirs.encoder_shape() != spec.encoder_shape():
        raise InputDataError(
            f"{uri}: its encoder {theirs.encoder_shape()} does not fit this model's "
            f"{spec.encoder_shape()}"
        )
    state = ckpt["model_state"]
    if theirs.mode != spec.mode or theirs.ecfp_bits != spec.ecfp_bits:
        state = {k: v for k, v in state.items() if k.startswith("encoder.")}
    missing, _ = model.load_state_dict(state, strict=False)
    log.info("started from %s (%s model, epoch %d)", uri, theirs.mode, ckpt.get("epoch", 0))
    if any(k.startswith("encoder.") for k in missing):
        raise InputDataError(f"{uri}: encoder weights missing: {missing[:3]}")
    return int(ckpt.get("epoch", 0))


@torch.inference_mode()
def validate(model, stream: StoreStream, cfg: Config, mode: str, device, amp: bool, d: Dist):
    """Validation loss (mean over molecules, all ranks) and, for CLF, masked AP/AUC."""
    model.eval()
    gen = torch.Generator(device=device).manual_seed(cfg.system.seed)  # same masks each epoch
    loss_sum, n, labels, scores = 0.0, 0, [], []
    limit = cfg.training.validation_steps
    for i, batch in enumerate(make_loader(stream, 0)):
        if limit is not None and i >= limit:
            break
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast(device, amp):
            loss, logits = loss_and_output(
                model,
                mode,
                batch,
                masking_rate=cfg.training.masking_rate,
                ecfp_bits=stream.store.manifest["ecfp_bits"],
                generator=gen,
            )
        b = len(batch["mol_id"])
        loss_sum += float(loss) * b
        n += b
        if logits is not None:
            labels.append(batch["labels"].cpu().numpy())
            scores.append(torch.sigmoid(logits).float().cpu().numpy())
    totals = all_gathered(d, (loss_sum, n))
    out: dict[str, Any] = {
        "val_loss": sum(s for s, _ in totals) / max(sum(c for _, c in totals), 1)
    }
    if mode == "clf":
        y = np.concatenate(labels) if labels else np.zeros((0, 3), np.int8)
        p = np.concatenate(scores) if scores else np.zeros((0, 3), np.float32)
        y, p = gather_arrays(d, y, p)
        per = masked_scores(y, p)
        out |= {"val_map": mean_ap(per), "per_protein": per}
    return out


def run(
    cfg: Config,
    mode: str,
    *,
    model_path: str | None = None,
    resume: bool = False,
    initial_epoch: int | None = None,
    smoke: bool = False,
    layout: Layout | None = None,
) -> TrainResult:
    apply_storage_options(cfg.data.storage_options)
    layout = layout or Layout.of(cfg)
    out_dir = layout.model_dir(mode)
    with distributed(cfg.training.device) as (d, device):
        if not d.is_main or smoke:
            return _run(cfg, mode, layout, model_path, resume, initial_epoch, smoke, d, device)
        with run_lock(out_dir, f"belka train_model --mode {mode}"):
            return _run(cfg, mode, layout, model_path, resume, initial_epoch, smoke, d, device)


@dataclass
class _Training:
    """One mode's training on this rank: the model (DDP-wrapped as `net` under torchrun), its
    optimizer and gradient scaler."""

    cfg: Config
    mode: str
    spec: BelkaSpec
    d: Dist
    device: torch.device
    model: torch.nn.Module
    net: torch.nn.Module
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    amp: bool

    @classmethod
    def build(cls, cfg: Config, mode: str, spec: BelkaSpec, d: Dist, device) -> _Training:
        t = cfg.training
        torch.manual_seed(cfg.system.seed)
        model = create_model("belka", spec).to(device)
        opt = torch.optim.AdamW(
            model.parameters(), lr=t.learning_rate, weight_decay=t.weight_decay, eps=t.epsilon
        )
        amp = amp_enabled(device, t.mixed_precision)
        scaler = torch.amp.GradScaler(device.type, enabled=amp)
        return cls(cfg, mode, spec, d, device, model, model, opt, scaler, amp)

    def distribute(self) -> None:
        """Wrap the model for data-parallel training, after its weights are what they start
        from (DDP hands rank 0's to the others when it wraps)."""
        if self.d.active:
            ids = [self.device] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)

    def restore(self, latest: str, model_path: str | None, resume: bool) -> dict[str, Any]:
        """The training state to go on from: our latest checkpoint (or `model_path` of this
        mode) on resume, exactly; else a fresh state, the weights from `model_path` if given."""
        state: dict[str, Any] = {
            "epoch": 0,
            "best": math.inf,
            "best_epoch": 0,
            "bad": 0,
            "history": [],
        }
        source = None
        if resume:  # --model_path of this same mode is what to resume; else our latest
            given = load_checkpoint(model_path) if model_path else None
            if given is not None and given["model_spec"]["mode"] == self.mode:
                source = model_path
            elif uri_exists(latest):
                source = latest
        if source is None:
            if resume and self.d.is_main:
                log.info("no checkpoint at %s: training %s from the start", latest, self.mode)
            if model_path:
                start_from(self.model, self.spec, model_path)
            return state
        ckpt = load_checkpoint(source)
        if "optimizer_state" in ckpt:  # a latest_model.pt: continue exactly
            self.model.load_state_dict(ckpt["model_state"])
            self.opt.load_state_dict(ckpt["optimizer_state"])
            self.scaler.load_state_dict(ckpt["scaler_state"])
            set_rng_state(ckpt["rng"])
            state = ckpt["train_state"]
        else:  # weights only (a best_model.pt): the epoch count from the flag or the file
            start_from(self.model, self.spec, source)
            state["epoch"] = int(ckpt.get("epoch", 0))
        log.info("resuming %s after epoch %d from %s", self.mode, state["epoch"], source)
        return state

    def step(self, batch: dict[str, torch.Tensor]) -> float:
        t = self.cfg.training
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        self.opt.zero_grad(set_to_none=True)
        with autocast(self.device, self.amp):
            loss, _ = loss_and_output(
                self.net,
                self.mode,
                batch,
                masking_rate=t.masking_rate,
                ecfp_bits=self.spec.ecfp_bits,
            )
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        return float(loss.detach())

    def epoch(self, stream: StoreStream, epoch: int, metrics: StepMetrics) -> dict[str, Any]:
        """One pass over this rank's share: the loss and throughput of all ranks together."""
        t = self.cfg.training
        self.model.train()
        stream.set_epoch(epoch)
        loss_sum, n, t0 = 0.0, 0, time.perf_counter()
        bar = progress(
            total=len(stream),
            desc=f"{self.mode} epoch {epoch}",
            unit="mol",
            unit_scale=True,
            leave=False,
        )
        # ranks' blocks may differ by a batch: Join lets a finished rank shadow the rest
        on_gpu = self.device.type == "cuda"
        batches = DataWait(make_loader(stream, self.cfg.system.n_workers, on_gpu))
        reset_peak_memory(self.device)
        with Join([self.net]) if self.d.active else nullcontext():  # type: ignore[list-item]
            for i, batch in enumerate(batches):
                if t.steps_per_epoch is not None and i >= t.steps_per_epoch:
                    break
                tb = time.perf_counter()
                loss = self.step(batch)
                if not math.isfinite(loss):
                    raise PipelineError(
                        f"{self.mode} epoch {epoch}: loss is {loss}; nothing of this epoch was "
                        f"saved; lower training.learning_rate (now {t.learning_rate:g})"
                    )
                b = len(batch["mol_id"])
                loss_sum, n = loss_sum + loss * b, n + b
                bar.update(b)
                metrics.batch(b, time.perf_counter() - tb, loss)
        bar.close()
        wait = batches.fraction  # of the training pass alone, before validation
        totals = all_gathered(self.d, (loss_sum, n, time.perf_counter() - t0))
        n_all = sum(c for _, c, _ in totals)
        return {
            "loss": sum(s for s, _, _ in totals) / max(n_all, 1),
            "molecules": n_all,
            "samples_per_s": n_all / max(max(s for _, _, s in totals), 1e-9),
            "data_wait_fraction": wait,
            "peak_gpu_gib": peak_memory_gib(self.device),
        }

    def save(self, out_dir: str, weights: dict[str, Any], state: dict, improved: bool) -> None:
        """best_model.pt when the epoch improved; latest_model.pt (everything a resume
        needs) every `checkpoint_every` epochs and at the last one."""
        t = self.cfg.training
        epoch = weights["epoch"]
        if improved:
            save_checkpoint(join_uri(out_dir, BEST_MODEL), weights)
        if epoch % t.checkpoint_every == 0 or state["bad"] >= t.patience:
            save_checkpoint(
                join_uri(out_dir, LATEST_MODEL),
                weights
                | {
                    "optimizer_state": self.opt.state_dict(),
                    "scaler_state": self.scaler.state_dict(),
                    "rng": rng_state(),
                    "train_state": state,
                },
            )
            crashpoint("train_model.latest_saved")


def _streams(cfg: Config, mode: str, store: Store, val_store: Store, d: Dist):
    t = cfg.training
    stream = StoreStream(
        store,
        TRAIN_SUBSETS[mode],
        t.batch_size,
        shuffle=True,
        seed=cfg.system.seed,
        buffer_size=buffer_rows(t, cfg.system, store),
        rank=d.rank,
        world_size=d.world_size,
    )
    val_stream = StoreStream(
        val_store,
        (SUBSET_VAL,),
        t.batch_size,
        shuffle=False,
        rank=d.rank,
        world_size=d.world_size,
    )
    return stream, val_stream


def _run(cfg, mode, layout, model_path, resume, initial_epoch, smoke, d: Dist, device):
    t = cfg.training
    vocab = Vocab.load(layout.vocab)
    store = Store.open(layout.store)
    val_store = Store.open(layout.val_store, "create_val_dataset")
    for s in (store, val_store):
        s.check(vocab.digest(), cfg.model.max_length)
    spec = model_spec(cfg, vocab, store, mode)
    out_dir = layout.model_dir(mode)
    tr = _Training.build(cfg, mode, spec, d, device)
    state = tr.restore(join_uri(out_dir, LATEST_MODEL), model_path, resume)
    if initial_epoch is not None:
        state["epoch"] = initial_epoch
    stream, val_stream = _streams(cfg, mode, store, val_store, d)
    if len(stream) == 0:
        raise InputDataError(f"{layout.store}: no molecules to train {mode} on")
    tr.distribute()
    if smoke:
        loss = tr.step(next(iter(make_loader(stream, 0))))
        if not math.isfinite(loss):
            raise PipelineError(f"smoke check: {mode} loss is {loss}")
        return TrainResult(mode, out_dir, 0, loss, 0, 0.0)

    log.info(
        "%s: %d parameters on %s x %d, amp=%s; %d train / %d validation molecules",
        mode,
        sum(p.numel() for p in tr.model.parameters()),
        device,
        d.world_size,
        tr.amp,
        len(stream) * d.world_size,
        val_store.count((SUBSET_VAL,)),
    )
    metrics = StepMetrics(
        "belka",
        f"train_{mode}",
        run_id(cfg.monitoring, "belka"),
        scores={"val_loss": "Validation loss"},
        loss=f"{mode} loss",
    )
    speed = 0.0
    with step_metrics(metrics, cfg.monitoring, export=d.is_main):
        for epoch in range(state["epoch"] + 1, t.epochs + 1):
            if state["bad"] >= t.patience:
                break
            record = tr.epoch(stream, epoch, metrics)
            speed = record["samples_per_s"]
            val = validate(tr.model, val_stream, cfg, mode, device, tr.amp, d)
            if not math.isfinite(val["val_loss"]):
                raise PipelineError(f"{mode} epoch {epoch}: validation loss is {val['val_loss']}")
            state["history"].append({"epoch": epoch, **record, **val})
            state["epoch"] = epoch
            metrics.pass_done({"samples_per_s": speed, "val_loss": val["val_loss"]}, epoch)
            log.info(
                "%s epoch %d: loss %.4f, val loss %.4f%s",
                mode,
                epoch,
                record["loss"],
                val["val_loss"],
                f", val mAP {val['val_map']:.4f}" if "val_map" in val else "",
            )
            improved = val["val_loss"] < state["best"]
            if improved:
                state.update(best=val["val_loss"], best_epoch=epoch, bad=0)
            else:
                state["bad"] += 1
            if d.is_main:
                weights = {
                    "model_state": tr.model.state_dict(),
                    "model_spec": spec.to_dict(),
                    "epoch": epoch,
                    "vocab_digest": vocab.digest(),
                    "val": val,
                }
                tr.save(out_dir, weights, state, improved)
    return _finish(cfg, mode, out_dir, state, speed, d)


def _finish(cfg: Config, mode: str, out_dir: str, state: dict, speed: float, d: Dist):
    if d.is_main:
        with replacing_uri(join_uri(out_dir, HISTORY), "w") as fh:
            json.dump(state["history"], fh, indent=2)
        SCHEMA.save_resolved(cfg, join_uri(out_dir, "resolved_config.yaml"))
    if not math.isfinite(state["best"]):
        raise PipelineError(f"{mode}: no epoch gave a finite validation loss (no epoch ran?)")
    best_val: dict[str, Any] = next(
        (h for h in state["history"] if h["epoch"] == state["best_epoch"]), {}
    )
    return TrainResult(
        mode,
        out_dir,
        state["best_epoch"],
        state["best"],
        state["epoch"],
        speed,
        {k: v for k, v in best_val.items() if k != "epoch"},
    )
