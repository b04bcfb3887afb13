"""Does MLM -> FPS pre-training improve CLF on molecules with unseen building blocks?

On the demo library (`belka demo-data`), both arms read the same prepared data and differ
only in where CLF starts: from scratch, or from the FPS model that started from the MLM
model. Each arm is scored by make_submission on the validation molecules, per seed:
average precision per protein, averaged, for non-shared-block and shared-block molecules.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from belka.config import load_config
from belka.demo import make_demo
from belka.steps import (
    create_val_dataset,
    generate_parquet,
    get_vocab,
    make_dataset,
    make_submission,
    train_model,
)
from pipekit.progress import set_progress


def arm(
    config: Path, work: Path, seed: int, pretrain: bool, clf_epochs: int, patience: int, args
) -> dict[str, float]:
    over = [f"data.working={work}", f"system.seed={seed}", f"training.patience={patience}"]
    cfg = load_config(str(config), over)
    start = None
    if pretrain:
        for mode, epochs in (("mlm", args.mlm_epochs), ("fps", args.fps_epochs)):
            c = load_config(str(config), [*over, f"training.epochs={epochs}"])
            res = train_model.run(c, mode, model_path=start)
            start = f"{res.model_dir}/best_model.pt"
    c = load_config(str(config), [*over, f"training.epochs={clf_epochs}"])
    train_model.run(c, "clf", model_path=start)
    rep = make_submission.run(cfg).report["model"]
    return {g: rep[g]["mean_ap"] for g in ("non_shared", "shared")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--molecules", type=int, default=12000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--mlm-epochs", type=int, default=6)
    ap.add_argument("--fps-epochs", type=int, default=6)
    ap.add_argument("--clf-epochs", type=int, default=10)
    ap.add_argument("--arms", type=int, nargs="*", help="which arms (0, 1, 2); default all")
    args = ap.parse_args()
    set_progress(False)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        demo = make_demo(tmp / "demo", n_train=args.molecules)
        cfg = load_config(str(demo.config))
        for step in (generate_parquet, get_vocab, make_dataset, create_val_dataset):
            step.run(cfg)
        prepared = Path(cfg.data.working)
        total = args.mlm_epochs + args.fps_epochs + args.clf_epochs
        arms = [
            ("clf from scratch", False, args.clf_epochs, 3),
            # as many epochs as the three modes together, no early stop: the same compute
            (f"clf from scratch, {total} epochs", False, total, total),
            ("mlm -> fps -> clf", True, args.clf_epochs, 3),
        ]
        print("seed  arm                           non-shared mAP  shared mAP  minutes")
        for seed in args.seeds:
            for i, (name, pretrain, epochs, patience) in enumerate(arms):
                if args.arms and i not in args.arms:
                    continue
                work = tmp / f"{seed}_{i}"
                shutil.copytree(prepared, work)
                t0 = time.perf_counter()
                r = arm(demo.config, work, seed, pretrain, epochs, patience, args)
                print(
                    f"{seed:>4}  {name:<28}  {r['non_shared']:>14.4f}  {r['shared']:>10.4f}  "
                    f"{(time.perf_counter() - t0) / 60:>7.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
