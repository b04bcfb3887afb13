"""Errors a user can fix. The CLI prints these as one clear line, without a traceback."""


class PipelineError(Exception):
    """A problem with the user's inputs, config or files; the message names what to fix."""


class ConfigError(PipelineError):
    """A config key is unknown, has the wrong type or is out of range."""


class InputDataError(PipelineError):
    """An input file is missing or does not follow the input contract."""
