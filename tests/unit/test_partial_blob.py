"""Resumable blob downloads in the store (store/partial.py): parts, state files, resume, verification."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from supervisor.errors import StoreError
from supervisor.store.layout import StoreLayout
from supervisor.store.partial import MAX_PART, MIN_PART, SAVE_EVERY, DigestMismatch, Part, PartialBlob, plan_parts


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
            blob.checkpoint(part)  # as a fetch of the part does when it stops


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
    """One JSON file per part, named <blob>-partial-<n>, with N, Offset, Size and Completed; a
    checkpoint records what was written."""
    layout = StoreLayout(tmp_path)
    data = b"x" * 1000
    blob = PartialBlob.open(layout, _digest(data), len(data))
    state_file = blob.path.parent / (blob.path.name + "-0")
    blob.write(blob.parts[0], data[:400])
    blob.checkpoint(blob.parts[0])
    assert json.loads(state_file.read_text()) == {"N": 0, "Offset": 0, "Size": 1000, "Completed": 400}
    assert blob.path.name == layout.blob_path(_digest(data)).name + "-partial"


def test_state_is_recorded_every_save_every_bytes_and_when_a_part_is_done(tmp_path: Path) -> None:
    """Between checkpoints a part's state is rewritten once per SAVE_EVERY bytes (not per write), and
    never claims more than was written; a finished part is recorded at once."""
    layout = StoreLayout(tmp_path)
    data = os.urandom(SAVE_EVERY + 3000)
    blob = PartialBlob.open(layout, _digest(data), len(data))
    (part,) = blob.parts
    state_file = blob.path.parent / (blob.path.name + "-0")

    def recorded() -> int:
        return int(json.loads(state_file.read_text())["Completed"])

    step = SAVE_EVERY // 4
    for start in range(0, SAVE_EVERY, step):
        assert recorded() == 0
        blob.write(part, data[start : start + step])
    assert recorded() == SAVE_EVERY
    blob.write(part, [data[SAVE_EVERY : SAVE_EVERY + 1000], data[SAVE_EVERY + 1000 :]])  # pieces, in order
    assert part.done and recorded() == len(data)
    blob.commit()
    assert layout.blob_path(_digest(data)).read_bytes() == data


def test_hashing_follows_the_bytes_written_in_order(tmp_path: Path) -> None:
    """``hash_written`` hashes only the gap-free prefix, in steps of at most ``limit``; what it
    hashed is not hashed again by ``commit``, which still refuses a wrong digest."""
    layout = StoreLayout(tmp_path)
    data = os.urandom(300_000)
    blob = PartialBlob.open(layout, _digest(data), len(data))
    first = Part(0, 0, 100_000)
    second = Part(1, 100_000, 200_000)
    blob.parts = [first, second]
    blob.write(second, data[100_000:150_000])
    assert blob.hash_written() == 0  # nothing from offset 0 yet
    blob.write(first, data[:60_000])
    assert blob.hash_written(limit=25_000) == 25_000 and blob.hash_written() == 35_000
    blob.write(first, data[60_000:100_000])
    assert blob.hash_written() == 40_000 + 50_000  # the rest of the first part and what the second has
    blob.write(second, data[150_000:])
    assert blob.hash_written(limit=10) == 10
    blob.commit()
    assert layout.blob_path(_digest(data)).read_bytes() == data


def test_a_followed_hash_still_catches_a_mismatch(tmp_path: Path) -> None:
    layout = StoreLayout(tmp_path)
    data = os.urandom(10_000)
    blob = PartialBlob.open(layout, _digest(data), len(data))
    blob.write(blob.parts[0], data[:5000])
    blob.hash_written()
    blob.write(blob.parts[0], bytes(b ^ 1 for b in data[5000:]))
    with pytest.raises(DigestMismatch):
        blob.commit()
    assert list(layout.blobs_dir.iterdir()) == []


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


def test_short_vector_writes_are_continued(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pwritev may write less than asked (a signal, a nearly full disk): the rest follows at the right offset."""
    real = os.pwritev
    monkeypatch.setattr(os, "pwritev", lambda fd, buffers, offset: real(fd, [bytes(buffers[0])[:3]], offset))
    layout = StoreLayout(tmp_path)
    data = os.urandom(1000)
    blob = PartialBlob.open(layout, _digest(data), len(data))
    blob.write(blob.parts[0], [data[:10], data[10:11], data[11:]])
    monkeypatch.undo()
    blob.commit()
    assert layout.blob_path(_digest(data)).read_bytes() == data
