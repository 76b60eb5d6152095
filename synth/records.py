"""JSONL files of records: atomic writes, sealed stage outputs, deterministic input parts.

A stage's raw datatrove shards are written in completion order; `seal` turns them into the stage's
results: `ok/part-*.jsonl` (sorted by id, split into the configured number of parts) and
`rejects.jsonl`, written atomically, then the `DONE` marker. Records are checked for conflicting
duplicates (same id, different content): a rerun after a crash may rewrite a record, never change it.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, TypeVar

T = TypeVar("T")


class RecordError(RuntimeError):
    """Inconsistent stage data on disk (a conflicting duplicate, a corrupt line)."""


def dumps(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=True)


def atomic_write(path: Path, write: Callable[[IO[str]], T]) -> T:
    """Write a text file atomically: a unique temp file beside it, fsync, rename. A crash leaves the
    old file or the new one, never half of one; two writers never share a temp file. The temp file is
    created with mode 0666 and the process umask applies (tempfile.mkstemp's 0600 would leave sealed
    files owner-only while everything else datatrove writes follows the umask)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            result = write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return result


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text))


def write_jsonl(path: Path, records: Iterable[dict]) -> int:
    """Write records as JSON lines, atomically; return how many."""

    def write(handle: IO[str]) -> int:
        n = 0
        for record in records:
            handle.write(dumps(record) + "\n")
            n += 1
        return n

    return atomic_write(path, write)


def read_jsonl(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as handle:
        for n, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise RecordError(f"{path} line {n}: corrupt JSON ({exc})") from exc


def read_folder(folder: Path, pattern: str = "*.jsonl") -> list[dict]:
    records: list[dict] = []
    if folder.is_dir():
        for path in sorted(folder.rglob(pattern)):
            records.extend(read_jsonl(path))
    return records


def unique_by_id(records: Iterable[dict], where: str) -> list[dict]:
    """Sorted by id; identical duplicates collapse to one, conflicting ones are an error."""
    seen: dict[str, dict] = {}
    for record in records:
        key = str(record["id"])
        if key in seen and seen[key] != record:
            raise RecordError(f"{where}: two different records for id {key!r}")
        seen[key] = record
    return [seen[key] for key in sorted(seen)]


def write_parts(folder: Path, records: list[dict], parts: int) -> None:
    """Contiguous, sorted blocks `part-00000.jsonl` ... (one per datatrove task), written atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("part-*.jsonl"):
        old.unlink()
    size = -(-len(records) // parts) if records else 0
    for i in range(parts):
        write_jsonl(folder / f"part-{i:05d}.jsonl", records[i * size : (i + 1) * size] if size else [])


def mark_done(folder: Path, summary: dict) -> None:
    write_jsonl(folder / "DONE", [summary])


def is_done(folder: Path) -> bool:
    return (folder / "DONE").is_file()


def seal(stage_dir: Path, records: list[dict], parts: int) -> dict:
    """Split a stage's records into ok parts and rejects; return the summary written to DONE."""
    records = unique_by_id(records, str(stage_dir))
    ok = [r for r in records if r.get("status") == "ok"]
    rejects = [r for r in records if r.get("status") != "ok"]
    write_parts(stage_dir / "ok", ok, parts)
    write_jsonl(stage_dir / "rejects.jsonl", rejects)
    reasons: dict[str, int] = {}
    for record in rejects:
        reasons[record.get("reason", "?")] = reasons.get(record.get("reason", "?"), 0) + 1
    tokens = {"prompt": 0, "completion": 0}
    for record in records:
        for key in tokens:
            tokens[key] += int((record.get("tokens") or {}).get(key, 0))
    summary = {"ok": len(ok), "rejects": len(rejects), "reasons": reasons, "tokens": tokens}
    mark_done(stage_dir, summary)
    return summary


def ok_records(stage_dir: Path) -> list[dict]:
    return read_folder(stage_dir / "ok", "part-*.jsonl")


def reject_records(stage_dir: Path) -> list[dict]:
    path = stage_dir / "rejects.jsonl"
    return list(read_jsonl(path)) if path.is_file() else []
