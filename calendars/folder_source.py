"""A local folder of .ics files as a source: one object per file, read off the event loop."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calendars.sources import CalendarObject, Changes, Clock, PollingSource, SourceError

# A file modified this close to when it was stat'ed may change again within the same mtime tick without
# changing size ("racy git"), so its content is checked again on the next poll.
_RACY_NS = 2_000_000_000


@dataclass(frozen=True, slots=True)
class _FileEntry:
    mtime_ns: int
    size: int
    etag: str
    racy: bool


class FolderSource(PollingSource):
    """The *.ics files of a local folder (no subfolders, no dot files); href = file name, etag = sha256."""

    kind = "folder"

    def __init__(self, path: str | os.PathLike[str], *, clock: Clock | None = None) -> None:
        super().__init__(clock)
        self.path = Path(path)
        self._files: dict[str, _FileEntry] | None = None

    async def _poll(self) -> Changes:
        # The scan runs in a thread and returns the new state; it is committed here, so a poll that is
        # cancelled while the thread runs loses nothing.
        changes, files = await asyncio.to_thread(self._scan, self._files)
        self._files = files
        return changes

    def _scan(self, previous: dict[str, _FileEntry] | None) -> tuple[Changes, dict[str, _FileEntry]]:
        try:
            entries = list(os.scandir(self.path))
        except FileNotFoundError as e:
            raise SourceError(f"folder not found: {self.path}") from e
        except OSError as e:
            raise SourceError(f"cannot list {self.path}: {e.strerror or e}") from e
        now_ns = time.time_ns()
        known = previous or {}
        current: dict[str, _FileEntry] = {}
        changed: list[CalendarObject] = []
        for entry in entries:
            name = entry.name
            if name.startswith(".") or not name.lower().endswith(".ics"):
                continue
            try:
                if not entry.is_file():
                    continue
                st = entry.stat()
                old = known.get(name)
                if old and (old.mtime_ns, old.size) == (st.st_mtime_ns, st.st_size) and not old.racy:
                    current[name] = old
                    continue
                data = Path(entry.path).read_bytes()
            except FileNotFoundError:
                continue  # removed while we looked: reported as deleted if it was known
            except OSError as e:
                raise SourceError(f"cannot read {name}: {e.strerror or e}") from e
            etag = hashlib.sha256(data).hexdigest()
            current[name] = _FileEntry(st.st_mtime_ns, st.st_size, etag, now_ns - st.st_mtime_ns < _RACY_NS)
            if previous is None or old is None or old.etag != etag:
                changed.append(CalendarObject(name, etag, data))
        changed.sort(key=lambda o: o.href)
        deleted = tuple(sorted(known.keys() - current.keys()))
        return Changes(tuple(changed), deleted, previous is None), current

    def _count(self) -> int:
        return len(self._files or ())

    def _dump(self) -> dict[str, Any]:
        if self._files is None:
            return {"files": None}
        return {"files": {n: [f.mtime_ns, f.size, f.etag, f.racy] for n, f in self._files.items()}}

    def _load(self, data: Mapping[str, Any]) -> None:
        files = data["files"]
        self._files = (
            None
            if files is None
            else {str(n): _FileEntry(int(m), int(s), str(e), bool(r)) for n, (m, s, e, r) in files.items()}
        )
