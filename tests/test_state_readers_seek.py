"""Resume of the file readers, beyond test_state_readers.py: the orders and readers it leaves out
(sequential npz/diskcache/SVMlight/verified LMDB, shuffled HDF5Serializer, LMDBDataDecoder,
CaffeLMDB) at every k over 3 passes, and resumed passes that count what they read and decode."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

import dataflow
from dataflow import (
    DataFromList,
    DiskCacheSerializer,
    HDF5Serializer,
    LMDBSerializer,
    MapData,
    NumpySerializer,
    TFRecordSerializer,
    _state,
    codec,
)
from dataflow.errors import StateError
from dataflow.format import CaffeLMDB, HDF5Data, LMDBData, LMDBDataDecoder, SVMLightData
from resume_check import canon, check_resume, save_after
from test_format import write_plain_lmdb
from test_format_caffe import caffe_datum

pytestmark = pytest.mark.timeout(120)

N = 23


def rows(n=N):
    return [[np.arange(3, dtype=np.int64) + i, i] for i in range(n)]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("readers")
    names = ("npz", "tfrecord", "h5", "lmdb", "cache", "plain", "caffe", "tensorpack")
    paths = {k: str(d / k) for k in names}
    NumpySerializer.save(DataFromList(rows(), shuffle=False), paths["npz"])
    TFRecordSerializer.save(DataFromList(rows(), shuffle=False), paths["tfrecord"])
    HDF5Serializer.save(DataFromList(rows(), shuffle=False), paths["h5"], ["x", "y"])
    LMDBSerializer.save(DataFromList(rows(), shuffle=False), paths["lmdb"])
    DiskCacheSerializer.save(DataFromList(rows(), shuffle=False), paths["cache"])
    # A plain LMDB (no header, keys not digits-only) and a Caffe LMDB, written with lmdb itself.
    write_plain_lmdb(paths["plain"], {b"key-%03d" % i: b"value %d" % i for i in range(N)})
    # tensorpack's layout: numbered keys and their list under __keys__ (which sorts among them).
    tp = {b"%08d" % i: codec.dumps(row) for i, row in enumerate(rows())}
    tp[b"__keys__"] = pickle.dumps(sorted(tp))
    write_plain_lmdb(paths["tensorpack"], tp)
    img = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_plain_lmdb(
        paths["caffe"],
        {b"%08d" % i: caffe_datum(2, 3, 4, (img + i).tobytes(), i) for i in range(N)},
    )
    from sklearn.datasets import dump_svmlight_file

    X = np.random.RandomState(0).rand(N, 5) * (np.arange(5) % 2)
    paths["svm"] = str(d / "data.svm")
    dump_svmlight_file(X, np.arange(N), paths["svm"])
    return paths


READERS = {
    "npz": lambda p, s: NumpySerializer.load(p["npz"], shuffle=s),
    "tfrecord": lambda p, s: TFRecordSerializer.load(p["tfrecord"]),
    "hdf5": lambda p, s: HDF5Serializer.load(p["h5"], ["x", "y"], shuffle=s),
    "lmdb-serializer": lambda p, s: LMDBSerializer.load(p["lmdb"], shuffle=s),
    "lmdb-verified": lambda p, s: LMDBSerializer.load(p["lmdb"], shuffle=s, verify=True),
    "lmdbdata": lambda p, s: LMDBData(p["lmdb"], shuffle=s),
    "lmdbdata-plain": lambda p, s: LMDBData(p["plain"], shuffle=s),
    "lmdbdata-tensorpack": lambda p, s: LMDBData(p["tensorpack"], shuffle=s),
    "lmdb-decoder": lambda p, s: LMDBDataDecoder(
        LMDBData(p["plain"], shuffle=s), lambda k, v: None if v.endswith(b"3") else [k, v]
    ),
    "caffe": lambda p, s: CaffeLMDB(p["caffe"], shuffle=s),
    "diskcache": lambda p, s: DiskCacheSerializer.load(p["cache"], shuffle=s),
    "svmlight": lambda p, s: SVMLightData(p["svm"], shuffle=s),
}
# (reader, shuffle) pairs that test_state_readers.py does not run through check_resume.
CASES = [
    ("npz", False),
    ("diskcache", False),
    ("svmlight", False),
    ("lmdb-verified", False),
    ("hdf5", True),
    ("lmdb-decoder", False),
    ("lmdb-decoder", True),
    ("caffe", False),
    ("caffe", True),
    ("lmdbdata-tensorpack", False),
    ("lmdbdata-tensorpack", True),
]


@pytest.mark.parametrize(("name", "shuffle"), CASES)
def test_readers_resume_exactly_at_every_k(files, name, shuffle):
    check_resume(lambda: READERS[name](files, shuffle), passes=3)


@pytest.mark.parametrize(("name", "shuffle"), CASES)
def test_readers_seek_natively(files, name, shuffle):
    ds = READERS[name](files, shuffle)
    flow = ds.ds if isinstance(ds, LMDBDataDecoder) else ds
    assert _state.kind(type(flow)) == "native", type(flow).__name__


def test_a_reader_saved_twice_in_a_pass_resumes_exactly(files):
    def build():
        return MapData(LMDBData(files["plain"], shuffle=False), lambda dp: dp[1])

    dataflow.set_seed(3)
    ds = build()
    whole = [canon(dp) for dp in ds] + [canon(dp) for dp in ds]
    ds.close()
    dataflow.set_seed(3)
    got, state = save_after(build(), 5)
    for step in (9, 4):
        ds = build()
        ds.load_state_dict(json.loads(json.dumps(state)))
        more, state = save_after(ds, step)
        got += more
    ds = build()
    ds.load_state_dict(state)
    got += [canon(dp) for dp in ds] + [canon(dp) for dp in ds]
    assert got == whole


# -- seek, not replay: a resumed pass reads and decodes only what is left ---------------------------


def counting_decoder(monkeypatch, calls):
    real = codec.decoder

    def decoder(*args, **kwargs):
        decode = real(*args, **kwargs)

        def counted(buf):
            calls.append(1)
            return decode(buf)

        return counted

    monkeypatch.setattr(codec, "decoder", decoder)


class _Counting:
    """An LMDB environment, transaction or cursor that counts the records read through it."""

    def __init__(self, obj, calls):
        self._obj, self._calls = obj, calls

    def __getattr__(self, name):
        return getattr(self._obj, name)

    def begin(self, *args, **kwargs):
        return _Counting(self._obj.begin(*args, **kwargs), self._calls)

    def __enter__(self):
        self._obj.__enter__()
        return self

    def __exit__(self, *exc):
        return self._obj.__exit__(*exc)

    def get(self, key):
        self._calls.append(key)
        return self._obj.get(key)

    def cursor(self):
        return _Counting(self._obj.cursor(), self._calls)

    def __iter__(self):
        for item in self._obj:
            self._calls.append(item[0])
            yield item

    def iternext(self, *args, **kwargs):
        for item in self._obj.iternext(*args, **kwargs):
            self._calls.append(1)
            yield item


def resume_at(build, k, calls, instrument=None):
    """The datapoints a rebuilt reader yields after the state at ``k``, and how many reads
    (``calls``) that resumed pass made."""
    dataflow.set_seed(11)
    first, state = save_after(build(), k)
    ds = build()
    ds.load_state_dict(state)
    ds.reset_state()
    if instrument is not None:
        instrument(ds)
    calls.clear()
    rest = [canon(dp) for dp in ds]
    reads = len(calls)
    ds.close()
    dataflow.set_seed(11)
    whole = build()
    assert first + rest == [canon(dp) for dp in whole], "the resumed pass is not the rest"
    whole.close()
    return rest, reads


K = 20  # of N = 23: a resumed pass has 3 datapoints left


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("name", ["npz", "lmdb-serializer", "lmdb-verified", "diskcache"])
def test_resumed_pass_decodes_only_what_is_left(files, monkeypatch, name, shuffle):
    calls: list = []
    counting_decoder(monkeypatch, calls)
    rest, reads = resume_at(lambda: READERS[name](files, shuffle), K, calls)
    assert len(rest) == N - K
    assert reads == N - K  # the whole pass from the start would decode N


def test_resumed_tfrecord_pass_reads_from_the_saved_offset(files):
    calls: list = []

    def instrument(ds):
        real = ds._decode
        ds._decode = lambda record: calls.append(1) or real(record)

    rest, reads = resume_at(
        lambda: TFRecordSerializer.load(files["tfrecord"]), K, calls, instrument
    )
    assert len(rest) == reads == N - K


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("path", ["lmdb", "plain", "tensorpack"])
def test_resumed_lmdbdata_pass_reads_only_the_records_left(files, path, shuffle):
    calls: list = []

    def instrument(ds):
        ds._env = _Counting(ds._env, calls)

    rest, reads = resume_at(lambda: LMDBData(files[path], shuffle=shuffle), K, calls, instrument)
    assert len(rest) == N - K
    # In key order the cursor also steps onto LMDBSerializer's header record after the last.
    assert N - K <= reads <= N - K + 1


@pytest.mark.parametrize("shuffle", [False, True])
def test_resumed_hdf5_pass_reads_only_the_rows_left(files, monkeypatch, shuffle):
    read: list = []

    class Rows:
        def __init__(self, dset):
            self.dset, self.size, self.shape = dset, dset.size, dset.shape

        def __getitem__(self, sel):
            out = self.dset[sel]
            read.append(len(out))
            return out

    real = HDF5Data._readers

    def readers(self):
        dsets, convs, block = real(self)
        return [Rows(d) for d in dsets], convs, block

    monkeypatch.setattr(HDF5Data, "_readers", readers)
    dataflow.set_seed(11)
    first, state = save_after(HDF5Serializer.load(files["h5"], ["x", "y"], shuffle=shuffle), K)
    read.clear()
    ds = HDF5Serializer.load(files["h5"], ["x", "y"], shuffle=shuffle)
    ds.load_state_dict(state)
    rest = list(ds)
    assert len(rest) == N - K
    assert sum(read) == 2 * (N - K)  # two datasets, only the rows left


# -- mismatches -------------------------------------------------------------------------------------


def test_a_state_of_a_reader_of_another_length_is_refused(files, tmp_path):
    dataflow.set_seed(1)
    _, state = save_after(NumpySerializer.load(files["npz"]), 4)
    other = str(tmp_path / "other.npz")
    NumpySerializer.save(DataFromList(rows(N + 2), shuffle=False), other)
    with pytest.raises(StateError, match=f"saved with {N} datapoints a pass, the flow now has"):
        NumpySerializer.load(other).load_state_dict(state)


def test_a_tfrecord_state_of_another_file_is_refused(files, tmp_path):
    _, state = save_after(TFRecordSerializer.load(files["tfrecord"]), 4)
    other = str(tmp_path / "other.tfrecord")
    TFRecordSerializer.save(DataFromList(rows(N)[::-1] + rows(1), shuffle=False), other)
    with pytest.raises(StateError, match="other.tfrecord of .* bytes, the file now has"):
        TFRecordSerializer.load(other).load_state_dict(state)
