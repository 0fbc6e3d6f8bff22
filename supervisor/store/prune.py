"""Removing what no manifest needs (reference/ollama-api.md §8.7).

``plan_prune`` decides (pure, from a listing), ``prune_store`` acts. At start-up, unless
``OLLAMA_NOPRUNE``: blobs no manifest references are deleted once older than the grace period (another
process may be between writing a blob and its manifest); leftover upload/create temp files are deleted
at once (an upload never resumes); download partials (``sha256-<hex>-partial*``) are kept while younger
than the grace period so an interrupted pull can resume; empty manifest directories are removed. If any
manifest cannot be read, nothing is deleted: its blobs cannot be told apart from garbage.

``remove_unreferenced`` is the narrow version used after a delete or a create over an existing name:
only the given digests, only if no manifest references them and no create in progress holds them.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

import structlog

from ..errors import StoreError
from .layout import StoreLayout, blob_file_name, digest_from_blob_name
from .manifests import Manifest, ModelStore

log = structlog.get_logger(__name__)

GRACE_SECONDS = 3600.0
_PARTIAL_RE = re.compile(r"sha256[:-][0-9a-fA-F]{64}-partial(-\d+)?")


@dataclass(frozen=True)
class BlobFile:
    name: str
    age: float  # seconds since last modification


@dataclass(frozen=True)
class PrunePlan:
    blobs: tuple[str, ...]  # file names of unreferenced blobs past the grace period
    junk: tuple[str, ...]  # file names that are neither blobs nor live partials


def plan_prune(files: Iterable[BlobFile], referenced: Collection[str], grace: float = GRACE_SECONDS) -> PrunePlan:
    """Which files of ``blobs/`` to delete, given the digests manifests reference (pure)."""
    blobs: list[str] = []
    junk: list[str] = []
    for f in files:
        digest = digest_from_blob_name(f.name)
        if digest is not None:
            if digest not in referenced and f.age >= grace:
                blobs.append(f.name)
        elif _PARTIAL_RE.fullmatch(f.name):
            if f.age >= grace:
                junk.append(f.name)
        else:
            junk.append(f.name)
    return PrunePlan(tuple(sorted(blobs)), tuple(sorted(junk)))


def referenced_digests(store: ModelStore) -> set[str] | None:
    """Every digest any manifest references; ``None`` if some manifest cannot be read."""
    found: set[str] = set()
    for name, path in store.manifest_files():
        try:
            manifest = Manifest.parse(path.read_bytes())
        except (OSError, StoreError) as exc:
            log.warning("not pruning: unreadable manifest", model=name.display, path=str(path), error=str(exc))
            return None
        found.update(manifest.digests)
    return found


def _blob_files(layout: StoreLayout, now: float) -> list[BlobFile]:
    out: list[BlobFile] = []
    try:
        with os.scandir(layout.blobs_dir) as it:
            for entry in it:
                try:
                    if entry.is_file(follow_symlinks=False):
                        out.append(BlobFile(entry.name, now - entry.stat(follow_symlinks=False).st_mtime))
                except OSError:
                    continue
    except FileNotFoundError:
        return []
    return out


def prune_store(store: ModelStore, grace: float = GRACE_SECONDS) -> PrunePlan | None:
    """Start-up pruning; returns what was deleted, or ``None`` if it was skipped."""
    layout = store.layout
    referenced = referenced_digests(store)
    if referenced is None:
        return None
    plan = plan_prune(_blob_files(layout, time.time()), referenced, grace)
    for name in (*plan.blobs, *plan.junk):
        try:
            (layout.blobs_dir / name).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cannot remove blob", file=name, error=str(exc))
    remove_empty_dirs(layout.manifests_dir)
    if plan.blobs or plan.junk:
        log.info("pruned store", blobs=len(plan.blobs), other_files=len(plan.junk))
    return plan


def remove_unreferenced(store: ModelStore, digests: Iterable[str], keep: Collection[str] = ()) -> list[str]:
    """Delete those of ``digests`` that no manifest references and ``keep`` does not hold."""
    referenced = referenced_digests(store)
    if referenced is None:
        return []
    removed: list[str] = []
    for digest in dict.fromkeys(digests):
        if digest in referenced or digest in keep:
            continue
        try:
            (store.layout.blobs_dir / blob_file_name(digest)).unlink()
            removed.append(digest)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cannot remove blob", digest=digest, error=str(exc))
    return removed


def remove_empty_dirs(root: Path, *, keep_root: bool = True) -> None:
    """Remove empty directories below ``root`` (deepest first); ``root`` itself stays."""
    if not root.is_dir():
        return
    for directory, _, _ in sorted(os.walk(root), key=lambda t: -len(t[0])):
        path = Path(directory)
        if keep_root and path == root:
            continue
        try:
            path.rmdir()
        except OSError:
            pass  # not empty
