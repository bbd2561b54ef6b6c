"""Private machinery shared by every flow: seeding, worker context, and (later) the parallel engine.

Nothing here is public API; public names are re-exported from :mod:`dataflow`.
"""
