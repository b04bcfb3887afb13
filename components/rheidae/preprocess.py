"""Preprocess component: raw FFI outputs -> the training set."""

from kfp import dsl
from kfp.dsl import Dataset, Metrics, Output

from pipekit.pipeline.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def preprocess(
    raw_dir: str, settings: dict, preprocessed: Output[Dataset], metrics: Output[Metrics]
):
    """Read every raw H5 (a database, or Emu reduced0D.h5 per run), add Box3D, list bad runs.

    Args:
        raw_dir: URI of the folder of raw H5 files.
        settings: the config files as {"pre_process": ..., "model": ..., "train_parms": ...}.
        preprocessed: <run>_preprocessed.h5 per file, preprocessed_all.h5, failed_runs.txt.
        metrics: points, files, runs refused.
    """
    from pipekit.kfp_io import log_metrics
    from rheidae import kfp_io
    from rheidae.steps import preprocess as step

    res = step.run(kfp_io.preprocess_config(settings, raw_dir, preprocessed))
    log_metrics(
        metrics, {"points": res.n_points, "files": res.n_files, "runs_refused": len(res.failed)}
    )
