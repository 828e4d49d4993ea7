"""Serve a :class:`ModelAdapter` through Triton Inference Server (PyTriton).

PyTriton starts ``tritonserver`` as a child process and runs our inference
callable in this process. Its Python backend stub must load this interpreter's
own ``libpython``, so :func:`python_lib_env` puts the interpreter's LIBDIR
first on ``LD_LIBRARY_PATH`` before Triton starts (DESIGN.md, known pitfalls).
"""

from __future__ import annotations

import os
import sysconfig
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pytriton.decorators import batch
from pytriton.model_config import ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

from aimp_inference.adapter import ModelAdapter

#: Rows Triton may gather into one call; 64 iris-sized rows take well under 1 ms.
MAX_BATCH_SIZE = 64


@dataclass(frozen=True)
class PodPorts:
    http: int
    grpc: int
    metrics: int


def python_lib_env(environ: Mapping[str, str]) -> str:
    """``LD_LIBRARY_PATH`` with this interpreter's LIBDIR first and the old value kept."""
    libdir = str(sysconfig.get_config_var("LIBDIR") or "")
    current = environ.get("LD_LIBRARY_PATH", "")
    parts = [p for p in current.split(os.pathsep) if p]
    if libdir and libdir not in parts[:1]:
        parts.insert(0, libdir)
    return os.pathsep.join(parts)


def triton_config(ports: PodPorts, bind_address: str) -> TritonConfig:
    return TritonConfig(
        http_address=bind_address,
        http_port=ports.http,
        grpc_address=bind_address,
        grpc_port=ports.grpc,
        metrics_address=bind_address,
        metrics_port=ports.metrics,
        # Give in-flight inferences a few seconds when we are told to stop.
        exit_timeout_secs=5,
        log_verbose=0,
    )


def infer_function(adapter: ModelAdapter) -> Callable[..., Any]:
    """The callable Triton invokes.

    Batched adapters get the rows of every gathered call stacked (PyTriton's
    ``@batch``); unbatched ones get each call's inputs as they came.
    """
    if not adapter.batched:

        def infer_each(requests: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
            return [dict(adapter.infer({k: r[k] for k in r})) for r in requests]

        return infer_each

    @batch  # type: ignore[untyped-decorator]
    def infer(**inputs: npt.NDArray[np.generic]) -> dict[str, Any]:
        return dict(adapter.infer(inputs))

    return infer  # type: ignore[no-any-return]


def build_triton(
    adapter: ModelAdapter, *, name: str, ports: PodPorts, bind_address: str = "127.0.0.1"
) -> Triton:
    """A Triton server with ``adapter`` bound as model ``name`` (not started yet)."""
    os.environ["LD_LIBRARY_PATH"] = python_lib_env(os.environ)
    triton = Triton(config=triton_config(ports, bind_address))
    triton.bind(
        model_name=name,
        infer_func=infer_function(adapter),
        inputs=[Tensor(name=s.name, dtype=s.dtype.type, shape=s.shape) for s in adapter.inputs],
        outputs=[Tensor(name=s.name, dtype=s.dtype.type, shape=s.shape) for s in adapter.outputs],
        config=(
            ModelConfig(batching=True, max_batch_size=MAX_BATCH_SIZE)
            if adapter.batched
            else ModelConfig(batching=False)
        ),
        strict=True,
    )
    return triton
