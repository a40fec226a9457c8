"""The snapshot file of one school: what `tenants export` writes and `tenants restore` reads.

A snapshot is a zip archive:

- ``manifest.json``: format and version, the school's slug, name and schema, its
  Alembic revision, the lms_app version that wrote it, when, and per table (in
  dependency order) its columns with their types, row count, member name and the
  last value of its identity sequences;
- ``tables/<table>.copy``: each table's rows in PostgreSQL's binary COPY format,
  exactly as `COPY ... TO STDOUT (FORMAT binary)` produced them.

Why this format rather than `pg_dump --schema`: a pg_dump script names the source
schema in every statement and carries its DDL, but a restore must land in a *new*
schema next to the live one, built by our own migration scripts at the snapshot's
revision and then migrated forward. Rows alone, in the server's own bulk format,
load straight into whatever schema the restore creates, with no text rewriting.
Binary COPY is the fastest form for the server to write and read (no number or
timestamp parsing) and is exact for every type; it requires the same column types on
both sides, which the manifest records and the restore checks.

Why zip: members are streamed in and out without being staged on disk, each
carries a CRC-32 that is checked as it is read (a damaged file fails the restore,
which then changes nothing), the manifest can be written last (row counts are only
known after each COPY) and still be read first, and any operator can list or unpack
it with standard tools. Members are deflated at level 1: the benchmark school's file is
44 MiB instead of 164 MiB for about 2 s more export time, and restore takes as long
(README, "Backup and restore one school").
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, Any, Protocol

FORMAT = "lms-tenant-snapshot"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
COPY_FORMAT = "binary"
COMPRESSION = zipfile.ZIP_DEFLATED
COMPRESS_LEVEL = 1
# Rows reach the archive in blocks of this size rather than one zlib call per row.
WRITE_BLOCK = 1 << 20


class SnapshotError(ValueError):
    """The file is not a snapshot this version can restore (message says why)."""


class Progress(Protocol):
    """What export and restore report as they go (the CLI draws bars from it)."""

    def begin(self, label: str, total: int, unit: str) -> None: ...

    def advance(self, amount: int) -> None: ...

    def end(self) -> None: ...


class NoProgress:
    def begin(self, label: str, total: int, unit: str) -> None:
        pass

    def advance(self, amount: int) -> None:
        pass

    def end(self) -> None:
        pass


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # format_type(): binary COPY needs the same type on both sides


@dataclass
class TableEntry:
    name: str
    columns: list[Column]
    rows: int = 0
    # identity/serial column -> the sequence's last value (None: never used)
    sequences: dict[str, int | None] = field(default_factory=dict)

    @property
    def member(self) -> str:
        return f"tables/{self.name}.copy"


@dataclass
class Manifest:
    slug: str
    name: str
    source_schema: str
    revision: str
    created_at: str
    tables: list[TableEntry]
    app_version: str = field(default_factory=lambda: app_version())
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    copy_format: str = COPY_FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise SnapshotError("not an lms_app school snapshot")
            if data.get("format_version") != FORMAT_VERSION:
                raise SnapshotError(
                    f"snapshot format version {data.get('format_version')!r} is not supported "
                    f"(this lms_app reads version {FORMAT_VERSION})"
                )
            if data.get("copy_format") != COPY_FORMAT:
                raise SnapshotError(f"unsupported row format {data.get('copy_format')!r}")
            tables = [
                TableEntry(
                    name=str(t["name"]),
                    columns=[Column(str(c["name"]), str(c["type"])) for c in t["columns"]],
                    rows=int(t["rows"]),
                    sequences={str(k): v for k, v in t["sequences"].items()},
                )
                for t in data["tables"]
            ]
            return cls(
                slug=str(data["slug"]),
                name=str(data["name"]),
                source_schema=str(data["source_schema"]),
                revision=str(data["revision"]),
                created_at=str(data["created_at"]),
                tables=tables,
                app_version=str(data["app_version"]),
            )
        except SnapshotError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SnapshotError(f"damaged manifest ({type(exc).__name__})") from None


def app_version() -> str:
    try:
        return metadata.version("lms_app")
    except metadata.PackageNotFoundError:
        return "unknown"


class _BlockWriter:
    """Collects COPY's row-sized writes into WRITE_BLOCK blocks; counts them as rows.

    psycopg2 hands `copy_expert` one CopyData message per write, and the server sends
    one row per message, so writes are rows (give or take the header and trailer:
    the exact count is the cursor's rowcount).
    """

    def __init__(self, target: IO[bytes], progress: Progress) -> None:
        self._target = target
        self._progress = progress
        self._buffer = bytearray()
        self._rows = 0

    def write(self, data: bytes) -> int:
        self._buffer += data
        self._rows += 1
        if len(self._buffer) >= WRITE_BLOCK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._buffer:
            self._target.write(self._buffer)
            self._buffer.clear()
        if self._rows:
            self._progress.advance(self._rows)
            self._rows = 0


class SnapshotWriter:
    """Writes a snapshot next to `path` and moves it there only once it is complete,
    so a failed export never leaves a file that looks like a snapshot."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._partial = self.path.with_name(f".{self.path.name}.partial-{os.getpid()}")
        self._zip = zipfile.ZipFile(
            self._partial, "w", compression=COMPRESSION, compresslevel=COMPRESS_LEVEL
        )

    @contextmanager
    def table(self, entry: TableEntry, progress: Progress) -> Iterator[_BlockWriter]:
        # Opened by name so the archive's compression level applies (members are
        # dated 1980; the manifest's created_at is the snapshot's time).
        with self._zip.open(entry.member, "w", force_zip64=True) as member:
            writer = _BlockWriter(member, progress)
            yield writer
            writer.flush()

    def finish(self, manifest: Manifest) -> int:
        """Write the manifest, close, and put the file in place; returns its size."""
        self._zip.writestr(MANIFEST, manifest.to_json())
        self._zip.close()
        os.replace(self._partial, self.path)
        return self.path.stat().st_size

    def abandon(self) -> None:
        self._zip.close()
        self._partial.unlink(missing_ok=True)


class _CountingReader:
    """Reports bytes as COPY FROM pulls them; damage surfaces as SnapshotError."""

    def __init__(self, source: IO[bytes], progress: Progress) -> None:
        self._source = source
        self._progress = progress
        # psycopg2 turns an exception raised in read() into QueryCanceled; the
        # restore raises this one instead.
        self.failure: SnapshotError | None = None

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._source.read(size)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            self.failure = SnapshotError(f"damaged snapshot data ({exc})")
            raise self.failure from None
        self._progress.advance(len(data))
        return data

    # psycopg2 calls readline() for text formats only; binary uses read().


class SnapshotReader:
    """Opens a snapshot and reads its manifest; tables are streamed on demand."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self._zip = zipfile.ZipFile(self.path)
            raw = self._zip.read(MANIFEST)
        except FileNotFoundError:
            raise SnapshotError(f"no such file: {self.path}") from None
        except KeyError:
            raise SnapshotError("not an lms_app school snapshot (no manifest)") from None
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            raise SnapshotError(f"not a readable snapshot ({exc})") from None
        self.manifest = Manifest.from_json(raw)
        names = set(self._zip.namelist())
        missing = [t.name for t in self.manifest.tables if t.member not in names]
        if missing:
            raise SnapshotError(f"snapshot lacks the rows of {', '.join(missing)}")

    def size_of(self, entry: TableEntry) -> int:
        """Uncompressed bytes of a table's rows (progress is counted in these)."""
        return self._zip.getinfo(entry.member).file_size

    @contextmanager
    def table(self, entry: TableEntry, progress: Progress) -> Iterator[_CountingReader]:
        with self._zip.open(entry.member) as member:
            yield _CountingReader(member, progress)

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> SnapshotReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
