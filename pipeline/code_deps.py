"""Which project files each DVC stage runs, and a fingerprint of them.

A stage whose code changes must rerun; a stage must not rerun for code it never runs. Listing every
imported module as a dependency of every stage did that, but made dvc.lock 600 KB, which DVC reads
and rewrites after each of ~100 stages (seconds each). Instead the ``code`` stage writes one small
fingerprint per stage module (the hash of every file it may run) and each stage depends on its own
fingerprint: an edit reruns exactly the stages whose fingerprint changed.

The walk follows imports anywhere in a file (function-level ones included, so the set is what the
stage *may* run) through the project's own packages.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

PACKAGES = ("pipeline", "stages")
FINGERPRINTS = Path("data/code")  # where the code stage writes them (relative to the repository root)


def module_file(root: Path, name: str) -> Path | None:
    path = root / Path(*name.split("."))
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return None


def imports_of(root: Path, path: Path) -> set[str]:
    """Project modules imported anywhere in ``path`` (top level or inside functions)."""
    found: set[str] = set()
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m.split(".")[0] in PACKAGES and module_file(root, m) is not None}


def closure(root: Path, module: str) -> list[Path]:
    """Files (relative to ``root``) of ``module`` and of every project module it imports, with their
    packages' non-empty ``__init__``, sorted."""
    todo, seen = [module], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:k]) for k in range(1, len(parts))]  # parent packages run first
        todo += sorted(imports_of(root, module_file(root, name)))
    files = {module_file(root, m) for m in seen}
    return sorted(f.relative_to(root) for f in files if f.name != "__init__.py" or f.read_text().strip())


def stage_modules(root: Path) -> list[str]:
    """Every runnable stage module (``python -m stages.<name>``)."""
    return sorted(
        f"stages.{p.stem}"
        for p in (root / "stages").glob("*.py")
        if p.stem not in ("__init__", "common") and "__main__" in p.read_text()
    )


def fingerprint(root: Path, module: str) -> str:
    """One line per file the stage may run: its SHA-256 and its path. Same code, same bytes."""
    return "".join(
        f"{hashlib.sha256((root / f).read_bytes()).hexdigest()}  {f.as_posix()}\n" for f in closure(root, module)
    )


def fingerprint_path(module: str) -> str:
    return f"{FINGERPRINTS.as_posix()}/{module}.txt"
