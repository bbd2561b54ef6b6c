"""Where dataset files live, and how missing ones are fetched.

Directory
    A reader given ``dir=None`` looks under ``$DATAFLOW_DATASET``, else ``$TENSORPACK_DATASET`` (so a
    tensorpack user's existing downloads are found), else ``~/dataflow_data``, in a sub-folder named
    as tensorpack names it (``mnist_data``, ``cifar10_data``, ``svhn_data``, ...).

Downloads
    A file that is missing is downloaded with ``urllib`` into ``NAME.part`` next to its final path,
    then verified and renamed into place, so a file under its final name is always complete:

    - *Resumable*: an interrupted transfer keeps ``NAME.part``; the next attempt (the downloader
      retries by itself, and a later call does too) asks the server for the rest with an HTTP
      ``Range`` request. A server that ignores ``Range`` is handled by starting over.
    - *Verified*: the size and the checksum (md5 or sha256) published for the file are checked. A
      mismatch raises :class:`DownloadError` naming the file and both checksums, and deletes only
      the ``.part`` file this module wrote. A file the user already has under the final name is
      never deleted or overwritten; :func:`download` verifies it and says so if it does not match.
      Files with no published checksum are checked by size where one is known (as tensorpack did).
    - *Concurrent-safe*: processes that download the same file at the same time take turns on a
      lock on the ``.part`` file (POSIX); the later ones find the finished file.
    - *Progress*: a ``tqdm`` bar on stderr, shown when stderr is a terminal (``progress=None``) or
      as requested.

Mirrors
    ``$DATAFLOW_DATASET_MIRROR`` (or ``base_url=`` of :func:`download`) replaces the published
    addresses: file ``F`` of dataset ``NAME`` is fetched from ``{mirror}/{NAME}/{F}`` and nowhere
    else. Use it for an internal mirror or a local cache (a ``file://`` URL of a folder laid out as
    ``NAME/FILE`` works too); the tests use it to serve files from 127.0.0.1.

Archives (CIFAR, BSDS500, the ILSVRC12 metadata) are extracted next to the archive after
verification, through a temporary folder, with members that would escape the folder (absolute
paths, ``..``, links, devices) refused; entries that already exist are left as they are.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import importlib
import logging
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from ..errors import DataFlowArgumentError, DownloadError

try:  # POSIX only: the lock that lets concurrent downloads of one file take turns
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "DownloadError",
    "RemoteFile",
    "DatasetSource",
    "REGISTRY",
    "register",
    "dataset_names",
    "download",
    "get_dataset_path",
]

logger = logging.getLogger(__name__)

ENV_DIR = "DATAFLOW_DATASET"
ENV_DIR_TENSORPACK = "TENSORPACK_DATASET"
ENV_MIRROR = "DATAFLOW_DATASET_MIRROR"
DEFAULT_DIR = os.path.join("~", "dataflow_data")

_CHUNK = 1 << 20
_USER_AGENT = "pydataflow-dataset-downloader"


@dataclass(frozen=True)
class RemoteFile:
    """One published file of a dataset: where it is and how to recognise it.

    ``urls`` are tried in order. ``size`` is in bytes. ``md5``/``sha256`` are the published
    checksums (hex); where none is published, ``size`` is what a download is checked against.
    ``extracts_to`` is set for an archive: the path (relative to the dataset folder) that exists
    once it is extracted.
    """

    filename: str
    urls: tuple[str, ...]
    size: int | None = None
    md5: str | None = None
    sha256: str | None = None
    extracts_to: str | None = None


@dataclass(frozen=True)
class DatasetSource:
    """A downloadable dataset: its name (for :func:`download`), folder name and files."""

    name: str
    subdir: str
    files: tuple[RemoteFile, ...]
    description: str = ""
    homepage: str = ""
    notes: str = field(default="", compare=False)

    def file(self, filename: str) -> RemoteFile:
        for remote in self.files:
            if remote.filename == filename:
                return remote
        raise KeyError(f"dataset {self.name!r} publishes no file named {filename!r}")


REGISTRY: dict[str, DatasetSource] = {}


def register(source: DatasetSource) -> DatasetSource:
    """Add a dataset to the registry that :func:`download` serves (the dataset modules call it)."""
    REGISTRY[source.name] = source
    return source


def _load_all() -> None:
    # The dataset modules register their sources when imported.
    importlib.import_module(__package__ or "dataflow.dataset")


def dataset_names() -> list[str]:
    """The names :func:`download` accepts, sorted."""
    _load_all()
    return sorted(REGISTRY)


def _source(name: str) -> DatasetSource:
    _load_all()
    try:
        return REGISTRY[name]
    except KeyError:
        raise DataFlowArgumentError(
            f"download: unknown dataset {name!r}; known: {', '.join(sorted(REGISTRY))}"
        ) from None


# -- where datasets live -------------------------------------------------------------------------


def dataset_root() -> str:
    """The folder datasets go to: ``$DATAFLOW_DATASET``, ``$TENSORPACK_DATASET`` or the default."""
    for var in (ENV_DIR, ENV_DIR_TENSORPACK):
        value = os.environ.get(var)
        if value:
            return os.path.expanduser(value)
    return os.path.expanduser(DEFAULT_DIR)


def get_dataset_path(*args: str) -> str:
    """The path ``os.path.join(dataset_root(), *args)``; creates the root folder if missing.

    The same function as tensorpack's ``tensorpack.utils.fs.get_dataset_path``, with our root.
    """
    root = dataset_root()
    if not os.path.isdir(root):
        os.makedirs(root, exist_ok=True)
        logger.info("Created the dataset folder %s", root)
    return os.path.join(root, *args)


def resolve_dir(dir: str | os.PathLike[str] | None, subdir: str, who: str, arg: str = "dir") -> str:
    """A reader's folder argument as a path (the default location when ``None``)."""
    if dir is None:
        return get_dataset_path(subdir)
    try:
        return os.path.expanduser(os.fspath(dir))
    except TypeError:
        raise DataFlowArgumentError(
            f"{who}: {arg} must be a path or None, got {type(dir).__name__}"
        ) from None


# -- verification --------------------------------------------------------------------------------


def file_digest(path: str, algorithm: str) -> str:
    """Hex digest of the file at ``path`` (``"md5"`` or ``"sha256"``)."""
    digest = hashlib.new(algorithm, usedforsecurity=False)  # integrity, not security
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _mismatch(remote: RemoteFile, path: str) -> str | None:
    """Why the file at ``path`` is not ``remote`` (``None`` when it is, as far as is published)."""
    size = os.path.getsize(path)
    if remote.size is not None and size != remote.size:
        return f"its size is {size} bytes, the published file has {remote.size}"
    for algorithm in ("sha256", "md5"):
        expected = getattr(remote, algorithm)
        if expected:
            actual = file_digest(path, algorithm)
            if actual.lower() != expected.lower():
                return f"its {algorithm} is {actual}, the published file has {expected}"
            return None
    return None


# -- transfer ------------------------------------------------------------------------------------


class _Incomplete(Exception):
    """The connection ended before the whole file arrived (the .part file keeps what did)."""


def _show_progress(progress: bool | None) -> bool:
    if progress is None:
        return bool(getattr(sys.stderr, "isatty", lambda: False)())
    return bool(progress)


def _content_range_start(value: str | None) -> int | None:
    # "bytes 100-199/200" -> 100
    if not value or not value.startswith("bytes "):
        return None
    try:
        return int(value[6:].split("-", 1)[0])
    except ValueError:
        return None


def _transfer(url: str, part: IO[bytes], remote: RemoteFile, show: bool, timeout: float) -> None:
    """Append the rest of ``url`` to ``part`` (opened for appending). Raises _Incomplete."""
    have = part.seek(0, os.SEEK_END)
    if remote.size is not None and have >= remote.size:
        return  # nothing left to fetch; verification judges what is there
    headers = {"User-Agent": _USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the .part already holds the whole file (or more)
            e.close()
            return
        raise
    with response:
        if have and response.status == 206:
            start = _content_range_start(response.headers.get("Content-Range"))
            if start != have:
                part.truncate(0)
                raise _Incomplete(f"the server answered a range starting at {start}, not {have}")
            logger.info("Resuming %s at byte %d", remote.filename, have)
        elif have:
            logger.info("The server ignored the range request; restarting %s", remote.filename)
            part.truncate(0)
            have = 0
        length_header = response.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        total = have + length if length is not None else remote.size
        from tqdm import tqdm

        received = 0
        with tqdm(
            total=total,
            initial=have,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=remote.filename,
            disable=not show,
            leave=False,
        ) as bar:
            while True:
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                part.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        part.flush()
    expected = length if length is not None else (remote.size - have if remote.size else None)
    if expected is not None and received < expected:
        raise _Incomplete(
            f"the connection closed after {have + received} of {have + expected} bytes"
        )


@contextlib.contextmanager
def _locked_part(part_path: str) -> Iterator[IO[bytes]]:
    part = open(part_path, "a+b")  # noqa: SIM115 - closed below
    try:
        if fcntl is not None:
            fcntl.flock(part.fileno(), fcntl.LOCK_EX)
        yield part
    finally:
        part.close()  # also releases the lock


def _same_file(handle: IO[bytes], path: str) -> bool:
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
    except OSError:
        return False


def fetch(
    source: DatasetSource,
    remote: RemoteFile,
    directory: str,
    *,
    base_url: str | None = None,
    progress: bool | None = None,
    retries: int = 3,
    timeout: float = 60.0,
) -> str:
    """Make ``directory/remote.filename`` exist, downloading it if missing. Returns its path.

    An existing file is returned as it is (see :func:`download` to verify one).
    """
    path = os.path.join(directory, remote.filename)
    if os.path.isfile(path):
        return path
    os.makedirs(directory, exist_ok=True)
    mirror = base_url if base_url is not None else os.environ.get(ENV_MIRROR)
    if mirror:
        urls: Sequence[str] = (f"{mirror.rstrip('/')}/{source.name}/{remote.filename}",)
    else:
        urls = remote.urls
    part_path = path + ".part"
    show = _show_progress(progress)
    with _locked_part(part_path) as part:
        if os.path.isfile(path):  # another process finished it while we waited for the lock
            if not _same_file(part, path) and part.seek(0, os.SEEK_END) == 0:
                with contextlib.suppress(OSError):
                    if _same_file(part, part_path):
                        os.remove(part_path)
            return path
        failures: list[str] = []
        done_url = None
        for url in urls:
            logger.info("Downloading %s from %s", path, url)
            for attempt in range(retries + 1):
                try:
                    _transfer(url, part, remote, show, timeout)
                except urllib.error.HTTPError as e:
                    failures.append(f"{url}: HTTP {e.code} {e.reason}")
                    break  # this address does not serve it: try the next one
                except urllib.error.URLError as e:
                    failures.append(f"{url}: {e.reason}")
                    break
                except (_Incomplete, http.client.HTTPException, OSError) as e:
                    failures.append(f"{url} (attempt {attempt + 1}): {e or type(e).__name__}")
                    logger.warning("Download of %s interrupted: %s", remote.filename, e)
                    continue  # resume from what the .part file holds
                done_url = url
                break
            if done_url is not None:
                break
        if done_url is None:
            have = part.seek(0, os.SEEK_END)
            if have:
                kept = (
                    f" The {have} bytes received are kept in {part_path}; the next attempt resumes."
                )
            else:
                kept = ""
                with contextlib.suppress(OSError):
                    if _same_file(part, part_path):
                        os.remove(part_path)  # the empty file we created
            raise DownloadError(
                f"Could not download {path} ({source.name}).{kept} Tried:\n  "
                + "\n  ".join(failures),
                path=path,
                url=urls[-1] if urls else None,
            )
        problem = _mismatch(remote, part_path)
        if problem is not None:
            os.remove(part_path)  # our own partial file: useless, and resuming it cannot help
            raise DownloadError(
                f"The file downloaded for {path} from {done_url} is not the published "
                f"{remote.filename}: {problem}. The download ({part_path}) was deleted; nothing "
                "else was touched. The server may serve a broken or changed file; try again or "
                f"another mirror (${ENV_MIRROR}).",
                path=path,
                url=done_url,
            )
        os.replace(part_path, path)
    logger.info("Downloaded %s", path)
    return path


# -- archives ------------------------------------------------------------------------------------


def _check_member(member: tarfile.TarInfo, archive: str) -> None:
    name = member.name
    parts = name.replace("\\", "/").split("/")
    if os.path.isabs(name) or ".." in parts or not (member.isfile() or member.isdir()):
        raise DownloadError(
            f"{archive}: refusing to extract member {name!r} (absolute path, '..', link or "
            "special file)",
            path=archive,
        )


def extract(archive: str, directory: str) -> None:
    """Extract the tar archive into ``directory``; entries that already exist are kept as they are."""
    tmp = tempfile.mkdtemp(prefix=".extract-", dir=directory)
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = tar.getmembers()
                for member in members:
                    _check_member(member, archive)
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(tmp, members=members, filter="data")
                else:  # pragma: no cover - Python < 3.11.4; members are checked above
                    tar.extractall(tmp, members=members)
        except (tarfile.TarError, EOFError, OSError) as e:
            if isinstance(e, DownloadError):
                raise
            raise DownloadError(f"{archive}: cannot extract it: {e}", path=archive) from e
        for entry in os.listdir(tmp):
            target = os.path.join(directory, entry)
            if os.path.lexists(target):
                logger.info("Not extracting %s: it already exists", target)
                continue
            os.replace(os.path.join(tmp, entry), target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- what the readers and the CLI call -----------------------------------------------------------


def ensure_files(name: str, directory: str, filenames: Sequence[str] | None = None) -> str:
    """Make the named files of dataset ``name`` exist in ``directory`` (download missing ones).

    Archives among them are extracted unless what they extract to exists already (in which case
    the archive itself is not needed). Returns ``directory``.
    """
    source = _source(name)
    wanted = source.files if filenames is None else [source.file(f) for f in filenames]
    for remote in wanted:
        if remote.extracts_to is not None:
            if os.path.exists(os.path.join(directory, remote.extracts_to)):
                continue
            archive = fetch(source, remote, directory)
            logger.info("Extracting %s", archive)
            extract(archive, directory)
        else:
            fetch(source, remote, directory)
    return directory


def download(
    name: str,
    dir: str | os.PathLike[str] | None = None,
    *,
    base_url: str | None = None,
    progress: bool | None = None,
    verify: bool = True,
    retries: int = 3,
) -> str:
    """Download every published file of dataset ``name`` into ``dir``; returns the folder.

    Args:
        name: one of :func:`dataset_names` (``"mnist"``, ``"cifar10"``, ``"ilsvrc12_meta"``...).
        dir: the folder; default: where the dataset's reader looks by default
            (``$DATAFLOW_DATASET/<folder>``, see the module documentation).
        base_url: fetch from ``{base_url}/{name}/{file}`` instead of the published addresses
            (default ``$DATAFLOW_DATASET_MIRROR`` if set).
        progress: show a progress bar (default: when stderr is a terminal).
        verify: check files that are already present against the published checksum (or size);
            a mismatch raises :class:`DownloadError` and leaves the file as it is.
        retries: how many times an interrupted transfer is resumed before giving up (the
            ``.part`` file is kept then, and the next call resumes it).

    Files already present are not downloaded again. Archives are extracted after download.
    """
    source = _source(name)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise DataFlowArgumentError(
            f"download: retries must be a non-negative int, got {retries!r}"
        )
    directory = resolve_dir(dir, source.subdir, "download")
    os.makedirs(directory, exist_ok=True)
    for remote in source.files:
        path = os.path.join(directory, remote.filename)
        extracted = remote.extracts_to is not None and os.path.exists(
            os.path.join(directory, remote.extracts_to)
        )
        if os.path.isfile(path):
            if verify:
                problem = _mismatch(remote, path)
                if problem is not None:
                    raise DownloadError(
                        f"{path} exists but is not the published {remote.filename} of "
                        f"{name}: {problem}. It was left untouched; move it away to download "
                        "the file again.",
                        path=path,
                    )
        elif extracted:
            continue  # extracted earlier and the archive removed since: nothing to do
        else:
            fetch(source, remote, directory, base_url=base_url, progress=progress, retries=retries)
        if remote.extracts_to is not None and not extracted:
            extract(path, directory)
    return directory


def describe(name: str) -> dict[str, Any]:
    """A summary of dataset ``name`` for listings: folder, files, sizes, homepage."""
    source = _source(name)
    return {
        "name": source.name,
        "description": source.description,
        "homepage": source.homepage,
        "folder": source.subdir,
        "files": [
            {"filename": r.filename, "size": r.size, "urls": list(r.urls)} for r in source.files
        ],
    }
