"""Mirror component: the voxel HDF5 -> a packed store that the other steps read by chunks."""

from kfp import dsl
from kfp.dsl import Metrics, Output

from pipekit.pipeline.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def mirror(
    voxel_file: str,
    mirror_uri: str,
    settings: dict,
    metrics: Output[Metrics],
) -> str:
    """Finish the packed zarr store: write any chunk the writers left, verify every domain
    against the source, mark the store complete (alone, it mirrors everything).

    Args:
        voxel_file: URI of the per-residue voxel HDF5 (aposteriori layout).
        mirror_uri: where the packed store goes, e.g. s3://voxelflex/mdcath/voxels.packed;
            empty puts it beside the voxel file (<voxel file without .hdf5>.packed). A store
            already there is resumed, or reused when complete.
        settings: further config sections (logging).
        metrics: residues, domains, chunks, chunks written by this run, bytes per residue.

    Returns:
        The packed store's URI, which the later steps read voxels from.
    """
    from voxelflex import kfp_io
    from voxelflex.steps import mirror as step

    kfp_io.component_config(settings)
    result = step.run(voxel_file, step.destination(voxel_file, mirror_uri))
    kfp_io.log_metrics(metrics, step.headline_metrics(result))
    return result.uri


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def mirror_plan(voxel_file: str, mirror_uri: str, writers: int, settings: dict) -> list:
    """Plan the packed store: list the voxel file once, write the row index, create the array.

    Args:
        voxel_file: URI of the per-residue voxel HDF5 (aposteriori layout).
        mirror_uri: where the packed store goes; empty puts it beside the voxel file.
        writers: how many writers share the chunks.
        settings: further config sections (logging).

    Returns:
        One item per writer ({"shard": k, "shards": n}) for the fan-out.
    """
    from voxelflex import kfp_io
    from voxelflex.steps import mirror as step

    kfp_io.component_config(settings)
    step.run(voxel_file, step.destination(voxel_file, mirror_uri), plan_only=True)
    return step.shard_specs(writers)


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def mirror_shard(voxel_file: str, mirror_uri: str, shard: dict, settings: dict):
    """Write one writer's contiguous run of whole chunks of the planned store.

    Args:
        voxel_file: URI of the per-residue voxel HDF5.
        mirror_uri: the planned store; empty means beside the voxel file.
        shard: this writer's item from mirror_plan ({"shard": k, "shards": n}).
        settings: further config sections (logging).
    """
    from voxelflex import kfp_io
    from voxelflex.steps import mirror as step

    kfp_io.component_config(settings)
    step.run(voxel_file, step.destination(voxel_file, mirror_uri), shard=step.shard_of(shard))
