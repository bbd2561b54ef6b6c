"""Readers of on-disk formats: LMDB, HDF5, SVMlight (and Caffe's LMDB layout).

Every class here is a drop-in for the one of the same name in ``tensorpack.dataflow.format``.
Handles (LMDB environments, HDF5 files) are opened in ``reset_state``, i.e. in the process that
iterates: a flow built in the main process and run in forked workers never shares a handle across a
fork. The constructors open the file only briefly, to check it and learn its length, and close it.

Optional dependencies: LMDB readers need ``lmdb`` (``pip install 'pydataflow[lmdb]'``), HDF5Data
needs ``h5py`` (``[hdf5]``), SVMLightData needs scikit-learn. The classes import without them and
raise an ImportError saying what to install when used.

Errors: a file that is not in the expected format (garbage, truncated, written by another program
in a layout the reader does not know) raises :class:`~dataflow.errors.FormatError` naming the file.

Pitfall: LMDB keeps no checksums and trusts its own page structure: a damaged page (a bit flip on
disk) can make the lmdb library crash the process. Files written by our LMDBSerializer are sealed
(see :class:`~dataflow.serialize.LMDBSerializer`) and checked before the lmdb library reads them, so
damage raises FormatError. Other LMDB files (tensorpack's, Caffe's) have no such checksums: the
readers check what they can (that the file is an LMDB, not truncated, every record's encoding),
and the rest is trusted.

One module a format: :mod:`.lmdb`, :mod:`.caffe`, :mod:`.hdf5`, :mod:`.svmlight`. This package re-exports every name the single ``format`` module had.
"""

from __future__ import annotations

from .caffe import CaffeLMDB
from .caffe import parse_caffe_datum as parse_caffe_datum
from .hdf5 import HDF5_DTYPE_ATTR as HDF5_DTYPE_ATTR
from .hdf5 import HDF5_HEADER_ATTR as HDF5_HEADER_ATTR
from .hdf5 import HDF5_KIND_ATTR as HDF5_KIND_ATTR
from .hdf5 import HDF5Data
from .lmdb import LMDB_HEADER_KEY as LMDB_HEADER_KEY
from .lmdb import TENSORPACK_KEYS_KEY as TENSORPACK_KEYS_KEY
from .lmdb import LMDBData, LMDBDataDecoder
from .lmdb import LMDBDatapoints as LMDBDatapoints
from .lmdb import lmdb_key as lmdb_key
from .svmlight import SVMLightData

__all__ = ["HDF5Data", "LMDBData", "LMDBDataDecoder", "CaffeLMDB", "SVMLightData"]
