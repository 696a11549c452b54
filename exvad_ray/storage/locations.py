"""Locations: parse, open, list, copy. See the package docstring for the credential rules."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import IO, Any

import fsspec
import pyarrow.fs as pafs

from exvad_ray.errors import StorageError, StorageUnavailable

DEFAULT_VIDEO_EXTENSIONS: tuple[str, ...] = (
    ".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp",
)

# Fixed namespace so that video ids are stable across runs, machines and versions.
VIDEO_ID_NAMESPACE = uuid.UUID("6f1c1d8e-5b0a-4f5e-9a57-3e2f6b7d9c01")


@dataclasses.dataclass(frozen=True)
class S3Settings:
    """S3 connection settings read from the standard AWS environment variables."""

    endpoint_url: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    session_token: str | None = None
    region: str | None = None
    anonymous: bool = False

    @classmethod
    def from_env(cls) -> S3Settings:
        env = os.environ
        return cls(
            endpoint_url=env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
            access_key=env.get("AWS_ACCESS_KEY_ID") or None,
            secret_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
            session_token=env.get("AWS_SESSION_TOKEN") or None,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
            anonymous=env.get("AWS_NO_SIGN_REQUEST", "").lower() in ("1", "true", "yes"),
        )

    def __repr__(self) -> str:  # never show secrets
        return (
            f"S3Settings(endpoint_url={self.endpoint_url!r}, region={self.region!r}, "
            f"anonymous={self.anonymous}, credentials={'set' if self.access_key else 'default chain'})"
        )

    __str__ = __repr__

    def fsspec_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"anon": self.anonymous}
        client_kwargs: dict[str, Any] = {}
        if self.endpoint_url:
            client_kwargs["endpoint_url"] = self.endpoint_url
        if self.region:
            client_kwargs["region_name"] = self.region
        if client_kwargs:
            kwargs["client_kwargs"] = client_kwargs
        if self.access_key and not self.anonymous:
            kwargs["key"] = self.access_key
            kwargs["secret"] = self.secret_key
            if self.session_token:
                kwargs["token"] = self.session_token
        return kwargs

    def arrow_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"anonymous": self.anonymous}
        if self.endpoint_url:
            scheme, _, rest = self.endpoint_url.partition("://")
            kwargs["endpoint_override"] = rest or scheme
            if rest:
                kwargs["scheme"] = scheme
        kwargs["region"] = self.region or "us-east-1"
        if self.access_key and not self.anonymous:
            kwargs["access_key"] = self.access_key
            kwargs["secret_key"] = self.secret_key
            if self.session_token:
                kwargs["session_token"] = self.session_token
        return kwargs


def is_remote(uri: str) -> bool:
    return uri.startswith("s3://") or uri.startswith("s3a://")


def normalize(uri: str) -> str:
    """Canonical form: ``s3://bucket/key`` for S3 (``s3a://`` accepted), absolute local path otherwise."""
    if not uri:
        raise StorageError("empty location")
    if uri[0] == "/" and "//" not in uri and "/." not in uri and uri[-1] != "/":
        return uri  # already absolute and normal (what abspath would return): a listing's paths
    if uri.startswith("s3a://"):
        uri = "s3://" + uri[len("s3a://"):]
    if uri.startswith("s3://"):
        bucket_key = uri[len("s3://"):].strip("/")
        if not bucket_key:
            raise StorageError(f"S3 location needs a bucket: {uri!r}")
        return "s3://" + bucket_key
    if "://" in uri and not uri.startswith("file://"):
        raise StorageError(f"unsupported location scheme in {uri!r} (use a local path, file:// or s3://)")
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    return os.path.abspath(os.path.expanduser(uri))


def join(uri: str, *parts: str) -> str:
    base = normalize(uri)
    tail = "/".join(p.strip("/") for p in parts if p)
    if not tail:
        return base
    return f"{base}/{tail}" if is_remote(base) else os.path.join(base, *[p.strip("/") for p in parts if p])


def _path(uri: str) -> str:
    """The path fsspec/pyarrow filesystems expect: ``bucket/key`` for S3, absolute path locally."""
    norm = normalize(uri)
    return norm[len("s3://"):] if is_remote(norm) else norm


@lru_cache(maxsize=8)
def _s3_fs(settings: S3Settings) -> fsspec.AbstractFileSystem:
    import s3fs

    return s3fs.S3FileSystem(**settings.fsspec_kwargs())


def filesystem(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem and path for a location."""
    norm = normalize(uri)
    if is_remote(norm):
        return _s3_fs(S3Settings.from_env()), _path(norm)
    return fsspec.filesystem("file"), norm


def arrow_filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and path for a location (for Parquet reads/writes)."""
    norm = normalize(uri)
    if is_remote(norm):
        return pafs.S3FileSystem(**S3Settings.from_env().arrow_kwargs()), _path(norm)
    return pafs.LocalFileSystem(), norm


_UNREACHABLE = ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError",
                "ClientConnectorError", "ServerDisconnectedError", "ConnectionError", "TimeoutError",
                "ConnectionRefusedError")


def is_unreachable(exc: BaseException) -> bool:
    """Whether an exception (or one it wraps) means the storage service could not be reached."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, StorageUnavailable) or any(c.__name__ in _UNREACHABLE for c in type(exc).__mro__):
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def unavailable(uri: str, exc: BaseException | None = None) -> StorageUnavailable:
    """The one line a storage outage ends a job with: which endpoint, and what to do."""
    endpoint = (S3Settings.from_env().endpoint_url or "the default AWS endpoint") if is_remote(uri) else "local disk"
    kind = f" ({type(exc).__name__})" if exc is not None else ""
    return StorageUnavailable(
        f"storage unreachable: {endpoint} did not answer for {uri}{kind}; check the endpoint "
        f"(AWS_ENDPOINT_URL) and the network, then rerun the same command: finished videos are kept")


def _wrap(uri: str, exc: Exception) -> StorageError:
    if isinstance(exc, StorageError):
        return exc
    if is_unreachable(exc):
        return unavailable(uri, exc)
    kind = type(exc).__name__
    return StorageError(f"cannot access {uri}: {kind}: {exc}")


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    try:
        return bool(fs.exists(path))
    except Exception as exc:  # noqa: BLE001 - network errors become StorageError
        raise _wrap(uri, exc) from exc


@contextlib.contextmanager
def open_file(uri: str, mode: str = "rb") -> Iterator[IO[Any]]:
    """Open a location for reading or writing (parents of local files are created)."""
    fs, path = filesystem(uri)
    if "w" in mode and not is_remote(uri):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        handle = fs.open(path, mode)
    except FileNotFoundError as exc:
        raise StorageError(f"not found: {uri}") from exc
    except Exception as exc:  # noqa: BLE001
        raise _wrap(uri, exc) from exc
    try:
        with handle:
            yield handle
    except StorageError:
        raise
    except Exception as exc:  # noqa: BLE001 - reads are lazy and writes flush on close: outages show up here
        if is_unreachable(exc):
            raise unavailable(uri, exc) from exc
        raise


def read_bytes(uri: str) -> bytes:
    with open_file(uri, "rb") as f:
        return f.read()


def write_bytes(uri: str, data: bytes) -> None:
    """Write a whole object atomically: readers see the old bytes or the new, never a part (an S3
    PUT is atomic; locally the bytes go to a hidden temporary file renamed over the target)."""
    if is_remote(uri):
        with open_file(uri, "wb") as f:
            f.write(data)
        return
    path = normalize(uri)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = os.path.join(os.path.dirname(path), f".tmp-{uuid.uuid4().hex}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise _wrap(uri, exc) from exc


def put_file(local_path: str, uri: str) -> None:
    """Copy a local file to a location."""
    fs, path = filesystem(uri)
    try:
        if is_remote(uri):
            fs.put_file(local_path, path)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            shutil.copyfile(local_path, path)
    except Exception as exc:  # noqa: BLE001
        raise _wrap(uri, exc) from exc


@contextlib.contextmanager
def local_copy(uri: str, tmp_dir: str | None = None) -> Iterator[str]:
    """A local path holding the object: the file itself when local, else a temporary download.

    Videos are downloaded rather than streamed because demuxers seek (the MP4 index often sits at
    the end of the file); a sequential download is one GET and decoders then read at disk speed.
    """
    norm = normalize(uri)
    if not is_remote(norm):
        if not os.path.lexists(norm):  # a dangling link or loop is the decoder's to report
            raise StorageError(f"not found: {uri}")
        yield norm
        return
    fs, path = filesystem(norm)
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(suffix=suffix, dir=tmp_dir, prefix="exvad-")
    os.close(fd)
    try:
        try:
            fs.get_file(path, tmp)
        except FileNotFoundError as exc:
            raise StorageError(f"not found: {uri}") from exc
        except Exception as exc:  # noqa: BLE001
            raise _wrap(uri, exc) from exc
        yield tmp
    finally:
        with contextlib.suppress(OSError):
            os.remove(tmp)


@dataclasses.dataclass(frozen=True)
class VideoEntry:
    """One object of an archive listing."""

    uri: str
    size: int
    etag: str | None = None
    mtime: float | None = None
    content_hash: str | None = None  # sha256, when asked for (list_videos(content_hash=True))

    @property
    def video_id(self) -> str:
        return video_id(self.uri, self.etag, self.size, self.mtime, self.content_hash)

    @property
    def key(self) -> bytes:
        """The video id's 16 bytes (`video_key`): what a planner compares without making strings."""
        return video_key(self.uri, self.etag, self.size, self.mtime, self.content_hash)

    @property
    def name(self) -> str:
        """File name without extension (the annotation files' video name)."""
        return os.path.splitext(os.path.basename(self.uri))[0]


def video_id(uri: str, etag: str | None, size: int | None, mtime: float | None = None,
             content_hash: str | None = None) -> str:
    """Stable id: uuid5 of the canonical URI plus its content version.

    The version is, in order of preference: a content hash (opt-in: `--content-hash`), the S3
    ETag, or size + modification time (local files; size alone would call a file rewritten with
    other bytes of the same size "already indexed"). The same object always gets the same id; a
    changed object gets a new one, and the job supersedes the old id's rows.
    """
    h = video_key(uri, etag, size, mtime, content_hash).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_NAMESPACE_BYTES = VIDEO_ID_NAMESPACE.bytes


def video_key(uri: str, etag: str | None, size: int | None, mtime: float | None = None,
              content_hash: str | None = None) -> bytes:
    """The 16 bytes of `video_id` (``uuid.uuid5`` computed directly: sha1 of the namespace and the
    name, version 5 and RFC 4122 variant bits set), without a UUID object or a string: a rerun
    computes one per listed object."""
    if content_hash:
        version = f"sha256={content_hash}"
    elif etag:
        version = etag.strip('"')
    else:
        version = f"size={size}" + (f",mtime={mtime:.6f}" if mtime is not None else "")
    d = bytearray(hashlib.sha1(_NAMESPACE_BYTES + f"{normalize(uri)}#{version}".encode()).digest()[:16])
    d[6] = (d[6] & 0x0F) | 0x50
    d[8] = (d[8] & 0x3F) | 0x80
    return bytes(d)


def content_hash(uri: str, chunk: int = 1 << 20) -> str:
    """sha256 of an object's bytes, streamed (for `--content-hash` identity)."""
    h = hashlib.sha256()
    with open_file(uri, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def list_videos(
    uri: str, extensions: Iterable[str] | None = DEFAULT_VIDEO_EXTENSIONS, recursive: bool = True,
    hash_content: bool = False,
) -> list[VideoEntry]:
    """List the archive's objects under ``uri`` (a prefix or a single object), sorted by URI.

    ``extensions=None`` lists every object (bad files included: the pipeline reports them).
    """
    return list_archive(uri, extensions, recursive, hash_content)[0]


def list_archive(
    uri: str, extensions: Iterable[str] | None = DEFAULT_VIDEO_EXTENSIONS, recursive: bool = True,
    hash_content: bool = False,
) -> tuple[list[VideoEntry], dict[str, int]]:
    """`list_videos`, plus how many objects were ignored, by reason ("hidden", "not a video
    extension"). Local files are identified by size + modification time, or by a sha256 of their
    bytes with `hash_content`. The whole listing in memory: `iter_archive` is the bounded form."""
    entries: list[VideoEntry] = []
    ignored: dict[str, int] = {}
    for page in iter_archive(uri, extensions, recursive, hash_content):
        entries.extend(page.entries)
        for why, n in page.ignored.items():
            ignored[why] = ignored.get(why, 0) + n
    entries.sort(key=lambda e: e.uri)
    return entries, ignored


@dataclasses.dataclass
class ArchivePage:
    """One page of an archive listing: its video entries (sorted by URI, and every page after the
    previous one) and the objects of the page ignored, by reason."""

    entries: list[VideoEntry]
    ignored: dict[str, int]


def iter_archive(
    uri: str, extensions: Iterable[str] | None = DEFAULT_VIDEO_EXTENSIONS, recursive: bool = True,
    hash_content: bool = False, page: int = 10_000,
) -> Iterator[ArchivePage]:
    """The archive listed page by page (`page` objects at most per page), in URI order: what a
    rerun over 1e7 objects needs, since the whole listing as Python objects would not fit a driver.

    Locally a sorted os.scandir walk (one folder's names in memory at a time); on S3 the
    ListObjectsV2 pages of the prefix, consumed as they arrive. Entries are identical to
    `list_archive`'s (same size, mtime, ETag, so the same video ids)."""
    norm = normalize(uri)
    fs, path = filesystem(norm)
    exts = tuple(extensions) if extensions is not None else None
    try:
        if not fs.exists(path):
            raise StorageError(f"archive not found: {uri}")
        single = fs.isfile(path)
        infos = [(("s3://" + path) if is_remote(norm) else path, fs.info(path))] if single else None
    except StorageError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise _wrap(uri, exc) from exc
    pages = iter([infos]) if infos is not None else iter_objects(norm, recursive=recursive, page=page)
    while True:
        try:
            chunk = next(pages, None)
        except StorageError:
            raise
        except Exception as exc:  # noqa: BLE001 - a listing page failed (network, permissions)
            raise _wrap(uri, exc) from exc
        if chunk is None:
            return
        yield _archive_page(chunk, exts, hash_content)


def _archive_page(chunk: list[tuple[str, dict[str, Any]]], exts: tuple[str, ...] | None,
                  hash_content: bool) -> ArchivePage:
    entries = []
    ignored: dict[str, int] = {}
    lower_exts = tuple(e.lower() for e in exts) if exts is not None else None
    for full, info in chunk:
        base = full.rpartition("/")[2]
        why = "hidden" if base.startswith(".") else (
            None if lower_exts is None or full.lower().endswith(lower_exts) else "not a video extension")
        if why:
            ignored[why] = ignored.get(why, 0) + 1
            continue
        etag = info.get("ETag") or info.get("etag")
        mtime = info.get("mtime") or info.get("LastModified")
        if mtime is not None and not isinstance(mtime, float) and hasattr(mtime, "timestamp"):
            mtime = mtime.timestamp()
        entries.append(
            VideoEntry(uri=full, size=int(info.get("size") or 0), etag=etag.strip('"') if etag else None,
                       mtime=float(mtime) if mtime is not None else None,
                       content_hash=_hash_or_none(full) if hash_content else None)
        )
    return ArchivePage(entries, ignored)


def iter_objects(uri: str, recursive: bool = True, page: int = 10_000, stat: bool = True
                 ) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Every object under a folder or prefix, in URI order, `page` at a time: (URI, info) pairs
    with `size`, `mtime` (local) or `ETag`/`LastModified` (S3). Folders are not objects. With
    `stat=False` local infos are empty (names only: one system call per folder, not per file).
    A missing folder lists nothing."""
    norm = normalize(uri)
    walk = _s3_objects(norm, recursive) if is_remote(norm) else _local_objects(norm, recursive, stat)
    chunk: list[tuple[str, dict[str, Any]]] = []
    for item in walk:
        chunk.append(item)
        if len(chunk) >= page:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _local_objects(root: str, recursive: bool, stat: bool) -> Iterator[tuple[str, dict[str, Any]]]:
    """Depth-first, each folder sorted by name with a folder's name read as ``name/``: exactly the
    order of sorting the full paths. Types and sizes as fsspec's local `find` gives them (a symlink
    is an object, not followed into; its size is its target's, 0 when dangling; its mtime its own);
    unreadable folders are left out, as `find` does."""

    def listing(folder: str) -> Iterator[os.DirEntry[str]]:
        try:
            with os.scandir(folder) as it:
                items = list(it)
        except OSError:
            return iter(())
        keyed = []
        for e in items:
            try:
                is_dir = e.is_dir(follow_symlinks=False)
            except OSError:
                continue
            keyed.append((e.name + "/" if is_dir else e.name, is_dir, e))
        keyed.sort(key=lambda k: k[0])
        return iter([(e, d) for _, d, e in keyed])  # type: ignore[misc]

    stack = [listing(root)]
    while stack:
        nxt = next(stack[-1], None)
        if nxt is None:
            stack.pop()
            continue
        e, is_dir = nxt  # type: ignore[misc]
        if is_dir:
            if recursive:
                stack.append(listing(e.path))
            continue
        if not stat:
            yield e.path, {}
            continue
        try:
            st = e.stat(follow_symlinks=False)
            size = st.st_size
            if e.is_symlink():
                try:
                    size = e.stat(follow_symlinks=True).st_size
                except OSError:
                    size = 0
        except FileNotFoundError:  # removed while listed
            continue
        yield e.path, {"size": size, "mtime": st.st_mtime}


def _s3_objects(norm: str, recursive: bool) -> Iterator[tuple[str, dict[str, Any]]]:
    """The prefix's ListObjectsV2 pages (1,000 keys each), consumed as they arrive: s3fs's own
    page iterator (retries per page), stepped from this thread on the filesystem's event loop."""
    from fsspec.asyn import sync

    fs, path = filesystem(norm)
    bucket, _, key = path.partition("/")
    prefix = key.strip("/") + "/" if key.strip("/") else ""
    agen = fs._iterdir(bucket, delimiter="" if recursive else "/", prefix=prefix)

    async def take(n: int) -> list[dict[str, Any]]:
        out = []
        try:
            while len(out) < n:
                out.append(await agen.__anext__())
        except StopAsyncIteration:
            out.append(None)  # type: ignore[arg-type]
        return out

    try:
        while True:
            got = sync(fs.loop, take, 1000)
            for info in got:
                if info is None:
                    return
                if info.get("type") != "directory":
                    yield "s3://" + info["name"], info
    finally:
        sync(fs.loop, agen.aclose)


def _hash_or_none(uri: str) -> str | None:
    """The content hash, or None for an object that cannot be read (it gets an error row later)."""
    try:
        return content_hash(uri)
    except (OSError, StorageError):
        return None
