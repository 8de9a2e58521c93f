"""Tools for the people who work on openparity itself (the module graph and its layer order)."""
