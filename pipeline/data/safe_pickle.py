"""Load ground-truth pickles without letting them run code.

The revisited benchmarks publish ``gnd_*.pkl``: dicts and lists of numpy arrays. This unpickler
admits exactly the globals those need, so a malicious pickle fails instead of executing.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from pipeline.errors import DatasetError

_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("builtins", "slice"),
    ("_codecs", "encode"),  # how protocol-2 pickles (Python 2 compatible) store bytes
}


class UnsafePickleError(DatasetError, pickle.UnpicklingError):
    """A pickle that asks for code, not data: refused before anything of it runs."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise UnsafePickleError(f"refused to load global {module}.{name}: ground-truth files hold only data")


def load_pickle(path: Path):
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f, encoding="latin1").load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{path}: {exc}") from exc
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable pickle ({exc}); download it again") from exc
