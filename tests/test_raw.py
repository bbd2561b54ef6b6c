"""Source flows of dataflow.raw: output, len, end of pass, shuffling, seeding, bad arguments."""

from __future__ import annotations

import itertools
import pickle
import queue
import threading

import numpy as np
import pytest

from dataflow._engine.seeding import set_seed
from dataflow.base import DataFlow, RNGDataFlow
from dataflow.errors import (
    DataFlowArgumentError,
    DataFlowClosedError,
    DataFlowError,
    LengthUnknownError,
    ReentrancyError,
)
from dataflow.raw import (
    DataFromDict,
    DataFromGenerator,
    DataFromIterable,
    DataFromList,
    DataFromQueue,
    FakeData,
)

pytestmark = pytest.mark.usefixtures("unseeded", "no_leaks")


def _passes(ds, n=2):
    return [list(ds) for _ in range(n)]


def test_public_names_of_tensorpack_raw_are_exported():
    import dataflow.raw as raw

    for name in ["FakeData", "DataFromQueue", "DataFromList", "DataFromGenerator"]:
        assert name in raw.__all__
    assert "DataFromIterable" in raw.__all__ and "DataFromDict" in raw.__all__
    for name in raw.__all__:
        assert issubclass(getattr(raw, name), DataFlow)


# -- DataFromList ---------------------------------------------------------------------------------


def test_datafromlist_without_shuffle_yields_list_in_order_every_pass():
    data = [[i, str(i)] for i in range(7)]
    ds = DataFromList(data, shuffle=False)
    assert len(ds) == 7 and ds.size() == 7
    assert _passes(ds, 3) == [data, data, data]
    assert list(ds.get_data()) == data


def test_datafromlist_yields_the_elements_themselves_not_copies():
    data = [[np.zeros(2)], [np.ones(2)]]
    out = list(DataFromList(data, shuffle=False))
    assert all(a is b for a, b in zip(out, data))


def test_datafromlist_shuffle_yields_each_element_exactly_once_per_pass():
    data = [[i] for i in range(50)]
    ds = DataFromList(data, shuffle=True)
    first, second = _passes(ds)
    assert sorted(first) == data and sorted(second) == data
    assert first != data  # 1/50! chance to stay sorted under an unseeded rng; seeded below
    assert len(ds) == 50


def test_datafromlist_shuffle_is_reproducible_per_pass_under_set_seed():
    data = [[i] for i in range(40)]
    set_seed(123)
    a = _passes(DataFromList(data))
    set_seed(123)
    b = _passes(DataFromList(data))
    set_seed(124)
    c = _passes(DataFromList(data))
    assert a == b  # same seed: identical passes
    assert a[0] != a[1]  # each pass (epoch) gets its own order
    assert a != c  # a different seed gives other orders


def test_datafromlist_accepts_tuple_range_and_numpy_array():
    assert list(DataFromList(([1], [2]), shuffle=False)) == [[1], [2]]
    assert list(DataFromList(range(3), shuffle=False)) == [0, 1, 2]
    arr = np.arange(12).reshape(4, 3)
    out = list(DataFromList(arr, shuffle=True))
    assert sorted(row.tolist() for row in out) == arr.tolist()


def test_datafromlist_dict_datapoints():
    data = [{"x": i, "y": -i} for i in range(5)]
    assert list(DataFromList(data, shuffle=False)) == data
    assert sorted(DataFromList(data), key=lambda d: d["x"]) == data


@pytest.mark.parametrize("shuffle", [False, True])
def test_datafromlist_empty_list_yields_nothing(shuffle):
    ds = DataFromList([], shuffle=shuffle)
    assert len(ds) == 0
    assert _passes(ds) == [[], []]


def test_datafromlist_references_the_list_so_changes_show_in_the_next_pass():
    data = [[0], [1]]
    ds = DataFromList(data, shuffle=False)
    assert list(ds) == [[0], [1]]
    data.append([2])
    assert len(ds) == 3 and list(ds) == [[0], [1], [2]]


def test_datafromlist_two_interleaved_iterators_each_yield_a_full_pass():
    data = [[i] for i in range(10)]
    ds = DataFromList(data, shuffle=True)
    it1, it2 = iter(ds), iter(ds)
    out1, out2 = [], []
    for a, b in zip(it1, it2):
        out1.append(a)
        out2.append(b)
    assert sorted(out1) == data and sorted(out2) == data


def test_datafromlist_pickles_and_still_works():
    ds = DataFromList([[i] for i in range(6)], shuffle=True)
    list(ds)
    clone = pickle.loads(pickle.dumps(ds))
    assert sorted(clone) == [[i] for i in range(6)]


@pytest.mark.parametrize(
    "bad, words",
    [
        ((i for i in range(3)), ["lst", "DataFromGenerator"]),
        ({"a": [1]}, ["lst", "DataFromDict"]),
        ("abc", ["lst", "str"]),
        (5, ["lst", "int"]),
        (None, ["lst", "NoneType"]),
    ],
)
def test_datafromlist_rejects_non_sequences_naming_the_argument(bad, words):
    with pytest.raises(DataFlowArgumentError) as info:
        DataFromList(bad)
    for word in words:
        assert word in str(info.value)


def test_datafromlist_rejects_a_non_bool_shuffle():
    with pytest.raises(DataFlowArgumentError, match="shuffle"):
        DataFromList([[1]], shuffle="yes")


def test_datafromlist_is_an_rng_dataflow_and_closed_flow_refuses_iteration():
    ds = DataFromList([[1]])
    assert isinstance(ds, RNGDataFlow)
    ds.close()
    with pytest.raises(DataFlowClosedError):
        iter(ds)


# -- DataFromDict ---------------------------------------------------------------------------------


def test_datafromdict_yields_one_dict_per_index_in_order():
    ds = DataFromDict({"img": ["a", "b", "c"], "label": np.array([0, 1, 2])}, shuffle=False)
    assert len(ds) == 3
    out = list(ds)
    assert [d["img"] for d in out] == ["a", "b", "c"]
    assert [int(d["label"]) for d in out] == [0, 1, 2]
    assert all(list(d) == ["img", "label"] for d in out)  # keys in data_dict's order


def test_datafromdict_shuffle_keeps_rows_together_and_is_reproducible():
    cols = {"x": list(range(30)), "y": [10 * i for i in range(30)]}
    set_seed(9)
    a = _passes(DataFromDict(cols))
    set_seed(9)
    b = _passes(DataFromDict(cols))
    assert a == b and a[0] != a[1]
    for p in a:
        assert all(d["y"] == 10 * d["x"] for d in p)
        assert sorted(d["x"] for d in p) == cols["x"]


def test_datafromdict_with_empty_columns_yields_nothing():
    ds = DataFromDict({"a": [], "b": []})
    assert len(ds) == 0 and list(ds) == []


def test_datafromdict_rejects_bad_inputs_with_clear_messages():
    with pytest.raises(DataFlowArgumentError, match="different lengths.*'a': 2.*'b': 3"):
        DataFromDict({"a": [1, 2], "b": [1, 2, 3]})
    with pytest.raises(DataFlowArgumentError, match="no keys"):
        DataFromDict({})
    with pytest.raises(DataFlowArgumentError, match="data_dict must be a dict"):
        DataFromDict([[1, 2]])
    with pytest.raises(DataFlowArgumentError, match=r"data_dict\['b'\].*str"):
        DataFromDict({"a": [1, 2, 3], "b": "xyz"})
    with pytest.raises(DataFlowArgumentError, match="shuffle"):
        DataFromDict({"a": [1]}, shuffle=None)


def test_datafromdict_columns_changed_to_unequal_lengths_fail_at_the_next_pass():
    cols = {"a": [1, 2], "b": [3, 4]}
    ds = DataFromDict(cols, shuffle=False)
    cols["a"].append(5)
    with pytest.raises(DataFlowArgumentError, match="different lengths"):
        iter(ds)


# -- DataFromGenerator ----------------------------------------------------------------------------


def test_datafromgenerator_seed_example_infinite_generator():
    my_array, my_label = np.zeros((2, 2)), 3

    def my_data_loader():
        while True:
            # load data from somewhere
            yield [my_array, my_label]

    dataflow = DataFromGenerator(my_data_loader)
    out = list(itertools.islice(dataflow, 5))
    assert len(out) == 5 and all(dp[0] is my_array and dp[1] == 3 for dp in out)
    with pytest.raises(NotImplementedError):
        len(dataflow)


def test_datafromgenerator_calls_the_callable_once_per_pass():
    calls = []

    def gen():
        calls.append(1)
        yield from ([i] for i in range(3))

    ds = DataFromGenerator(gen)
    assert _passes(ds, 3) == [[[0], [1], [2]]] * 3
    assert len(calls) == 3


def test_datafromgenerator_len_unknown_is_lengthunknownerror_and_list_still_works():
    ds = DataFromGenerator(lambda: iter([[1], [2]]))
    with pytest.raises(LengthUnknownError):
        len(ds)
    with pytest.raises(NotImplementedError):
        ds.size()
    assert list(ds) == [[1], [2]] and tuple(ds) == ([1], [2]) and sorted(ds) == [[1], [2]]


def test_datafromgenerator_size_argument_is_its_len():
    ds = DataFromGenerator(lambda: ([i] for i in range(4)), size=4)
    assert len(ds) == 4 and ds.size() == 4
    with pytest.raises(DataFlowArgumentError, match="size"):
        DataFromGenerator(lambda: iter([]), size=-1)
    with pytest.raises(DataFlowArgumentError, match="size"):
        DataFromGenerator(lambda: iter([]), size=2.5)


def test_datafromgenerator_reiterable_has_len_and_repeats():
    ds = DataFromGenerator([[1], [2], [3]])
    assert len(ds) == 3
    assert _passes(ds) == [[[1], [2], [3]]] * 2


def test_datafromgenerator_bare_generator_second_pass_raises_instead_of_yielding_nothing():
    ds = DataFromGenerator([i] for i in range(3))
    assert list(ds) == [[0], [1], [2]]
    with pytest.raises(DataFlowError, match="one-shot iterator.*used up"):
        list(ds)
    with pytest.raises(LengthUnknownError):
        len(ds)


def test_datafromgenerator_abandoned_pass_is_continued_by_the_next():
    ds = DataFromGenerator([i] for i in range(5))
    it = iter(ds)
    assert [next(it), next(it)] == [[0], [1]]
    it.close()
    assert list(ds) == [[2], [3], [4]]
    with pytest.raises(DataFlowError, match="used up"):
        iter(ds)


def test_datafromgenerator_already_finished_generator_raises_at_first_pass():
    g = (i for i in range(3))
    list(g)  # exhausted before being wrapped: its frame is gone
    with pytest.raises(DataFlowError, match="used up"):
        iter(DataFromGenerator(g))


def test_datafromgenerator_bare_generator_refuses_a_second_live_iterator():
    ds = DataFromGenerator([i] for i in range(5))
    it = iter(ds)
    next(it)
    with pytest.raises(ReentrancyError):
        iter(ds)
    assert list(it) == [[1], [2], [3], [4]]


def test_datafromgenerator_errors_name_the_bad_argument():
    with pytest.raises(DataFlowArgumentError, match="gen must be a callable.*int"):
        DataFromGenerator(5)
    ds = DataFromGenerator(lambda: 42)
    with pytest.raises(DataFlowArgumentError, match=r"gen\(\) must return an iterable.*int"):
        iter(ds)


def test_datafromgenerator_user_exception_propagates():
    def gen():
        yield [1]
        raise KeyError("broken record")

    it = iter(DataFromGenerator(gen))
    assert next(it) == [1]
    with pytest.raises(KeyError, match="broken record"):
        next(it)


def test_datafromgenerator_close_closes_the_running_generator():
    finished = []

    def gen():
        try:
            yield from ([i] for i in itertools.count())
        finally:
            finished.append(True)

    ds = DataFromGenerator(gen)
    it = iter(ds)
    next(it)
    ds.close()
    assert finished == [True]
    with pytest.raises(DataFlowClosedError):
        iter(ds)


# -- DataFromIterable -----------------------------------------------------------------------------


def test_datafromiterable_len_follows_the_iterable():
    data = [[1], [2]]
    ds = DataFromIterable(data)
    assert len(ds) == 2 and _passes(ds) == [data, data]
    data.append([3])
    assert len(ds) == 3


def test_datafromiterable_unsized_reiterable_has_unknown_len_but_repeats():
    class Numbers:
        def __iter__(self):
            return iter([[0], [1]])

    ds = DataFromIterable(Numbers())
    with pytest.raises(LengthUnknownError):
        len(ds)
    assert _passes(ds) == [[[0], [1]], [[0], [1]]]


def test_datafromiterable_iterator_is_one_shot():
    ds = DataFromIterable(iter([[1], [2]]))
    with pytest.raises(NotImplementedError):
        len(ds)
    assert list(ds) == [[1], [2]]
    with pytest.raises(DataFlowError, match="DataFromIterable.*used up"):
        list(ds)


def test_datafromiterable_empty_and_bad_inputs():
    assert list(DataFromIterable([])) == [] and len(DataFromIterable(())) == 0
    with pytest.raises(DataFlowArgumentError, match="iterable must be iterable.*int"):
        DataFromIterable(3)
    with pytest.raises(DataFlowArgumentError, match="DataFromGenerator"):
        DataFromIterable(lambda: iter([]))


# -- DataFromQueue --------------------------------------------------------------------------------


def _feed(q: queue.Queue, items, end=None):
    for item in items:
        q.put(item)
    if end is not None:
        q.put(end)


@pytest.mark.timeout(20)
def test_datafromqueue_yields_items_a_thread_puts_in_order():
    q: queue.Queue = queue.Queue(maxsize=4)  # small: the producer blocks on the consumer
    items = [[i, {"k": i}] for i in range(100)]
    producer = threading.Thread(target=_feed, args=(q, items), daemon=True)
    producer.start()
    ds = DataFromQueue(q)
    assert list(itertools.islice(ds, 100)) == items
    producer.join(10)
    assert not producer.is_alive()
    with pytest.raises(LengthUnknownError):
        len(ds)


@pytest.mark.timeout(20)
def test_datafromqueue_sentinel_ends_a_pass_and_the_next_pass_reads_on():
    end = object()
    q: queue.Queue = queue.Queue()
    producer = threading.Thread(
        target=lambda: (_feed(q, [[1], [2]], end), _feed(q, [[3]], end)), daemon=True
    )
    producer.start()
    ds = DataFromQueue(q, sentinel=end)
    assert list(ds) == [[1], [2]]
    assert list(ds) == [[3]]
    producer.join(10)


def test_datafromqueue_rejects_objects_without_get():
    with pytest.raises(DataFlowArgumentError, match="queue must have a get"):
        DataFromQueue([1, 2, 3])


# -- FakeData -------------------------------------------------------------------------------------


def test_fakedata_shapes_dtypes_domains_and_len():
    ds = FakeData([[2, 3], [4], []], size=20, dtype=["float32", np.uint8, "int64"],
                  domain=[(0, 1), (10, 20), (-5, 5)])  # fmt: skip
    assert len(ds) == 20
    out = list(ds)
    assert len(out) == 20
    for a, b, c in out:
        assert a.shape == (2, 3) and a.dtype == np.float32 and ((a >= 0) & (a < 1)).all()
        assert b.shape == (4,) and b.dtype == np.uint8 and ((b >= 10) & (b < 20)).all()
        assert c.shape == () and c.dtype == np.int64 and -5 <= c <= 5


def test_fakedata_defaults_follow_tensorpack():
    ds = FakeData([[3]])
    assert len(ds) == 1000
    dp = next(iter(ds))
    assert isinstance(dp, list) and dp[0].dtype == np.float32
    assert ((dp[0] >= 0) & (dp[0] < 1)).all()


def test_fakedata_random_draws_every_datapoint_and_is_reproducible():
    set_seed(4)
    a = _passes(FakeData([[5]], size=3))
    set_seed(4)
    b = _passes(FakeData([[5]], size=3))
    assert all(np.array_equal(x[0], y[0]) for pa, pb in zip(a, b) for x, y in zip(pa, pb))
    assert not np.array_equal(a[0][0][0], a[0][1][0])  # datapoints differ
    assert not np.array_equal(a[0][0][0], a[1][0][0])  # passes differ


def test_fakedata_not_random_repeats_one_datapoint_per_pass():
    ds = FakeData([[4], [2]], size=5, random=False)
    out = list(ds)
    assert len(out) == 5
    assert all(dp[0] is out[0][0] and dp[1] is out[0][1] for dp in out)  # same arrays
    assert len({id(dp) for dp in out}) == 5  # each a new list


def test_fakedata_size_zero_yields_nothing():
    assert list(FakeData([[1]], size=0)) == []


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"shapes": 5}, "shapes"),
        ({"shapes": []}, "shapes"),
        ({"shapes": [[2, -1]]}, r"shapes\[0\]"),
        ({"shapes": [[2], "ab"]}, r"shapes\[1\]"),
        ({"shapes": [[2]], "size": -3}, "size"),
        ({"shapes": [[2]], "random": "no"}, "random"),
        ({"shapes": [[2]], "dtype": "notatype"}, "dtype"),
        ({"shapes": [[2], [3]], "dtype": ["float32"]}, "dtype"),
        ({"shapes": [[2]], "domain": (1, 0)}, r"domain\[0\].*low <= high"),
        ({"shapes": [[2], [3]], "domain": [(0, 1)]}, "domain"),
        ({"shapes": [[2]], "domain": "ab"}, "domain"),
    ],
)
def test_fakedata_rejects_bad_arguments_naming_them(kwargs, word):
    with pytest.raises(DataFlowArgumentError, match=word):
        FakeData(**kwargs)


def test_fakedata_accepts_a_domain_given_as_a_list_pair():
    (a,) = next(iter(FakeData([[100]], domain=[5, 6])))
    assert ((a >= 5) & (a < 6)).all()
