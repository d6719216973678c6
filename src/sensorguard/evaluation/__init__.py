"""Metrics (point, event, changepoint) and the benchmark runner."""
