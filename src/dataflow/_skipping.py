"""The failure budget of ``on_error="skip"``: MapData, MapDataComponent and the parallel maps.

With ``on_error="raise"`` (the default) an exception of the map function ends the pass, as it
always did. With ``"skip"`` the datapoint is dropped and counted (``ds.errors_skipped``); the first
failure is logged with its traceback, later ones at most once every few seconds with the count;
past ``max_errors`` failures (``None``: no limit) the flow raises
:class:`~dataflow.errors.DataFlowError` with the count and the last failure's traceback.
"""

from __future__ import annotations

import logging
import time

from .errors import DataFlowArgumentError, DataFlowError

__all__ = ["ErrorBudget", "check_on_error"]

logger = logging.getLogger("dataflow")

_LOG_EVERY_S = 5.0  # a summary line for later failures at most this often


def check_on_error(on_error: object, max_errors: object, who: str) -> tuple[bool, int | None]:
    """Validate the two arguments; return (skip?, max_errors)."""
    if on_error not in ("raise", "skip"):
        raise DataFlowArgumentError(f"{who}: on_error must be 'raise' or 'skip', got {on_error!r}")
    if max_errors is not None and (
        isinstance(max_errors, bool) or not isinstance(max_errors, int) or max_errors < 0
    ):
        raise DataFlowArgumentError(
            f"{who}: max_errors must be None (no limit) or an int >= 0, got {max_errors!r}"
        )
    if max_errors is not None and on_error == "raise":
        raise DataFlowArgumentError(f"{who}: max_errors applies to on_error='skip' only")
    return on_error == "skip", max_errors


class ErrorBudget:
    """Counts skipped datapoints for one flow; logs them; raises past the budget."""

    def __init__(self, who: str, max_errors: int | None) -> None:
        self.who = who
        self.max_errors = max_errors
        self.skipped = 0
        self._logged_at = 0.0
        self._logged_count = 0

    def skip(self, what: str, traceback_text: str) -> None:
        """Count one failure (``what``: where, e.g. "datapoint #12 in process worker 1")."""
        self.skipped += 1
        n = self.skipped
        if self.max_errors is not None and n > self.max_errors:
            raise DataFlowError(
                f"{self.who}: {n} datapoints failed, more than max_errors={self.max_errors}; "
                f"the last ({what}):\n{traceback_text}"
            )
        now = time.monotonic()
        if n == 1:
            logger.error(
                "%s: skipped %s (on_error='skip'); later failures are counted in errors_skipped "
                "and summarized:\n%s",
                self.who,
                what,
                traceback_text,
            )
            self._logged_at, self._logged_count = now, 1
        elif now - self._logged_at >= _LOG_EVERY_S:
            logger.warning(
                "%s: %d more datapoints skipped (%d in all); the last: %s",
                self.who,
                n - self._logged_count,
                n,
                traceback_text.strip().splitlines()[-1] if traceback_text.strip() else what,
            )
            self._logged_at, self._logged_count = now, n
