"""DECIDE: Monte Carlo parity forecast from a scenario of factors (more to come: trend
forecast from dated scores, cost model, advice). Reads results; nothing imports it."""
