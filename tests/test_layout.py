"""Code a newcomer can change: no import cycles among the project's modules, and one module for the
project's own error types."""
import ast
from pathlib import Path

from pipeline.code_deps import imports_of
from scripts.stage_deps import REPO


def modules():
    for path in sorted((REPO / "pipeline").rglob("*.py")) + sorted((REPO / "stages").glob("*.py")):
        yield ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"), path


def test_no_import_cycles():
    graph = {name: {m.removesuffix(".__init__") for m in imports_of(REPO, path)} - {name} for name, path in modules()}
    state: dict[str, int] = {}

    def visit(node, trail):
        if state.get(node) == 1:
            raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(node):] + [node]))
        if state.get(node) == 2 or node not in graph:
            return
        state[node] = 1
        for nxt in sorted(graph[node]):
            visit(nxt, trail + [node])
        state[node] = 2

    for name in graph:
        visit(name, [])


def test_the_projects_error_types_live_in_one_module():
    defined = {}
    for name, path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name.endswith(("Error", "Exceeded", "Changed")):
                defined.setdefault(node.name, []).append(name)
    outside = {cls: where for cls, where in defined.items() if where != ["pipeline.errors"]}
    # the teacher's call outcomes are signals between a client and the gate, never shown to a user
    assert set(outside) <= {"CallError", "UnsafePickleError"}, outside
    assert all(Path(REPO / "pipeline/errors.py").read_text().count(f"class {c}(") for c in
               ("DerdError", "ParamsError", "DatasetError", "ArtifactError", "WeightsError", "BudgetExceeded",
                "TeacherError", "TrackingError"))


def test_the_environment_holds_the_heavy_imports_compiled():
    """Every stage is a fresh process: where PYTHONDONTWRITEBYTECODE is set and the set-up did not compile
    the environment, each of them compiles torch's sources again (about 2.5 s more per process)."""
    import importlib.util
    import struct

    stale = []
    for module in ("torch", "torch.nn.functional", "torch._meta_registrations", "mlflow", "dvc.repo", "pandas",
                   "pydantic"):
        source = Path(importlib.util.find_spec(module).origin)
        cached = Path(importlib.util.cache_from_source(str(source)))
        # what the import system checks: the source's mtime and size recorded in the .pyc's header
        header = cached.read_bytes()[:16] if cached.exists() else b""
        stat = source.stat()
        if len(header) < 16 or struct.unpack("<4xIII", header)[1:] != (int(stat.st_mtime) & 0xFFFFFFFF,
                                                                          stat.st_size & 0xFFFFFFFF):
            stale.append(str(source))
    assert not stale, (f"not compiled: {', '.join(stale)}; ./scripts/setup.sh compiles the environment (uv's "
                       "--compile-bytecode), or run python -m compileall on it")
