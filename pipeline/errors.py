"""The project's own error types, in one module that imports nothing of the project.

A stage turns exactly these into one line naming the file, key or endpoint and the fix (``DERD_DEBUG=1``
keeps the traceback); every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class DerdError(Exception):
    """Something the user can fix: bad params, a missing file, an unreachable service."""


class ParamsError(DerdError, ValueError):
    """A value in params.yaml that the pipeline cannot use."""


class DatasetError(DerdError, RuntimeError):
    """A dataset (its files, images, labels or ground truth) that is missing or not what it should be."""


class ArtifactError(DerdError, RuntimeError):
    """A file the pipeline made and reads back (a stage's output, the teacher's card and answer store,
    a checkpoint, an export) that is missing or not what it should be: the fix names the stage to rerun."""


class WeightsError(DerdError, RuntimeError):
    """Published or given model weights that cannot be found, loaded or fitted to the model asked for."""


class BudgetExceeded(DerdError, RuntimeError):
    """A teacher call that would pass the query budget; raised before the call is made."""


class TeacherError(DerdError, RuntimeError):
    """The teacher cannot be reached or answered something unusable; answers already stored are kept."""


class TeacherChanged(TeacherError):
    """A served teacher now answers stored images differently: it is not the teacher its store belongs to."""


class TrackingError(DerdError, RuntimeError):
    """The MLflow store cannot be reached or written."""
