"""``dataflow download``: fetch a well-known dataset, or list them (``--list``)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..errors import DataFlowArgumentError
from ._shared import _human_bytes


def run_download(args: argparse.Namespace) -> int:
    from ..dataset import _download

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
