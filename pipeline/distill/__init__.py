"""Ranking distillation: budgeted subsets, interpolated virtual samples, listwise loss, training."""
