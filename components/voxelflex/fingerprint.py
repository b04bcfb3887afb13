"""Fingerprint component: what the inputs hold, for the cache keys of the steps that read them."""

from kfp import dsl

from pipekit.pipeline.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def fingerprint_inputs(uris: list, settings: dict) -> str:
    """Fingerprint input files and folders (size and ETag/checksum/modification time per file,
    never their bytes); never cached itself.

    Args:
        uris: URIs of the input files or folders (packed stores) a cached step reads.
        settings: further config sections (input.storage_options, logging).

    Returns:
        A short digest that changes when any input's content changes.
    """
    from pipekit.fingerprint import fingerprint
    from voxelflex import kfp_io

    kfp_io.component_config(settings)
    return fingerprint([str(u) for u in uris])
