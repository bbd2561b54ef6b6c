"""``dataflow profile``: run a pipeline of the user's (a factory loaded by ``_shared``) with
per-stage counting on, print the stats table live and the bottleneck at the end, optionally as
JSON and as a PNG chart (dataflow._stats)."""

from __future__ import annotations

import argparse
import json
import sys
import time

from ._shared import _build, _load_factory, _report_error, _user_traceback


def run_profile(args: argparse.Namespace) -> int:
    from .. import _stats

    factory, target = _load_factory(args.target)  # (a failure is reported by main)
    was_on = _stats.enabled()
    _stats.enable()  # before the pipeline is built: passes begun by the factory count too
    try:
        flow = _build(factory, target)
        try:
            with flow:
                seen = _drive(flow, args)
                final = flow.stats()
        except Exception as e:
            _user_traceback(e)
            return _report_error("profile", f"the pipeline raised {type(e).__name__}: {e}")
    finally:
        _stats.enable(was_on)
    if not seen:
        return _report_error("profile", "the pipeline yielded no datapoints")
    if args.json:
        print(json.dumps(final.to_dict(), indent=1))
    else:
        print(f"\ndataflow profile: {target}, {seen} datapoints")
        print(final)
    if args.chart:
        final.plot(args.chart)
        print(f"chart written to {args.chart}", file=sys.stderr)
    return 0


def _drive(flow: object, args: argparse.Namespace) -> int:
    """Iterate ``flow`` for ``--seconds`` from its first datapoint (start-up is not counted in;
    passes after the first included, if it ends sooner); print the table every ``--every`` seconds
    on stderr. Returns the datapoints taken."""
    clock = time.monotonic
    start = clock()
    end = due = float("inf")
    seen = 0
    while True:
        before = seen
        for _ in flow:  # type: ignore[attr-defined]
            seen += 1
            now = clock()
            if seen == 1:
                end, due = now + args.seconds, now + args.every
            if now >= due and not args.json:
                print(f"\n[{now - start:.1f} s]\n{flow.stats()}", file=sys.stderr)  # type: ignore[attr-defined]
                due = now + args.every
            if now >= end:
                return seen
        if seen == before or clock() >= end:
            return seen


def add_profile_parser(sub: argparse._SubParsersAction, epilog: str) -> None:
    profile = sub.add_parser(
        "profile",
        help="run a pipeline of yours and find its bottleneck (per-stage stats, live)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Import TARGET, a function that takes no argument and returns a DataFlow, build the
pipeline with per-stage counting on, and iterate it for --seconds after its first datapoint
(more passes if one ends sooner). Every --every seconds the stats table is printed on stderr; at the end the table
and the bottleneck (the stage the consumer waited on most, see docs/bottleneck.md) are
printed, or the same as JSON with --json, and --chart writes a PNG chart
(needs matplotlib: pip install 'pydataflow[plot]').

TARGET is MODULE:FUNCTION (MODULE importable from the current folder) or
path/to/file.py:FUNCTION; FUNCTION may be dotted (Class.method).""",
        epilog=epilog,
    )
    profile.add_argument("target", metavar="TARGET", help="MODULE:FUNCTION or FILE.py:FUNCTION")
    profile.add_argument(
        "--seconds",
        type=_positive_float,
        default=10.0,
        help="how long to run after the first datapoint (default 10)",
    )
    profile.add_argument(
        "--every",
        type=_positive_float,
        default=2.0,
        help="seconds between live tables on stderr (default 2)",
    )
    profile.add_argument("--chart", metavar="OUT.png", help="write a PNG chart of the stats")
    profile.add_argument("--json", action="store_true", help="print the final stats as JSON")
    profile.set_defaults(func=run_profile, parser=profile)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value
