"""Benchmarks: each prints Kairos's figure beside its baseline, measured in the same run."""
