"""Reading a curated version back: the one `latest` names (or a named one), pinned by its manifest.

A consumer (training, batch scoring) never lists ``curated/``: it follows ``curated/<dataset>/latest`` to a
manifest and reads exactly the Parquet objects the manifest names, checking each against the manifest's sha256,
so what it learned from is what the manifest (and through it, the raw objects' VersionIds) says.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from . import layout
from .aws import S3Bucket
from .checksums import file_sha256
from .errors import JobError
from .transfer import PinnedObject, download_objects


@dataclass(frozen=True)
class CuratedVersion:
    dataset: str
    version: str
    manifest: dict

    def table(self, name: str) -> dict:
        for t in self.manifest.get("tables", []):
            if t.get("name") == name:
                return t
        raise JobError(f"curated version {self.version} of {self.dataset} has no table {name} in its manifest")

    def raw_version_ids(self) -> dict[str, str | None]:
        """Raw file name → the S3 VersionId it was curated from."""
        return {s["file"]: s.get("version_id") for s in self.manifest.get("source", [])}


def resolve_curated(bucket: S3Bucket, dataset: str, version: str | None) -> CuratedVersion:
    """The version ``latest`` points to (or ``version``), with its manifest; each table it names must exist."""
    if version is None:
        pointer = bucket.get_json(layout.latest_key(dataset))
        version = layout.pointer_version(pointer, dataset)
        if version is None:
            raise JobError(
                f"no curated version of {dataset} yet (s3://{bucket.name}/{layout.latest_key(dataset)} is missing "
                "or not ours): run the ingest stage first (playbooks/ingest.yml, or fraud-demo-ingest)"
            )
    key = layout.manifest_key(dataset, version)
    manifest = bucket.get_json(key)
    if not manifest or manifest.get("version") != version:
        raise JobError(
            f"curated version {version} of {dataset} has no manifest (s3://{bucket.name}/{key}): it is incomplete "
            "or does not exist; re-run the ingest stage, or pass another --version"
        )
    missing = [t["key"] for t in manifest.get("tables", []) if bucket.head(t["key"]) is None]
    if missing:
        raise JobError(
            f"curated version {version} of {dataset} is damaged: its manifest names Parquet objects that are "
            f"missing from s3://{bucket.name}/: {', '.join(missing)}; re-create it with the ingest stage "
            "(delete its manifest, then run playbooks/ingest.yml) or pass another --version"
        )
    return CuratedVersion(dataset, version, manifest)


def fetch_tables(bucket: S3Bucket, cv: CuratedVersion, names: list[str], dest: str) -> dict[str, str]:
    """Download the named tables' Parquet files to ``dest`` (a file already there with the right sha256 is kept)
    and check each against the manifest; returns table name → local path."""
    os.makedirs(dest, exist_ok=True)
    entries = {n: cv.table(n) for n in names}
    paths = {n: str(Path(dest) / os.path.basename(e["key"])) for n, e in entries.items()}
    todo = []
    for n, e in entries.items():
        if os.path.exists(paths[n]) and file_sha256(paths[n]).hex() == e["sha256"]:
            continue
        Path(paths[n]).unlink(missing_ok=True)
        todo.append(PinnedObject(e["key"], None, int(e["bytes"]), paths[n]))
    if todo:
        download_objects(bucket, todo)
    for n, e in entries.items():
        if file_sha256(paths[n]).hex() != e["sha256"]:
            Path(paths[n]).unlink(missing_ok=True)
            raise JobError(
                f"s3://{bucket.name}/{e['key']} does not match its manifest's sha256: the curated version "
                f"{cv.version} was changed after it was written; re-create it with the ingest stage"
            )
    return paths


def clear_work_dir(work: Path, keep: str | set[str]) -> None:
    """Only the current version's (or versions') downloads are worth keeping across runs."""
    keeps = {keep} if isinstance(keep, str) else keep
    for other in work.iterdir():
        if other.is_dir() and other.name not in keeps:
            shutil.rmtree(other, ignore_errors=True)
