"""How a revision serves: its concurrency, scale bounds and extra environment.

The request fields (:class:`ServingFields`, shared by a new deployment and a new
revision), what is stored and handed to the backends (:class:`Serving`), and the pure
checks: environment names, scale requests within a revision's bounds, and secret-ish
values kept out of views, logs and error messages.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from aimp_core.errors import BadRequest

#: POSIX shell names: what every runtime and Kubernetes accept everywhere.
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: The platform's own variables (the sidecar's settings, deploy-control's, the pod's home).
RESERVED_PREFIX = "AIMP_"
#: Names whose values are shown as this in views and never logged.
REDACTED = "<redacted>"
_SECRETISH = re.compile(
    r"SECRET|PASSW|PASSWD|PWD|TOKEN|KEY|CREDENTIAL|AUTH|PRIVATE|CERT|SIGNATURE|DSN|SESSION|COOKIE",
    re.IGNORECASE,
)
#: Enough for any real configuration; bounds what one request may store.
ENV_MAX_ITEMS = 64
ENV_NAME_MAX_CHARS = 128
ENV_VALUE_MAX_CHARS = 8192


def looks_secret(name: str) -> bool:
    """True for names such as ``API_KEY``, ``DB_PASSWORD`` or ``HF_TOKEN``."""
    return _SECRETISH.search(name) is not None


def redacted(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with the value of every secret-ish name replaced by :data:`REDACTED`."""
    return {k: REDACTED if looks_secret(k) else v for k, v in env.items()}


def env_problems(env: Mapping[str, str]) -> list[str]:
    """What is wrong with each name or value (never quoting a value)."""
    out = []
    for name, value in env.items():
        shown = repr(name[:ENV_NAME_MAX_CHARS])
        if not ENV_NAME.fullmatch(name) or len(name) > ENV_NAME_MAX_CHARS:
            out.append(
                f"{shown} is not an environment variable name: use letters, digits and '_' "
                f"(not starting with a digit, at most {ENV_NAME_MAX_CHARS} characters)"
            )
        elif name.upper().startswith(RESERVED_PREFIX):
            out.append(
                f"{shown} is the platform's own: AIMP_* variables are set by deploy-control "
                "(use 'concurrency', 'queue_size' and the other revision fields, or another name)"
            )
        if "\0" in value:
            out.append(f"the value of {shown} holds a NUL character, which no process accepts")
        elif len(value) > ENV_VALUE_MAX_CHARS:
            out.append(f"the value of {shown} is over {ENV_VALUE_MAX_CHARS} characters")
    return out


@dataclass(frozen=True)
class Serving:
    """A revision's serving settings as stored; None means the platform default."""

    #: Calls running at once in each pod (the sidecar's concurrency limit).
    concurrency: int | None = None
    #: Calls waiting in each pod beyond that (the sidecar's queue); more get 503.
    queue_size: int | None = None
    #: The fewest and most pods a scale request may ask for (max None: AIMP_MAX_REPLICAS).
    min_scale: int = 0
    max_scale: int | None = None
    #: Pods the revision started with.
    initial_scale: int | None = None
    #: Extra environment of the inference server, as sorted (name, value) pairs.
    env: tuple[tuple[str, str], ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "queue_size": self.queue_size,
            "min_scale": self.min_scale,
            "max_scale": self.max_scale,
            "initial_scale": self.initial_scale,
            "env": dict(self.env),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Serving:
        """What :meth:`as_json` wrote; None (a revision stored before these existed): defaults."""
        if not data:
            return cls()
        return cls(
            concurrency=data.get("concurrency"),
            queue_size=data.get("queue_size"),
            min_scale=int(data.get("min_scale") or 0),
            max_scale=data.get("max_scale"),
            initial_scale=data.get("initial_scale"),
            env=tuple(sorted((data.get("env") or {}).items())),
        )


def serving_differences(old: Serving, new: Serving) -> list[str]:
    """The settings a re-deploy changes, as 'field: old -> new' (environment variables by
    name only: their values may be secrets)."""
    out = [
        f"{key}: {getattr(old, key)!r} -> {getattr(new, key)!r}"
        for key in ("concurrency", "queue_size", "min_scale", "max_scale")
        if getattr(old, key) != getattr(new, key)
    ]
    before, after = dict(old.env), dict(new.env)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    if changed:
        out.append(f"env: {', '.join(changed)} differ")
    return out


def check_scale(replicas: int, serving: Serving, revision: str, max_replicas: int) -> int:
    """``replicas`` when it lies within the revision's bounds; else a 400 naming them."""
    high = min(serving.max_scale, max_replicas) if serving.max_scale else max_replicas
    if not serving.min_scale <= replicas <= high:
        raise BadRequest(
            f"revision {revision} scales between {serving.min_scale} and {high} pods "
            f"(min_scale {serving.min_scale}, max_scale "
            f"{serving.max_scale if serving.max_scale else f'unset, so AIMP_MAX_REPLICAS {high}'}"
            f"); got {replicas}. Ask for a count within them, or add a revision with other "
            "bounds"
        )
    return replicas


def check_bounds(serving: Serving, max_replicas: int) -> None:
    """400 when a new revision's bounds exceed what this deploy-control may run."""
    for field, value in (("min_scale", serving.min_scale), ("max_scale", serving.max_scale)):
        if value is not None and value > max_replicas:
            raise BadRequest(
                f"{field} {value} is above this deploy-control's ceiling of {max_replicas} "
                "pods per revision (AIMP_MAX_REPLICAS raises it)"
            )


class ServingFields(BaseModel):
    """The request fields that say how a revision serves (all optional)."""

    replicas: int = Field(
        default=1,
        description="Pods to start with (1 to AIMP_MAX_REPLICAS); afterwards use PUT .../scale.",
    )
    concurrency: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="Calls running at once in each pod (the sidecar's concurrency limit; "
        "its default when unset).",
    )
    queue_size: int | None = Field(
        default=None,
        ge=0,
        le=100_000,
        description="Calls waiting in each pod beyond 'concurrency'; more are refused with "
        "503 so the gateway tries another pod (the sidecar's default when unset).",
    )
    min_scale: int = Field(
        default=0, ge=0, le=10_000, description="The fewest pods PUT .../scale may ask for."
    )
    max_scale: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="The most pods PUT .../scale may ask for (AIMP_MAX_REPLICAS when unset).",
    )
    initial_scale: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="Pods started with; the same as 'replicas' (give one of the two).",
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        max_length=ENV_MAX_ITEMS,
        description="Extra environment of the inference server. Names are shell names, not "
        "AIMP_* (the platform's own); values of secret-ish names (KEY, TOKEN, PASSWORD...) "
        "are shown redacted.",
    )

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        problems = env_problems(env)
        if problems:
            raise ValueError("; ".join(problems))
        return env

    @model_validator(mode="after")
    def _bounds(self) -> ServingFields:
        given = "replicas" in self.model_fields_set
        if self.initial_scale is not None and given and self.replicas != self.initial_scale:
            raise ValueError(
                f"initial_scale {self.initial_scale} and replicas {self.replicas} differ; they "
                "are the same setting, give one of them"
            )
        initial = self.initial
        high = self.max_scale
        if high is not None and self.min_scale > high:
            raise ValueError(
                f"min_scale {self.min_scale} is above max_scale {high}; give min_scale <= max_scale"
            )
        if initial < self.min_scale or (high is not None and initial > high):
            raise ValueError(
                f"initial_scale (replicas) {initial} is outside min_scale {self.min_scale} .. "
                f"max_scale {high if high is not None else 'unset'}; give min_scale <= "
                "initial_scale <= max_scale"
            )
        return self

    @property
    def initial(self) -> int:
        """The pods to start with: initial_scale, else replicas."""
        return self.initial_scale if self.initial_scale is not None else self.replicas

    def serving(self) -> Serving:
        return Serving(
            concurrency=self.concurrency,
            queue_size=self.queue_size,
            min_scale=self.min_scale,
            max_scale=self.max_scale,
            initial_scale=self.initial,
            env=tuple(sorted(self.env.items())),
        )


class ServingPublic(BaseModel):
    """How a revision serves, in its view (secret-ish environment values redacted)."""

    concurrency: int | None = Field(description="Calls at once per pod; null: sidecar default.")
    queue_size: int | None = Field(description="Calls waiting per pod; null: sidecar default.")
    min_scale: int
    max_scale: int | None = Field(description="null: AIMP_MAX_REPLICAS.")
    initial_scale: int | None = Field(description="Pods it started with.")
    env: dict[str, str] = Field(
        description=f"Extra server environment ({REDACTED} hides values of secret-ish names)."
    )

    @classmethod
    def of(cls, serving: Serving) -> ServingPublic:
        return cls(
            concurrency=serving.concurrency,
            queue_size=serving.queue_size,
            min_scale=serving.min_scale,
            max_scale=serving.max_scale,
            initial_scale=serving.initial_scale,
            env=redacted(dict(serving.env)),
        )
