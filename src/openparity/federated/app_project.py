"""The Flower App project `flwr run` submits: a pyproject.toml naming openparity's ServerApp
and ClientApp, with the run's settings as its config. The apps' code is openparity itself,
installed beside Flower on the coordinator and every member, so the bundle holds no code and
nothing is installed at run time."""

from __future__ import annotations

import json
from pathlib import Path

from openparity import __version__
from openparity.atomic import write_atomic
from openparity.federated.settings import FederationSettings

SERVER_APP = "openparity.federated.server_app:app"
CLIENT_APP = "openparity.federated.client_app:app"


def write_app(settings: FederationSettings, directory: Path) -> Path:
    """Write the project into `directory` (created); returns it."""
    directory.mkdir(parents=True, exist_ok=True)
    config = "\n".join(f"{key} = {_toml(value)}" for key, value in settings.to_run_config().items())
    text = f"""[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "openparity-alliance"
version = "1.0.0"
description = "LoRA fine-tuning of a shared base model across members, with openparity"
license = "Apache-2.0"
dependencies = ["openparity=={__version__}"]

[tool.flwr.app]
publisher = "openparity"

[tool.flwr.app.components]
serverapp = "{SERVER_APP}"
clientapp = "{CLIENT_APP}"

[tool.flwr.app.config]
{config}
"""
    write_atomic(directory / "pyproject.toml", text)
    return directory


def _toml(value: object) -> str:
    """A TOML scalar (JSON's string escapes are TOML's; Chinese paths stay readable)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)
