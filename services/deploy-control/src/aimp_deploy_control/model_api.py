"""HTTP routes of the model registry: upload versions, read them, delete one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from aimp_deploy_control.api import Operator, Reader
from aimp_deploy_control.models import ModelRegistry
from aimp_deploy_control.schemas import ModelList, ModelPublic, ModelVersionPublic


def get_models(request: Request) -> ModelRegistry:
    models: ModelRegistry = request.app.state.models
    return models


ModelsDep = Annotated[ModelRegistry, Depends(get_models)]

router = APIRouter(prefix="/v1", tags=["models"])

UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file", "metadata"],
                "properties": {
                    "file": {"type": "string", "format": "binary"},
                    "metadata": {
                        "type": "string",
                        "description": 'JSON: {"framework": "sklearn|onnx|python|torchscript", '
                        '"schema"?: {"inputs": [...], "outputs"?: [...]}, "sha256"?: "hex"}',
                    },
                },
            }
        }
    },
}


@router.post(
    "/models/{name}/versions",
    status_code=201,
    summary="Upload a model file as the model's next version (multipart: file + metadata)",
    responses={400: {}, 413: {}},
    openapi_extra={"requestBody": UPLOAD_BODY},
)
async def upload_version(
    name: str, request: Request, response: Response, _caller: Operator, models: ModelsDep
) -> ModelVersionPublic:
    length = request.headers.get("content-length")
    version = await models.upload(
        name,
        request.headers.get("content-type"),
        int(length) if length and length.isdigit() else None,
        request.stream(),
    )
    response.headers["Location"] = f"/v1/models/{name}/versions/{version.version}"
    return version


@router.get("/models", summary="Every model with its latest version")
async def list_models(_caller: Reader, models: ModelsDep) -> ModelList:
    return ModelList(models=await models.list())


@router.get("/models/{name}", summary="One model and all its versions")
async def get_model(name: str, _caller: Reader, models: ModelsDep) -> ModelPublic:
    return await models.get(name)


@router.get("/models/{name}/versions/{version}", summary="One version of a model")
async def get_version(
    name: str, version: int, _caller: Reader, models: ModelsDep
) -> ModelVersionPublic:
    return await models.version(name, version)


@router.delete(
    "/models/{name}/versions/{version}",
    status_code=204,
    summary="Delete a version no deployment serves (409 while one does)",
    responses={404: {}, 409: {}},
)
async def delete_version(name: str, version: int, _caller: Operator, models: ModelsDep) -> Response:
    await models.delete_version(name, version)
    return Response(status_code=204)
