"""Datasets: getting the raw files, reading them, splitting them for retrieval."""
