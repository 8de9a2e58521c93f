"""Scorers for examples/tasks/code-adoption.yaml: (response, fields, reference) -> score."""

import ast
import re


def adoptable(response: str, fields: dict, reference: str) -> float:
    """1.0 when the reply has one Python block that parses and defines `reference`."""
    blocks = re.findall(r"```(?:python|py)?\s*\n(.*?)```", response, re.DOTALL)
    if len(blocks) != 1:
        return 0.0
    try:
        tree = ast.parse(blocks[0])
    except SyntaxError:
        return 0.0
    names = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    return float(reference in names)
