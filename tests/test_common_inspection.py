"""TestDataSpeed and PrintData (dataflow.common.inspection): rate, description, where it goes."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from dataflow.common import PrintData, TestDataSpeed
from dataflow.errors import DataFlowArgumentError
from flows import OneShot, Src, firsts, ints

pytestmark = pytest.mark.timeout(30)


# -- TestDataSpeed -----------------------------------------------------------------------------
def test_test_data_speed_measures_then_yields_the_upstream(caplog, capsys):
    src = ints(50)
    speed = TestDataSpeed(src, size=20, warmup=5)
    with caplog.at_level(logging.INFO, logger="dataflow.common"):
        out = list(speed)
    assert firsts(out) == list(range(50))
    assert src.passes == 2  # the test pass, then the pass it yields
    assert src.read == 25 + 50  # warmup + size, then the whole pass
    assert speed.rate is not None and speed.rate > 0
    assert "datapoints/s" in caplog.text
    assert "TestDataSpeed" in capsys.readouterr().err  # the progress bar
    assert len(speed) == 50


def test_test_data_speed_start_returns_rate_and_handles_short_upstream(caplog):
    src = OneShot([[i] for i in range(7)])
    with caplog.at_level(logging.INFO, logger="dataflow.common"):
        rate = TestDataSpeed(src, size=100).start()
    assert rate > 0
    assert "ended after 7 of 100" in caplog.text
    # the test pass was closed: a non-reentrant upstream can be iterated again at once
    assert firsts(src) == list(range(7))
    assert TestDataSpeed.start_test is TestDataSpeed.start


def test_test_data_speed_rejects_bad_arguments():
    with pytest.raises(DataFlowArgumentError, match="size"):
        TestDataSpeed(ints(3), size=0)
    with pytest.raises(DataFlowArgumentError, match="warmup"):
        TestDataSpeed(ints(3), warmup=-1)
    with pytest.raises(DataFlowArgumentError, match="ds"):
        TestDataSpeed([1, 2, 3])


def test_test_data_speed_counts_what_it_timed():
    from dataflow.raw import DataFromList

    speed = TestDataSpeed(DataFromList([[i] for i in range(100)], shuffle=False), size=60)
    assert speed.start() > 0 and speed.timed == 60
    short = TestDataSpeed(DataFromList([[i] for i in range(10)], shuffle=False), size=60)
    short.start()
    assert short.timed == 10


# -- PrintData ---------------------------------------------------------------------------------
def test_print_data_describes_first_datapoints_and_passes_everything(caplog):
    dps = [[np.arange(6, dtype=np.int32).reshape(2, 3), 7, "abc", [1.5, [2, [3, [4]]]]]] * 3
    ds = PrintData(Src(dps), num=2, name="mine", max_depth=2, max_list=1)
    with caplog.at_level(logging.INFO, logger="dataflow.common"):
        out = list(ds)
        list(ds)  # a second pass describes nothing more: num counts per process
    assert out == dps and all(a is b for a, b in zip(out, dps))
    text = caplog.text
    assert text.count("DataFlow contents (mine)") == 2
    assert "ndarray int32 of shape (2, 3) in range [0, 5]" in text
    assert "int with value 7" in text
    assert "str of len 3" in text
    assert "list of len 2" in text and "..." in text
    assert len(ds) == 3


def test_print_data_dicts_numpy2_scalars_and_empty_arrays(caplog):
    dp = {"img": np.zeros((0, 4), np.uint8), "label": np.float32(0.5), "ok": np.bool_(True)}
    with caplog.at_level(logging.INFO, logger="dataflow.common"):
        assert list(PrintData(Src([dp]))) == [dp]
    assert "a dict of 3 components" in caplog.text
    assert "img: ndarray uint8 of shape (0, 4)" in caplog.text
    assert "label: float32 with value 0.5" in caplog.text


def test_print_data_writes_to_stderr_when_logging_would_hide_it(capsys):
    log = logging.getLogger("dataflow.common")
    saved = (log.propagate, log.level)
    log.propagate = False  # no handler reaches it
    try:
        list(PrintData(ints(2), name="nohandler"))
        log.propagate = True
        log.setLevel(logging.WARNING)  # INFO disabled
        list(PrintData(ints(2), name="quiet"))
    finally:
        log.propagate = saved[0]
        log.setLevel(saved[1])
    err = capsys.readouterr().err
    assert "DataFlow contents (nohandler): datapoint 0 of 1" in err
    assert "DataFlow contents (quiet)" in err
