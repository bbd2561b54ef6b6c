"""TFRecordSerializer: TFRecord framing (checked without TensorFlow), one datapoint per record."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .. import _state, codec
from .._tfrecord import iter_records, write_record
from ..base import DataFlow
from ..common import FixedSizeData
from ..errors import DataFlowArgumentError, FormatError, LengthUnknownError
from ._common import (
    _check_parent,
    _check_path,
    _encode,
    _prepare,
    _progress,
    _publish,
    _remove,
    _temp_path,
)

__all__ = ["TFRecordSerializer"]


class _TFRecordData(DataFlow):
    """The datapoints of a TFRecord file, decoded; each pass reads the file anew."""

    def __init__(self, path: str, count: int | None, decode: Callable[[Any], Any]) -> None:
        self.path = path
        self._count = count  # None: a foreign file without our header
        self._decode = decode

    def __len__(self) -> int:
        if self._count is None:
            raise LengthUnknownError(
                f"{self.path} was not written by TFRecordSerializer: its length is unknown "
                "(pass size= to TFRecordSerializer.load)"
            )
        return self._count

    def __iter__(self) -> Iterator[Any]:
        decode = self._decode
        try:
            f = open(self.path, "rb")
        except OSError as e:
            raise FormatError(f"{self.path}: cannot open: {e}") from e
        resume = self.__dict__.pop("_df_start", None)
        with f:
            if resume is not None:  # a saved position: the byte offset after record n
                f.seek(resume["offset"])
            records = iter_records(f, self.path)
            if self._count is not None and resume is None:
                next(records, None)  # the header, checked by load()
            n = 0 if resume is None else resume["n"]
            for record in records:
                try:
                    dp = decode(record)
                except Exception as e:
                    raise FormatError(
                        f"{self.path}: record {n} cannot be decoded: {type(e).__name__}: {e}"
                    ) from e
                n += 1
                yield dp
            if self._count is not None and n != self._count:
                raise FormatError(
                    f"{self.path}: holds {n} datapoints but its header says {self._count} "
                    "(a truncated or altered file)"
                )

    # Resume: the byte offset after the last record yielded (the file is read sequentially),
    # and that record's number; a resumed pass seeks there.
    def _df_save(self) -> dict:
        live_ref = self.__dict__.get("_df_live")
        live = live_ref() if live_ref is not None else None
        f = _state.gen_local(live, "f")
        size = os.fstat(f.fileno()).st_size
        return {"n": int(_state.gen_local(live, "n")), "offset": int(f.tell()), "size": size}

    def _df_load(self, state: dict) -> None:
        self._df_start = state

    def _df_check(self, node: dict) -> str | None:
        # An offset only means something in the file it was taken in: a file of another size
        # (rewritten, or another file under the same name) is refused rather than read from a
        # byte that may not begin a record.
        state = node.get("state") or {}
        if "size" not in state:
            return None
        try:
            size = os.path.getsize(self.path)
        except OSError as e:
            return f"cannot read {self.path}: {e}"
        if size != state["size"]:
            return (
                f"the state was saved reading {self.path} of {state['size']} bytes, the file now "
                f"has {size}"
            )
        return None


class TFRecordSerializer:
    """Save a flow into a TFRecord file, one datapoint per record; load it back.

    The framing is TFRecord's (length, masked CRC-32C of the length, data, masked CRC-32C of the
    data), written and checked here without TensorFlow, so any corruption of a record is detected
    when it is read. The first record is dataflow's header (with the count); the others are the
    datapoints encoded with :mod:`dataflow.codec` (not ``tf.train.Example`` protos).

    TFRecord has no index: reading is sequential only. :class:`LMDBSerializer` is usually faster.
    """

    @staticmethod
    def save(df: DataFlow, path: str) -> None:
        """Write one pass of ``df`` to ``path`` (an existing file is replaced atomically when the
        new one is complete).

        Raises:
            DatapointError: a datapoint holds a value the codec cannot store (names its index).
        """
        who = "TFRecordSerializer.save"
        path = _check_path(path, who)
        _check_parent(path, who)
        df, size = _prepare(df, who)
        tmp = _temp_path(path)
        try:
            with open(tmp, "wb") as f:
                # The count is filled in at the end; the header's length does not depend on it.
                write_record(f, codec.encode_header("tfrecord", codec.COUNT_UNKNOWN))
                count = 0
                with _progress(size, f"TFRecordSerializer {os.path.basename(path)}") as bar:
                    for dp in df:
                        write_record(f, _encode(dp, count, who))
                        count += 1
                        bar.update(1)
                f.seek(0)
                write_record(f, codec.encode_header("tfrecord", count))
                f.flush()
                os.fsync(f.fileno())
            _publish(tmp, path)
        except BaseException:
            _remove(tmp)
            raise

    @staticmethod
    def load(path: str, size: int | None = None, *, allow_pickle: bool = False) -> DataFlow:
        """A flow of the datapoints in ``path``, in file order.

        Args:
            path: the file written by ``save``.
            size: not needed for files written by ``save`` (the count is stored). If given, the
                flow is wrapped in ``FixedSizeData(ds, size)`` as tensorpack does: exactly ``size``
                datapoints per pass.
            allow_pickle: also read a file written by tensorpack's TFRecordSerializer (pickled
                records, no header; its length is then unknown unless ``size`` is given).
                Unpickling runs code chosen by the file's author: only for trusted files.

        Raises:
            FormatError: not such a file, naming it; a corrupted record raises it when read.
        """
        who = "TFRecordSerializer.load"
        path = _check_path(path, who)
        if size is not None and (
            isinstance(size, (bool, np.bool_))
            or not isinstance(size, (int, np.integer))
            or size < 0
        ):
            raise DataFlowArgumentError(f"{who}: size must be a non-negative int, got {size!r}")
        if not os.path.exists(path):
            raise DataFlowArgumentError(f"{who}: {path!r} does not exist")
        with open(path, "rb") as f:
            first = next(iter_records(f, path), None)
        ds: DataFlow
        if first is not None and first.startswith(codec.MAGIC):
            info = codec.decode_header(first, "tfrecord", path)
            ds = _TFRecordData(path, info["count"], codec.decoder())
        elif allow_pickle:
            ds = _TFRecordData(path, None, pickle.loads)
        else:
            raise FormatError(
                f"{path}: not written by TFRecordSerializer (no dataflow header). If tensorpack "
                "wrote it, its records are pickles: unpickling runs code chosen by the file's "
                "author, so pass allow_pickle=True only if you trust it."
            )
        if size is not None:
            ds = FixedSizeData(ds, int(size))
        return ds
