"""`dataflow bench` (dataflow.cli.bench), run as a user runs it: a subprocess."""

from __future__ import annotations

import sys
import textwrap

import pytest

from test_cli_parser import last_line, run_in, run_main

PIPELINE = textwrap.dedent(
    """
    import numpy as np
    from dataflow import BatchData, DataFromList, MapData

    def double(dp):
        return [dp[0] * 2]

    def make():
        ds = DataFromList([[np.float32(i)] for i in range(400)], shuffle=False)
        ds = MapData(ds, double)
        return BatchData(ds, 8)

    def broken():
        raise ValueError("boom in the factory")

    def not_a_flow():
        return 42

    def fails_at_5(dp):
        if dp[0] == 5:
            raise KeyError("no datapoint 5 here")
        return dp

    def raises_later():
        return MapData(DataFromList([[i] for i in range(10)], shuffle=False), fails_at_5)
    """
)

PARALLEL_PIPELINE = textwrap.dedent(
    """
    from dataflow import BatchData, DataFromList
    from dataflow.parallel_map import MultiProcessMapData

    def square(dp):
        return [dp[0] ** 2]

    def make():
        ds = DataFromList([[i] for i in range(300)], shuffle=True)
        return BatchData(MultiProcessMapData(ds, 2, square), 10)
    """
)


def stage_rows(out: str) -> dict[str, list[str]]:
    table = out.split("per-stage throughput", 1)[1].split("\n\n", 1)[0]
    return {
        line.split()[0].split("(")[0]: line.split()
        for line in table.splitlines()[2:]
        if line.strip()
    }


@pytest.mark.timeout(60)
def test_bench_times_the_pipeline_each_stage_and_memory(tmp_path):
    (tmp_path / "mypipe.py").write_text(PIPELINE)
    result = run_in(tmp_path, "bench", "mypipe:make", "--size", "30", "--warmup", "2")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    rate = float(out.split("pipeline: ", 1)[1].split(" datapoints/s")[0].replace(",", ""))
    assert rate > 0
    assert "batches of 8" in out
    rows = stage_rows(out)
    assert list(rows) == ["BatchData", "MapData", "DataFromList"]
    assert "batch_size=8" in rows["BatchData"][0]
    for row in rows.values():
        assert float(row[-3].replace(",", "")) > 0  # yields/s
    # a batch counts its 8 source datapoints
    batch = rows["BatchData"]
    assert float(batch[-2].replace(",", "")) == pytest.approx(
        8 * float(batch[-3].replace(",", "")), rel=1e-3
    )
    assert "the most expensive stage is" in out
    assert "PSS of the process tree" in out and "max RSS" in out
    assert "TestDataSpeed" in result.stderr  # it ran under TestDataSpeed (its progress bar)


@pytest.mark.timeout(90)
def test_bench_a_file_target_with_worker_processes(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "parallel_pipe.py").write_text(PARALLEL_PIPELINE)
    result = run_in(tmp_path, "bench", "sub/parallel_pipe.py:make", "--size", "20")
    assert result.returncode == 0, result.stderr
    rows = stage_rows(result.stdout)
    assert list(rows) == ["BatchData", "MultiProcessMapData", "DataFromList"]
    assert "num_proc=2" in rows["MultiProcessMapData"][0]
    # the consumer and its two workers were measured together
    processes = int(result.stdout.split("PSS of the process tree while the pipeline ran (")[1][0])
    assert processes >= 3


@pytest.mark.timeout(60)
def test_bench_errors_have_exit_codes_and_one_line_messages(tmp_path, capsys, monkeypatch):
    (tmp_path / "badpipe.py").write_text(PIPELINE)
    result = run_in(tmp_path, "bench", "badpipe:broken")
    assert result.returncode == 1
    assert 'badpipe.py", line' in result.stderr  # the user's traceback
    assert last_line(result.stderr) == (
        "dataflow bench: error: badpipe:broken() raised ValueError: boom in the factory"
    )

    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(capsys, "bench", "no_colon_here")
    assert code == 2 and "MODULE:FUNCTION" in err
    code, _, err = run_main(capsys, "bench", "badpipe:not_a_flow")
    assert code == 1 and last_line(err).endswith("returned a int, not a DataFlow")
    code, _, err = run_main(capsys, "bench", "badpipe:missing")
    assert code == 1 and "has no attribute 'missing'" in last_line(err)
    code, _, err = run_main(capsys, "bench", "no_such_module_xyz:make")
    assert code == 1 and "cannot import module 'no_such_module_xyz'" in last_line(err)
    code, _, err = run_main(capsys, "bench", "missing_file.py:make")
    assert code == 2 and "no such file" in err
    code, _, err = run_main(capsys, "bench", "badpipe:make", "--size", "0")
    assert code == 2
    code, _, err = run_main(capsys, "bench", "badpipe:raises_later", "--size", "20")
    assert code == 1 and "in fails_at_5" in err
    assert last_line(err) == (
        "dataflow bench: error: the pipeline raised KeyError: 'no datapoint 5 here'"
    )
