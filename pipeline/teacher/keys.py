"""Moved to :mod:`pipeline.teacher.inputs` (what a teacher is asked, and the key of its answer); this
alias is kept only until scripts/bench_stages.py imports from there. Nothing else may import it."""
from pipeline.teacher.inputs import TeacherInputs, pixels_key  # noqa: F401
