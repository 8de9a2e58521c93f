"""JSON answers judged against a JSON Schema: one validator for a business task's
`json_schema` scorer and the gateway's `json` and `tool_call` checks."""

from __future__ import annotations

from typing import Any


class InvalidSchemaError(ValueError):
    """The schema itself is not a valid JSON Schema (draft 2020-12)."""


def check_schema(schema: dict[str, Any]) -> None:
    """Raise InvalidSchemaError naming what is wrong with `schema`."""
    import jsonschema

    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InvalidSchemaError(exc.message) from None


def schema_problem(schema: dict[str, Any], value: Any) -> str | None:
    """Why `value` does not fit `schema` (the most relevant error, as jsonschema ranks them),
    or why the schema is invalid; None when it fits."""
    import jsonschema

    try:
        error = jsonschema.exceptions.best_match(
            jsonschema.Draft202012Validator(schema).iter_errors(value)
        )
    except jsonschema.SchemaError as exc:
        return f"the JSON schema is invalid ({exc.message})"
    return None if error is None else f"JSON does not fit the schema ({error.message[:160]})"
