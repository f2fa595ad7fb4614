"""The package layering (tt_core never reaches the UI; its subsystems import downwards only)
and short functions.

Read from the source (every import statement, including ones inside functions), so a
lazy import cannot hide an upward dependency.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# tt_core's layers, lowest first. The top-level modules (errors, config, events, controls,
# device, distributed, durable) are the vocabulary every subsystem shares: layer 0.
LAYERS = ["data", "model", "runs", "pretrained", "plan", "train", "jobs"]
UI_LIBRARIES = {"textual", "textual_plotext", "typer", "rich", "plotext", "tt_tui"}


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) for every import in `path`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from tt_core.runs import checkpoint` imports tt_core.runs.checkpoint
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def layer_of(module: str) -> int | None:
    """The layer of a tt_core module name (None for names outside tt_core)."""
    parts = module.split(".")
    if parts[0] != "tt_core" or len(parts) == 1:
        return None
    if parts[1] in LAYERS:
        return 1 + LAYERS.index(parts[1])
    return 0


def core_modules() -> list[Path]:
    return sorted((ROOT / "tt_core").rglob("*.py"))


def test_every_tt_core_package_has_a_place_in_the_layer_order():
    packages = {p.parent.relative_to(ROOT / "tt_core").parts[0]
                for p in core_modules() if p.parent != ROOT / "tt_core"}
    assert packages == set(LAYERS), "a new package must be given its layer in LAYERS"


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_tt_core_never_imports_the_ui(path):
    for line, module in imports(path):
        assert module.split(".")[0] not in UI_LIBRARIES, f"{path.name}:{line} imports {module}"


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_tt_core_module_imports_only_its_own_layer_and_lower_ones(path):
    own = layer_of(".".join(path.relative_to(ROOT).with_suffix("").parts))
    for line, module in imports(path):
        theirs = layer_of(module)
        if theirs is None:
            continue
        assert theirs <= own, (
            f"{path.relative_to(ROOT)}:{line} imports {module}, a higher layer "
            f"({(['shared'] + LAYERS)[theirs]} above {(['shared'] + LAYERS)[own]})"
        )


def test_the_layer_check_catches_an_upward_import(tmp_path):
    """The check itself: a planner module that imported the trainer would fail it."""
    bad = tmp_path / "beam_search.py"
    bad.write_text("def f():\n    from tt_core.train.trainer import Trainer\n")
    ups = [m for _, m in imports(bad) if (layer_of(m) or 0) > layer_of("tt_core.plan.beam_search")]
    assert ups == ["tt_core.train.trainer", "tt_core.train.trainer.Trainer"]


MAX_FUNCTION_LINES = 60
LONG_REASON = "# long:"  # on the def line's preceding line: why this function stays long


def test_no_function_is_over_60_lines_without_a_written_reason():
    long = []
    for path in sorted((ROOT / "tt_core").rglob("*.py")) + sorted((ROOT / "tt_tui").rglob("*.py")):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                reason = lines[first - 2].strip().startswith(LONG_REASON) if first > 1 else False
                if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES and not reason:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert long == []
