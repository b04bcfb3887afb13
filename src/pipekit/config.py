"""Config: packaged defaults + user YAML + `--set` overrides -> typed, frozen dataclasses.

A system describes its config once: a frozen dataclass of frozen section dataclasses, the
packaged `default_config.yaml`, and which keys hold paths. `ConfigSchema` does the rest:
merge (unknown keys are errors with a suggestion), coerce and validate (the sections'
`__post_init__` checks ranges), and write the resolved config with secrets masked.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from pipekit.errors import ConfigError
from pipekit.uri import open_uri, uri_exists

C = typing.TypeVar("C")


def check(ok: bool, key: str, msg: str) -> None:
    """For the sections' `__post_init__`: a ConfigError naming the key when not `ok`."""
    if not ok:
        raise ConfigError(f"config key '{key}': {msg}")


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class ReportConfig:
    """The `report` section: `caveat` stands first on each run's report page, on a coloured
    band. Each system's demo writes one into its config (its data are synthetic, or its model's
    weights random); null for real data."""

    caveat: str | None = None


@dataclass(frozen=True)
class LoggingConfig:
    """The `logging` section every system's config has."""

    level: str = "INFO"
    show_progress: bool = True

    def __post_init__(self) -> None:
        check(
            self.level in LOG_LEVELS,
            "logging.level",
            f"{self.level!r} is not one of {', '.join(LOG_LEVELS)}",
        )


@dataclass(frozen=True)
class MonitoringConfig:
    """The `monitoring` section: where a step's Prometheus metrics go (`pipekit.monitoring`)."""

    metrics_port: int | None = None  # serve Prometheus metrics here (or PIPEKIT_METRICS_PORT)
    pushgateway_url: str | None = None  # also push them (or PIPEKIT_PUSHGATEWAY_URL)
    run_id: str | None = None  # Pushgateway grouping key (default: the run's name)

    def __post_init__(self) -> None:
        if self.metrics_port is not None:
            check(0 < self.metrics_port < 65536, "monitoring.metrics_port", "must be a port")


def _read_text(path: str) -> str:
    """A local file, or a URI (a distributed job's pods read the config the step wrote)."""
    if "://" not in path:
        if not Path(path).is_file():
            raise ConfigError(f"config file not found: {path}")
        return Path(path).read_text()
    if not uri_exists(path):
        raise ConfigError(f"config file not found: {path}")
    with open_uri(path, "r") as fh:
        return fh.read()


def _read_yaml(path: str) -> dict[str, Any]:
    text = _read_text(path)
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, not {type(data)}")
    return data


def _suggest(key: str, options: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(options), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _merge(base: dict[str, Any], user: dict[str, Any], origin: str) -> None:
    for section, values in user.items():
        if section not in base:
            raise ConfigError(
                f"unknown config section '{section}' in {origin}" + _suggest(section, base)
            )
        if not isinstance(values, dict):
            raise ConfigError(f"config section '{section}' in {origin} must be a mapping")
        for key, value in values.items():
            if key not in base[section]:
                raise ConfigError(
                    f"unknown config key '{section}.{key}' in {origin}"
                    + _suggest(key, base[section])
                )
            base[section][key] = value


def _is_local_relative(value: str) -> bool:
    return "://" not in value and not Path(value).is_absolute()


def _resolve_paths(user: dict[str, Any], root: Path, path_keys: typing.Iterable[str]) -> None:
    """Relative local paths are resolved against the config file's folder (for `--set`,
    against the working directory) so a config and its data can move together."""
    for dotted in path_keys:
        section, key = dotted.split(".")
        value = user.get(section, {}).get(key) if isinstance(user.get(section), dict) else None
        if isinstance(value, str) and _is_local_relative(value):
            user[section][key] = str((root / value).resolve())


def parse_overrides(pairs: typing.Sequence[str]) -> dict[str, Any]:
    """`["training.batch_size=64"]` -> `{"training": {"batch_size": 64}}`; values read as YAML."""
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        dotted, sep, raw = pair.partition("=")
        parts = dotted.strip().split(".")
        if not sep or len(parts) != 2 or not all(parts):
            raise ConfigError(f"override {pair!r} must look like section.key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        out.setdefault(parts[0], {})[parts[1]] = value
    return out


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for option in inner[:-1]:  # `str | int`: the first type the value is
            with contextlib.suppress(ConfigError):
                return _coerce(value, option, key)
        return _coerce(value, inner[-1], key)
    if origin is list:
        (inner,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        return [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if hint is float and isinstance(value, str):
        # PyYAML reads `1e-4` (no dot) as a string; users write learning rates that way
        with contextlib.suppress(ValueError):
            value = float(value)
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping, got {value!r}")
        return value
    if hint is int and isinstance(value, float) and value.is_integer():
        # JSON-like sources (pipeline parameters travel as protobuf Structs) have one number
        # type, so an int arrives as 8.0
        value = int(value)
    is_num = isinstance(value, (int, float)) and not isinstance(value, bool)
    accepted = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: is_num,
        str: isinstance(value, str),
    }
    if accepted.get(hint, False):
        return float(value) if hint is float else value
    name = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"config key '{key}': expected {name}, got {value!r}")


def _build(cls: type, raw: dict[str, Any]) -> Any:
    sections = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        section_hints = typing.get_type_hints(hints[f.name])
        kwargs = {k: _coerce(v, section_hints[k], f"{f.name}.{k}") for k, v in raw[f.name].items()}
        sections[f.name] = hints[f.name](**kwargs)
    return cls(**sections)


SECRET_WORDS = ("key", "secret", "token", "password", "credential")


def redact(options: Any) -> Any:
    """A copy of `options` with the values of secret-looking keys masked."""
    if not isinstance(options, dict):
        return options
    return {
        k: "***" if any(w in str(k).lower() for w in SECRET_WORDS) else redact(v)
        for k, v in options.items()
    }


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


@dataclass(frozen=True)
class ConfigSchema(typing.Generic[C]):
    """One system's config: its dataclass, the package holding `default_config.yaml`, and
    its path keys (`section.key`). A relative path in the file is read against the file's
    folder, or, with `paths_from_cwd`, against where the command runs (the rule of systems
    whose lab scripts run from a project folder holding `config/` and the data)."""

    cls: type[C]
    package: str
    path_keys: tuple[str, ...] = ()
    defaults_file: str = "default_config.yaml"
    paths_from_cwd: bool = False

    def defaults(self) -> dict[str, Any]:
        text = resources.files(self.package).joinpath(self.defaults_file).read_text()
        return yaml.safe_load(text)

    def load(self, path: str | None = None, overrides: typing.Sequence[str] = ()) -> C:
        """Defaults, then the YAML at `path`, then `section.key=value` overrides; validated."""
        merged = self.defaults()
        if path is not None:
            user = _read_yaml(path)
            local = "://" not in path and not self.paths_from_cwd
            root = Path(path).resolve().parent if local else Path.cwd()
            _resolve_paths(user, root, self.path_keys)
            _merge(merged, user, path)
        if overrides:
            over = parse_overrides(overrides)
            _resolve_paths(over, Path.cwd(), self.path_keys)
            _merge(merged, over, "--set")
        # default paths: relative to where the command runs
        _resolve_paths(merged, Path.cwd(), self.path_keys)
        return _build(self.cls, merged)

    def from_dict(self, values: typing.Mapping[str, Any], origin: str = "settings") -> C:
        """Defaults, then `values` (config sections as a mapping, e.g. a pipeline parameter)."""
        merged = self.defaults()
        _merge(merged, copy.deepcopy(dict(values)), origin)
        _resolve_paths(merged, Path.cwd(), self.path_keys)
        return _build(self.cls, merged)

    def save_resolved(self, cfg: C, path: str) -> None:
        """Write the config a run really used, so the run can be repeated from its outputs
        (credentials in any section's `storage_options` are masked)."""
        values = config_to_dict(cfg)
        for section in values.values():
            if isinstance(section, dict) and "storage_options" in section:
                section["storage_options"] = redact(section["storage_options"])
        with open_uri(path, "w") as fh:
            yaml.safe_dump(values, fh, sort_keys=False)
