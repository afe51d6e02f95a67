"""Benchmarks, load tests and fault drills: tooling that measures the product from outside.

Installed only in the local and test settings (never in production, and the Docker image does not copy it).
Everything here uses the product's public services and selectors, never its private helpers.
"""
