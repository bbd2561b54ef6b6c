"""to_tf: a flow as a tf.data.Dataset with an inferred element_spec (tensorflow-cpu)."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from dataflow import BatchData, DataFromList, to_tf  # noqa: E402
from dataflow.errors import DataFlowArgumentError  # noqa: E402
from flows import Src  # noqa: E402

pytestmark = pytest.mark.timeout(90)


def test_list_datapoints_infer_a_tuple_spec_with_none_for_the_varying_dimension():
    items = [[np.zeros((i + 1, 3), np.float32), np.int64(i)] for i in range(4)]
    src = Src(items)
    ds = to_tf(src)
    assert ds.element_spec == (
        tf.TensorSpec(shape=(None, 3), dtype=tf.float32),
        tf.TensorSpec(shape=(), dtype=tf.int64),
    )
    got = list(ds.as_numpy_iterator())
    assert [x.shape for x, _ in got] == [(1, 3), (2, 3), (3, 3), (4, 3)]
    assert [int(y) for _, y in got] == [0, 1, 2, 3]
    assert src.read == 4  # the datapoints read for the signature were not read twice
    assert [int(y) for _, y in ds.as_numpy_iterator()] == [0, 1, 2, 3]  # a second pass


def test_dict_datapoints_become_dict_elements():
    items = [
        {"image": np.ones((2, i + 2), np.uint8), "label": i, "name": f"n{i}"} for i in range(3)
    ]
    ds = to_tf(DataFromList(items, shuffle=False))
    assert ds.element_spec == {
        "image": tf.TensorSpec(shape=(2, None), dtype=tf.uint8),
        "label": tf.TensorSpec(shape=(), dtype=tf.int64),
        "name": tf.TensorSpec(shape=(), dtype=tf.string),
    }
    got = list(ds.as_numpy_iterator())
    assert [g["name"] for g in got] == [b"n0", b"n1", b"n2"]
    assert got[2]["image"].shape == (2, 4)


def test_a_given_signature_is_used_and_batches_feed_tf():
    flow = BatchData(DataFromList([[np.float32(i)] for i in range(6)], shuffle=False), 3)
    signature = (tf.TensorSpec(shape=(None,), dtype=tf.float32),)
    ds = to_tf(flow, output_signature=signature).map(lambda x: (x * 2,))
    assert [b[0].tolist() for b in ds.as_numpy_iterator()] == [[0, 2, 4], [6, 8, 10]]


def test_inconsistent_datapoints_are_named():
    with pytest.raises(DataFlowArgumentError, match=r"dtype at datapoint\[0\]"):
        to_tf(DataFromList([[np.zeros(1, np.float32)], [np.zeros(1, np.int8)]], shuffle=False))
    with pytest.raises(DataFlowArgumentError, match="yielded nothing"):
        to_tf(DataFromList([], shuffle=False))
