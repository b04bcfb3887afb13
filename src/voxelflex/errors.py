"""Errors a user can fix. The CLI prints these as one clear line, without a traceback."""


class VoxelFlexError(Exception):
    """A problem with the user's inputs, config or files; the message names what to fix."""


class ConfigError(VoxelFlexError):
    """A config key is unknown, has the wrong type or is out of range."""


class InputDataError(VoxelFlexError):
    """An input file is missing or does not follow the input contract."""
