"""One thin command per DVC stage: parse the CLI, read files, call ``pipeline``, write outputs."""
