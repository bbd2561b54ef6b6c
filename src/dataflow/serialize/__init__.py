"""Save a DataFlow to one file and load it back as a fast sequential source.

tensorpack's "efficient DataFlow" recipe: a dataset made of many small files (slow random reads) is
written once into a single file that streams at disk speed; training then reads it sequentially,
shuffles locally (:class:`~dataflow.common.LocallyShuffleData`) and decodes in parallel::

    LMDBSerializer.save(ds, "/data/train.lmdb")
    ds = LMDBSerializer.load("/data/train.lmdb", shuffle=False)
    ds = LocallyShuffleData(ds, 2000)
    ds = MultiProcessMapData(ds, 4, decode_and_augment)

Every class here is a drop-in for the one of the same name in ``tensorpack.dataflow.serialize``
(``save``/``load`` static methods, same arguments). What differs:

- Datapoints are stored with the safe codec of :mod:`dataflow.codec` (msgpack + numpy arrays), not
  pickle: loading a file never runs code from it. Files written by tensorpack (pickles) are read
  with ``load(..., allow_pickle=True)`` only; without it, a clear
  :class:`~dataflow.errors.FormatError` says so.
- Every file starts with a header (magic number, format version, codec, datapoint count); readers
  check it and raise FormatError naming the file on anything else (garbage, truncation, another
  codec, a newer version).
- Writes are atomic: the file is written under a temporary name in the same directory and renamed
  when complete, so an interrupted or failed write never leaves a file that reads as valid.
- Writers show a tqdm progress bar (with a total when the flow's ``len`` is known).
- ``TFRecordSerializer`` reads and writes the TFRecord framing (with its CRC32C checksums) itself:
  TensorFlow is not needed. It stores the count, so ``load`` needs no ``size``.
- ``LMDBSerializer`` grows the database's map size as needed and never loses a transaction doing so.
- ``DiskCacheSerializer`` (a directory, not a file) is written under a temporary name too.

One module a format: :mod:`.lmdb`, :mod:`.numpy`, :mod:`.tfrecord`, :mod:`.hdf5`, :mod:`.diskcache`
(what they share is in :mod:`._common`); this package exports every serializer.

Optional dependencies: ``lmdb`` for LMDBSerializer (``pip install 'pydataflow[lmdb]'``), ``h5py``
for HDF5Serializer (``[hdf5]``), ``diskcache`` for DiskCacheSerializer (``[diskcache]``).
NumpySerializer and TFRecordSerializer need only numpy.
"""

from __future__ import annotations

from .diskcache import DiskCacheSerializer
from .hdf5 import HDF5Serializer
from .lmdb import LMDBSerializer
from .numpy import NumpySerializer
from .tfrecord import TFRecordSerializer

__all__ = [
    "LMDBSerializer",
    "NumpySerializer",
    "TFRecordSerializer",
    "HDF5Serializer",
    "DiskCacheSerializer",
]
