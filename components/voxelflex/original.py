"""The other branch of the mirror choice: downstream steps read the voxel file as given."""

from kfp import dsl

from pipekit.pipeline.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def original_voxels(voxel_file: str) -> str:
    """Read voxels from the per-residue HDF5 itself (no mirror).

    Args:
        voxel_file: URI of the voxel HDF5.

    Returns:
        The same URI, for the later steps.
    """
    return voxel_file
