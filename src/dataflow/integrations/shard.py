"""ShardByRank: each training process (rank) reads its own, equally long share of a pass."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

from .. import _state
from ..base import DataFlow, ProxyDataFlow, RNGDataFlow
from ..errors import DataFlowArgumentError

__all__ = ["ShardByRank", "default_rank"]

_EQUAL = ("drop", "pad")


def default_rank(use_jax: bool = False) -> tuple[int, int]:
    """``(rank, world_size)`` of this process: torch.distributed's when it is initialized, else
    jax's ``process_index()/process_count()`` when ``use_jax``, else the ``RANK``/``WORLD_SIZE``
    environment variables (torchrun sets them), else ``(0, 1)``."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if use_jax:
        import jax

        return jax.process_index(), jax.process_count()
    rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
    if rank is None or world is None:
        return 0, 1
    try:
        return int(rank), int(world)
    except ValueError:
        raise DataFlowArgumentError(
            f"ShardByRank: RANK={rank!r} and WORLD_SIZE={world!r} must be integers"
        ) from None


def _shuffling_sources(ds: DataFlow) -> list[str]:
    from ..parallel import _sources

    return [
        type(flow).__name__
        for flow in _sources(ds)
        if isinstance(flow, RNGDataFlow) and getattr(flow, "shuffle", True)
    ]


class ShardByRank(ProxyDataFlow):
    """Yield this rank's share of each pass of ``ds``: datapoints ``rank, rank + world_size, ...``.

    Place it near the source, before the expensive stages (decoding, augmentation, a parallel
    map), so that each rank does only its own work. Every rank yields the same number of
    datapoints each pass, so no rank waits in a collective for a peer that has one batch more:

    - ``equal="drop"`` (default): the last ``len(ds) % world_size`` datapoints of the pass are
      dropped (at most ``world_size - 1``). The shards are disjoint; their union is the pass minus
      that remainder. ``len()`` is ``len(ds) // world_size``.
    - ``equal="pad"``: the last, incomplete group is filled up with datapoints from the start of
      the pass, so nothing is dropped and at most ``world_size - 1`` datapoints come twice (on
      different ranks). ``len()`` is ``ceil(len(ds) / world_size)``.

    The upstream is read in groups of ``world_size`` datapoints, of which this rank keeps one, so
    a flow of unknown length shards too, and within a pass the order is the upstream's. The
    ranks must see the same pass: a shuffling source (``DataFromList(..., shuffle=True)``) needs
    the same seed on every rank (``dataflow.set_seed(s)`` in each process, or the source's own
    ``rng``), which then makes every epoch's order the same on all ranks; without a seed the first
    pass raises, as the shards would overlap. With a runner's ``shard=True`` above, each worker's
    copy shards its own share again (rank first, then worker).

    Reads: with ``equal="drop"`` directly over a random-access source (DataFromList,
    DataFromDict, ImageFromFile, HDF5Data, LMDBData, the numpy, diskcache and SVMlight readers,
    the dataset readers: :meth:`seeks`), a pass reads only this rank's records; over any other
    flow, or with ``"pad"``, it reads every record of the pass and keeps its share.

    Resume: the state is per rank (each rank saves and loads its own ``state_dict()``); the
    position is the upstream's (it seeks, or replays itself), plus, with ``"pad"``, the pass's
    first ``world_size`` datapoints (encoded with the codec), kept to fill the last group.

    Args:
        ds: the flow to shard (every rank builds the same one).
        rank, world_size: this process's rank and the number of ranks. ``None``: from
            torch.distributed when it is initialized, else the ``RANK``/``WORLD_SIZE`` environment
            (jax's process index and count with ``use_jax=True``); explicit arguments win.
        equal: ``"drop"`` or ``"pad"``, as above.
        use_jax: take the defaults from ``jax.process_index()``/``jax.process_count()``.
    """

    def __init__(
        self,
        ds: DataFlow,
        rank: int | None = None,
        world_size: int | None = None,
        equal: str = "drop",
        *,
        use_jax: bool = False,
    ) -> None:
        super().__init__(ds)
        if equal not in _EQUAL:
            raise DataFlowArgumentError(
                f"ShardByRank: equal must be 'drop' or 'pad', got {equal!r}"
            )
        for name, value in (("rank", rank), ("world_size", world_size)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise DataFlowArgumentError(f"ShardByRank: {name} must be an int, got {value!r}")
        if rank is None or world_size is None:
            found_rank, found_world = default_rank(use_jax)
            rank = found_rank if rank is None else rank
            world_size = found_world if world_size is None else world_size
        if world_size < 1:
            raise DataFlowArgumentError(f"ShardByRank: world_size must be >= 1, got {world_size}")
        if not 0 <= rank < world_size:
            raise DataFlowArgumentError(
                f"ShardByRank: rank must be in [0, {world_size}), got {rank}"
            )
        self.rank = rank
        self.world_size = world_size
        self.equal = equal

    def __len__(self) -> int:
        n = len(self.ds)
        if self.equal == "drop":
            return n // self.world_size
        return -(-n // self.world_size)

    def reset_state(self) -> None:
        super().reset_state()
        if self.world_size > 1:
            from .._engine.seeding import get_seed

            unseeded = _shuffling_sources(self.ds) if get_seed() is None else []
            if unseeded:
                raise DataFlowArgumentError(
                    f"ShardByRank: {', '.join(unseeded)} shuffles with an unseeded random stream, "
                    "so each rank would draw a different order and the shards would overlap; call "
                    "dataflow.set_seed(s) with the same s on every rank (or shuffle=False)"
                )

    # Resume: at each of its yields the flow has read exactly ``world_size`` datapoints a group
    # from its upstream, so the upstream's own state is the position (it seeks, or replays
    # itself); ``pad`` adds the pass's first datapoints, kept to fill the last group.
    def _df_save(self) -> dict | None:
        start = self.__dict__.get("_df_pad_start")
        if start is None:
            return None
        who = type(self).__name__
        return {"pad_start": [_state.pack(dp, who) for dp in start]}

    def _df_load(self, state: dict) -> None:
        start = state.get("pad_start")
        self._df_resumed_start = None if start is None else [_state.unpack(dp) for dp in start]

    def seeks(self) -> bool:
        """Whether a pass reads only this rank's records (``equal="drop"`` over a random-access
        source: DataFromList, DataFromDict, ImageFromFile, HDF5Data, LMDBData, the numpy, diskcache
        and SVMlight readers, the dataset readers); otherwise it reads every record and keeps
        its share."""
        return self.world_size > 1 and self.equal == "drop" and _state.strides(self.ds)

    def __iter__(self) -> Iterator:
        rank, world, pad = self.rank, self.world_size, self.equal == "pad"
        resumed_start = self.__dict__.pop("_df_resumed_start", None)
        if world == 1:
            yield from self.ds
            return
        if self.seeks():
            self.ds.__dict__["_df_stride"] = (rank, world)  # the source visits only these
            yield from self.ds
            return
        # pad: the pass's first datapoints, to fill the last group
        start: list = [] if resumed_start is None else resumed_start
        self._df_pad_start = start if pad else None
        group: list = []
        for dp in self.ds:
            group.append(dp)
            if pad and len(start) < world:
                start.append(dp)
            if len(group) == world:
                yield group[rank]
                group = []
        if pad and group:
            k = 0
            while len(group) < world:
                group.append(start[k % len(start)])
                k += 1
            yield group[rank]
