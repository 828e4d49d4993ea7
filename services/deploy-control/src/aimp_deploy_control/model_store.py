"""Model files in a store named by URL (fsspec), and the local cache pods load them from.

The store holds each distinct file once, under its SHA-256 (``sha256/ab/abcdef...``),
so two versions with the same bytes share it. It is a local directory
(``$AIMP_HOME/models``) unless ``AIMP_DEPLOY_CONTROL_MODEL_STORE_URL`` names another
fsspec location, e.g. ``s3://bucket/prefix`` (with s3fs installed) or ``memory://x``.

A file is written to a temporary name and then moved into place, so a reader never
sees half of one. Pods never read the store: :meth:`ModelStore.fetch` copies a file
into ``$AIMP_HOME/cache/models/<sha256>/`` (checking its SHA-256 on the way) and a
pod loads that copy, so a remote store costs one download per host, not per replica.

Every method blocks: call them in a thread from async code.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from aimp_core.errors import AimpError

log = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024


class StoreError(AimpError):
    status, title = 502, "Model store unavailable"


class CorruptModel(AimpError):
    status, title = 500, "Stored model is corrupt"


def _store_error(what: str, url: str, exc: Exception) -> StoreError:
    return StoreError(
        f"{what} in the model store {url!r} failed: {type(exc).__name__}: {str(exc)[:300]} "
        "(check AIMP_DEPLOY_CONTROL_MODEL_STORE_URL and the store's credentials)"
    )


class ModelStore:
    def __init__(self, url: str, cache_dir: Path) -> None:
        self.url = url
        self.cache_dir = cache_dir
        fs, root = fsspec.core.url_to_fs(url)
        self.fs: Any = fs
        self.root: str = str(root).rstrip("/")
        self.local = isinstance(fs, LocalFileSystem)

    def key(self, sha256: str) -> str:
        return f"{self.root}/sha256/{sha256[:2]}/{sha256}"

    def put(self, local_file: Path, sha256: str) -> None:
        """Store ``local_file`` (whose SHA-256 is ``sha256``); a no-op if it is there."""
        key = self.key(sha256)
        size = local_file.stat().st_size
        try:
            if self.fs.exists(key) and self.fs.size(key) == size:
                return
            self.fs.makedirs(key.rsplit("/", 1)[0], exist_ok=True)
            part = f"{key}.part-{uuid.uuid4().hex}"
            self.fs.put_file(str(local_file), part)
            self.fs.mv(part, key)
        except OSError as exc:
            raise _store_error("writing a model", self.url, exc) from None
        log.info("model stored", extra={"sha256": sha256, "size_bytes": size})

    def delete(self, sha256: str) -> None:
        """Remove a file from the store and the cache (missing ones are ignored)."""
        try:
            if self.fs.exists(self.key(sha256)):
                self.fs.rm_file(self.key(sha256))
        except OSError as exc:
            raise _store_error("deleting a model", self.url, exc) from None
        shutil.rmtree(self.cache_dir / sha256, ignore_errors=True)

    def cached_path(self, sha256: str, filename: str) -> Path:
        return self.cache_dir / sha256 / filename

    def fetch(self, sha256: str, filename: str) -> Path:
        """The local copy of a stored file, downloaded (and its SHA-256 checked) if absent.

        ``filename`` is the name the copy gets (its suffix matters to some loaders).
        """
        target = self.cached_path(sha256, filename)
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{filename}.{uuid.uuid4().hex}.tmp")
        digest = hashlib.sha256()
        try:
            with self.fs.open(self.key(sha256), "rb") as src, open(tmp, "wb") as out:
                while chunk := src.read(CHUNK_BYTES):
                    digest.update(chunk)
                    out.write(chunk)
        except FileNotFoundError:
            tmp.unlink(missing_ok=True)
            raise CorruptModel(
                f"the model file sha256:{sha256} is missing from the store {self.url!r}; "
                "upload the version again"
            ) from None
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise _store_error("reading a model", self.url, exc) from None
        if digest.hexdigest() != sha256:
            tmp.unlink(missing_ok=True)
            raise CorruptModel(
                f"the stored file for sha256:{sha256} has sha256:{digest.hexdigest()}: the "
                "store's copy is damaged; upload the version again"
            )
        os.replace(tmp, target)
        log.info("model cached", extra={"sha256": sha256, "path": str(target)})
        return target
