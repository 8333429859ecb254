"""Evaluation beyond one table: per-region scores, calibration, uncertainty, pictures."""
