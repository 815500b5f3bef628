"""Benchmarks and probes: scoring, encoder and GPU throughput, memory reports, probes, the data curve."""
