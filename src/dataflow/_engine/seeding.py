"""The one seeding scheme of the library.

Every random stream a flow uses is derived from four things: the pipeline seed (``set_seed`` or a
``seed=`` argument), the flow's place in the pipeline (a path such as ``"0.ds.df[1]"`` assigned when
the pipeline is first reset), the worker it runs in, and the epoch (the number of passes begun). The
result does not depend on process ids, timing or creation order of unrelated objects, and two workers
never share a stream (numpy's ``SeedSequence`` spawn keys guarantee independent streams).

Without a seed, every process draws fresh entropy from the OS once; forked children draw their own.
"""

from __future__ import annotations

import hashlib
import os
import random

import numpy as np

from ..errors import DataFlowArgumentError
from .context import get_worker_info

__all__ = [
    "set_seed",
    "get_seed",
    "next_root_index",
    "seed_sequence",
    "stream_spec",
    "rng_from_spec",
    "make_rng",
    "get_rng",
]

_seed: int | None = None
_root_counter = 0
_entropy: int | None = None
_entropy_pid: int | None = None


def _check_seed(seed: object, where: str = "set_seed") -> int | None:
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise DataFlowArgumentError(
            f"{where}: seed must be a non-negative int or None, got {seed!r}"
        )
    if seed < 0:
        raise DataFlowArgumentError(f"{where}: seed must be non-negative, got {seed}")
    return int(seed)


def set_seed(seed: int | None) -> None:
    """Make every random stream of the library reproducible (``None``: fresh entropy again).

    Also seeds Python's ``random`` and numpy's legacy global generator from ``seed``, so that a user
    source that calls ``np.random.rand()`` directly is reproducible too (workers reseed both with
    their own derived seed, so they do not repeat each other).

    Calling it again with the same seed restarts every stream: pipelines built and reset after the
    second call produce the same output as after the first.
    """
    global _seed, _root_counter
    _seed = _check_seed(seed)
    _root_counter = 0
    if _seed is not None:
        seed_globals("global")


def get_seed() -> int | None:
    """The seed set by :func:`set_seed` (or the worker's stage seed), or ``None``."""
    info = get_worker_info()
    if info is not None and info.seed is not None:
        return info.seed
    return _seed


def next_root_index() -> int:
    """A counter of pipeline roots reset since the last ``set_seed`` (part of position keys)."""
    global _root_counter
    index = _root_counter
    _root_counter += 1
    return index


def _process_entropy() -> int:
    global _entropy, _entropy_pid
    pid = os.getpid()
    if _entropy is None or _entropy_pid != pid:
        _entropy = int(np.random.SeedSequence().entropy)  # type: ignore[arg-type]
        _entropy_pid = pid
    return _entropy


def _key_words(key: str) -> tuple[int, int]:
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest[:4], "little"), int.from_bytes(digest[4:], "little")


def seed_sequence(key: str, epoch: int = 0) -> np.random.SeedSequence:
    """The SeedSequence for the stream named ``key`` in this worker at ``epoch``."""
    entropy, word1, word2, worker = stream_spec(key)
    return np.random.SeedSequence(entropy, spawn_key=(word1, word2, worker, int(epoch)))


def stream_spec(key: str) -> tuple[int, int, int, int]:
    """What names the stream ``key`` here, as plain ints: (entropy, key word 1, key word 2, worker).

    Saved in a pipeline's state so that a resumed pipeline draws the saved streams, whatever seed
    is in force when it is rebuilt: :func:`rng_from_spec` turns it back into a generator.
    """
    seed = get_seed()
    entropy = seed if seed is not None else _process_entropy()
    info = get_worker_info()
    worker = 0 if info is None else info.id + 1
    return (int(entropy), *_key_words(key), worker)


def rng_from_spec(spec: tuple[int, ...] | list[int], epoch: int) -> np.random.RandomState:
    """The RandomState of the stream ``spec`` (from :func:`stream_spec`) at ``epoch``."""
    entropy, word1, word2, worker = (int(v) for v in spec)
    sequence = np.random.SeedSequence(entropy, spawn_key=(word1, word2, worker, int(epoch)))
    return np.random.RandomState(np.random.MT19937(sequence))


def make_rng(key: str, epoch: int = 0) -> np.random.RandomState:
    """A ``numpy.random.RandomState`` for the stream ``key`` (see the module docstring).

    RandomState rather than Generator because tensorpack code calls ``rng.randint``, ``rng.rand``
    and friends, which Generator lacks; the bit generator underneath is MT19937 seeded through a
    SeedSequence, so streams are independent.
    """
    return rng_from_spec(stream_spec(key), epoch)


def get_rng(obj: object = None) -> np.random.RandomState:
    """tensorpack's ``get_rng``: a RandomState for ``obj`` that differs per worker and process.

    With a seed set, the stream depends on the seed, the worker and ``obj``'s class name; without
    one it is fresh entropy. Flows get their ``rng`` from their pipeline position instead.
    """
    key = "get_rng:" + (type(obj).__qualname__ if obj is not None else "")
    return make_rng(key)


def seed_globals(key: str) -> None:
    """Seed Python's ``random`` and numpy's legacy global RNG from the stream ``key``."""
    state = seed_sequence("globals:" + key).generate_state(2)
    random.seed(int(state[0]))
    np.random.seed(int(state[1]))


def make_shared_rng(key: str, epoch: int, seed: int) -> np.random.RandomState:
    """A stream that is identical in every worker: derived from ``(seed, key, epoch)`` only.

    Used to shard a source across workers: every worker must draw the same order of the source
    and then keep its share of it. ``seed`` is explicit: without a pipeline seed, workers share no
    entropy, so the stage draws one seed and hands it to all of its workers.
    """
    sequence = np.random.SeedSequence(int(seed), spawn_key=(*_key_words(key), 0, int(epoch)))
    return np.random.RandomState(np.random.MT19937(sequence))


def stage_seed(seed: int | None, key: str) -> int | None:
    """The seed a parallel stage hands to its workers.

    In the main process it is ``seed`` itself. Inside a worker (a parallel stage nested in another
    one), it is derived from ``seed``, ``key`` and the enclosing worker, so that the nested workers
    of two enclosing workers do not repeat each other's streams.
    """
    if seed is None:
        return None
    info = get_worker_info()
    if info is None:
        return seed
    sequence = np.random.SeedSequence(
        int(seed), spawn_key=(*_key_words("stage:" + key), info.id + 1)
    )
    return int(sequence.generate_state(1, np.uint64)[0] >> 1)
