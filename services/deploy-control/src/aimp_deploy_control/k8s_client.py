"""The Kubernetes API through the official client: configuration, timeouts, errors (adapter).

The client is synchronous; every call runs in a thread (``asyncio.to_thread``) with
the configured timeout, and answers are read as plain JSON dicts (what
k8s_manifests.py builds and k8s_pods.py reads), not the client's model classes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from aimp_core.errors import BadGateway, ServiceUnavailable
from aimp_deploy_control.k8s_settings import KubernetesSettings

log = logging.getLogger(__name__)


class KubernetesConfigError(RuntimeError):
    """No way to reach an API server is configured (raised at start, says how to fix it)."""


class KubernetesError(BadGateway):
    """The API server refused a call; ``api_status`` is its HTTP status."""

    def __init__(self, detail: str, *, api_status: int) -> None:
        super().__init__(detail)
        self.api_status = api_status


def build_api_client(k8s: KubernetesSettings) -> client.ApiClient:
    """An API client from the explicit URL, the in-cluster service account or a kubeconfig."""
    conf = client.Configuration()
    try:
        if k8s.k8s_api_url:
            conf.host = k8s.k8s_api_url.rstrip("/")
            if k8s.k8s_token is not None:
                conf.api_key = {"authorization": k8s.k8s_token.get_secret_value()}
                conf.api_key_prefix = {"authorization": "Bearer"}
            conf.verify_ssl = k8s.k8s_verify_tls
            conf.ssl_ca_cert = k8s.k8s_ca_file
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=conf)  # type: ignore[no-untyped-call]
        else:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=k8s.k8s_kubeconfig, context=k8s.k8s_context, client_configuration=conf
            )
    except (ConfigException, OSError) as exc:
        raise KubernetesConfigError(
            f"cannot configure the Kubernetes client ({exc}): run deploy-control in the cluster, "
            "or set AIMP_DEPLOY_CONTROL_K8S_KUBECONFIG, or AIMP_DEPLOY_CONTROL_K8S_API_URL and "
            "AIMP_DEPLOY_CONTROL_K8S_TOKEN (or use AIMP_DEPLOY_CONTROL_BACKEND=local)"
        ) from None
    # No silent retries: a failed call is reported at once; the refresh loop tries again.
    conf.retries = 0
    return client.ApiClient(conf)


def _api_message(exc: ApiException) -> str:
    """The Status object's message (what the API server says was wrong)."""
    try:
        body = json.loads(exc.body or "")
    except ValueError:
        return str(exc.reason or "")
    return str(body.get("message") or exc.reason or "") if isinstance(body, dict) else ""


def api_error(exc: ApiException, what: str) -> KubernetesError:
    status = int(exc.status or 0)
    message = _api_message(exc)
    hint = ""
    if status in (401, 403):
        hint = (
            "; deploy-control's credentials may not do this: apply k8s/rbac.yaml and check "
            "AIMP_DEPLOY_CONTROL_NAMESPACE"
        )
    return KubernetesError(
        f"Kubernetes refused to {what} (HTTP {status}: {message}){hint}", api_status=status
    )


class KubernetesApi:
    """Runs client calls in threads, each with a timeout; answers are JSON dicts."""

    def __init__(self, api_client: client.ApiClient, *, timeout_s: float) -> None:
        self.api_client = api_client
        self.timeout_s = timeout_s
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)

    @property
    def host(self) -> str:
        return str(self.api_client.configuration.host)

    def _unreachable(self, what: str, exc: Exception) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"the Kubernetes API server at {self.host} did not answer when asked to {what} "
            f"({type(exc).__name__}); check that the cluster is up and reachable",
            retry_after_s=5,
        )

    async def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` in a thread; the answer's JSON (a dict), {} when empty.

        ``what`` says what the call does, for error messages ("create Deployment iris-r1").
        """

        def run() -> Any:
            resp = fn(*args, _request_timeout=self.timeout_s, _preload_content=False, **kwargs)
            data = resp.data
            return json.loads(data) if data else {}

        try:
            return await asyncio.to_thread(run)
        except ApiException as exc:
            if exc.status == 0:  # the client's own wrapping of TLS errors
                raise self._unreachable(what, exc) from None
            raise api_error(exc, what) from None
        except urllib3.exceptions.HTTPError as exc:
            raise self._unreachable(what, exc) from None

    async def call_or_none(
        self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        """Like :meth:`call`, but None where the object does not exist (404)."""
        try:
            return await self.call(what, fn, *args, **kwargs)
        except KubernetesError as exc:
            if exc.api_status == 404:
                return None
            raise

    async def stream(
        self,
        what: str,
        fn: Callable[..., Any],
        *args: Any,
        idle_timeout_s: float,
        **kwargs: Any,
    ) -> AsyncIterator[bytes]:
        """A streamed answer (a followed log) in chunks; ends when the server ends it, or
        after ``idle_timeout_s`` without data. Reads run in a thread one chunk at a time."""
        timeout = (self.timeout_s, idle_timeout_s)

        def open_stream() -> Any:
            return fn(*args, _request_timeout=timeout, _preload_content=False, **kwargs)

        try:
            resp = await asyncio.to_thread(open_stream)
        except ApiException as exc:
            raise api_error(exc, what) from None
        except urllib3.exceptions.HTTPError as exc:
            raise self._unreachable(what, exc) from None
        try:
            while True:
                try:
                    chunk = await asyncio.to_thread(resp.read1, 65536)
                except (urllib3.exceptions.HTTPError, OSError) as exc:
                    log.info("log stream ended", extra={"what": what, "why": type(exc).__name__})
                    return
                if not chunk:
                    return
                yield bytes(chunk)
        finally:
            resp.release_conn()

    def close(self) -> None:
        self.api_client.close()  # type: ignore[no-untyped-call]
