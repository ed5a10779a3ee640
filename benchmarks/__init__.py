"""Benchmarks for nexus-connector: our policies and runtime against bare calls and peers.

Run ``python -m benchmarks --help`` from the repository root; see DESIGN.md §8.
"""
