"""Model registry use-cases: upload a version, read versions, delete one, resolve one.

An upload is received to a temporary file (size and SHA-256 counted as it streams),
checked (the declared checksum, the framework, the schema against the file), stored
in the model store under its SHA-256, and only then numbered in SQL: a refused upload
leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from aimp_core.errors import BadRequest, Conflict, NotFound, PayloadTooLarge
from aimp_deploy_control import inspection
from aimp_deploy_control.model_db import ModelDB, ModelVersion, VersionInUse
from aimp_deploy_control.model_store import ModelStore
from aimp_deploy_control.schemas import (
    ModelPublic,
    ModelSummary,
    ModelVersionMeta,
    ModelVersionPublic,
)
from aimp_deploy_control.settings import DeployControlSettings
from aimp_deploy_control.upload import Upload, make_private_dir, receive
from aimp_deploy_control.validation import validate_name

log = logging.getLogger(__name__)

#: The name each framework's file gets in the local cache (loaders look at suffixes).
CACHED_NAME = {
    inspection.SKLEARN: "model.joblib",
    inspection.ONNX: "model.onnx",
    inspection.PYTHON: "model.py",
}
#: Multipart framing around the file: a body this much over the file limit is refused
#: before it is read.
MULTIPART_OVERHEAD_BYTES = 1024 * 1024


def _version_missing(name: str, version: int | str) -> NotFound:
    return NotFound(
        f"model {name!r} has no version {version}; GET /v1/models/{name} lists its versions"
    )


def _model_missing(name: str) -> NotFound:
    return NotFound(
        f"no model named {name!r}; upload one with POST /v1/models/{name}/versions "
        "(GET /v1/models lists them)"
    )


class ModelRegistry:
    def __init__(self, db: ModelDB, store: ModelStore, settings: DeployControlSettings) -> None:
        self.db = db
        self.store = store
        self.settings = settings

    # -- reading ----------------------------------------------------------------------------

    def public(self, v: ModelVersion, deployments: list[str]) -> ModelVersionPublic:
        return ModelVersionPublic(
            model=v.model,
            version=v.version,
            framework=v.framework,
            sha256=v.sha256,
            size_bytes=v.size_bytes,
            filename=v.filename,
            schema_=v.schema,
            schema_source="declared" if v.schema_declared else "inferred",
            created_at=v.created_at,
            deployments=deployments,
        )

    async def _public(self, v: ModelVersion) -> ModelVersionPublic:
        return self.public(v, await asyncio.to_thread(self.db.users, v.model, v.version))

    async def list(self) -> list[ModelSummary]:
        out = []
        for name in await asyncio.to_thread(self.db.names):
            model = await asyncio.to_thread(self.db.get, name)
            if model is not None:
                latest = model.versions[-1].version if model.versions else None
                out.append(
                    ModelSummary(name=name, latest_version=latest, versions=len(model.versions))
                )
        return out

    async def get(self, name: str) -> ModelPublic:
        model = await asyncio.to_thread(self.db.get, name)
        if model is None:
            raise _model_missing(name)
        versions = [await self._public(v) for v in model.versions]
        return ModelPublic(
            name=model.name,
            created_at=model.created_at,
            latest_version=versions[-1].version if versions else None,
            versions=versions,
        )

    async def resolve(self, name: str, version: int | Literal["latest"]) -> ModelVersion:
        """A version by number, or the highest one for ``"latest"``; 404 if there is none."""
        found = await asyncio.to_thread(
            self.db.version, name, None if version == "latest" else version
        )
        if found is None:
            if await asyncio.to_thread(self.db.get, name) is None:
                raise _model_missing(name)
            raise _version_missing(name, version)
        return found

    async def version(self, name: str, version: int) -> ModelVersionPublic:
        return await self._public(await self.resolve(name, version))

    async def local_file(self, v: ModelVersion) -> Path:
        """The version's file in the local cache (downloaded from the store if absent);
        a handler's schema is written beside it (``.schema.json``), where its pod reads it."""
        filename = CACHED_NAME.get(v.framework, "model.bin")
        schema_json = v.schema.model_dump_json()
        if v.framework == inspection.PYTHON:
            # Two versions may share a handler file but not its schema.
            digest = hashlib.sha256(schema_json.encode()).hexdigest()[:16]
            filename = f"model-{digest}.py"
        path = await asyncio.to_thread(self.store.fetch, v.sha256, filename)
        if v.framework == inspection.PYTHON:
            await asyncio.to_thread(_write_once, path.with_suffix(".schema.json"), schema_json)
        return path

    # -- writing ----------------------------------------------------------------------------

    async def upload(
        self,
        name: str,
        content_type: str | None,
        content_length: int | None,
        body: AsyncIterator[bytes],
    ) -> ModelVersionPublic:
        validate_name(name)
        limit = self.settings.deploy_control_upload_max_bytes
        if content_length is not None and content_length > limit + MULTIPART_OVERHEAD_BYTES:
            raise PayloadTooLarge(
                f"the upload is {content_length} bytes; model files may be at most {limit} "
                "bytes here (AIMP_DEPLOY_CONTROL_UPLOAD_MAX_BYTES raises the limit)"
            )
        received = await receive(
            content_type,
            body,
            tmp_dir=await asyncio.to_thread(make_private_dir, self.settings.upload_tmp_dir),
            max_file_bytes=limit,
        )
        try:
            return await self._register(name, received)
        finally:
            received.discard()

    async def _register(self, name: str, received: Upload) -> ModelVersionPublic:
        meta = _metadata(received)
        if received.path is None or received.field_name != "file":
            raise BadRequest("the upload has no 'file' part: send the model file as 'file'")
        if received.size_bytes == 0:
            raise BadRequest("the uploaded model file is empty")
        if meta.sha256 is not None and meta.sha256.lower() != received.sha256:
            raise BadRequest(
                f"the file's SHA-256 is {received.sha256}, not {meta.sha256.lower()} as "
                "declared: it was damaged or truncated on the way; upload it again"
            )
        framework = inspection.validate_framework(meta.framework)
        checked = await inspection.check(
            framework,
            received.path,
            received.sha256,
            meta.schema_,
            timeout_s=self.settings.deploy_control_inspect_timeout_s,
        )
        await asyncio.to_thread(self.store.put, received.path, received.sha256)
        version = await asyncio.to_thread(
            lambda: self.db.add_version(
                name,
                framework=framework,
                sha256=received.sha256,
                size_bytes=received.size_bytes,
                filename=received.filename,
                schema=checked.schema,
                schema_declared=checked.declared,
            )
        )
        log.info(
            "model version stored",
            extra={
                "model": name,
                "version": version.version,
                "framework": framework,
                "sha256": version.sha256,
                "size_bytes": version.size_bytes,
            },
        )
        return self.public(version, [])

    async def delete_version(self, name: str, version: int) -> None:
        try:
            result = await asyncio.to_thread(self.db.delete_version, name, version)
        except VersionInUse as exc:
            raise Conflict(
                f"version {version} of model {name!r} is served by deployment(s) "
                f"{', '.join(exc.deployments)}; delete those (DELETE /v1/deployments/{{name}}) "
                "or deploy another version first"
            ) from None
        if result is None:
            raise _version_missing(name, version)
        gone, shared = result
        if not shared:
            await asyncio.to_thread(self.store.delete, gone.sha256)
        log.info("model version deleted", extra={"model": name, "version": version})


def _metadata(received: Upload) -> ModelVersionMeta:
    raw = received.fields.get("metadata")
    unknown = sorted(set(received.fields) - {"metadata"})
    if unknown:
        raise BadRequest(f"unknown upload field(s) {unknown}: send 'file' and 'metadata' only")
    if raw is None:
        raise BadRequest(
            'the upload has no \'metadata\' part: send JSON such as {"framework": "onnx"} '
            "(with optional 'schema' and 'sha256')"
        )
    try:
        return ModelVersionMeta.model_validate(json.loads(raw))
    except json.JSONDecodeError as exc:
        raise BadRequest(f"'metadata' is not JSON: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'metadata'}: {e['msg']}"
            for e in exc.errors()[:10]
        )
        raise BadRequest(f"'metadata' is not valid: {problems}") from None


def _write_once(path: Path, text: str) -> None:
    if path.exists():
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
