"""Fixtures shared by the test files (the helpers they import are in flows.py).

no_leaks          after the test: no child process (multiprocessing's, any other child of this
                  process, or a worker under its forkserver), and no thread, file descriptor or
                  shared-memory mapping that was not there before, no /dev/shm segment the test
                  created; what libraries keep for the interpreter's life excepted
                  (flows.LifetimeHelpers: multiprocessing's forkserver and resource tracker,
                  tqdm's monitor thread and lock). Checks what test_engine's leak test and the
                  old per-file active_children() fixtures checked, after every test.
                  Opt in per file: ``pytestmark = pytest.mark.usefixtures("no_leaks")``.
unseeded          after the test: no global seed (set_seed(None)) and no worker info
offline_datasets  dataset folder in tmp_path, downloads pointed at a closed local port, no
                  proxy variables (a flows.LocalServer is reached directly)
local_server      a flows.LocalServer (HTTP on 127.0.0.1), closed after the test
"""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("flows")  # before the first import: its asserts explain themselves

import flows  # noqa: E402
from dataflow._engine.context import set_worker_info  # noqa: E402
from dataflow._engine.seeding import set_seed  # noqa: E402


@pytest.fixture
def no_leaks(monkeypatch):
    flows.LifetimeHelpers.start_lazy_ones()
    created_shm = flows.record_created_shm(monkeypatch)
    before = flows.Held.now()
    yield
    # Children first and before collecting garbage: a worker must be gone when the test ends.
    children = flows.leftover_children()
    assert not children, "\n".join(children)
    leaks = flows.leaks_since(before, created_shm)
    assert not leaks, "\n".join(leaks)


@pytest.fixture
def unseeded():
    yield
    set_seed(None)
    set_worker_info(None)


@pytest.fixture
def offline_datasets(tmp_path, monkeypatch):
    monkeypatch.setenv("DATAFLOW_DATASET", str(tmp_path / "dataset_root"))
    monkeypatch.delenv("TENSORPACK_DATASET", raising=False)
    monkeypatch.setenv("DATAFLOW_DATASET_MIRROR", "http://127.0.0.1:9")  # closed: fails fast
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)  # the local server is reached directly


@pytest.fixture
def local_server():
    server = flows.LocalServer()
    yield server
    server.close()
