"""The ``dataflow`` command (also ``python -m dataflow``).

Subcommands (each has ``--help``):
    demo      build a small image pipeline on data it generates, run it with a progress bar, and
              print the throughput of every stage.
    bench     import a pipeline factory of yours (``MODULE:FUNCTION`` or ``path/to/file.py:FUNCTION``),
              time the pipeline under :class:`~dataflow.common.TestDataSpeed`, time every stage of
              it, and report the peak memory of the process tree.
    convert   write a folder of images (one sub-folder per class, or a list file) into one LMDB
              file of ``[encoded image bytes, label]`` datapoints (``LMDBSerializer``'s format).
    inspect   describe a file written by a serializer (LMDB, .npz, TFRecord, HDF5): format, header,
              count and the first datapoints.
    download  fetch a well-known dataset (``--list`` shows the names).

Exit codes: 0 success; 1 the command ran and failed (one line on stderr,
``dataflow COMMAND: error: ...``, after the traceback of your own code where it raised);
2 a usage error (bad arguments, an input path that does not exist); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import logging
import os
import random
import resource
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

import numpy as np

from .errors import DataFlowArgumentError, DataFlowError, FormatError

__all__ = ["main", "build_parser"]

logger = logging.getLogger(__name__)


@dataclass
class StageRate:
    name: str
    datapoints: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.datapoints / self.seconds if self.seconds > 0 else float("inf")


def _synthetic_images(num: int, size: int) -> list[np.ndarray]:
    """Smooth random pictures (upscaled noise plus grain): they compress like photos do."""
    import cv2

    rng = np.random.RandomState(0)
    images = []
    for _ in range(num):
        coarse = rng.randint(0, 256, (8, 8, 3), dtype=np.uint8)
        img = cv2.resize(coarse, (size, size * 3 // 4), interpolation=cv2.INTER_CUBIC)
        grain = rng.randint(-12, 13, img.shape)
        images.append(np.clip(img.astype(np.int16) + grain, 0, 255).astype(np.uint8))
    return images


def _image_stages(args: argparse.Namespace) -> list[tuple[str, Callable]]:
    """JPEG bytes -> decode -> random-resized crop + flip -> batch: a realistic image pipeline."""
    import cv2

    from . import imgaug
    from .common import BatchData, MapDataComponent
    from .image import AugmentImageComponent, imdecode
    from .raw import DataFromList

    jpegs = [
        cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        for img in _synthetic_images(args.size, args.image_size)
    ]
    records = [[jpeg, i % 10] for i, jpeg in enumerate(jpegs)]
    crop = args.crop

    def source():
        return DataFromList(records, shuffle=True)

    def decoded():
        return MapDataComponent(source(), imdecode, index=0)

    def augmented():
        augmentors = [
            imgaug.GoogleNetRandomCropAndResize(target_shape=crop),
            imgaug.Flip(horiz=True),
        ]
        return AugmentImageComponent(decoded(), augmentors, index=0, copy=False)

    def batched():
        return BatchData(augmented(), args.batch_size, remainder=True)

    def in_workers():
        # The same decode + augment, run in worker processes by one parallel map.
        from .parallel_map import MultiProcessMapData

        augmentors = imgaug.AugmentorList(
            [imgaug.GoogleNetRandomCropAndResize(target_shape=crop), imgaug.Flip(horiz=True)]
        )

        def decode_and_augment(dp: list) -> list:
            return [augmentors.augment(imdecode(dp[0])), dp[1]]

        mapped = MultiProcessMapData(source(), num_proc=args.workers, map_func=decode_and_augment)
        return BatchData(mapped, args.batch_size, remainder=True)

    stages = [
        ("source: DataFromList (JPEG bytes)", source),
        ("map: imdecode", decoded),
        (f"augment: random crop {crop} + flip", augmented),
        (f"batch: BatchData({args.batch_size})", batched),
    ]
    if args.workers > 0:
        stages.append((f"parallel: the same in {args.workers} worker processes", in_workers))
    return stages


def _array_stages(args: argparse.Namespace) -> list[tuple[str, Callable]]:
    """The pipeline without OpenCV: raw uint8 arrays -> normalize -> flip -> batch."""
    from .common import BatchData, MapData, MapDataComponent
    from .raw import DataFromList

    rng = np.random.RandomState(0)
    side = args.image_size
    records = [
        [rng.randint(0, 256, (side, side, 3), dtype=np.uint8), i % 10] for i in range(args.size)
    ]

    def source():
        return DataFromList(records, shuffle=True)

    def normalize(img: np.ndarray) -> np.ndarray:
        return (img.astype(np.float32) - 127.5) / 127.5

    def flip(dp: list) -> list:
        img, label = dp
        return [img[:, ::-1] if label % 2 else img, label]

    def normalized():
        return MapDataComponent(source(), normalize, index=0)

    def flipped():
        return MapData(normalized(), flip)

    def batched():
        return BatchData(flipped(), args.batch_size, remainder=True)

    return [
        ("source: DataFromList (arrays)", source),
        ("map: normalize to float32", normalized),
        ("map: flip", flipped),
        (f"batch: BatchData({args.batch_size})", batched),
    ]


def _demo_stages(args: argparse.Namespace) -> tuple[str, list[tuple[str, Callable]]]:
    try:
        import cv2  # noqa: F401
    except ImportError:
        return "arrays (install pydataflow[image] for the JPEG pipeline)", _array_stages(args)
    return "JPEG images", _image_stages(args)


def _time_pipeline(df, datapoints_per_item: int) -> tuple[int, float]:
    df.reset_state()
    start = time.perf_counter()
    count = 0
    for _ in df:
        count += datapoints_per_item
    seconds = time.perf_counter() - start
    df.close()
    return count, seconds


def run_demo(args: argparse.Namespace) -> int:
    from .common import RepeatedData, TestDataSpeed

    kind, all_stages = _demo_stages(args)
    stages = [stage for stage in all_stages if not stage[0].startswith("parallel")]
    parallel = [stage for stage in all_stages if stage[0].startswith("parallel")]
    print(
        f"dataflow demo: {args.size} generated {kind}, {args.image_size} px wide, "
        f"{len(stages)} stages, {args.epochs} epoch(s)"
    )
    # The progress bar runs the fastest variant: in workers when there are some.
    full = RepeatedData((parallel or stages)[-1][1](), args.epochs)
    with full:
        TestDataSpeed(full, size=len(full)).start()

    def measure(name: str, build: Callable) -> StageRate:
        per_item = args.batch_size if name.startswith(("batch", "parallel")) else 1
        count, seconds = _time_pipeline(build(), per_item)
        return StageRate(name, count, seconds)

    rates = [measure(name, build) for name, build in stages]

    print("\nper-stage throughput (pipeline up to and including the stage):")
    print(f"  {'stage':<42} {'datapoints/s':>14} {'us/datapoint added':>20}")
    previous = 0.0
    for rate in rates:
        cost = 1e6 / rate.per_second
        print(f"  {rate.name:<42} {rate.per_second:>14,.0f} {cost - previous:>20.2f}")
        previous = cost
    for name, build in parallel:
        rate = measure(name, build)
        speedup = rate.per_second / rates[-1].per_second
        print(f"  {rate.name:<42} {rate.per_second:>14,.0f} {speedup:>19.2f}x")
    slowest = max(
        range(len(rates)),
        key=lambda i: (1e6 / rates[i].per_second) - (1e6 / rates[i - 1].per_second if i else 0.0),
    )
    print(f"\nthe most expensive stage is: {rates[slowest].name}")
    return 0


# -- shared helpers -------------------------------------------------------------------------------


def _one_line(message: object) -> str:
    """A message on one line (library messages may list details on further lines)."""
    return " ".join(str(message).split())


def _report_error(command: str, message: object) -> int:
    """Print the one-line error of a failed command; return its exit code (1)."""
    print(f"dataflow {command}: error: {_one_line(message)}", file=sys.stderr)
    return 1


def _user_traceback(error: BaseException) -> None:
    """Print the traceback of an exception raised by the user's code, without our own frames."""
    tb = error.__traceback__
    here = os.path.abspath(__file__)
    while tb is not None and (
        os.path.abspath(tb.tb_frame.f_code.co_filename) == here
        or tb.tb_frame.f_code.co_filename.startswith("<frozen importlib")
    ):
        tb = tb.tb_next
    traceback.print_exception(type(error), error, tb, file=sys.stderr)


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _path_size(path: str) -> int:
    if os.path.isdir(path):
        return sum(
            os.path.getsize(os.path.join(root, f))
            for root, _, files in os.walk(path)
            for f in files
        )
    return os.path.getsize(path)


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text}")
    return value


# -- download -------------------------------------------------------------------------------------


def run_download(args: argparse.Namespace) -> int:
    from .dataset import _download

    if args.list:
        if args.name is not None:
            raise DataFlowArgumentError("give either NAME or --list, not both")
        return _list_datasets(_download)
    if args.name is None:
        raise DataFlowArgumentError("NAME is required (dataflow download --list shows the names)")
    names = _download.dataset_names()
    if args.name not in names:
        raise DataFlowArgumentError(
            f"unknown dataset {args.name!r}; known: {', '.join(names)} "
            "(dataflow download --list describes them)"
        )
    info = _download.describe(args.name)
    directory = _download.download(
        args.name,
        args.dir,
        base_url=args.mirror,
        progress=args.progress,
        verify=not args.no_verify,
        retries=args.retries,
    )
    files = [f["filename"] for f in info["files"]]
    present = [f for f in files if os.path.exists(os.path.join(directory, f))]
    size = sum(os.path.getsize(os.path.join(directory, f)) for f in present)
    print(
        f"{args.name}: {len(files)} file(s) ready in {directory}"
        + (f" ({_human_bytes(size)})" if present else " (archives extracted and removed)")
    )
    return 0


def _list_datasets(_download: Any) -> int:
    rows = []
    for name in _download.dataset_names():
        info = _download.describe(name)
        sizes = [f["size"] for f in info["files"]]
        size = _human_bytes(sum(sizes)) if all(s is not None for s in sizes) else "?"
        rows.append((name, size, info["description"]))
    width = max(len(r[0]) for r in rows)
    print(f"{'name':<{width}}  {'size':>9}  description")
    for name, size, description in rows:
        print(f"{name:<{width}}  {size:>9}  {description}")
    root = _download.dataset_root()
    print(
        f"\nFiles go to DIR, default $DATAFLOW_DATASET/<folder> (else $TENSORPACK_DATASET, else "
        f"~/dataflow_data; now: {root}). $DATAFLOW_DATASET_MIRROR (or --mirror) fetches from a "
        "mirror laid out as NAME/FILE."
    )
    return 0


# -- bench: loading the user's factory ------------------------------------------------------------


def _import_file(path: str) -> Any:
    directory = os.path.dirname(path)
    if directory not in sys.path:
        sys.path.insert(0, directory)  # so that the file's sibling modules import
    stem = os.path.splitext(os.path.basename(path))[0]
    name = stem if stem.isidentifier() and stem not in sys.modules else f"_dataflow_bench_{stem}"
    name = name if name.isidentifier() else "_dataflow_bench_module"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise DataFlowArgumentError(f"{path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # (pickling functions of the module needs it registered)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _load_factory(target: str) -> tuple[Callable[[], Any], str]:
    """The callable named by ``MODULE:FUNCTION`` or ``FILE.py:FUNCTION`` (dots walk attributes)."""
    where, sep, attr = target.rpartition(":")
    if not sep or not where or not attr:
        raise DataFlowArgumentError(
            f"TARGET must be MODULE:FUNCTION or path/to/file.py:FUNCTION, got {target!r}"
        )
    is_file = where.endswith(".py") or os.sep in where or "/" in where
    path = os.path.abspath(where)
    if is_file and not os.path.isfile(path):
        raise DataFlowArgumentError(f"{where}: no such file")
    try:
        if is_file:
            module = _import_file(path)
        else:
            if os.getcwd() not in sys.path and "" not in sys.path:
                sys.path.insert(0, os.getcwd())  # MODULE is looked for in the current folder
            module = importlib.import_module(where)
    except ModuleNotFoundError as e:
        if (
            not is_file
            and e.name is not None
            and (where == e.name or where.startswith(e.name + "."))
        ):
            raise DataFlowError(
                f"cannot import module {where!r}: {e}. Run from the folder that holds it, or give "
                "a file path (path/to/file.py:FUNCTION)"
            ) from None
        _user_traceback(e)
        raise DataFlowError(f"importing {where} failed: {type(e).__name__}: {e}") from e
    except Exception as e:
        _user_traceback(e)
        raise DataFlowError(f"importing {where} failed: {type(e).__name__}: {e}") from e
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise DataFlowError(f"{where} has no attribute {attr!r}") from None
    if not callable(obj):
        raise DataFlowError(
            f"{target} is a {type(obj).__name__}, not a function that returns a DataFlow"
        )
    return obj, target


def _build(factory: Callable[[], Any], target: str) -> Any:
    """Call the factory; check that it returned a flow."""
    from .base import DataFlow

    try:
        flow = factory()
    except Exception as e:
        _user_traceback(e)
        raise DataFlowError(f"{target}() raised {type(e).__name__}: {e}") from e
    if not isinstance(flow, DataFlow) and not (
        hasattr(flow, "__iter__") and hasattr(flow, "reset_state")
    ):
        raise DataFlowError(f"{target}() returned a {type(flow).__name__}, not a DataFlow")
    return flow


# -- bench: the stages of a pipeline --------------------------------------------------------------


@dataclass
class _Stage:
    path: tuple[str, ...]  # attribute names from the root flow down to this one
    depth: int
    label: str
    upstream: list[int]  # indices (in the stage list) of the flows it reads
    batch: int  # source datapoints per datapoint it yields (the product of batch sizes)
    out_rate: float | None = None  # datapoints it yields per second, timed alone
    timed: int = 0
    note: str = ""


def _upstreams(flow: Any) -> list[tuple[str, Any]]:
    from .base import upstream_flows

    try:
        return upstream_flows(flow)
    except TypeError:  # a duck-typed flow without __dict__
        return []


def _stage_label(flow: Any) -> str:
    parts = []
    for attr in ("batch_size", "num_proc", "num_thread", "buffer_size"):
        value = getattr(flow, attr, None)
        if isinstance(value, int) and not isinstance(value, bool):
            parts.append(f"{attr}={value}")
    for attr in ("map_func", "_func", "func"):  # _func: MapDataComponent's own function
        func = flow.__dict__.get(attr) if hasattr(flow, "__dict__") else None
        if callable(func):
            name = getattr(func, "__qualname__", None) or type(func).__name__
            parts.append(f"{attr}={name}")
            break
    return f"{type(flow).__name__}({', '.join(parts)})" if parts else type(flow).__name__


def _walk(root: Any) -> list[_Stage]:
    """Every flow of the pipeline, depth first from the root (what each one reads follows it)."""
    stages: list[_Stage] = []
    seen: dict[int, int] = {}

    def visit(flow: Any, path: tuple[str, ...], depth: int) -> int:
        index = len(stages)
        seen[id(flow)] = index
        stage = _Stage(path, depth, _stage_label(flow), [], 1)
        stages.append(stage)
        for name, child in _upstreams(flow):
            if id(child) in seen:  # the same flow read twice: time it once
                stage.upstream.append(seen[id(child)])
            else:
                stage.upstream.append(visit(child, (*path, name), depth + 1))
        below = stages[stage.upstream[0]].batch if stage.upstream else 1
        size = getattr(flow, "batch_size", None)
        is_batch = isinstance(size, int) and not isinstance(size, bool) and size > 0
        stage.batch = below * (size if is_batch else 1)  # type: ignore[operator]
        return index

    visit(root, (), 0)
    return stages


def _locate(root: Any, path: tuple[str, ...]) -> Any | None:
    flow = root
    for name in path:
        flow = dict(_upstreams(flow)).get(name)
        if flow is None:
            return None
    return flow


def _time_flow(flow: Any, size: int, warmup: int) -> tuple[int, float]:
    """(datapoints timed, seconds): ``warmup`` untimed, then up to ``size`` timed."""
    flow.reset_state()
    it = iter(flow)
    try:
        for _ in islice(it, warmup):
            pass
        start = time.perf_counter()
        count = 0
        for _ in islice(it, size):
            count += 1
        elapsed = time.perf_counter() - start
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()
    return count, elapsed


# -- bench: memory --------------------------------------------------------------------------------


class _MemoryWatch:
    """Samples the summed PSS of this process and its descendants (Linux ``/proc``) in a thread.

    PSS (proportional set size) splits each shared page between the processes that map it, so the
    sum over forked workers does not count the parent's pages once per worker as RSS would.
    """

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.peak_bytes = 0
        self.peak_processes = 0
        self.available = os.path.exists(f"/proc/{os.getpid()}/smaps_rollup")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _children(pid: int) -> list[int]:
        if not os.path.exists(f"/proc/{pid}/task/{pid}/children"):
            return _MemoryWatch._children_by_scan(pid)
        found: list[int] = []
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return found
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    found.extend(int(c) for c in f.read().split())
            except OSError:
                continue
        return found

    @staticmethod
    def _children_by_scan(pid: int) -> list[int]:
        """Children found by reading every process's parent (kernels without .../children)."""
        found = []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat[stat.rindex(b")") + 2 :].split()  # after "pid (command) "
            if len(fields) > 1 and int(fields[1]) == pid:
                found.append(int(name))
        return found

    @staticmethod
    def _pss(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError):
            pass
        return 0

    def sample(self) -> None:
        pids, stack = [], [os.getpid()]
        while stack:
            pid = stack.pop()
            pids.append(pid)
            stack.extend(self._children(pid))
        total = sum(self._pss(pid) for pid in pids)
        if total > self.peak_bytes:
            self.peak_bytes = total
            self.peak_processes = len(pids)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> _MemoryWatch:
        if self.available:
            self.sample()
            self._thread = threading.Thread(target=self._run, name="dataflow-bench-memory")
            self._thread.daemon = True
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.sample()


def _max_rss_bytes(who: int) -> int:
    value = resource.getrusage(who).ru_maxrss
    return value if sys.platform == "darwin" else value * 1024  # bytes on macOS, KB elsewhere


# -- bench ----------------------------------------------------------------------------------------


def run_bench(args: argparse.Namespace) -> int:
    from .common import TestDataSpeed

    factory, target = _load_factory(args.target)  # (a failure is reported by main)
    flow = _build(factory, target)
    stages = _walk(flow)
    try:
        length: int | None = len(flow)
    except (NotImplementedError, TypeError):
        length = None
    print(
        f"dataflow bench: {target} -> {stages[0].label}, {len(stages)} stage(s), "
        f"len {length if length is not None else 'unknown'}"
    )

    watch = _MemoryWatch()
    try:
        with watch, flow:
            rate = TestDataSpeed(flow, size=args.size, warmup=args.warmup).start()
            watch.sample()  # once more while the workers are up, however short the run was
    except Exception as e:
        _user_traceback(e)
        return _report_error("bench", f"the pipeline raised {type(e).__name__}: {e}")
    timed = args.size
    if length is not None:
        timed = max(0, min(args.size, length - args.warmup))
    if rate == 0 or timed == 0:
        return _report_error(
            "bench",
            f"the pipeline yielded no datapoints to time (len {length}, --warmup {args.warmup})",
        )
    unit = f" (batches of {stages[0].batch})" if stages[0].batch > 1 else ""
    print(
        f"\npipeline: {rate:,.1f} datapoints/s{unit}, over {timed} datapoints after "
        f"{args.warmup} untimed"
    )
    if stages[0].batch > 1:
        print(f"          {rate * stages[0].batch:,.1f} source datapoints/s")

    if not args.no_stages and len(stages) > 1:
        _bench_stages(factory, target, stages, args)

    print("\npeak memory:")
    if watch.available:
        print(
            f"  {_human_bytes(watch.peak_bytes)} PSS of the process tree while the pipeline ran "
            f"({watch.peak_processes} process(es); sampled every {watch.interval:g} s)"
        )
    children = _max_rss_bytes(resource.RUSAGE_CHILDREN)
    print(
        f"  max RSS (getrusage): this process {_human_bytes(_max_rss_bytes(resource.RUSAGE_SELF))}"
        + (f", largest finished child {_human_bytes(children)}" if children else "")
    )
    return 0


def _bench_stages(
    factory: Callable[[], Any], target: str, stages: list[_Stage], args: argparse.Namespace
) -> None:
    """Time every stage alone (with what it reads) on a fresh pipeline from the factory."""
    for stage in stages:
        try:
            fresh = _build(factory, target)
        except DataFlowError as e:
            stage.note = f"not timed: {_one_line(e)}"
            continue
        try:
            node = _locate(fresh, stage.path)
            if node is None:
                stage.note = "not timed: the factory built a different pipeline this time"
                continue
            stage.timed, seconds = _time_flow(node, args.size, args.warmup)
            stage.out_rate = stage.timed / seconds if seconds > 0 else float("inf")
        except Exception as e:
            stage.note = f"failed: {type(e).__name__}: {_one_line(e)}"
        finally:
            with contextlib.suppress(Exception):
                fresh.close()

    def dp_rate(s: _Stage) -> float | None:
        return None if not s.out_rate else s.out_rate * s.batch

    names = ["  " * s.depth + s.label for s in stages]
    width = min(max(len(n) for n in names), 60)
    print(
        "\nper-stage throughput: each stage timed alone, with everything it reads, on a fresh "
        f"pipeline ({args.size} outputs after {args.warmup} untimed):"
    )
    print(f"  {'stage':<{width}} {'yields/s':>12} {'datapoints/s':>14} {'us/datapoint added':>19}")
    costs = [1e6 / rate if (rate := dp_rate(stage)) else None for stage in stages]
    slowest, slowest_cost = None, 0.0
    for i, (stage, name) in enumerate(zip(stages, names)):
        if stage.out_rate is None:
            print(f"  {name:<{width}} {stage.note}")
            continue
        added = ""
        cost = costs[i]
        if len(stage.upstream) == 1 and cost is not None and costs[stage.upstream[0]] is not None:
            delta = cost - costs[stage.upstream[0]]  # type: ignore[operator]
            added = f"{delta:.2f}"
            if delta > slowest_cost:
                slowest, slowest_cost = name.strip(), delta
        elif not stage.upstream and cost is not None:
            added = f"{cost:.2f}"
            if cost > slowest_cost:
                slowest, slowest_cost = name.strip(), cost
        short = " (ended early)" if stage.timed < args.size else ""
        print(
            f"  {name:<{width}} {stage.out_rate:>12,.1f} {dp_rate(stage):>14,.1f} {added:>19}{short}"
        )
    if slowest is not None:
        print(f"\nthe most expensive stage is: {slowest} (+{slowest_cost:.2f} us per datapoint)")
    print(
        "(datapoints/s counts source datapoints: a batch of B counts B. A negative cost means the "
        "stage is faster than what it reads alone, as a parallel stage can be.)"
    )


# -- convert --------------------------------------------------------------------------------------

#: File name extensions ``convert`` takes for images when it scans class folders.
IMAGE_EXTENSIONS = frozenset(
    (".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm")
)


@dataclass
class _Record:
    path: str  # as the user named it: relative to IMAGE_DIR
    label: int


def _scan_class_folders(image_dir: str) -> tuple[list[_Record], list[str]]:
    """Records of a class-per-subfolder tree: label = index of the sub-folder in sorted order."""
    classes = sorted(
        entry.name
        for entry in os.scandir(image_dir)
        if entry.is_dir() and not entry.name.startswith(".")
    )
    if not classes:
        raise DataFlowError(
            f"{image_dir} has no sub-folders: convert expects one sub-folder per class (their "
            "sorted order gives the labels 0, 1, ...), or a list file (--list)"
        )
    records: list[_Record] = []
    ignored = 0
    for label, name in enumerate(classes):
        found = []
        for root, dirs, files in os.walk(os.path.join(image_dir, name), followlinks=True):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for f in files:
                if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS:
                    found.append(os.path.relpath(os.path.join(root, f), image_dir))
                elif not f.startswith("."):
                    ignored += 1
        if not found:
            logger.warning("class %d (%s) has no images", label, name)
        records.extend(_Record(p, label) for p in sorted(found))
    if ignored:
        logger.info(
            "ignored %d file(s) whose extension is not an image's (%s)",
            ignored,
            " ".join(sorted(IMAGE_EXTENSIONS)),
        )
    return records, classes


def _read_list_file(list_file: str) -> list[_Record]:
    """Records of a list file: ``relative/path label`` per line; blank lines and ``#`` comments
    are skipped; the path may contain spaces (the label is the last field)."""
    records = []
    try:
        with open(list_file, encoding="utf-8") as f:
            lines = f.readlines()
    except UnicodeDecodeError as e:
        raise FormatError(f"{list_file}: not a UTF-8 text file ({e})") from None
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        parts = text.rsplit(None, 1)
        try:
            if len(parts) != 2:
                raise ValueError
            label = int(parts[1])
        except ValueError:
            raise FormatError(
                f"{list_file}, line {number}: expected 'relative/path label' (an int label), "
                f"got {text!r}"
            ) from None
        records.append(_Record(parts[0], label))
    if not records:
        raise FormatError(f"{list_file}: lists no images")
    return records


def _jpeg_is_truncated(data: bytes) -> bool:
    # A complete JPEG ends with the end-of-image marker FF D9 (some writers append a few bytes
    # after it). OpenCV decodes a truncated JPEG without an error, filling the rest with gray.
    return data[:3] == b"\xff\xd8\xff" and b"\xff\xd9" not in data[-1024:]


def _encode_record(
    image_dir: str, resize: int | None, quality: int
) -> Callable[[_Record], tuple[_Record, np.ndarray | None, str]]:
    """The per-image work of ``convert``: read, check that it decodes, optionally resize."""
    from .image import imdecode

    cv2 = importlib.import_module("cv2")

    def encode(record: _Record) -> tuple[_Record, np.ndarray | None, str]:
        path = os.path.join(image_dir, record.path)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            return record, None, f"cannot read it: {e.strerror or e}"
        if _jpeg_is_truncated(data):
            return record, None, "a truncated JPEG (no end-of-image marker)"
        try:
            img = imdecode(data, 3)
        except FormatError:
            return record, None, f"not an image OpenCV can decode ({len(data)} bytes)"
        if resize is None:
            return record, np.frombuffer(data, dtype=np.uint8), ""
        h, w = img.shape[:2]
        scale = resize / min(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        if size != (w, h):
            interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
            img = cv2.resize(img, size, interpolation=interpolation)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:  # pragma: no cover - OpenCV encodes any uint8 BGR image
            return record, None, "OpenCV could not encode it as JPEG"
        return record, buf.reshape(-1), ""

    return encode


def run_convert(args: argparse.Namespace) -> int:
    from ._lazy import require
    from .base import DataFlow
    from .common import MapData
    from .parallel_map import MultiThreadMapData
    from .raw import DataFromGenerator, DataFromList
    from .serialize import LMDBSerializer

    image_dir, out = args.image_dir, args.out
    if not os.path.isdir(image_dir):
        raise DataFlowArgumentError(f"IMAGE_DIR {image_dir!r} is not a directory")
    if args.list is not None and not os.path.isfile(args.list):
        raise DataFlowArgumentError(f"--list {args.list!r}: no such file")
    if os.path.isdir(out):
        if os.path.exists(os.path.join(out, "data.mdb")):
            return _report_error("convert", f"{out} already holds an LMDB database (data.mdb)")
    elif os.path.lexists(out):
        return _report_error("convert", f"{out} exists; convert never overwrites a file")
    elif not os.path.isdir(os.path.dirname(os.path.abspath(out))):
        raise DataFlowArgumentError(f"the folder of OUT ({os.path.dirname(out)!r}) does not exist")
    require("cv2", "image", who="dataflow convert")
    require("lmdb", "lmdb", who="dataflow convert")

    classes: list[str] | None = None
    if args.list is not None:
        records = _read_list_file(args.list)
    else:
        records, classes = _scan_class_folders(image_dir)
    if not records:
        return _report_error("convert", f"no images found in {image_dir}")
    if args.shuffle:
        # Written once in a random order, the file needs only a local shuffle when read in order.
        random.Random(args.seed).shuffle(records)

    encode = _encode_record(image_dir, args.resize, args.quality)
    source = DataFromList(records, shuffle=False)
    mapped: DataFlow
    if args.workers > 1:  # threads: reading and OpenCV's decoding release the GIL
        mapped = MultiThreadMapData(source, args.workers, encode, strict=True, ordered=True)
    else:
        mapped = MapData(source, encode)
    skipped: list[tuple[str, str]] = []
    written = 0

    def datapoints() -> Iterator[list]:
        nonlocal written
        import tqdm

        for record, payload, problem in mapped:
            if payload is None:
                if args.on_error == "fail":
                    raise FormatError(
                        f"{record.path}: {problem} (--on-error skip skips such files)"
                    )
                skipped.append((record.path, problem))
                tqdm.tqdm.write(f"skipping {record.path}: {problem}", file=sys.stderr)
                continue
            written += 1
            yield [payload, record.label]

    with mapped:
        LMDBSerializer.save(DataFromGenerator(datapoints, size=len(records)), out)

    stored = "re-encoded JPEG, shorter side " + str(args.resize) if args.resize else "file bytes"
    print(
        f"wrote {written} image(s) to {out} ({_human_bytes(_path_size(out))}); datapoint: "
        f"[uint8 array of the encoded image ({stored}), int label]"
    )
    if classes is not None:
        shown = ", ".join(f"{i}={name}" for i, name in enumerate(classes[:20]))
        more = f", ... ({len(classes)} classes)" if len(classes) > 20 else ""
        print(f"labels: {shown}{more}")
    if skipped:
        print(f"skipped {len(skipped)} file(s) that are not readable images:")
        for path, problem in skipped[:50]:
            print(f"  {path}: {problem}")
        if len(skipped) > 50:
            print(f"  ... and {len(skipped) - 50} more")
    return 0


# -- inspect --------------------------------------------------------------------------------------

_LMDB_MAGIC_AT_16 = b"\xde\xc0\xef\xbe"  # MDB_MAGIC 0xBEEFC0DE in the meta page, little-endian
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK\x03\x04"
_IMAGE_MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG": "PNG", b"BM": "BMP", b"RIFF": "WebP"}


def _detect_format(path: str) -> str:
    from . import codec

    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "data.mdb")):
            return "lmdb"
        raise FormatError(f"{path} is a directory without data.mdb (not an LMDB database)")
    with open(path, "rb") as f:
        head = f.read(64)
    if head[16:20] == _LMDB_MAGIC_AT_16:
        return "lmdb"
    if head.startswith(_HDF5_MAGIC):
        return "hdf5"
    if head.startswith(_ZIP_MAGIC):
        return "npz"
    if head[12 : 12 + len(codec.MAGIC)] == codec.MAGIC:
        return "tfrecord"
    if len(head) >= 12 and path.endswith((".tfrecord", ".tfrecords")):
        return "tfrecord"
    raise FormatError(
        f"{path}: not a format dataflow reads (LMDB, NumpySerializer .npz, TFRecord, HDF5)"
    )


def _format_header(info: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in info.items() if k != "count")


def _inspect_lmdb(path: str, allow_pickle: bool) -> tuple[list[tuple[str, str]], Any]:
    from . import codec
    from ._lazy import require
    from .format import LMDB_HEADER_KEY, TENSORPACK_KEYS_KEY, LMDBData
    from .serialize import LMDBSerializer

    lmdb = require("lmdb", "lmdb", who="dataflow inspect")
    subdir = os.path.isdir(path)
    try:
        env = lmdb.open(path, subdir=subdir, readonly=True, lock=False, readahead=False)
    except lmdb.Error as e:
        raise FormatError(f"{path}: cannot open it as an LMDB database: {e}") from e
    try:
        with env.begin() as txn:
            entries = int(env.stat()["entries"])
            header = txn.get(LMDB_HEADER_KEY)
            has_keys = txn.get(TENSORPACK_KEYS_KEY) is not None
    finally:
        env.close()
    if header is not None:
        info = codec.decode_header(header, "lmdb", path)
        rows = [
            ("format", "LMDB written by dataflow's LMDBSerializer"),
            ("header", _format_header(info)),
            ("count", f"{info['count']} datapoints"),
        ]
        return rows, LMDBSerializer.load(path, shuffle=False)
    if has_keys:
        rows = [
            ("format", "LMDB written by tensorpack's LMDBSerializer (pickled values)"),
            ("header", "none (tensorpack's __keys__ record)"),
            ("count", f"{entries - 1} datapoints"),
        ]
        if not allow_pickle:
            rows.append(
                (
                    "datapoints",
                    "not shown: they are pickles, and unpickling runs code chosen by the file's "
                    "author. Pass --allow-pickle if you trust this file.",
                )
            )
            return rows, None
        return rows, LMDBSerializer.load(path, shuffle=False, allow_pickle=True)
    rows = [
        ("format", "LMDB of raw key/value records (not written by a serializer)"),
        ("header", "none"),
        ("count", f"{entries} records, shown as [key, value] bytes"),
    ]
    return rows, LMDBData(path, shuffle=False)


def _inspect_npz(path: str, allow_pickle: bool) -> tuple[list[tuple[str, str]], Any]:
    from . import codec
    from .serialize import NumpySerializer

    try:
        with np.load(path, allow_pickle=False) as npz:
            names = list(npz.files)
            header = npz["dataflow_header"] if "dataflow_header" in names else None
            legacy_len = len(npz["buffer"]) if header is None and "buffer" in names else None
    except ValueError:  # an object array: tensorpack's pickled buffer
        header, legacy_len = None, None
        names = ["buffer"]
    except Exception as e:
        raise FormatError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from e
    if header is not None:
        info = codec.decode_header(header.tobytes(), "npz", path)
        rows = [
            ("format", "NumpySerializer .npz written by dataflow"),
            ("header", _format_header(info)),
            ("count", f"{info['count']} datapoints"),
        ]
        return rows, NumpySerializer.load(path, shuffle=False)
    if "buffer" not in names:
        raise FormatError(f"{path}: a .npz file not written by NumpySerializer (arrays: {names})")
    rows = [
        ("format", "NumpySerializer .npz written by tensorpack (pickled datapoints)"),
        ("header", "none"),
        ("count", f"{legacy_len} datapoints" if legacy_len is not None else "unknown"),
    ]
    if not allow_pickle:
        rows.append(("datapoints", "not shown: they are pickles (pass --allow-pickle to read)"))
        return rows, None
    return rows, NumpySerializer.load(path, shuffle=False, allow_pickle=True)


def _inspect_tfrecord(path: str, allow_pickle: bool) -> tuple[list[tuple[str, str]], Any]:
    from . import codec
    from .serialize import TFRecordSerializer

    # The first record (TFRecord framing: uint64 length, uint32 CRC, data, uint32 CRC) holds
    # dataflow's header; TFRecordSerializer.load checks the framing and CRCs of the whole file.
    with open(path, "rb") as f:
        head = f.read(12)
        length = int.from_bytes(head[:8], "little") if len(head) == 12 else 0
        first = f.read(min(length, 1 << 20))
    if first.startswith(codec.MAGIC):
        info = codec.decode_header(first, "tfrecord", path)
        rows = [
            ("format", "TFRecord written by dataflow's TFRecordSerializer"),
            ("header", _format_header(info)),
            ("count", f"{info['count']} datapoints"),
        ]
        return rows, TFRecordSerializer.load(path)
    rows = [
        ("format", "TFRecord without a dataflow header (tensorpack's pickles, or TensorFlow's)"),
        ("header", "none"),
        ("count", "unknown (TFRecord has no index)"),
    ]
    if not allow_pickle:
        rows.append(("datapoints", "not shown: pass --allow-pickle if tensorpack wrote it"))
        return rows, None
    return rows, TFRecordSerializer.load(path, allow_pickle=True)


def _inspect_hdf5(path: str, allow_pickle: bool) -> tuple[list[tuple[str, str]], Any]:
    from . import codec
    from ._lazy import require
    from .format import HDF5_HEADER_ATTR
    from .serialize import HDF5Serializer

    h5py = require("h5py", "hdf5", who="dataflow inspect")
    datasets: list[str] = []
    with h5py.File(path, "r") as f:
        raw = f.attrs.get(HDF5_HEADER_ATTR)
        f.visititems(
            lambda name, obj: (
                datasets.append(f"{name} {obj.shape} {obj.dtype}")
                if isinstance(obj, h5py.Dataset)
                else None
            )
        )
    if raw is not None:
        info = codec.decode_header(np.void(raw).tobytes(), "hdf5", path)
        paths = list(info.get("data_paths", []))
        rows = [
            ("format", "HDF5 written by dataflow's HDF5Serializer"),
            ("header", _format_header(info)),
            ("count", f"{info['count']} datapoints"),
            ("datasets", "; ".join(datasets)),
        ]
        return rows, HDF5Serializer.load(path, paths, shuffle=False)
    rows = [
        ("format", "HDF5 (not written by HDF5Serializer)"),
        ("header", "none"),
        ("datasets", "; ".join(datasets) or "none"),
        ("datapoints", "not shown: read it with HDF5Data(path, [dataset paths])"),
    ]
    return rows, None


@contextlib.contextmanager
def _print_data_to_stdout() -> Iterator[None]:
    """Route PrintData's descriptions (the ``dataflow.common`` logger) to stdout, for a while."""
    log = logging.getLogger("dataflow.common")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    saved = (log.level, log.propagate)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(saved[0])
        log.propagate = saved[1]


def _encoded_image_note(index: Any, component: Any) -> str | None:
    """A line about a component that holds an encoded image (as ``convert`` stores them)."""
    if isinstance(component, np.ndarray) and component.dtype == np.uint8 and component.ndim == 1:
        data = component.tobytes()
    elif isinstance(component, (bytes, bytearray)):
        data = bytes(component)
    else:
        return None
    kind = next((k for magic, k in _IMAGE_MAGIC.items() if data.startswith(magic)), None)
    if kind is None:
        return None
    try:
        from .image import imdecode

        img = imdecode(data, 3)
    except (ImportError, FormatError):
        return f"  ({index}: {kind} bytes that do not decode)"
    return f"  ({index}: an encoded {kind} image, {img.shape[1]}x{img.shape[0]} when decoded)"


def run_inspect(args: argparse.Namespace) -> int:
    from .common import PrintData

    path = args.file
    if not os.path.exists(path):
        raise DataFlowArgumentError(f"{path}: no such file or directory")
    kind = _detect_format(path)
    inspectors = {
        "lmdb": _inspect_lmdb,
        "npz": _inspect_npz,
        "tfrecord": _inspect_tfrecord,
        "hdf5": _inspect_hdf5,
    }
    rows, flow = inspectors[kind](path, args.allow_pickle)
    rows.insert(0, ("file", path))
    rows.append(("size", _human_bytes(_path_size(path))))
    width = max(len(k) for k, _ in rows) + 1
    for key, value in rows:
        print(f"{key + ':':<{width}} {value}")
    if flow is None or args.num == 0:
        if flow is not None:
            flow.close()
        return 0
    print(f"\nfirst {args.num} datapoint(s):")
    sys.stdout.flush()
    shown = 0
    with flow, _print_data_to_stdout():
        described = PrintData(flow, num=args.num, name=os.path.basename(path.rstrip(os.sep)))
        for dp in islice(described, args.num):
            shown += 1
            items = dp.items() if isinstance(dp, dict) else enumerate(dp)
            for index, component in items if isinstance(dp, (list, tuple, dict)) else []:
                note = _encoded_image_note(index, component)
                if note:
                    print(note)
            sys.stdout.flush()
    if shown == 0:
        print("(the file holds no datapoints)")
    return 0


# -- the parser -----------------------------------------------------------------------------------

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
        default=2,
        help="worker processes for the parallel variant of the pipeline (0: skip it)",
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
    bench.set_defaults(func=run_bench, parser=bench)

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
        from . import __version__

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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
