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
            raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(node) :] + [node]))
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
    assert all(
        Path(REPO / "pipeline/errors.py").read_text().count(f"class {c}(")
        for c in (
            "DerdError",
            "ParamsError",
            "DatasetError",
            "ArtifactError",
            "WeightsError",
            "BudgetExceeded",
            "TeacherError",
            "TrackingError",
        )
    )


def test_the_environment_holds_the_heavy_imports_compiled():
    """Every stage is a fresh process: where PYTHONDONTWRITEBYTECODE is set and the set-up did not compile
    the environment, each of them compiles torch's sources again (about 2.5 s more per process)."""
    import importlib.util
    import struct

    stale = []
    for module in (
        "torch",
        "torch.nn.functional",
        "torch._meta_registrations",
        "mlflow",
        "dvc.repo",
        "pandas",
        "pydantic",
    ):
        source = Path(importlib.util.find_spec(module).origin)
        cached = Path(importlib.util.cache_from_source(str(source)))
        header = cached.read_bytes()[:16] if cached.exists() else b""
        # what the import system checks (PEP 552): the magic number, then either the source's mtime and size
        # (flags 0) or, in a hash-based file (flags bit 0), the source's hash
        if len(header) < 16 or header[:4] != importlib.util.MAGIC_NUMBER:
            stale.append(str(source))
            continue
        flags, mtime, size = struct.unpack("<4xIII", header)
        stat = source.stat()
        fresh = (
            header[8:16] == importlib.util.source_hash(source.read_bytes())
            if flags & 1
            else (mtime, size) == (int(stat.st_mtime) & 0xFFFFFFFF, stat.st_size & 0xFFFFFFFF)
        )
        if not fresh:
            stale.append(str(source))
    assert not stale, (
        f"not compiled: {', '.join(stale)}; ./scripts/setup.sh unit (or test) compiles the environment "
        "(python -m compileall -j 0 .venv/lib/python3*/site-packages)"
    )
