"""The model registry API in-process, with a real key set, SQLite and an fsspec store.

Uploads go through the real streaming parser and the real inspector subprocess
(scikit-learn, ONNX Runtime); no Triton is started here.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import fsspec
import httpx
import pytest

from aimp_core.auth import JwksVerifier
from aimp_deploy_control.app import create_app
from aimp_deploy_control.settings import DeployControlSettings
from aimp_inference.demo import train_iris, train_iris_onnx


@pytest.fixture(scope="module")
def iris_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("models")
    return {"sklearn": train_iris(base / "sk"), "onnx": train_iris_onnx(base / "onnx")}


@pytest.fixture
def store_url() -> Iterator[str]:
    url = f"memory://models-{uuid.uuid4().hex}"
    yield url
    fs, root = fsspec.core.url_to_fs(url)
    if fs.exists(root):
        fs.rm(root, recursive=True)


def make_settings(home: Path, keys: Any, store_url: str | None, **extra: Any) -> Any:
    return DeployControlSettings(
        home=home,
        database_url=None,
        jwks_url=keys.jwks_url,
        token_issuer=keys.issuer,
        registry_url="http://127.0.0.1:9/eureka",
        deploy_control_model_store_url=store_url,
        **extra,
    )


@pytest.fixture
async def client(
    aimp_home: Path, dc_keys: Any, store_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[httpx.AsyncClient]:
    extra = getattr(request, "param", {})
    settings = make_settings(aimp_home, dc_keys, store_url, **extra)
    app = create_app(settings, verifier=JwksVerifier(dc_keys.jwks_url, issuer=dc_keys.issuer))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://dc") as http:
            http.app = app  # type: ignore[attr-defined]
            yield http


def bearer(keys: Any, *roles: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys.mint(list(roles))}"}


async def upload(
    http: httpx.AsyncClient,
    keys: Any,
    name: str,
    content: bytes,
    meta: dict[str, Any],
    *,
    filename: str = "model.bin",
) -> httpx.Response:
    return await http.post(
        f"/v1/models/{name}/versions",
        files={"file": (filename, content), "metadata": (None, json.dumps(meta))},
        headers=bearer(keys, "operator"),
    )


def sklearn_schema(n_features: int = 4) -> dict[str, Any]:
    return {"inputs": [{"name": "input", "datatype": "FP64", "shape": [-1, n_features]}]}


async def test_sklearn_upload_infers_schema_and_numbers_versions(
    client: httpx.AsyncClient, dc_keys: Any, iris_files: dict[str, Path], store_url: str
) -> None:
    """Two uploads become versions 1 and 2 with the model's own schema, stored by SHA-256."""
    content = iris_files["sklearn"].read_bytes()
    digest = hashlib.sha256(content).hexdigest()
    first = await upload(
        client, dc_keys, "iris", content, {"framework": "sklearn", "sha256": digest.upper()}
    )
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["version"] == 1 and body["sha256"] == digest
    assert body["size_bytes"] == len(content) and body["schema_source"] == "inferred"
    assert body["schema"] == {
        "inputs": [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}],
        "outputs": [
            {"name": "label", "datatype": "INT64", "shape": [-1, 1]},
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, 3]},
        ],
    }
    assert first.headers["location"] == "/v1/models/iris/versions/1"
    assert str(client.app.state.models.settings.home) not in first.text  # type: ignore[attr-defined]
    second = await upload(client, dc_keys, "iris", content, {"framework": "sklearn"})
    assert second.json()["version"] == 2
    fs, root = fsspec.core.url_to_fs(store_url)
    assert fs.cat_file(f"{root}/sha256/{digest[:2]}/{digest}") == content  # stored once
    reader = bearer(dc_keys, "operator")
    listed = (await client.get("/v1/models", headers=reader)).json()
    assert listed == {"models": [{"name": "iris", "latest_version": 2, "versions": 2}]}
    one = await client.get("/v1/models/iris/versions/1", headers=reader)
    assert one.status_code == 200 and one.json()["deployments"] == []
    model = (await client.get("/v1/models/iris", headers=reader)).json()
    assert [v["version"] for v in model["versions"]] == [1, 2]
    assert (await client.get("/v1/models/iris/versions/3", headers=reader)).status_code == 404


async def test_mismatching_sklearn_schema_is_refused_naming_the_field(
    client: httpx.AsyncClient, dc_keys: Any, iris_files: dict[str, Path]
) -> None:
    """A declared input of 5 features for a 4-feature model is a 400 that says so; nothing
    is stored."""
    content = iris_files["sklearn"].read_bytes()
    resp = await upload(
        client, dc_keys, "iris", content, {"framework": "sklearn", "schema": sklearn_schema(5)}
    )
    assert resp.status_code == 400, resp.text
    assert "input 'input' shape [-1, 5]: the model expects 4 features" in resp.json()["detail"]
    assert (
        await client.get("/v1/models/iris", headers=bearer(dc_keys, "admin"))
    ).status_code == 404
    ok = await upload(
        client, dc_keys, "iris", content, {"framework": "sklearn", "schema": sklearn_schema(4)}
    )
    assert ok.status_code == 201 and ok.json()["schema_source"] == "declared"
    assert [t["name"] for t in ok.json()["schema"]["outputs"]] == ["label", "probabilities"]


async def test_onnx_schema_is_checked_field_by_field(
    client: httpx.AsyncClient, dc_keys: Any, iris_files: dict[str, Path]
) -> None:
    """An ONNX graph's names, datatypes and dimensions are checked; each wrong one is named."""
    content = iris_files["onnx"].read_bytes()
    good = {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [
            {"name": "label", "datatype": "INT64", "shape": [-1, 1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
        ],
    }
    bad = json.loads(json.dumps(good))
    bad["inputs"][0]["datatype"] = "FP64"
    bad["outputs"][1]["shape"] = [-1, 2]
    bad["outputs"][0]["name"] = "class"
    resp = await upload(client, dc_keys, "flowers", content, {"framework": "onnx", "schema": bad})
    assert resp.status_code == 400, resp.text
    detail = resp.json()["detail"]
    assert "input 'input' datatype FP64: the model's is FP32" in detail
    assert "output 'probabilities' shape [-1, 2]: dimension 1 is 3 in the model, not 2" in detail
    assert "output 'class' is not in the model" in detail
    assert "output 'label' (INT64 [-1, 1]) is in the model but not declared" in detail
    ok = await upload(client, dc_keys, "flowers", content, {"framework": "onnx", "schema": good})
    assert ok.status_code == 201, ok.text
    assert ok.json()["schema"] == good


async def test_checksum_framework_and_form_errors_store_nothing(
    client: httpx.AsyncClient, dc_keys: Any, iris_files: dict[str, Path], store_url: str
) -> None:
    """A wrong checksum, a file of another format, torchscript without torch and malformed
    metadata are 400s that say what was wrong, and leave the store empty."""
    content = iris_files["sklearn"].read_bytes()
    cases = [
        ({"framework": "sklearn", "sha256": "0" * 64}, content, "it was damaged or truncated"),
        ({"framework": "onnx"}, content, "not an ONNX model ONNX Runtime can load"),
        ({"framework": "torchscript"}, content, "torch is not installed"),
        ({"framework": "xgboost"}, content, "framework 'xgboost' is not supported"),
        ({"framework": "sklearn", "schema": {"inputs": []}}, content, "schema.inputs"),
        ({"framework": "sklearn"}, b"", "the uploaded model file is empty"),
    ]
    for meta, data, message in cases:
        resp = await upload(client, dc_keys, "iris", data, meta)
        assert resp.status_code == 400, (meta, resp.text)
        assert message in resp.json()["detail"], (meta, resp.json()["detail"])
    no_meta = await client.post(
        "/v1/models/iris/versions",
        files={"file": ("m.joblib", content)},
        headers=bearer(dc_keys, "operator"),
    )
    assert no_meta.status_code == 400 and "no 'metadata' part" in no_meta.json()["detail"]
    not_multipart = await client.post(
        "/v1/models/iris/versions", content=content, headers=bearer(dc_keys, "operator")
    )
    assert not_multipart.status_code == 400 and "multipart/form-data" in not_multipart.text
    fs, root = fsspec.core.url_to_fs(store_url)
    assert not fs.exists(f"{root}/sha256")
    home = client.app.state.models.settings.upload_tmp_dir  # type: ignore[attr-defined]
    assert list(home.iterdir()) == []  # every temporary file removed


@pytest.mark.parametrize("client", [{"deploy_control_upload_max_bytes": 1000}], indirect=True)
async def test_upload_over_the_limit_is_413_with_or_without_content_length(
    client: httpx.AsyncClient, dc_keys: Any
) -> None:
    """A file over the limit is refused with 413, whether the length is announced or not."""
    announced = await upload(client, dc_keys, "big", b"x" * 5000, {"framework": "sklearn"})
    assert announced.status_code == 413, announced.text
    assert "AIMP_DEPLOY_CONTROL_UPLOAD_MAX_BYTES" in announced.json()["detail"]
    request = client.build_request(
        "POST",
        "/v1/models/big/versions",
        files={"file": ("m.bin", b"y" * 5000), "metadata": (None, '{"framework": "sklearn"}')},
        headers=bearer(dc_keys, "operator"),
    )
    body = request.read()

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 512):
            yield body[i : i + 512]

    streamed = await client.post(
        "/v1/models/big/versions",
        content=chunks(),
        headers={**bearer(dc_keys, "operator"), "content-type": request.headers["content-type"]},
    )
    assert streamed.status_code == 413, streamed.text


async def test_roles_are_checked_before_the_body_is_read(
    client: httpx.AsyncClient, dc_keys: Any
) -> None:
    """No token is 401; an invoker may neither upload, read nor delete models."""
    files = {"file": ("m.bin", b"x"), "metadata": (None, '{"framework": "sklearn"}')}
    assert (await client.post("/v1/models/a/versions", files=files)).status_code == 401
    invoker = bearer(dc_keys, "invoker")
    resp = await client.post("/v1/models/a/versions", files=files, headers=invoker)
    assert resp.status_code == 403
    assert (await client.get("/v1/models", headers=invoker)).status_code == 403
    assert (await client.delete("/v1/models/a/versions/1", headers=invoker)).status_code == 403
    bad_name = await upload(client, dc_keys, "Not_A_Label", b"x", {"framework": "sklearn"})
    assert bad_name.status_code == 400 and "DNS label" in bad_name.json()["detail"]


async def test_delete_refuses_a_served_version_and_keeps_shared_files(
    client: httpx.AsyncClient, dc_keys: Any, iris_files: dict[str, Path], store_url: str
) -> None:
    """A version a deployment serves cannot be deleted (409); deleting the others removes
    the stored file only with its last version."""
    content = iris_files["sklearn"].read_bytes()
    digest = hashlib.sha256(content).hexdigest()
    for _ in range(3):
        assert (await upload(client, dc_keys, "iris", content, {"framework": "sklearn"})).is_success
    deployments = client.app.state.deployments  # type: ignore[attr-defined]
    deployments.store.add("iris-svc", "", "sklearn", "triton", 1, ("iris", 2))
    admin = bearer(dc_keys, "admin")
    busy = await client.delete("/v1/models/iris/versions/2", headers=admin)
    assert busy.status_code == 409 and "iris-svc" in busy.json()["detail"]
    served = (await client.get("/v1/models/iris/versions/2", headers=admin)).json()
    assert served["deployments"] == ["iris-svc"]
    fs, root = fsspec.core.url_to_fs(store_url)
    key = f"{root}/sha256/{digest[:2]}/{digest}"
    assert (await client.delete("/v1/models/iris/versions/1", headers=admin)).status_code == 204
    assert fs.exists(key)  # versions 2 and 3 still use the file
    assert (await client.delete("/v1/models/iris/versions/1", headers=admin)).status_code == 404
    deployments.store.delete("iris-svc")
    assert (await client.delete("/v1/models/iris/versions/2", headers=admin)).status_code == 204
    assert (await client.delete("/v1/models/iris/versions/3", headers=admin)).status_code == 204
    assert not fs.exists(key)
    again = await upload(client, dc_keys, "iris", content, {"framework": "sklearn"})
    assert again.json()["version"] == 4  # numbers are never reused


async def test_deploying_a_version_that_does_not_exist_is_404(
    client: httpx.AsyncClient, dc_keys: Any, iris_files: dict[str, Path]
) -> None:
    """Deploying an unknown model or version is a 404, and a framework beside 'model' a 400."""
    admin = bearer(dc_keys, "admin")
    resp = await client.post("/v1/deployments", json={"name": "x", "model": "nope"}, headers=admin)
    assert resp.status_code == 404 and "POST /v1/models/nope/versions" in resp.json()["detail"]
    content = iris_files["sklearn"].read_bytes()
    assert (await upload(client, dc_keys, "iris", content, {"framework": "sklearn"})).is_success
    body = {"name": "x", "model": "iris", "version": 7}
    resp = await client.post("/v1/deployments", json=body, headers=admin)
    assert resp.status_code == 404 and "has no version 7" in resp.json()["detail"]
    body = {"name": "x", "model": "iris", "framework": "onnx"}
    resp = await client.post("/v1/deployments", json=body, headers=admin)
    assert resp.status_code == 400 and "leave 'framework' out" in resp.json()["detail"]
    both = {"name": "x", "model": "iris", "model_file": "/a"}
    resp = await client.post("/v1/deployments", json=both, headers=admin)
    assert resp.status_code in (400, 422) and "not both" in resp.text
