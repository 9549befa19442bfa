"""Benchmarks. Run each as a module from the repository root; none of them is part of the tests.

Kept import-free on purpose: `bench.serve_asgi` is timed from spawn to first response, and this
package is imported on that path.
"""
