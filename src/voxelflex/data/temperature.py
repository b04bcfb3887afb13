"""Temperature min-max scaling, fitted on the training split only."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

import numpy as np

from pipekit.errors import InputDataError
from pipekit.uri import open_uri

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TemperatureScaler:
    temp_min: float
    temp_max: float

    @classmethod
    def fit(cls, temps: np.ndarray) -> TemperatureScaler:
        if len(temps) == 0:
            raise InputDataError("no training samples: cannot fit temperature scaling")
        return cls(float(np.min(temps)), float(np.max(temps)))

    @property
    def span(self) -> float:
        # One training temperature leaves no range: scale by 1 K instead of dividing by zero.
        return self.temp_max - self.temp_min if self.temp_max > self.temp_min else 1.0

    def scale(self, kelvin: np.ndarray | float) -> np.ndarray:
        return ((np.asarray(kelvin, dtype=np.float64) - self.temp_min) / self.span).astype(
            np.float32
        )

    def outside(self, kelvin: np.ndarray) -> np.ndarray:
        k = np.asarray(kelvin, dtype=np.float64)
        return (k < self.temp_min) | (k > self.temp_max)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def save(self, uri: str) -> None:
        from pipekit.atomic import replacing_uri

        with replacing_uri(uri, "w") as fh:
            json.dump(self.to_dict(), fh, indent=2)

    @classmethod
    def load(cls, uri: str) -> TemperatureScaler:
        try:
            with open_uri(uri, "r") as fh:
                data = json.load(fh)
            return cls(float(data["temp_min"]), float(data["temp_max"]))
        except FileNotFoundError:
            raise InputDataError(
                f"temperature scaling file not found: {uri} (run `voxelflex preprocess` first)"
            ) from None
        except (KeyError, ValueError, TypeError) as exc:
            raise InputDataError(f"temperature scaling file {uri} is malformed: {exc}") from None
