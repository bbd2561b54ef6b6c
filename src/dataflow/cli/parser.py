"""The ``dataflow`` command's argument parser (one sub-parser per subcommand) and its entry point,
``main``: it runs the chosen subcommand and turns its outcome into an exit code."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from ..errors import DataFlowArgumentError, DataFlowError
from ._shared import _non_negative_int, _one_line, _positive_int, _report_error
from .bench import run_bench
from .convert import run_convert
from .demo import run_demo
from .download import run_download
from .inspect_cmd import run_inspect
from .profile import add_profile_parser

__all__ = ["main", "build_parser"]

_EPILOG = (
    "exit codes: 0 success, 1 the command failed (one line on stderr), 2 usage error, "
    "130 interrupted"
)


def build_parser() -> argparse.ArgumentParser:
    """The ``dataflow`` command's argument parser (one sub-parser per subcommand)."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="dataflow",
        description="Fast, exact, leak-free data pipelines for ML training.",
        epilog=_EPILOG,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="run a small pipeline on generated data and print per-stage throughput",
        description="Build a pipeline on images it generates (no network), run it with a "
        "progress bar, and print the throughput of every stage.",
        epilog=_EPILOG,
    )
    demo.add_argument("--size", type=_positive_int, default=1000, help="number of images")
    demo.add_argument("--image-size", type=_positive_int, default=320, help="image width in pixels")
    demo.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes for the parallel variant of the pipeline (default: one per CPU "
        "this process may use; 0: skip it)",
    )
    demo.add_argument("--crop", type=_positive_int, default=112, help="side of the random crop")
    demo.add_argument("--batch-size", type=_positive_int, default=64, help="batch size")
    demo.add_argument("--epochs", type=_positive_int, default=2, help="passes for the progress bar")
    demo.set_defaults(func=run_demo, parser=demo)

    bench = sub.add_parser(
        "bench",
        help="time a pipeline of yours: datapoints/s, per stage, and peak memory",
        formatter_class=fmt,
        description="""\
Import TARGET, a function that takes no argument and returns a DataFlow, build the
pipeline, and time it under TestDataSpeed (--warmup datapoints untimed, then --size timed).

Then every stage is timed alone: the pipeline is walked from its last flow upstream (through
the flows each one holds, as dataflow.base.upstream_flows finds them), and for each flow a
fresh pipeline is built by calling TARGET again and that flow is iterated by itself, with
everything upstream of it. Rates count what the stage yields ("yields/s") and source
datapoints ("datapoints/s": a batch of B counts B); "us/datapoint added" is what the stage
costs on top of what it reads. The stages are timed without a progress bar: for a
pipeline faster than about 100k datapoints/s, TestDataSpeed's bar (about 2 us per
datapoint) lowers the first figure, and the table's first row is the better one.
Peak memory is the summed PSS of this process and its workers while the pipeline ran
(sampled, Linux), and getrusage's max RSS.

TARGET is MODULE:FUNCTION (MODULE importable from the current folder) or
path/to/file.py:FUNCTION; FUNCTION may be dotted (Class.method).""",
        epilog=_EPILOG,
    )
    bench.add_argument("target", metavar="TARGET", help="MODULE:FUNCTION or FILE.py:FUNCTION")
    bench.add_argument(
        "--size", type=_positive_int, default=5000, help="datapoints to time (default 5000)"
    )
    bench.add_argument(
        "--warmup",
        type=_non_negative_int,
        default=0,
        help="datapoints taken untimed before the clock starts (default 0)",
    )
    bench.add_argument(
        "--no-stages", action="store_true", help="time the whole pipeline only, not each stage"
    )
    bench.add_argument(
        "--no-stats",
        action="store_true",
        help="time the whole pipeline with per-stage counting off (no bottleneck shown)",
    )
    bench.set_defaults(func=run_bench, parser=bench)
    add_profile_parser(sub, _EPILOG)

    convert = sub.add_parser(
        "convert",
        help="write an image folder into one LMDB file of [encoded image, label]",
        formatter_class=fmt,
        description="""\
Write the images under IMAGE_DIR into the LMDB database OUT, one datapoint
[uint8 array of the encoded image, int label] per image, in LMDBSerializer's format: read it
with LMDBSerializer.load(OUT) and decode with dataflow.imdecode.

Labels: by default IMAGE_DIR holds one sub-folder per class (searched recursively for
files with an image extension), and the label is the index of the sub-folder in sorted order.
With --list FILE, each line of FILE is "relative/path label" (paths relative to IMAGE_DIR;
blank lines and # comments are skipped).

The file bytes are stored as they are (every image is decoded once to check it); with
--resize N the image is resized so that its shorter side is N pixels and re-encoded as JPEG.
A file that cannot be read or decoded (or a truncated JPEG) is reported by name, then
skipped or the conversion fails (--on-error). Nothing is written under OUT unless the
conversion succeeds. The images are written in a random order (--seed) so that reading the
file in order with a LocallyShuffleData is enough; --no-shuffle keeps the sorted order.""",
        epilog=_EPILOG,
    )
    convert.add_argument("image_dir", metavar="IMAGE_DIR", help="the folder of images")
    convert.add_argument("out", metavar="OUT", help="the LMDB file to create (e.g. train.lmdb)")
    convert.add_argument("--list", metavar="FILE", help='a file of "relative/path label" lines')
    convert.add_argument(
        "--resize",
        type=_positive_int,
        metavar="N",
        help="resize to a shorter side of N pixels and store as JPEG",
    )
    convert.add_argument(
        "--quality",
        type=int,
        choices=range(1, 101),
        default=95,
        metavar="Q",
        help="JPEG quality with --resize (1-100, default 95)",
    )
    convert.add_argument(
        "--on-error",
        choices=("skip", "fail"),
        default="fail",
        help="what a bad image does: skip it (reported) or fail the conversion (default fail)",
    )
    convert.add_argument(
        "--shuffle",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write in a random order (default) or in sorted/list order",
    )
    convert.add_argument("--seed", type=int, default=0, help="seed of the order (default 0)")
    convert.add_argument(
        "--workers",
        type=_positive_int,
        default=min(4, os.cpu_count() or 1),
        help="threads that read and check images (default: up to 4)",
    )
    convert.set_defaults(func=run_convert, parser=convert)

    inspect = sub.add_parser(
        "inspect",
        help="describe a file written by a serializer: format, header, count, first datapoints",
        description="Describe FILE: an LMDB database (LMDBSerializer's, tensorpack's, or raw), "
        "a NumpySerializer .npz, a TFRecord or an HDF5 file. Prints the format, the header, "
        "the number of datapoints and a description of the first ones (as PrintData does).",
        epilog=_EPILOG,
    )
    inspect.add_argument("file", metavar="FILE", help="the file (or LMDB directory)")
    inspect.add_argument(
        "--num", type=_non_negative_int, default=2, help="datapoints to describe (default 2)"
    )
    inspect.add_argument(
        "--allow-pickle",
        action="store_true",
        help="also read pickled datapoints (tensorpack's files): only for files you trust",
    )
    inspect.set_defaults(func=run_inspect, parser=inspect)

    download = sub.add_parser(
        "download",
        help="download a well-known dataset (--list shows them)",
        description="Download every file of dataset NAME into DIR (default: where its reader "
        "looks: $DATAFLOW_DATASET/<folder>, else $TENSORPACK_DATASET/<folder>, else "
        "~/dataflow_data/<folder>), verified against the published checksums. Interrupted "
        "downloads resume; files already present are verified, never overwritten.",
        epilog=_EPILOG,
    )
    download.add_argument("name", metavar="NAME", nargs="?", help="the dataset (see --list)")
    download.add_argument("--list", action="store_true", help="list the datasets and exit")
    download.add_argument("--dir", metavar="DIR", help="the folder to download into")
    download.add_argument(
        "--mirror",
        metavar="URL",
        help="fetch FILE from URL/NAME/FILE (default $DATAFLOW_DATASET_MIRROR, else the "
        "published addresses)",
    )
    download.add_argument(
        "--no-verify",
        action="store_true",
        help="do not check files that are already present",
    )
    download.add_argument(
        "--retries",
        type=_non_negative_int,
        default=3,
        help="times an interrupted transfer is resumed (default 3)",
    )
    download.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar (default: when stderr is a terminal)",
    )
    download.set_defaults(func=run_download, parser=download)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dataflow`` command; returns the exit code.

    Argument errors exit through ``SystemExit(2)`` from argparse; every other outcome is returned.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.version:
        from .. import __version__

        print(__version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except DataFlowArgumentError as e:  # a usage error found after parsing
        args.parser.print_usage(sys.stderr)
        print(f"dataflow {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except (DataFlowError, OSError, ImportError) as e:
        return _report_error(args.command, e)
