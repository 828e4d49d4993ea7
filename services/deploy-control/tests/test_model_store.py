"""The model store over fsspec (memory:// and a local directory) and the upload parser."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import fsspec
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aimp_core.errors import BadRequest, PayloadTooLarge
from aimp_deploy_control.model_store import CorruptModel, ModelStore
from aimp_deploy_control.upload import receive, safe_filename


def _file(tmp_path: Path, data: bytes) -> tuple[Path, str]:
    path = tmp_path / f"f-{uuid.uuid4().hex}"
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("kind", ["memory", "local"])
def test_put_fetch_and_delete(tmp_path: Path, kind: str) -> None:
    """A stored file comes back into the cache byte for byte, once; delete removes both."""
    url = f"memory://store-{uuid.uuid4().hex}" if kind == "memory" else str(tmp_path / "store")
    store = ModelStore(url, tmp_path / "cache")
    path, sha = _file(tmp_path, b"model bytes" * 1000)
    store.put(path, sha)
    store.put(path, sha)  # the same file again is a no-op
    assert store.local is (kind == "local")
    assert store.fs.cat_file(store.key(sha)) == path.read_bytes()
    assert not [p for p in store.fs.find(store.root) if ".part-" in p]
    cached = store.fetch(sha, "model.onnx")
    assert cached == tmp_path / "cache" / sha / "model.onnx"
    assert cached.read_bytes() == path.read_bytes()
    assert store.fetch(sha, "model.onnx") == cached
    store.delete(sha)
    assert not store.fs.exists(store.key(sha)) and not cached.exists()


def test_a_damaged_or_missing_stored_file_is_refused(tmp_path: Path) -> None:
    """A stored file whose bytes no longer hash to its name never reaches the cache."""
    store = ModelStore(f"memory://store-{uuid.uuid4().hex}", tmp_path / "cache")
    path, sha = _file(tmp_path, b"original")
    store.put(path, sha)
    store.fs.pipe_file(store.key(sha), b"tampered")
    with pytest.raises(CorruptModel, match="damaged"):
        store.fetch(sha, "model.joblib")
    assert not (tmp_path / "cache" / sha / "model.joblib").exists()
    with pytest.raises(CorruptModel, match="missing from the store"):
        store.fetch("0" * 64, "model.joblib")


def _multipart(file_bytes: bytes, meta: str) -> tuple[bytes, str]:
    request = httpx.Request(
        "POST",
        "http://x/",
        files={"file": ("../../etc/m odel.onnx", file_bytes), "metadata": (None, meta)},
    )
    return request.read(), request.headers["content-type"]


async def _chunks(body: bytes, cuts: list[int]) -> AsyncIterator[bytes]:
    start = 0
    for cut in [*sorted({c % (len(body) + 1) for c in cuts}), len(body)]:
        yield body[start:cut]
        start = cut


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=5000), cuts=st.lists(st.integers(0, 10_000), max_size=12))
def test_any_chunking_gives_the_same_file_and_fields(
    tmp_path: Path, data: bytes, cuts: list[int]
) -> None:
    """However the body is split on the wire, the file, its SHA-256 and the fields agree."""
    body, content_type = _multipart(data, '{"framework": "onnx"}')
    got = asyncio.run(
        receive(content_type, _chunks(body, cuts), tmp_dir=tmp_path, max_file_bytes=10_000)
    )
    try:
        assert got.path is not None and got.path.read_bytes() == data
        assert got.sha256 == hashlib.sha256(data).hexdigest() and got.size_bytes == len(data)
        assert got.fields == {"metadata": '{"framework": "onnx"}'}
        assert got.filename == "m_odel.onnx"
    finally:
        got.discard()


async def test_limits_and_malformed_bodies(tmp_path: Path) -> None:
    """A file over the limit is 413, two files or a body without boundary 400; nothing stays."""
    body, content_type = _multipart(b"x" * 2000, "{}")
    with pytest.raises(PayloadTooLarge):
        await receive(content_type, _chunks(body, [100]), tmp_dir=tmp_path, max_file_bytes=1000)
    two = httpx.Request("POST", "http://x/", files=[("file", ("a", b"1")), ("file", ("b", b"2"))])
    with pytest.raises(BadRequest, match="exactly one file"):
        await receive(
            two.headers["content-type"], _chunks(two.read(), []), tmp_dir=tmp_path, max_file_bytes=9
        )
    with pytest.raises(BadRequest, match="multipart/form-data"):
        await receive("application/json", _chunks(b"{}", []), tmp_dir=tmp_path, max_file_bytes=9)
    assert not any(tmp_path.iterdir())  # noqa: ASYNC240 (a test's own temporary folder)


def test_safe_filename_keeps_only_a_harmless_base_name() -> None:
    """Directories, odd characters and leading dots are dropped from an uploaded name."""
    assert safe_filename("C:\\models\\iris v2.onnx") == "iris_v2.onnx"
    assert safe_filename("../.hidden") == "hidden"
    assert safe_filename("") == "model"


def test_memory_urls_are_separate_stores(tmp_path: Path) -> None:
    """Two memory:// URLs do not see each other's files (as two buckets would not)."""
    a = ModelStore(f"memory://a-{uuid.uuid4().hex}", tmp_path / "ca")
    b = ModelStore(f"memory://b-{uuid.uuid4().hex}", tmp_path / "cb")
    path, sha = _file(tmp_path, b"abc")
    a.put(path, sha)
    assert a.fs.exists(a.key(sha)) and not b.fs.exists(b.key(sha))
    fs, root = fsspec.core.url_to_fs(a.url)
    fs.rm(root, recursive=True)
