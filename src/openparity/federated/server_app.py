"""The coordinator's Flower ServerApp: the same in a simulation and a deployment."""

from __future__ import annotations

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from openparity.federated.coordinator import Coordinator
from openparity.federated.settings import FederationSettings

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    settings = FederationSettings.from_run_config(dict(context.run_config))
    Coordinator(settings).run(grid)
