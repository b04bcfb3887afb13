"""Mirror component: the voxel HDF5 -> a packed store that the other steps read by chunks."""

from kfp import dsl
from kfp.dsl import Metrics, Output

from voxelflex.components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def mirror(
    voxel_file: str,
    mirror_uri: str,
    settings: dict,
    metrics: Output[Metrics],
) -> str:
    """Mirror the per-residue voxel HDF5 into a packed zarr store (resumable, verified).

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
    result = step.run(voxel_file, mirror_uri or step.default_destination(voxel_file))
    kfp_io.log_metrics(metrics, step.headline_metrics(result))
    return result.uri
