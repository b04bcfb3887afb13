"""Errors a user can fix. The CLI prints these as one clear line, without a traceback."""


class PipelineError(Exception):
    """A problem with the user's inputs, config or files; the message names what to fix."""


class ConfigError(PipelineError):
    """A config key is unknown, has the wrong type or is out of range."""


class InputDataError(PipelineError):
    """An input file is missing or does not follow the input contract."""


def not_found(said: str, hint: str | None = None) -> InputDataError:
    """The error for a missing file: `said` names it, `hint` (what sets its path or makes
    it: "run train first") follows in brackets."""
    return InputDataError(f"{said} ({hint})" if hint else said)
