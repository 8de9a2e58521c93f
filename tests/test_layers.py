"""The import contract: no cycles among openparity's modules (an import inside a function
counts: deferring it hides a cycle from Python, not from a reader), and every import follows the
layer order written in openparity.devtools.module_graph."""

import shutil
from pathlib import Path

from openparity.devtools import module_graph
from openparity.devtools.module_graph import LAYERS, SHARED, SOURCE, build, package_of

PLACED = {p for layer in LAYERS for p in layer} | set(SHARED)


def test_no_module_imports_itself_through_others():
    assert build().cycles() == []


def test_every_import_follows_the_layer_order():
    breaks = [f"{e.source}:{e.line} imports {e.target}" for e in build().layer_breaks()]
    assert breaks == []


def test_every_package_has_a_place_in_the_order():
    unplaced = {package_of(m) for m in build().modules} - PLACED
    assert unplaced == set(), f"add {sorted(unplaced)} to LAYERS or SHARED"


def _copy_with(tmp_path: Path, module: str, line: str) -> Path:
    copy = tmp_path / "openparity"
    shutil.copytree(SOURCE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    path = copy / f"{module.replace('.', '/')}.py"
    path.write_text(path.read_text(encoding="utf-8") + f"\n\ndef _added():\n    {line}\n")
    return copy


def test_a_cycle_hidden_in_a_function_is_caught(tmp_path):
    """bench.movement imports bench.comparison; comparison importing movement back, even inside a
    function, is the cycle this contract exists to stop."""
    copy = _copy_with(tmp_path, "bench.comparison", "from openparity.bench import movement")
    assert ["bench.comparison", "bench.movement"] in build(copy).cycles()


def test_a_low_layer_importing_a_high_one_is_caught(tmp_path):
    copy = _copy_with(tmp_path, "models.base", "import openparity.forecast.montecarlo")
    found = [(e.source, e.target) for e in build(copy).layer_breaks()]
    assert ("models.base", "forecast.montecarlo") in found
    relative = _copy_with(tmp_path / "r", "bench.stats", "from ..route import cascade")
    assert ("bench.stats", "route.cascade") in [
        (e.source, e.target) for e in build(relative).layer_breaks()
    ]


def test_the_counts_script_runs(capsys):
    assert module_graph.main([]) == 0
    shown = capsys.readouterr().out
    assert "cycles: 0" in shown and "layer_breaks: 0" in shown and "modules:" in shown
