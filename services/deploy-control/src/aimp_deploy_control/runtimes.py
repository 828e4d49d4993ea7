"""Inference runtimes a deployment may run on, and how each one's server is started.

``triton`` is the PyTriton pod (scikit-learn joblib or ONNX files as they are);
``cpp`` and ``java`` are the native pods, which load scikit-learn models exported to
the portable JSON format (``aimp-sklearn-json/1``). Every runtime speaks the Open
Inference Protocol, so the same sidecar fronts each of them.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from aimp_core.errors import BadRequest
from aimp_deploy_control.settings import DeployControlSettings

TRITON, CPP, JAVA = "triton", "cpp", "java"
SKLEARN, ONNX, PYTHON = "sklearn", "onnx", "python"
FRAMEWORKS: dict[str, str] = {
    SKLEARN: "a scikit-learn model saved with joblib",
    ONNX: "an ONNX model, runtime 'triton' only",
    PYTHON: "a custom Python handler uploaded with its schema, runtime 'triton' only",
}


@dataclass(frozen=True)
class Runtime:
    name: str
    frameworks: tuple[str, ...]
    #: The server loads the portable JSON, not the user's file: deploy-control exports it.
    needs_export: bool
    #: Where its command is configured, named in errors.
    setting: str


RUNTIMES: dict[str, Runtime] = {
    TRITON: Runtime(TRITON, (SKLEARN, ONNX, PYTHON), False, "AIMP_POD_COMMAND"),
    CPP: Runtime(CPP, (SKLEARN,), True, "AIMP_DEPLOY_CONTROL_CPP_POD_COMMAND"),
    JAVA: Runtime(JAVA, (SKLEARN,), True, "AIMP_DEPLOY_CONTROL_JAVA_POD_COMMAND"),
}

#: What `make native` builds, named in the "not available" advice.
_BUILT_BY_MAKE = {
    CPP: "inference/cpp/build/aimp-cpp-pod",
    JAVA: "inference/java/build/aimp-java-pod",
}


def _quoted(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)


def validate_runtime(runtime: str, framework: str) -> Runtime:
    """The runtime, if it exists and serves ``framework``; else a 400 saying what is allowed."""
    if runtime not in RUNTIMES:
        raise BadRequest(
            f"runtime {runtime[:40]!r} is not known: use one of {_quoted(list(RUNTIMES))} "
            "(GET /v1/runtimes lists those available here)"
        )
    if framework not in FRAMEWORKS:
        allowed = "; ".join(f"{name!r} ({what})" for name, what in FRAMEWORKS.items())
        raise BadRequest(f"framework {framework[:40]!r} is not supported: use {allowed}")
    spec = RUNTIMES[runtime]
    if framework not in spec.frameworks:
        raise BadRequest(
            f"runtime {runtime!r} serves scikit-learn models exported to JSON; "
            f"use runtime 'triton' for {framework.upper()} (framework {framework!r})"
        )
    return spec


def command_of(settings: DeployControlSettings, runtime: str) -> list[str] | None:
    """The configured argv prefix of ``runtime``'s server, or None when none is set."""
    if runtime == TRITON:
        return list(settings.pod_command) or None
    path = (
        settings.deploy_control_cpp_pod_command
        if runtime == CPP
        else settings.deploy_control_java_pod_command
    )
    return [path] if path else None


def unavailable_reason(settings: DeployControlSettings, runtime: str) -> str | None:
    """Why ``runtime`` cannot run here (with the fix), or None when it can."""
    spec = RUNTIMES[runtime]
    command = command_of(settings, runtime)
    if command is None:
        built = _BUILT_BY_MAKE.get(runtime, "the pod")
        return (
            f"runtime {runtime!r} is not available on this deploy-control: build it with "
            f"`make native` and set {spec.setting} to the absolute path of {built}"
        )
    exe = command[0]
    found = shutil.which(exe) if os.sep not in exe else exe
    if found is None or not os.path.isfile(found) or not os.access(found, os.X_OK):
        return (
            f"runtime {runtime!r} is not available on this deploy-control: {spec.setting} "
            f"names {exe!r}, which is not an executable file (build it with `make native`)"
        )
    return None


def server_argv(
    command: list[str],
    runtime: str,
    *,
    model_file: str,
    name: str,
    framework: str,
    ports: list[int],
) -> list[str]:
    """The inference server's command line: Triton needs 3 ports, the native pods one."""
    if runtime == TRITON:
        http, grpc, metrics = ports
        return [
            *command,
            "--model-file",
            model_file,
            "--name",
            name,
            "--framework",
            framework,
            "--http-port",
            str(http),
            "--grpc-port",
            str(grpc),
            "--metrics-port",
            str(metrics),
        ]
    (port,) = ports
    return [
        *command,
        "--model-file",
        model_file,
        "--name",
        name,
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
    ]


def ports_needed(runtime: str) -> int:
    return 3 if runtime == TRITON else 1
