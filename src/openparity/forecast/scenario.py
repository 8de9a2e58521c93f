"""Scenarios: factors that push open models toward parity or resist it, each with
distributions, a weight, correlations between factors, and a link to a probability.

    name: my-scenario
    horizon: "2027-12-31"
    factors:
      community_efficiency:
        description: open community's training efficiency gains
        push: {dist: triangular, low: 0.3, mode: 0.6, high: 0.9}
        resistance: {dist: beta, a: 2, b: 5}
        weight: 0.15
    correlations:                      # optional, pairs; everything else is 0
      - [community_efficiency, compute_cost_decline, 0.4]
    link: {kind: threshold, threshold: 0.1, noise_sd: 0.05}
      # parity in a draw when sum(weight * (push - resistance)) + noise > threshold;
      # or {kind: logistic, intercept: 0, scale: 10}: the draw's probability is
      # sigmoid(intercept + scale * sum(...)), and the forecast is its mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from openparity.errors import OpenparityError
from openparity.yamlfile import read_validated


class ScenarioError(OpenparityError):
    """A scenario file is missing, malformed or impossible."""


class _Triangular(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dist: Literal["triangular"]
    low: float
    mode: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> _Triangular:
        if not self.low <= self.mode <= self.high or self.low == self.high:
            raise ValueError("triangular needs low <= mode <= high and low < high")
        return self

    def frozen(self) -> Any:
        from scipy import stats

        width = self.high - self.low
        return stats.triang((self.mode - self.low) / width, loc=self.low, scale=width)


class _Beta(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dist: Literal["beta"]
    a: float = Field(gt=0)
    b: float = Field(gt=0)
    low: float = 0.0
    high: float = 1.0

    @model_validator(mode="after")
    def _range(self) -> _Beta:
        if not self.low < self.high:
            raise ValueError("beta needs low < high")
        return self

    def frozen(self) -> Any:
        from scipy import stats

        return stats.beta(self.a, self.b, loc=self.low, scale=self.high - self.low)


class _Normal(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dist: Literal["normal"]
    mean: float
    sd: float = Field(gt=0)

    def frozen(self) -> Any:
        from scipy import stats

        return stats.norm(self.mean, self.sd)


class _Uniform(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dist: Literal["uniform"]
    low: float
    high: float

    @model_validator(mode="after")
    def _range(self) -> _Uniform:
        if not self.low < self.high:
            raise ValueError("uniform needs low < high")
        return self

    def frozen(self) -> Any:
        from scipy import stats

        return stats.uniform(self.low, self.high - self.low)


class _Constant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dist: Literal["constant"]
    value: float

    def frozen(self) -> Any:
        return Constant(self.value)


Distribution = Annotated[
    _Triangular | _Beta | _Normal | _Uniform | _Constant, Field(discriminator="dist")
]


class _Factor(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = ""
    push: Distribution
    resistance: Distribution = Field(default_factory=lambda: _Constant(dist="constant", value=0))
    weight: float = Field(ge=0)


class _Link(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["threshold", "logistic"]
    threshold: float = 0.0
    noise_sd: float = Field(default=0.0, ge=0)
    intercept: float = 0.0
    scale: float = Field(default=1.0, gt=0)


class _ScenarioFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    horizon: str | None = None
    source: str = ""
    factors: dict[str, _Factor] = Field(min_length=1)
    correlations: list[tuple[str, str, float]] = Field(default_factory=list)
    link: _Link


@dataclass(frozen=True)
class Constant:
    """A point mass, with the frozen-distribution methods the sampler uses."""

    value: float

    def ppf(self, q: np.ndarray) -> np.ndarray:
        return np.full_like(np.asarray(q, dtype=float), self.value)

    def mean(self) -> float:
        return self.value


@dataclass(frozen=True)
class Factor:
    name: str
    description: str
    push: Any  # a frozen scipy distribution (or Constant)
    resistance: Any
    weight: float


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    horizon: str | None
    source: str
    factors: tuple[Factor, ...]
    correlation: np.ndarray  # factors x factors, PSD, unit diagonal
    link: _Link

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.factors]


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario YAML; every problem is one clear ScenarioError."""
    spec = read_validated(
        path,
        _ScenarioFile,
        ScenarioError,
        what="scenario file",
        hint="see openparity/forecast/scenarios/seed-parity.yaml",
    )
    return build(spec, str(path))


def build(spec: _ScenarioFile, where: str = "scenario") -> Scenario:
    names = list(spec.factors)
    index = {name: i for i, name in enumerate(names)}
    matrix = np.eye(len(names))
    for a, b, rho in spec.correlations:
        for name in (a, b):
            if name not in index:
                raise ScenarioError(f"{where}: correlation names unknown factor {name!r}")
        if a == b or not -1 <= rho <= 1:
            raise ScenarioError(f"{where}: correlation {a}~{b} must join two factors, in [-1, 1]")
        matrix[index[a], index[b]] = matrix[index[b], index[a]] = rho
    smallest = float(np.linalg.eigvalsh(matrix).min())
    if smallest < -1e-10:
        raise ScenarioError(
            f"{where}: the correlation matrix is not positive semi-definite (smallest"
            f" eigenvalue {smallest:.3f})",
            hint="these correlations cannot hold together; weaken some of them",
        )
    factors = tuple(
        Factor(name, f.description, f.push.frozen(), f.resistance.frozen(), f.weight)
        for name, f in spec.factors.items()
    )
    if sum(f.weight for f in factors) <= 0:
        raise ScenarioError(f"{where}: factor weights must not all be 0")
    return Scenario(
        spec.name, spec.description, spec.horizon, spec.source, factors, matrix, spec.link
    )
