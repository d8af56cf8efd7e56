"""The ASGI lifespan protocol, server side.

The app is called once with a ``lifespan`` scope and stays running for the server's life:
``lifespan.startup`` goes in before the first connection is served, ``lifespan.shutdown``
after the last one. Modes, as in uvicorn: ``"auto"`` treats an app that raises (or returns)
before answering as one without lifespan support and goes on without it (ASGI lifespan spec:
"If an exception is raised when calling the application callable with a lifespan.startup
message or a scope with type lifespan, the server must continue but not send any lifespan
events"); ``"on"`` treats that as a startup failure; ``"off"`` never calls the app for it.
``lifespan.startup.failed`` always stops the server: ``startup()`` raises
``LifespanStartupFailed``, which the engine re-raises in the caller's thread.

The scope's ``state`` dict is what the app fills during startup; the engine gives every
connection scope a shallow copy of it.
"""

from __future__ import annotations

import asyncio

from ..errors import LifespanStartupFailed, ServerStartError
from ..logs import ServerLog

STARTUP_TIMEOUT = 10.0


class _NoLifespan(Exception):
    """The app does not speak lifespan (it raised or returned before answering)."""


class Lifespan:
    """Drives one app through ``lifespan.startup`` and ``lifespan.shutdown``."""

    def __init__(self, app, log: ServerLog, mode: str = "auto",
                 startup_timeout: float = STARTUP_TIMEOUT):
        self.app = app
        self.log = log
        self.mode = mode
        self.startup_timeout = startup_timeout
        self.state: dict = {}
        self.supported = False  # True once the app completed startup
        self._task: asyncio.Task | None = None
        self._inbox: asyncio.Queue = asyncio.Queue()
        self._answers: asyncio.Queue = asyncio.Queue()
        self._phase = "startup"  # the message the app may answer next
        self._answered_phases: set = set()
        self._error: BaseException | None = None  # what ended the app, if it raised

    async def startup(self) -> None:
        """Run startup; raise ``LifespanStartupFailed`` or ``ServerStartError`` if it fails."""
        if self.mode == "off":
            return
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"},
                 "state": self.state}
        self._task = asyncio.get_running_loop().create_task(self._run(scope))
        await self._inbox.put({"type": "lifespan.startup"})
        try:
            answer = await self._answer(self.startup_timeout)
        except asyncio.TimeoutError:
            await self._cancel()
            raise ServerStartError(f"ASGI lifespan: the app did not answer lifespan.startup "
                                   f"within {self.startup_timeout:g}s") from None
        except _NoLifespan as exc:
            if self.mode == "on":
                raise LifespanStartupFailed(f"lifespan='on' but the app did not complete "
                                            f"lifespan.startup: {exc}") from None
            self.log.info(f"lifespan unsupported by the app ({exc}); continuing without it")
            return
        if answer["type"] == "lifespan.startup.failed":
            message = answer.get("message", "")
            self.log.error(f"lifespan.startup.failed: {message}")
            await self._cancel()
            raise LifespanStartupFailed(message)
        self.supported = True
        self.log.info("lifespan startup complete")

    async def shutdown(self, timeout: float) -> None:
        """Send ``lifespan.shutdown`` and wait up to ``timeout`` for the answer."""
        if not self.supported or self._task is None or self._task.done():
            await self._cancel()
            return
        self._phase = "shutdown"
        await self._inbox.put({"type": "lifespan.shutdown"})
        try:
            answer = await self._answer(timeout)
        except asyncio.TimeoutError:
            self.log.error(f"ASGI lifespan: no answer to lifespan.shutdown within {timeout:g}s")
        except _NoLifespan as exc:
            self.log.error(f"ASGI lifespan: the app ended without answering "
                           f"lifespan.shutdown ({exc})")
        else:
            if answer["type"] == "lifespan.shutdown.failed":
                self.log.error(f"lifespan.shutdown.failed: {answer.get('message', '')}")
            else:
                self.log.info("lifespan shutdown complete")
        await self._cancel()

    async def _answer(self, timeout: float) -> dict:
        """The app's next lifespan message, or ``_NoLifespan`` if the app ends first."""
        get = asyncio.ensure_future(self._answers.get())
        try:
            await asyncio.wait({get, self._task}, timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not get.done():
                get.cancel()
        if get.done() and not get.cancelled():
            return get.result()
        if self._task.done():
            exc = self._error
            raise _NoLifespan(f"{type(exc).__name__}: {exc}" if exc else "the app returned")
        raise asyncio.TimeoutError

    async def _cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=1.0)

    async def _run(self, scope: dict) -> None:
        try:
            await self.app(scope, self._receive, self._send)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # kept, not raised: the task's end is the signal
            self._error = exc
            if self.supported:  # after startup it is a real error, not "unsupported"
                self.log.error("Exception in ASGI lifespan", exc)

    async def _receive(self) -> dict:
        return await self._inbox.get()  # bounded by the server: shutdown comes, or a cancel

    async def _send(self, message) -> None:
        if not isinstance(message, dict) or "type" not in message:
            raise TypeError(f"ASGI spec: a message is a dict with a 'type' key, got {message!r}")
        kind = message["type"]
        expected = (f"lifespan.{self._phase}.complete", f"lifespan.{self._phase}.failed")
        if kind not in expected or self._phase in self._answered_phases:
            raise RuntimeError(f"ASGI lifespan spec: expected one of {expected} in answer to "
                               f"lifespan.{self._phase}, got {kind!r}")
        self._answered_phases.add(self._phase)
        await self._answers.put(message)
