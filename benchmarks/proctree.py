"""Watch one benchmark case's process tree through /proc (Linux only).

A case runs in its own session (``start_new_session=True``), so its tree is every process whose
session id is the case's pid, workers and stragglers included. :class:`TreeSampler` samples that
tree in a background thread and keeps, per process ever seen, the last CPU time and page-fault
counts it read, so a worker that exited still counts with its last sampled value (what it did after
its last sample, at most one interval, is lost). It also records the peak of the tree's summed PSS
(``/proc/<pid>/smaps_rollup``) and of the /dev/shm files the tree maps or holds open; those files,
and new /dev/shm files named after a pid of the tree, are the case's for the leftover check.

/proc is read directly (as psutil would) so that the harness needs nothing beyond the standard
library in the project's own interpreter.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass, field

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SHM_DIR = "/dev/shm"


@dataclass
class ProcStat:
    pid: int
    ppid: int
    session: int
    cpu_s: float
    minflt: int
    majflt: int
    state: str


def read_stat(pid: int) -> ProcStat | None:
    """Parse /proc/<pid>/stat; None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name is in parentheses and may itself contain spaces or parentheses.
    rest = data[data.rindex(b")") + 2 :].split()
    # rest[0] is field 3 (state); field N of proc(5) is rest[N - 3].
    return ProcStat(
        pid=pid,
        ppid=int(rest[1]),
        session=int(rest[3]),
        minflt=int(rest[7]),
        majflt=int(rest[9]),
        cpu_s=(int(rest[11]) + int(rest[12])) / CLOCK_TICKS,
        state=rest[0].decode(),
    )


def all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def session_members(sid: int) -> list[ProcStat]:
    """Live (non-zombie) processes whose session id is ``sid``."""
    found = []
    for pid in all_pids():
        st = read_stat(pid)
        if st is not None and st.session == sid and st.state != "Z":
            found.append(st)
    return found


def pss_bytes(pid: int) -> int:
    """Proportional set size of a process, from smaps_rollup; 0 if unreadable."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def shm_paths_of(pid: int) -> set[str]:
    """/dev/shm files a process maps or holds open."""
    paths: set[str] = set()
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                i = line.find(SHM_DIR + "/")
                if i >= 0:
                    paths.add(line[i:].rstrip("\n").removesuffix(" (deleted)"))
    except OSError:
        pass
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        fds = []
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(SHM_DIR + "/"):
            paths.add(target.removesuffix(" (deleted)"))
    return paths


def shm_entries() -> set[str]:
    try:
        return {os.path.join(SHM_DIR, n) for n in os.listdir(SHM_DIR)}
    except OSError:
        return set()


@dataclass
class Totals:
    cpu_s: float
    minflt: int
    majflt: int


@dataclass
class TreeSampler:
    """Sample the tree of session ``sid`` every ``interval`` seconds until :meth:`stop`."""

    sid: int
    interval: float = 0.1
    last: dict[int, ProcStat] = field(default_factory=dict)
    peak_pss: int = 0
    peak_procs: int = 0
    peak_shm: int = 0
    shm_seen: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> TreeSampler:
        self._thread = threading.Thread(target=self._loop, name="tree-sampler", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> Totals:
        members = session_members(self.sid)
        pss = sum(pss_bytes(st.pid) for st in members)
        shm: set[str] = set()
        for st in members:
            shm |= shm_paths_of(st.pid)
        shm_size = 0
        for path in shm:
            try:
                shm_size += os.stat(path).st_size
            except OSError:
                pass
        with self._lock:
            for st in members:
                self.last[st.pid] = st
            self.peak_pss = max(self.peak_pss, pss)
            self.peak_procs = max(self.peak_procs, len(members))
            self.peak_shm = max(self.peak_shm, shm_size)
            self.shm_seen |= shm
            return self._totals()

    def named_after_member(self, path: str) -> bool:
        """Whether a file name contains the pid of a process of the tree, as a whole number."""
        numbers = {int(n) for n in re.findall(r"\d+", os.path.basename(path))}
        return bool(numbers & self.last.keys())

    def _totals(self) -> Totals:
        return Totals(
            cpu_s=sum(s.cpu_s for s in self.last.values()),
            minflt=sum(s.minflt for s in self.last.values()),
            majflt=sum(s.majflt for s in self.last.values()),
        )

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def wait_session_empty(sid: int, timeout: float) -> list[ProcStat]:
    """Wait up to ``timeout`` s for session ``sid`` to empty; return the processes still there."""
    deadline = time.monotonic() + timeout
    while True:
        members = session_members(sid)
        if not members or time.monotonic() >= deadline:
            return members
        time.sleep(0.05)
