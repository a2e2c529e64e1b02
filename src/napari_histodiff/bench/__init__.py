"""Benchmarks and evidence behind `histodiff bench` and the docs."""
