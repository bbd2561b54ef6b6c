"""dataflow._engine.shm: without memfd, the named shared-memory fallback carries the rings and is
unlinked on close."""

from __future__ import annotations

import pytest

from dataflow.parallel import MultiProcessRunnerZMQ
from flows import Megabytes, shm_segments


@pytest.mark.timeout(60)
def test_named_shared_memory_fallback_works_and_is_unlinked(monkeypatch):
    import dataflow._engine.shm as shm_module

    monkeypatch.setattr(shm_module, "_HAVE_MEMFD", False)  # as on a platform without memfd
    shm = shm_segments()
    with MultiProcessRunnerZMQ(Megabytes(6), num_proc=2, start_method="fork") as ds:
        ds.reset_state()
        ours = {seg._shm.name for seg in ds._pool._segs}  # one named segment per worker
        assert len(ours) == 2 and ours <= shm_segments() - shm
        out = list(ds)
    assert len(out) == 6 and all((arr == i % 251).all() for arr, i in out)
    assert not ours & shm_segments()
