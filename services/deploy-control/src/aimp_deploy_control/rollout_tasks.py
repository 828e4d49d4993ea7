"""The rolling restarts under way, one per deployment: their progress, the background
task running each, and the 409 that other writes get meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from aimp_core.errors import Conflict
from aimp_deploy_control.rollout import Rollout, RolloutState


class RolloutTasks:
    def __init__(self) -> None:
        self._progress: dict[str, Rollout] = {}
        self._tasks: dict[str, tuple[asyncio.Task[None], asyncio.Event]] = {}

    def progress(self, name: str) -> Rollout | None:
        """The deployment's latest rolling restart since deploy-control started."""
        return self._progress.get(name)

    def rolling(self, name: str) -> bool:
        progress = self._progress.get(name)
        return progress is not None and progress.state == RolloutState.RUNNING

    def busy_error(self, name: str, what: str) -> Conflict | None:
        """A 409 saying why ``what`` must wait, while a rolling restart runs; else None."""
        if not self.rolling(name):
            return None
        p = self._progress[name]
        return Conflict(
            f"cannot {what} {name!r}: a rolling restart is running (replaced {p.replaced} of "
            f"{p.total}, started {p.started_at.isoformat()}); GET /v1/deployments/{name} shows "
            "its progress, try again when its state is no longer 'running'"
        )

    def begin(
        self,
        name: str,
        run: Coroutine[Any, Any, None],
        progress: Rollout,
        cancel: asyncio.Event,
    ) -> None:
        """Run ``run`` in the background as the deployment's rolling restart."""
        task = asyncio.create_task(run, name=f"rollout-{name}")
        self._progress[name] = progress
        self._tasks[name] = (task, cancel)
        task.add_done_callback(lambda done: self._forget(name, done))

    async def cancel(self, name: str) -> None:
        """Stop the deployment's rolling restart between steps and wait for it."""
        entry = self._tasks.pop(name, None)
        if entry is not None:
            task, cancel = entry
            cancel.set()  # the runner stops between steps, never halfway through a stop
            await task

    def forget(self, name: str) -> None:
        """Drop the progress of a deleted deployment."""
        self._progress.pop(name, None)

    async def close(self) -> None:
        await asyncio.gather(*(self.cancel(n) for n in list(self._tasks)))

    def _forget(self, name: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(name, (None,))[0] is task:
            del self._tasks[name]
