"""Private machinery shared by every flow: seeding, worker context, and the parallel engine under
the runners and parallel maps (pools, worker processes, the shared-memory transport).

Nothing here is public API; public names are re-exported from :mod:`dataflow`. Which module does
what: docs/architecture.md.
"""
