"""The integrity seal of an LMDB file written by LMDBSerializer.

LMDB keeps no checksums and trusts its own pages: a page damaged on disk (one flipped bit in a page
number or a node offset) makes the lmdb library read outside the file's memory map, and the process
dies of SIGSEGV or SIGBUS. Python cannot catch that. So before the lmdb library opens a file that
we wrote, the file is checked here with plain reads.

The seal is appended after LMDB's last page, where the lmdb library never looks (it reads only the
pages that its meta pages and trees reach, all below the seal)::

    [ LMDB pages: data_len bytes                                ]
    [ structural page numbers: uint64 x n_pages                 ]
    [ CRC-32 of each record's value, record i: uint32 x count   ]
    [ padding: 0-8 zero bytes                                   ]
    [ footer: FOOTER bytes, fields below, ending with its CRC   ]

The structural pages are the two meta pages and every branch and leaf page of the main tree, i.e.
every page the lmdb library reads that can steer it; their CRC-32 (in the listed order) is checked
on every open, which costs one read of those pages (a few tens of MB for millions of records).
Values larger than about half a page live in overflow pages, which are data only: damage there
cannot crash the lmdb library, it changes the value, which the per-record CRCs catch: readers
verify by default (one CRC-32 per record that can live outside the leaf pages; smaller records
sit in leaf pages, checked whole when the file is opened), ``verify=False`` turns it off.

The CRC is zlib's CRC-32. It is computed by ``zlib_ng`` when that package is installed (the
``lmdb`` extra pulls it in: same values, about 4x faster here with its vector instructions),
otherwise by the standard library's ``zlib``: files are the same either way.

An LMDB file is always a whole number of pages, and the padding makes a sealed file never one: a
file whose size is not a multiple of 4096 and whose seal does not check is refused, so damage to the
footer cannot pass the file off as an unsealed (unchecked) LMDB.
"""

from __future__ import annotations

import os
import struct
import sys
import zlib
from array import array
from dataclasses import dataclass, field

import numpy as np

from .errors import FormatError

try:  # the same CRC-32 as zlib's, computed with vector instructions (optional: the lmdb extra)
    from zlib_ng.zlib_ng import crc32 as _fast_crc32

    crc32 = _fast_crc32
except ImportError:  # pragma: no cover - depends on the environment
    crc32 = zlib.crc32

#: Values at most this long always live in LMDB leaf pages (with pages of 4096 bytes or more an
#: 8-byte key and its value go to overflow pages only past about 2000 bytes): the structure's
#: checksum covers them whole, so readers need not check them one by one.
LEAF_RECORD_MAX = 1024

MAGIC = b"DFLMDBS1"
# magic, page size, padding, data_len, n_pages, count, pages CRC, structure CRC, records CRC, footer CRC
_FOOTER = struct.Struct("<8sIIQQQIIII")
FOOTER = _FOOTER.size
# Every LMDB page size is a multiple of this (LMDB uses the OS page size, at least 4096 bytes).
_PAGE_QUANTUM = 4096

_PAGE_HEADER = 16  # pgno u64, pad u16, flags u16, lower u16, upper u16
_P_BRANCH, _P_LEAF, _P_OVERFLOW, _P_META, _P_LEAF2 = 0x01, 0x02, 0x04, 0x08, 0x20
_P_INVALID = (1 << 64) - 1
# Offsets inside a meta page (after the page header): magic u32, version u32, address u64,
# map size u64, then two MDB_db records of 48 bytes (free list, main) and last page, txn id.
_META_MAGIC = 0xBEEFC0DE
_META_PSIZE = _PAGE_HEADER + 24  # the free-list record's md_pad holds the page size
_META_MAIN_ROOT = _PAGE_HEADER + 24 + 48 + 40
_META_TXNID = _PAGE_HEADER + 24 + 96 + 8


def _crc_of_pages(fd: int, pages: np.ndarray, psize: int) -> int:
    """CRC-32 of the given pages of a file, read in runs of consecutive pages."""
    crc = 0
    if len(pages) == 0:
        return crc
    breaks = np.flatnonzero(np.diff(pages) != 1) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [len(pages)]))
    for s, e in zip(starts.tolist(), ends.tolist()):
        first, n = int(pages[s]), e - s
        # Runs of leaf pages can be long: read at most 16 MB at a time.
        for off in range(0, n, 4096):
            k = min(4096, n - off)
            blob = os.pread(fd, k * psize, (first + off) * psize)
            if len(blob) != k * psize:
                raise OSError("short read")
            crc = crc32(blob, crc)
    return crc


def structural_pages(path: str) -> tuple[int, int, np.ndarray]:
    """Page size, LMDB data length and the sorted structural page numbers of a trusted LMDB file.

    Walks the main tree from the newest meta page. Runs on a file we have just written and closed,
    so a malformed page is a bug here (raised as FormatError all the same).
    """
    with open(path, "rb") as f:
        data_len = os.fstat(f.fileno()).st_size
        head = f.read(_PAGE_QUANTUM)
        psize = struct.unpack_from("<I", head, _META_PSIZE)[0]
        if psize < _PAGE_QUANTUM or psize & (psize - 1) or data_len % psize:
            raise FormatError(f"{path}: unexpected LMDB page size {psize}")
        metas = []
        for pgno in (0, 1):
            f.seek(pgno * psize)
            page = f.read(psize)
            magic = struct.unpack_from("<I", page, _PAGE_HEADER)[0]
            if magic != _META_MAGIC:
                raise FormatError(f"{path}: LMDB meta page {pgno} has no LMDB magic")
            txnid = struct.unpack_from("<Q", page, _META_TXNID)[0]
            root = struct.unpack_from("<Q", page, _META_MAIN_ROOT)[0]
            metas.append((txnid, root))
        root = max(metas)[1]
        found = [0, 1]
        todo = [] if root == _P_INVALID else [root]
        n_pages = data_len // psize
        while todo:
            pgno = todo.pop()
            if pgno >= n_pages:
                raise FormatError(f"{path}: LMDB page {pgno} is past the end of the file")
            found.append(pgno)
            f.seek(pgno * psize)
            page = f.read(psize)
            flags, lower = struct.unpack_from("<HH", page, 10)
            if flags & (_P_OVERFLOW | _P_META | _P_LEAF2):
                raise FormatError(f"{path}: LMDB page {pgno} has unexpected flags {flags:#x}")
            if flags & _P_BRANCH:
                n = (lower - _PAGE_HEADER) // 2
                for ptr in struct.unpack_from(f"<{n}H", page, _PAGE_HEADER):
                    lo, hi, top = struct.unpack_from("<HHH", page, ptr)
                    todo.append(lo | hi << 16 | top << 32)
    return psize, data_len, np.unique(np.asarray(found, dtype=np.uint64))


def write_seal(path: str, record_crcs: array) -> None:
    """Append the seal to a closed LMDB file; ``record_crcs[i]`` is the CRC-32 of record i."""
    psize, data_len, pages = structural_pages(path)
    fd = os.open(path, os.O_RDWR)
    try:
        pages_blob = pages.astype("<u8").tobytes()
        crcs_blob = np.asarray(record_crcs, dtype="<u4").tobytes()
        body = len(pages_blob) + len(crcs_blob)
        # Never a whole number of 4096-byte pages (see the module docstring).
        padding = 0 if (body + FOOTER) % _PAGE_QUANTUM else 8
        fields = (
            MAGIC,
            psize,
            padding,
            data_len,
            len(pages),
            len(record_crcs),
            zlib.crc32(pages_blob),
            _crc_of_pages(fd, pages, psize),
            zlib.crc32(crcs_blob),
        )
        footer = _FOOTER.pack(*fields, 0)
        footer = _FOOTER.pack(*fields, zlib.crc32(footer[:-4]))
        os.pwrite(fd, pages_blob + crcs_blob + bytes(padding) + footer, data_len)
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class Seal:
    """A checked seal: the LMDB part of the file is ``data_len`` bytes and its structure is intact."""

    path: str
    psize: int
    data_len: int
    count: int
    _crcs_at: int
    _crcs_crc: int
    _record_crcs: array | None = field(default=None, repr=False)

    def record_crcs(self) -> array:
        """The per-record CRC-32s (read and checked on first use)."""
        if self._record_crcs is None:
            with open(self.path, "rb") as f:
                f.seek(self._crcs_at)
                blob = f.read(4 * self.count)
            if len(blob) != 4 * self.count or zlib.crc32(blob) != self._crcs_crc:
                raise FormatError(f"{self.path}: the seal's record checksums are damaged")
            crcs = array("I")
            if crcs.itemsize != 4:  # pragma: no cover - no such platform in use
                raise FormatError(f"{self.path}: record checksums need a 4-byte unsigned int")
            crcs.frombytes(blob)
            if sys.byteorder == "big":  # pragma: no cover - stored little-endian
                crcs.byteswap()
            self._record_crcs = crcs  # indexing an array gives plain ints, fast to compare
        return self._record_crcs


def check_seal(path: str, data_file: str) -> Seal | None:
    """Check the seal of ``data_file`` with plain reads, before the lmdb library may touch it.

    Returns the seal, or None for a file without one (an LMDB written by another program, whose
    pages cannot be checked). Raises FormatError (naming ``path``) for a damaged seal, a damaged
    structural page, or a file that cannot be an LMDB.
    """
    try:
        fd = os.open(data_file, os.O_RDONLY)
    except OSError as e:
        raise FormatError(f"{path}: cannot read ({e})") from e
    try:
        size = os.fstat(fd).st_size
        footer = os.pread(fd, FOOTER, size - FOOTER) if size >= FOOTER else b""
        if len(footer) != FOOTER or footer[:8] != MAGIC:
            if size % _PAGE_QUANTUM:
                raise FormatError(
                    f"{path}: not a readable LMDB database (its size, {size} bytes, is not a "
                    "whole number of pages, and it has no intact LMDBSerializer seal: a damaged "
                    "or truncated file)"
                )
            return None
        (_, psize, padding, data_len, n_pages, count, pages_crc, struct_crc, crcs_crc, own) = (
            _FOOTER.unpack(footer)
        )
        if zlib.crc32(footer[:-4]) != own:
            raise FormatError(f"{path}: the LMDBSerializer seal is damaged (footer checksum)")
        crcs_at = data_len + 8 * n_pages
        if (
            psize < _PAGE_QUANTUM
            or psize & (psize - 1)
            or data_len % psize
            or n_pages < 2
            or crcs_at + 4 * count + padding + FOOTER != size
        ):
            raise FormatError(
                f"{path}: the LMDBSerializer seal does not match the file's size "
                f"({size} bytes): a truncated or altered file"
            )
        blob = os.pread(fd, 8 * n_pages, data_len)
        if len(blob) != 8 * n_pages or zlib.crc32(blob) != pages_crc:
            raise FormatError(f"{path}: the LMDBSerializer seal is damaged (page list checksum)")
        pages = np.frombuffer(blob, dtype="<u8")
        if int(pages.max()) >= data_len // psize or np.any(np.diff(pages.astype(np.int64)) <= 0):
            raise FormatError(f"{path}: the LMDBSerializer seal is damaged (page list)")
        if _crc_of_pages(fd, pages, psize) != struct_crc:
            raise FormatError(
                f"{path}: damaged LMDB pages (the structure's checksum does not match the seal): "
                "the file was altered or corrupted on disk"
            )
        return Seal(path, psize, data_len, count, crcs_at, crcs_crc)
    except OSError as e:
        raise FormatError(f"{path}: cannot read ({e})") from e
    finally:
        os.close(fd)
