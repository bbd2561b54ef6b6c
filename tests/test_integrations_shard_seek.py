"""ShardByRank over random-access sources: a rank's pass reads only its own records (counted),
yields exactly what reading every record and keeping its share yields, and resumes exactly."""

from __future__ import annotations

import numpy as np
import pytest

from dataflow import (
    BatchData,
    DataFromDict,
    DataFromList,
    DiskCacheSerializer,
    HDF5Serializer,
    LMDBSerializer,
    MapData,
    NumpySerializer,
    ShardByRank,
    set_seed,
)
from dataflow.format import HDF5Data, LMDBData, SVMLightData
from dataflow.format.lmdb import lmdb_key
from dataflow.image import ImageFromFile
from resume_check import canon, check_resume

pytestmark = pytest.mark.timeout(120)

N, WORLD = 10, 3  # 10 % 3 != 0: the remainder is dropped


def records(n=N):
    # 5000-byte arrays: LMDB keeps them on overflow pages, so its reader checks their CRCs
    return [[i, np.full(5000, i, dtype=np.uint8)] for i in range(n)]


def identity(dp):
    return dp


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    cv2 = pytest.importorskip("cv2")
    folder = tmp_path_factory.mktemp("seek")
    LMDBSerializer.save(DataFromList(records(), shuffle=False), str(folder / "r.lmdb"))
    HDF5Serializer.save(
        DataFromList([[np.int64(i), np.full(4, i, np.float32)] for i in range(N)], shuffle=False),
        str(folder / "r.h5"),
        ["i", "x"],
    )
    NumpySerializer.save(DataFromList(records(), shuffle=False), str(folder / "r.npz"))
    DiskCacheSerializer.save(DataFromList(records(), shuffle=False), str(folder / "r.cache"))
    from sklearn.datasets import dump_svmlight_file

    rows = np.arange(N * 3, dtype=np.float64).reshape(N, 3)
    dump_svmlight_file(rows, np.arange(N, dtype=np.float64), str(folder / "r.svm"))
    jpegs = []
    for i in range(N):
        path = folder / f"{i}.jpg"
        assert cv2.imwrite(str(path), np.full((8, 8, 3), 20 * i, np.uint8))
        jpegs.append(str(path))
    return folder, jpegs


SOURCES = [
    "list",
    "list-shuffled",
    "dict-shuffled",
    "lmdb",
    "lmdb-shuffled",
    "lmdb-datapoints",
    "hdf5",
    "hdf5-shuffled",
    "npz-shuffled",
    "diskcache-shuffled",
    "svmlight-shuffled",
    "jpeg-shuffled",
]


def make(name, files):
    folder, jpegs = files
    shuffled = name.endswith("-shuffled")
    if name.startswith("list"):
        return DataFromList(records(), shuffle=shuffled)
    if name.startswith("dict"):
        return DataFromDict({"i": list(range(N)), "sq": [i * i for i in range(N)]}, shuffled)
    if name == "lmdb-datapoints":
        return LMDBSerializer.load(str(folder / "r.lmdb"), shuffle=True)
    if name.startswith("lmdb"):
        return LMDBData(str(folder / "r.lmdb"), shuffle=shuffled)
    if name.startswith("hdf5"):
        return HDF5Data(str(folder / "r.h5"), ["i", "x"], shuffle=shuffled)
    if name.startswith("npz"):
        return NumpySerializer.load(str(folder / "r.npz"), shuffle=True)
    if name.startswith("diskcache"):
        return DiskCacheSerializer.load(str(folder / "r.cache"), shuffle=True)
    if name.startswith("svmlight"):
        return SVMLightData(str(folder / "r.svm"), shuffle=True)
    return ImageFromFile(jpegs, channel=3, shuffle=True)


def passes(ds, n=2):
    return [[canon(dp) for dp in ds] for _ in range(n)]


@pytest.mark.parametrize("name", SOURCES)
def test_a_random_access_source_seeks_to_its_share_and_yields_what_reading_all_gives(name, files):
    whole = []
    for rank in range(WORLD):
        set_seed(11)
        seeking = ShardByRank(make(name, files), rank=rank, world_size=WORLD)
        assert seeking.seeks(), name
        got = passes(seeking)
        set_seed(11)
        reading = ShardByRank(make(name, files), rank=rank, world_size=WORLD)
        reading.seeks = lambda: False  # the same pipeline, reading every record
        assert got == passes(reading), (name, rank)
        assert [len(p) for p in got] == [N // WORLD] * 2
        whole.append(got)
    for epoch in range(2):  # disjoint: the ranks' shares of a pass never overlap
        seen = [dp for rank in range(WORLD) for dp in whole[rank][epoch]]
        assert len(set(map(repr, seen))) == len(seen) == N // WORLD * WORLD


class CountingList(list):
    def __init__(self, items):
        super().__init__(items)
        self.reads = 0

    def __getitem__(self, i):
        self.reads += 1
        return super().__getitem__(i)


@pytest.mark.parametrize("shuffle", [False, True])
def test_a_rank_reads_only_its_own_records(shuffle):
    set_seed(3)
    lst = CountingList(records(31))
    ds = ShardByRank(DataFromList(lst, shuffle=shuffle), rank=2, world_size=4)
    ds.reset_state()
    lst.reads = 0  # (reset_state may look at a datapoint)
    assert [len(list(ds)) for _ in range(2)] == [7, 7]
    assert lst.reads == 14  # 31 // 4 a pass; the other ranks' 3 x 7 and the remainder not
    lst.reads = 0
    reading = ShardByRank(MapData(DataFromList(lst, shuffle=shuffle), identity), 2, 4)
    reading.reset_state()
    lst.reads = 0
    assert not reading.seeks()  # a flow between the source and the shard: it reads all
    assert len(list(reading)) == 7 and lst.reads == 31


class CountingTxn:
    def __init__(self, txn, counter):
        self._txn, self._counter = txn, counter

    def get(self, key, *args, **kw):
        value = self._txn.get(key, *args, **kw)
        if value is not None:
            self._counter.append(bytes(key))
        return value

    def __getattr__(self, name):
        return getattr(self._txn, name)


class CountingEnv:
    """A real LMDB environment whose transactions record each key they fetch."""

    def __init__(self, env):
        self._env, self.keys = env, []

    def begin(self, *args, **kw):
        env, keys = self._env, self.keys

        class Txn:
            def __enter__(self):
                self._cm = env.begin(*args, **kw)
                return CountingTxn(self._cm.__enter__(), keys)

            def __exit__(self, *exc):
                return self._cm.__exit__(*exc)

        return Txn()

    def __getattr__(self, name):
        return getattr(self._env, name)


@pytest.mark.parametrize("shuffle", [False, True])
def test_an_lmdb_rank_fetches_only_its_own_keys(files, shuffle):
    set_seed(3)
    ds = ShardByRank(LMDBData(str(files[0] / "r.lmdb"), shuffle=shuffle), rank=1, world_size=3)
    ds.reset_state()
    counting = ds.ds._env = CountingEnv(ds.ds._env)
    got = [bytes(k) for k, _ in ds]
    assert counting.keys == got and len(got) == N // WORLD
    if not shuffle:
        assert got == [lmdb_key(i) for i in (1, 4, 7)]


@pytest.mark.parametrize("name", ["list-shuffled", "lmdb-shuffled", "hdf5", "jpeg-shuffled"])
def test_a_seeking_shard_resumes_exactly(name, files):
    def build():
        return BatchData(
            ShardByRank(make(name, files), rank=1, world_size=WORLD), 2, remainder=True
        )

    check_resume(build, passes=3)


def test_pad_and_flows_between_read_every_record():
    lst = CountingList(records(10))
    set_seed(1)
    ds = ShardByRank(DataFromList(lst), rank=0, world_size=3, equal="pad")
    ds.reset_state()
    lst.reads = 0
    assert not ds.seeks()
    assert len(list(ds)) == 4 and lst.reads == 10
