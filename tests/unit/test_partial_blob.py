"""Resumable blob downloads in the store (store/partial.py): parts, state files, resume, verification."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from supervisor.errors import StoreError
from supervisor.store.layout import StoreLayout
from supervisor.store.partial import MAX_PART, MIN_PART, DigestMismatch, Part, PartialBlob, plan_parts


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_parts_follow_ollamas_split() -> None:
    """total/16 per part, at least 100 MB and at most 1000 MB; the parts tile the blob exactly."""
    assert plan_parts(10) == [Part(0, 0, 10)]
    small = plan_parts(250_000_000)
    assert [p.size for p in small] == [MIN_PART, MIN_PART, 50_000_000]
    mid = plan_parts(3_200_000_000)
    assert len(mid) == 16 and {p.size for p in mid} == {200_000_000}
    big = plan_parts(20_000_000_000)
    assert {p.size for p in big} == {MAX_PART} and len(big) == 20
    for parts, total in ((small, 250_000_000), (mid, 3_200_000_000), (big, 20_000_000_000)):
        assert [p.offset for p in parts] == [sum(q.size for q in parts[:i]) for i in range(len(parts))]
        assert sum(p.size for p in parts) == total and [p.n for p in parts] == list(range(len(parts)))


def _fill(blob: PartialBlob, data: bytes, upto: int | None = None) -> None:
    for part in blob.parts:
        end = part.offset + part.size if upto is None else min(part.offset + part.size, upto)
        if part.next_byte < end:
            blob.write(part, data[part.next_byte : end])


def test_download_commits_a_verified_blob_and_leaves_nothing_else(tmp_path: Path) -> None:
    """Bytes written part by part at their offsets become the blob; the partial and its state go."""
    layout = StoreLayout(tmp_path)
    data = os.urandom(300_000)
    blob = PartialBlob.open(layout, _digest(data), len(data))
    for part in reversed(blob.parts):  # any order
        blob.write(part, data[part.offset : part.offset + part.size])
    blob.commit()
    assert layout.blob_path(_digest(data)).read_bytes() == data
    assert sorted(p.name for p in layout.blobs_dir.iterdir()) == [layout.blob_path(_digest(data)).name]


def test_state_files_are_ollamas(tmp_path: Path) -> None:
    """One JSON file per part, named <blob>-partial-<n>, with N, Offset, Size and Completed."""
    layout = StoreLayout(tmp_path)
    data = b"x" * 1000
    blob = PartialBlob.open(layout, _digest(data), len(data))
    blob.write(blob.parts[0], data[:400])
    state = json.loads((blob.path.parent / (blob.path.name + "-0")).read_text())
    assert state == {"N": 0, "Offset": 0, "Size": 1000, "Completed": 400}
    assert blob.path.name == layout.blob_path(_digest(data)).name + "-partial"


def test_reopening_resumes_where_it_stopped(tmp_path: Path) -> None:
    """A second open (another process, after a crash) sees the recorded progress and only the rest is written."""
    layout = StoreLayout(tmp_path)
    data = os.urandom(2 * MIN_PART // 1000)  # one part; offsets still matter
    first = PartialBlob.open(layout, _digest(data), len(data))
    _fill(first, data, upto=len(data) // 3)
    again = PartialBlob.open(layout, _digest(data), len(data))
    assert again.completed == len(data) // 3 and again.parts[0].next_byte == len(data) // 3
    _fill(again, data)
    again.commit()
    assert layout.blob_path(_digest(data)).read_bytes() == data


def test_state_that_does_not_describe_the_blob_starts_over(tmp_path: Path) -> None:
    """State for another size, unreadable state, or state without its data file: a fresh download."""
    layout = StoreLayout(tmp_path)
    data = b"y" * 5000
    digest = _digest(data)
    blob = PartialBlob.open(layout, digest, len(data))
    blob.write(blob.parts[0], data[:100])
    assert PartialBlob.open(layout, digest, len(data) + 1).completed == 0  # other size
    blob = PartialBlob.open(layout, digest, len(data))
    blob.write(blob.parts[0], data[:100])
    (blob.path.parent / (blob.path.name + "-0")).write_text("{not json")
    assert PartialBlob.open(layout, digest, len(data)).completed == 0
    blob = PartialBlob.open(layout, digest, len(data))
    blob.write(blob.parts[0], data[:100])
    blob.path.unlink()
    assert PartialBlob.open(layout, digest, len(data)).completed == 0


def test_a_digest_mismatch_leaves_nothing_behind(tmp_path: Path) -> None:
    """Bytes that do not hash to the digest are refused, and the partial and its state are removed."""
    layout = StoreLayout(tmp_path)
    data = b"z" * 4096
    blob = PartialBlob.open(layout, _digest(b"other bytes"), len(data))
    _fill(blob, data)
    with pytest.raises(DigestMismatch, match="digest mismatch"):
        blob.commit()
    assert list(layout.blobs_dir.iterdir()) == []


def test_overlong_and_incomplete_writes_are_refused(tmp_path: Path) -> None:
    """A part never grows past its size; an unfinished download cannot be committed."""
    layout = StoreLayout(tmp_path)
    data = b"a" * 100
    blob = PartialBlob.open(layout, _digest(data), len(data))
    with pytest.raises(StoreError, match="would exceed"):
        blob.write(blob.parts[0], data + b"!")
    blob.write(blob.parts[0], data[:50])
    with pytest.raises(StoreError, match="incomplete"):
        blob.commit()
