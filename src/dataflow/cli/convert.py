"""``dataflow convert``: write a folder of images (one sub-folder per class, or a list file) into
one LMDB file of ``[encoded image bytes, label]`` datapoints."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import random
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import DataFlowArgumentError, DataFlowError, FormatError
from ._shared import _human_bytes, _path_size, _report_error

logger = logging.getLogger(__name__)


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
    from ..image import imdecode

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
    from .._lazy import require
    from ..base import DataFlow
    from ..common import MapData
    from ..parallel_map import MultiThreadMapData
    from ..raw import DataFromGenerator, DataFromList
    from ..serialize import LMDBSerializer

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
