"""The ``dataflow`` command (also ``python -m dataflow``).

Subcommands (each has ``--help``):
    demo      build a small image pipeline on data it generates, run it with a progress bar, and
              print the throughput of every stage.
    bench     import a pipeline factory of yours (``MODULE:FUNCTION`` or ``path/to/file.py:FUNCTION``),
              time the pipeline under :class:`~dataflow.common.TestDataSpeed`, time every stage of
              it, and report the peak memory of the process tree.
    convert   write a folder of images (one sub-folder per class, or a list file) into one LMDB
              file of ``[encoded image bytes, label]`` datapoints (``LMDBSerializer``'s format).
    profile   run a pipeline factory of yours with per-stage counting on and print the stats table
              live and its bottleneck (``--json``, ``--chart out.png``).
    inspect   describe a file written by a serializer (LMDB, .npz, TFRecord, HDF5): format, header,
              count and the first datapoints.
    download  fetch a well-known dataset (``--list`` shows the names).

Exit codes: 0 success; 1 the command ran and failed (one line on stderr,
``dataflow COMMAND: error: ...``, after the traceback of your own code where it raised);
2 a usage error (bad arguments, an input path that does not exist); 130 interrupted (Ctrl-C).

The package holds one module a subcommand (``demo``, ``bench``, ``profile``, ``convert``, ``inspect_cmd``,
``download``), what several of them use (``_shared``), and the parser with the entry point
(``parser``: ``build_parser`` and ``main``, re-exported here for the console script
``dataflow.cli:main``).
"""

from __future__ import annotations

from .parser import build_parser, main

__all__ = ["main", "build_parser"]
