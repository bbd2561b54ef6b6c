"""Augmentor randomness: reproducible with a seed, distinct per worker (real processes and
threads), fresh without a seed."""

from __future__ import annotations

import multiprocessing
import pickle
import threading

import numpy as np
import pytest

from dataflow import imgaug
from dataflow._engine import seeding
from dataflow._engine.context import WorkerInfo, set_worker_info

pytestmark = pytest.mark.usefixtures("unseeded", "no_leaks")


def make_augs() -> imgaug.AugmentorList:
    return imgaug.AugmentorList(
        [
            imgaug.GoogleNetRandomCropAndResize(target_shape=16),
            imgaug.Flip(horiz=True),
            imgaug.Rotation(20),
            imgaug.Brightness(10),
        ]
    )


IMG = np.random.RandomState(0).randint(0, 256, (40, 48, 3)).astype(np.uint8)


def draw(aug: imgaug.ImageAugmentor, n: int = 6) -> list[np.ndarray]:
    return [aug.augment(IMG.copy()) for _ in range(n)]


def same_draws(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def test_same_seed_same_results_for_fresh_augmentors():
    seeding.set_seed(11)
    first = draw(make_augs())
    seeding.set_seed(11)
    second = draw(make_augs())
    assert same_draws(first, second)
    seeding.set_seed(12)
    assert not same_draws(first, draw(make_augs()))


def test_reset_restarts_the_stream_with_a_seed_and_refreshes_it_without():
    seeding.set_seed(3)
    aug = make_augs()
    first = draw(aug)
    aug.reset_state()
    assert same_draws(first, draw(aug))
    seeding.set_seed(None)
    aug.reset_state()
    unseeded = draw(aug)
    aug.reset_state()
    assert not same_draws(unseeded, draw(aug))


def test_equal_augmentors_in_one_list_draw_different_streams():
    seeding.set_seed(1)
    a, b = imgaug.Flip(horiz=True), imgaug.Flip(horiz=True)
    imgaug.AugmentorList([a, b])
    flips_a = [a.rng.randint(1 << 30) for _ in range(16)]
    flips_b = [b.rng.randint(1 << 30) for _ in range(16)]
    assert flips_a != flips_b


def test_assigned_rng_is_used_until_reset():
    aug = imgaug.Rotation(30)
    aug.rng = np.random.RandomState(5)
    assert aug.rng.randint(1 << 30) == np.random.RandomState(5).randint(1 << 30)
    aug.reset_state()
    assert isinstance(aug.rng, np.random.RandomState)


def _worker_draws(aug_bytes: bytes, worker_id: int, seed: int, conn) -> None:
    try:
        seeding.set_seed(seed)
        set_worker_info(WorkerInfo(id=worker_id, num_workers=2, seed=seed))
        aug = pickle.loads(aug_bytes)
        conn.send([x.tobytes() for x in draw(aug)])
    except BaseException as e:  # report anything: the parent asserts on it
        conn.send(repr(e))
    finally:
        conn.close()


def _run_workers(method: str, aug: imgaug.ImageAugmentor, seed: int) -> list[list[bytes]]:
    ctx = multiprocessing.get_context(method)
    procs, conns = [], []
    blob = pickle.dumps(aug)
    for wid in range(2):
        parent, child = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_worker_draws, args=(blob, wid, seed, child), daemon=True)
        p.start()
        child.close()
        procs.append(p)
        conns.append(parent)
    results = []
    for p, conn in zip(procs, conns):
        assert conn.poll(60), "worker did not answer"
        results.append(conn.recv())
        p.join(30)
    for r in results:
        assert isinstance(r, list), r
    return results


@pytest.mark.timeout(90)
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_two_worker_processes_draw_distinct_reproducible_streams(method):
    seeding.set_seed(21)
    aug = make_augs()
    aug.augment(IMG.copy())  # the parent used it before the workers start
    w0, w1 = _run_workers(method, aug, 21)
    assert w0 != w1, "two workers drew the same augmentations"
    # Each worker's stream is a function of (seed, augmentor, worker id): recompute it here.
    for wid, got in enumerate((w0, w1)):
        set_worker_info(WorkerInfo(id=wid, num_workers=2, seed=21))
        expected = [x.tobytes() for x in draw(pickle.loads(pickle.dumps(aug)))]
        assert got == expected
    set_worker_info(None)
    assert [x.tobytes() for x in draw(pickle.loads(pickle.dumps(aug)))] not in (w0, w1)


@pytest.mark.timeout(60)
def test_worker_threads_sharing_one_augmentor_draw_distinct_streams():
    seeding.set_seed(8)
    aug = make_augs()
    results: dict[int, list[bytes]] = {}
    barrier = threading.Barrier(2)

    def run(wid: int) -> None:
        set_worker_info(WorkerInfo(id=wid, num_workers=2, seed=8, kind="thread"), thread=True)
        barrier.wait(timeout=30)
        out = []
        for _ in range(30):
            out.append(aug.augment(IMG.copy()).tobytes())
        results[wid] = out

    threads = [threading.Thread(target=run, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert set(results) == {0, 1}
    assert results[0] != results[1]
    # Interleaving did not matter: each thread's sequence is its worker's stream.
    set_worker_info(WorkerInfo(id=1, num_workers=2, seed=8, kind="thread"))
    fresh = make_augs()
    assert results[1] == [fresh.augment(IMG.copy()).tobytes() for _ in range(30)]
