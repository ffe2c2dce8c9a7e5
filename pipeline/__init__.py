"""Data-efficient ranking distillation for image retrieval: the library behind the DVC stages."""
