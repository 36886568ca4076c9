"""Measuring retrieval quality: metrics, evaluation sets, baselines and the `artsearch eval` commands."""
