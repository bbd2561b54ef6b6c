"""LMDBSerializer: one datapoint per LMDB record, sealed with checksums."""

from __future__ import annotations

import logging
import os
from array import array

from .. import codec
from .._lazy import require
from .._lmdb_seal import crc32, write_seal
from ..base import DataFlow
from ..errors import DataFlowArgumentError
from ..format import LMDB_HEADER_KEY, LMDBDatapoints, lmdb_key
from ._common import (
    _check_parent,
    _check_path,
    _check_write_frequency,
    _encode,
    _prepare,
    _progress,
    _publish,
    _remove,
    _temp_path,
)

__all__ = ["LMDBSerializer"]

logger = logging.getLogger(__name__)

#: The map size an LMDB write starts with; it doubles whenever the database is full.
_LMDB_INITIAL_MAP_SIZE = 1 << 30
# A transaction is committed after write_frequency records or this many bytes, whichever first:
# its records are kept until the commit (to be replayed if the map must grow).
_LMDB_TXN_BYTES = 64 << 20


class LMDBSerializer:
    """Save a flow into an LMDB database, one datapoint per record; load it back.

    Keys are the datapoints' indices formatted ``'{:08}'`` (``b'00000000'``, ...), as tensorpack
    writes them, so key order is write order (up to 10^8 datapoints); values are the datapoints
    encoded with :mod:`dataflow.codec`. A header record (key ``__dataflow__``) holds the format
    version, codec and count. Needs ``lmdb`` (``pip install 'pydataflow[lmdb]'``).

    Integrity: LMDB itself keeps no checksums and trusts its pages, so that one damaged page can
    crash the process inside the lmdb library. The file is therefore sealed: after LMDB's pages
    come a CRC-32 of every page that steers the lmdb library (checked each time the file is opened,
    before the lmdb library reads it; a few tens of MB for millions of records) and a CRC-32 of
    every record (checked as records are read, by default). A damaged file raises
    :class:`~dataflow.errors.FormatError` instead of crashing or handing out a wrong datapoint.
    Records small enough to live in LMDB's leaf pages (under 1 KB) are checked with those pages
    when the file is opened; larger ones each time they are read, unless ``load(...,
    verify=False)`` (then damage there gives a FormatError or a well-formed but different
    datapoint). The CRC is computed by ``zlib_ng`` when installed (part of the ``lmdb`` extra),
    else by ``zlib``. The lmdb library and other programs read the file as any LMDB.

    Files without record checksums (written by tensorpack or another program, or a plain LMDB)
    read as before: only their size is checked, and ``verify`` (left at its default) has nothing
    to check.

    Example::

        LMDBSerializer.save(my_df, "output.lmdb")
        new_df = LMDBSerializer.load("output.lmdb", shuffle=True)
    """

    @staticmethod
    def save(df: DataFlow, path: str, write_frequency: int = 5000) -> None:
        """Write one pass of ``df`` to ``path``.

        Args:
            df: the flow to save (one full pass is written; it must be finite).
            path: an existing directory (the database becomes ``path/data.mdb``) or the name of
                the database file to create. Refused if the database already exists.
            write_frequency: commit a transaction every this many datapoints (also every 64 MB).
                Smaller values use less memory.

        Raises:
            DataFlowArgumentError: a bad argument, or the database exists.
            DatapointError: a datapoint holds a value the codec cannot store (names its index).
        """
        who = "LMDBSerializer.save"
        lmdb = require("lmdb", "lmdb", who="LMDBSerializer")
        path = _check_path(path, who)
        write_frequency = _check_write_frequency(write_frequency, who)
        if os.path.isdir(path):
            final = os.path.join(path, "data.mdb")
            if os.path.exists(final):
                raise DataFlowArgumentError(f"{who}: an LMDB database exists in {path!r}")
        else:
            if os.path.exists(path):
                raise DataFlowArgumentError(f"{who}: {path!r} exists")
            _check_parent(path, who)
            final = path
        df, size = _prepare(df, who)

        tmp = _temp_path(final)
        env = lmdb.open(
            tmp,
            subdir=False,
            map_size=_LMDB_INITIAL_MAP_SIZE,
            readonly=False,
            lock=False,  # the temporary file is ours alone
            sync=False,  # one sync at the end, before the file gets its name
            meminit=False,
        )
        # (key, value, append): append mode (faster) while keys arrive in sorted order
        pending: list[tuple[bytes, bytes, bool]] = []

        def commit() -> None:
            while True:
                try:
                    with env.begin(write=True) as txn:
                        put = txn.put
                        for key, value, append in pending:
                            put(key, value, append=append)
                    break
                except lmdb.MapFullError:
                    new_size = env.info()["map_size"] * 2
                    logger.info("%s: growing the LMDB map size to %.2f GB", who, new_size / 1e9)
                    env.set_mapsize(new_size)
            pending.clear()

        crcs = array("I")  # each record's CRC-32, for the seal
        try:
            count = 0
            pending_bytes = 0
            with _progress(size, f"LMDBSerializer {os.path.basename(path)}") as bar:
                for dp in df:
                    value = _encode(dp, count, who)
                    crcs.append(crc32(value))
                    # From 10^8 on, '{:08}' keys no longer sort in index order.
                    pending.append((lmdb_key(count), value, count < 10**8))
                    pending_bytes += len(value)
                    count += 1
                    bar.update(1)
                    if len(pending) >= write_frequency or pending_bytes >= _LMDB_TXN_BYTES:
                        commit()
                        pending_bytes = 0
                pending.append((LMDB_HEADER_KEY, codec.encode_header("lmdb", count), False))
                commit()
            env.sync(True)
            env.close()
            write_seal(tmp, crcs)
            _publish(tmp, final)
        except BaseException:
            env.close()
            _remove(tmp)
            raise
        logger.info("%s: wrote %d datapoints to %s", who, count, final)

    @staticmethod
    def load(
        path: str, shuffle: bool = True, *, allow_pickle: bool = False, verify: bool | None = None
    ) -> DataFlow:
        """A flow of the datapoints saved in ``path``.

        Returns a :class:`~dataflow.format.LMDBDatapoints`: ``len`` is the number of datapoints;
        each pass yields each once, in key (= write) order, or in a new random order if
        ``shuffle``. Decoding happens in the flow itself; to decode in parallel, read with
        :class:`~dataflow.format.LMDBData` and put ``dataflow.codec.loads`` on ``dp[1]`` in a
        parallel map.

        Args:
            path: the database (directory or file) written by ``save``.
            shuffle: random order (random reads); ``False`` reads sequentially, the fast way.
            allow_pickle: also read a database written by tensorpack's LMDBSerializer (pickled
                values). Unpickling runs code chosen by the file's author: only for trusted files.
            verify: check each record read against its CRC-32 in the file's seal. The default
                (None) verifies a file written by LMDBSerializer and reads one without
                checksums (tensorpack's) as before; True insists on checksums; False skips the
                per-record check (the structure is checked either way). Costs one CRC pass over
                each record of 1 KB or more: about 13 GB/s with zlib_ng, 3 GB/s without.

        Raises:
            FormatError: not a database written by LMDBSerializer (or tensorpack's, without
                ``allow_pickle``), or a damaged one; a corrupted record raises it when read,
                naming its key.
        """
        return LMDBDatapoints(path, shuffle, allow_pickle=allow_pickle, verify=verify)
