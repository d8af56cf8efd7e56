# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 23. Background tasks: work after the response
#
# A sign-up handler should answer "welcome!" at once, not after the welcome email went out.
# In this chapter you give `bare` **background tasks**: work a handler hands over, which
# runs once the client already has its whole response, whose errors land in a log, and which
# the server waits for (a little) when it shuts down.
#
# If you come from Flask, you may have done this with a `threading.Thread` started in the
# view, or with a job queue such as Celery. Flask's `after_this_request` does not help: it
# runs *before* the response is sent, so the client still waits. Starlette and FastAPI have
# `BackgroundTasks`; by the end of this chapter you know what theirs does, because you
# wrote one, and where the sharp edges are.
#
# ## Learning goals
#
# By the end of this chapter you can:
#
# - hand work from a handler to "after the response" with a `BackgroundTasks` collector,
#   with plain functions run in a worker thread and `async def` functions awaited;
# - show, by timing a real socket exchange, that the client has its full response before
#   the task is done;
# - say where a background task's error goes (a log, never the client) and why;
# - tie running tasks to the ASGI lifespan, so that shutdown waits for them with a timeout
#   and then cancels and logs what is left;
# - plug all of it into `bare` through its public hooks (`add_middleware`, `stack_built`,
#   `on_shutdown`), and say why `request.call_after_response` is not the trigger here;
# - spot the trap of `asyncio.create_task(...)` with no reference kept: a task that can be
#   garbage-collected mid-flight, and errors nobody ever sees.

# %% [markdown]
# ## The plan
#
# Nothing in ASGI says "background task". The server calls the app once per request; the
# app sends `http.response.start`, then `http.response.body` with `more_body` false, and
# from that moment the server may write the last bytes and the client may read them. What
# the app does *after* that last `send()` is its own business. That gap is where background
# tasks live.
#
# Three pieces make it safe, and each is a small class:
#
# ```mermaid
# sequenceDiagram
#     participant C as client
#     participant S as server
#     participant M as BackgroundMiddleware
#     participant H as handler
#     participant R as TaskRegistry
#     C->>S: POST /signup
#     S->>M: app(scope, receive, send)
#     M->>H: scope["background"] = BackgroundTasks()
#     H-->>M: add_task(send_welcome, email)
#     H->>S: http.response.start, http.response.body (last)
#     S->>C: the whole response
#     M->>R: spawn(tasks.run()): keeps a reference
#     Note over R: the task runs; an error goes to the log
#     S->>R: lifespan.shutdown: drain(timeout), then cancel the rest
# ```
#
# - `BackgroundTasks` collects what a handler asks for, in order;
# - `BackgroundMiddleware` hands each request a fresh collector and starts it only once the
#   response is complete;
# - `TaskRegistry` holds a reference to every running task, logs errors, and drains at
#   shutdown.
#
# The chapter builds them in this order, then breaks things on purpose.
#
# One design choice deserves a word now. Starlette runs a response's background tasks
# *inside* the same ASGI call: the app's coroutine sends the last body, then awaits the
# tasks, then returns. The client has its bytes, but the server's call to the app is still
# running, so anything that waits for the app to return (a middleware wrapped around it, a
# test client, a server that serves one request per connection at a time) waits for the
# tasks too. Here the middleware instead starts the tasks as a separate `asyncio.Task` and
# returns at once: the app call ends with the response, and the registry, not the
# connection, answers for the task.

# %%
#| default_exp bare_tasks

# %% [markdown]
# The imports. `bare` comes from chapter 18, the test client from chapter 17, and the rest
# is the standard library plus barelab, which serves apps and plays the client over a socket.
# `inspect` tells `async def` functions from plain ones, `weakref` and `gc` are for the
# trap at the end of the chapter.

# %%
import asyncio
import functools
import gc
import inspect
import logging
import threading
import time
import weakref

import barelab
from barelab.built.bare import Bare, Response
from barelab.built.testing import TestClient
from barelab.exercises import check

# %% [markdown]
# ## A collector for "later"
#
# The collector is a list of calls waiting to happen: the function and its arguments. It
# does not run anything when you add to it, the same way a shopping list buys nothing.
#
# Cells that start with `#| export` are copied into the module `barelab.built.bare_tasks`
# (the `default_exp` line above named it), so later chapters and the tests can import what
# you build here. The first one is the module's opening.

# %%
#| export
# Background tasks for bare (chapter 18): work a handler asks for, run after its response is
# complete. BackgroundMiddleware gives each http request a BackgroundTasks collector in
# scope["background"]; once the last http.response.body is sent it starts the collected
# calls as one asyncio task held by a TaskRegistry. Plain functions run in a worker thread
# (asyncio.to_thread), async ones are awaited; an error is logged, never sent. The registry
# keeps a strong reference to each task (the event loop keeps only weak ones) and, at the
# lifespan's shutdown, waits for them up to a timeout, then cancels what is left and logs it.
# with_background(app) wires it in through bare's public hooks: add_middleware, on_shutdown.
import asyncio
import functools
import inspect
import logging

from barelab.built.bare import Bare

logger = logging.getLogger("bare.tasks")

# %% [markdown]
# That cell is the module's opening: a comment telling its story, the imports, and the
# logger every background error will go to. A task runs after the response is gone, so
# the log is the only place its failure can land; the section on errors comes back to it.
#
# Log lines need a readable name for each task. A handler often pre-fills arguments with
# `functools.partial`, whose own name is no help, so `task_name` unwraps partials (even
# nested ones) down to the function inside and takes its `__qualname__`, the dotted name
# Python prints in tracebacks.

# %%
#| export
def task_name(func) -> str:
    """A readable name for a function, a partial or a callable object."""
    while isinstance(func, functools.partial):
        func = func.func
    return getattr(func, "__qualname__", None) or type(func).__name__

# %% [markdown]
# Try it on a method and on a partial. Look for the class name in the first answer and
# for the missing `partial` in the second.

# %%
task_name(str.upper), task_name(functools.partial(print, end="!"))

# %% [markdown]
# `str.upper` keeps its class, so two `send` methods of different classes stay apart in
# the log. The partial came out as plain `print`: a log line will say `send_welcome`, not
# `functools.partial(<function send_welcome at 0x...>, ...)`. The last fallback,
# `type(func).__name__`, is for a callable object without a `__qualname__` of its own:
# it is named after its class.

# %% [markdown]
# Now the collector itself. Read `add_task`: it stores a triple `(func, args, kwargs)`
# and runs nothing. It checks only that what you gave it can be called. The `/` in its
# signature makes `func` positional-only, so a task that takes a keyword argument named
# `func` can still receive it through `**kwargs`.

# %%
#| export
class BackgroundTasks:
    """What one request asked to run after its response: calls kept in order.
    ``add_task(func, *args, **kwargs)`` only records the call; ``await tasks.run()`` makes it."""

    def __init__(self):
        self.calls: list = []

    def add_task(self, func, /, *args, **kwargs) -> None:
        if not callable(func):
            raise TypeError(f"add_task takes a function to call later, not {func!r}")
        self.calls.append((func, args, kwargs))

# %% [markdown]
# Add two calls and look inside. Both calls are to `print`, so watch for what is *missing*
# from the output: the words "one" and "two".

# %%
later = BackgroundTasks()
later.add_task(print, "one")
later.add_task(print, "two", end="!\n")
later.calls

# %% [markdown]
# Nothing was printed. Each entry is the triple `add_task` stored: the function, the
# positional arguments as a tuple, and the keyword arguments as a dict, with `end` kept
# for later.
#
# That list is the whole state, but it is long to read. A collector should say in one
# line what it holds, and `len()` should count it; the middleware will use that count to
# skip requests that asked for nothing. Two small methods, attached to the class:

# %%
#| export
def tasks_len(self) -> int:
    return len(self.calls)

def tasks_repr(self) -> str:
    names = ", ".join(task_name(func) for func, _, _ in self.calls)
    return f"<BackgroundTasks [{names}]>"

BackgroundTasks.__len__, BackgroundTasks.__repr__ = tasks_len, tasks_repr

# %% [markdown]
# The same collector, shown again:

# %%
later, len(later), bool(BackgroundTasks())

# %% [markdown]
# Two names and a count. The `False` is an empty collector: with `__len__` defined,
# Python treats a collector with no calls as false, so `if tasks:` reads as "if the
# handler asked for anything".
#
# A mistake is caught where it is made, not later in a place nobody watches. Passing the
# *result* of a call instead of the function is the classic one:

# %%
try:
    later.add_task(print("sent too early"))
except TypeError as error:
    print("TypeError:", error)

# %% [markdown]
# "sent too early" printed *now*: `print(...)` ran while the argument was computed, and
# `add_task` got its result, `None`. The fix is to pass the function and its arguments
# separately, as above. Without the check, the `None` would have sat in the list until
# the task ran, after the response, and failed there with "'NoneType' object is not
# callable", far from the line that caused it.
#
# ## Running the calls: threads for plain functions
#
# The other half of the collector is `run()`, which makes the calls. Running one call raises
# a question first: *where* does it run?
#
# A background task still runs on the server's event loop. An `async def` function is
# simply awaited. A plain function, though, may block (`time.sleep`, a database driver, an
# SMTP client); run on the loop, it would freeze every other request. So plain functions
# go to a worker thread with `asyncio.to_thread`, and the loop awaits the thread's result.
#
# An error in one call is logged with its traceback and the next call still runs: each
# call is independent work. A cancellation (`CancelledError`, not an `Exception`) is not
# caught: it stops the whole run, which is what shutdown needs.
#
# First the one decision, in `run_call`: `inspect.iscoroutinefunction` tells an
# `async def` function from a plain one before anything is called.

# %%
#| export
async def run_call(func, args, kwargs) -> None:
    """One call: awaited if it is an async function, else run in a worker thread."""
    if inspect.iscoroutinefunction(func):
        await func(*args, **kwargs)
    else:
        await asyncio.to_thread(func, *args, **kwargs)

# %% [markdown]
# Then the loop over the calls, attached to the class as its `run` method. The `try` sits
# *inside* the loop: that is what lets the second call run after the first one failed.
# `log.exception` writes the message together with the traceback of the error being
# handled. The `log` parameter lets a test pass its own logger; by default it is the
# module's `bare.tasks`.

# %%
#| export
async def run_tasks(self, log: logging.Logger = logger) -> None:
    """Make every call in order; log an error with its traceback and go on."""
    for func, args, kwargs in self.calls:
        try:
            await run_call(func, args, kwargs)
        except Exception:
            log.exception("background task %s failed", task_name(func))

BackgroundTasks.run = run_tasks

# %% [markdown]
# To see where each call runs, two small tasks, one plain and one `async def`, record a
# label and whether they ran in the main thread. The cell prints the main thread's name,
# so you know what "main" means here.

# %%
where = []

def plain_task(label):
    where.append((label, threading.current_thread() is main_thread))

async def async_task(label):
    where.append((label, threading.current_thread() is main_thread))

main_thread = threading.current_thread()
print(main_thread.name)

# %% [markdown]
# Jupyter runs cells in the main thread, and a cell with a top-level `await` runs on the
# kernel's own event loop, in that same thread. So `await jobs.run()` runs the collector
# the way a server would, on an event loop. Each entry below answers one question: did this
# call run on the loop's thread?

# %%
where.clear()
jobs = BackgroundTasks()
jobs.add_task(plain_task, "plain function")
jobs.add_task(async_task, "async function")
await jobs.run()
where

# %% [markdown]
# The plain function ran elsewhere (a thread of the loop's default executor, a small pool
# asyncio keeps for exactly this), the async one on the loop itself. While the thread
# worked, the loop was free to serve other requests. The price: a thread cannot be
# cancelled from outside, so a blocking task that hangs keeps its thread until it returns.
#
# That pool is small: `min(32, os.cpu_count() + 4)` threads by default. Thirty-odd plain
# tasks stuck on a slow mail server fill it, and every later `to_thread` call, yours or
# a library's, waits in line behind them. Prefer `async def` tasks for slow I/O, and give
# blocking calls a timeout of their own.
#
# The order held, too: `run` awaits each call before it starts the next, so the plain
# function had finished before the async one began. A handler that adds "save the order"
# and then "email the receipt" can count on that order.
#
# ## Errors go to a log, never to the client
#
# By the time a background task runs, the response is gone: there is nobody to send a 500
# to. So a failure must be *written down*, or it is lost. The module logs to the standard
# `logging` logger `bare.tasks`; a real app points it at its log files. Here a tiny handler
# keeps the lines in a list so the notebook can show them.

# %%
class KeepLines(logging.Handler):
    """Keep each record as one line: level, message and the error's last line."""
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        error = record.exc_info[1] if record.exc_info else None
        tail = f" | {type(error).__name__}: {error}" if error else ""
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}{tail}")

# %% [markdown]
# `KeepLines` turns each record into one short line: the level, the logger's name, the
# message and, when an error came with it, the error's type and message instead of the
# whole traceback, so a notebook output stays readable.
#
# The error comes from `record.exc_info`, the triple `(type, value, traceback)` that
# `log.exception(...)` (or `exc_info=` on any other level) attaches to the record. A
# file handler in production would print the whole traceback from it; here only the
# value's type and message are kept.
#
# `logging` sends each record to the handlers of its logger. Attach ours to `bare.tasks`.
# `propagate = False` keeps the records from also going up to the root logger, which would
# print them in the cell's output; in a real app you would configure the root logger (a
# file, the console, a log service) and leave propagation on.

# %%
task_log = KeepLines()
logger.handlers[:] = [task_log]
logger.propagate = False
logger.setLevel(logging.INFO)
logger.name, len(logger.handlers)

# %% [markdown]
# One handler on the logger named `bare.tasks`: ours, and only ours. `setLevel(INFO)` makes
# sure the warnings and errors below are not filtered out before they reach it.

# %% [markdown]
# Now a run where the first call fails. Look at two things: the second call still ran,
# and the failure is one log line with the error's type and message. `broken_task` stands
# in for an email call whose server refuses the message.

# %%
def broken_task():
    raise ValueError("the mail server said no")

where.clear(); task_log.lines.clear()
jobs = BackgroundTasks()
jobs.add_task(broken_task)
jobs.add_task(async_task, "ran after the failure")
await jobs.run()
where, task_log.lines

# %% [markdown]
# `where` holds only the second call, which ran on the loop as an `async def` should. The
# log holds the first: `ERROR`, the task's name from `task_name`, then the `ValueError`
# and its message. `run()` itself did not raise, so whoever awaits it is never disturbed
# by a task's bug.
#
# Note that the error crossed a thread: `broken_task` is a plain function, so it raised in
# a worker thread. `asyncio.to_thread` carries the exception back and raises it again at
# the `await` in `run_call`, which is how the `try` in `run` could catch it.
#
# ## A registry that keeps every task alive
#
# A handler must not `await jobs.run()` itself: the response would wait for the task,
# which is the very thing to avoid. The task has to run *beside* the request, as its own
# `asyncio.Task`. Whoever starts such a task must keep a reference to it, for a reason the
# trap section below shows. The `TaskRegistry` is that reference holder: a set of running
# tasks, each removed (and its outcome checked) when it ends.
#
# Its first version only starts tasks. `spawn` creates the task on the running loop, puts
# it in the set, and asks to be told when it ends; `timeout` is for the shutdown, two
# sections down.

# %%
#| export
class TaskRegistry:
    """The running background tasks of one app: strong references, so none is collected
    mid-flight; ``drain()`` at shutdown waits up to ``timeout`` seconds, then cancels."""

    def __init__(self, *, timeout: float = 1.0, log: logging.Logger = logger):
        self.timeout, self.log = timeout, log
        self.tasks: set = set()

    def spawn(self, coroutine, name: str | None = None) -> asyncio.Task:
        """Start ``coroutine`` as a task on the running loop and keep it until it ends."""
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.finished)
        return task

    def __repr__(self) -> str:
        return f"<TaskRegistry running={len(self.tasks)} timeout={self.timeout}s>"

# %% [markdown]
# `add_done_callback` asks asyncio to call `self.finished(task)` once the task ends, for
# whatever reason: it returned, it raised, or it was cancelled. That one place is where
# the registry lets go of the task and writes down how it ended. A cancelled task has no
# exception to ask for (asking would raise), so it is checked first. `task.get_name()` is
# the `name` given to `spawn`, which is why the middleware will name each task after its
# request. Without a name, asyncio calls tasks `Task-1`, `Task-2` and so on, which tells
# a log reader nothing about where the work came from.

# %%
#| export
def finished(self, task: asyncio.Task) -> None:
    """The done callback: forget the task, and log it if it was cancelled or failed."""
    self.tasks.discard(task)
    if task.cancelled():
        self.log.warning("background task %s was cancelled", task.get_name())
    elif task.exception() is not None:
        self.log.error("background task %s failed", task.get_name(),
                       exc_info=task.exception())

TaskRegistry.finished = finished

# %% [markdown]
# The done callback is the safety net: a coroutine spawned directly (not through
# `BackgroundTasks.run`, which catches its own errors) still has its error logged the
# moment it ends. Try it on the kernel's loop with a coroutine that fails. The
# `await asyncio.sleep(0.01)` matters: `spawn` only schedules the task, and the cell has
# to give the loop a moment to run it before looking.

# %%
async def fails_at_once():
    raise RuntimeError("nobody awaits me")

task_log.lines.clear()
registry = TaskRegistry()
registry.spawn(fails_at_once(), name="fails_at_once")
await asyncio.sleep(0.01)
registry, task_log.lines

# %% [markdown]
# Read the registry's `repr` first, then the log. `running=0`: the task ended and left
# the set; the error became a log line. Retrieving the exception in the callback
# (`task.exception()`) also tells asyncio that someone looked at it, so it will not
# complain later; the trap section shows what happens when nobody does.
#
# ## Draining at shutdown
#
# When the server stops, tasks may still be running. Waiting forever would make a stuck
# task hang the shutdown; not waiting at all would cut a half-sent email. The middle road
# is a **timeout**: wait up to `timeout` seconds for the tasks, then cancel the rest, and
# say so in the log.
#
# `asyncio.wait(tasks, timeout=...)` does the waiting: it returns two sets, the tasks that
# are done and the ones still pending when time ran out, and it never cancels anything
# itself. So `drain` cancels the pending ones by hand, then waits a little more (half the
# timeout, at least 0.1 s) for them to take the cancellation, because `cancel()` only
# *asks*: the `CancelledError` is raised inside the task at its next `await`.

# %%
#| export
async def drain(self, timeout: float | None = None) -> tuple[int, int]:
    """Wait for the running tasks up to ``timeout`` (default: the registry's), cancel the
    rest and log them. Returns (how many finished, how many were cancelled)."""
    timeout = self.timeout if timeout is None else timeout
    running = set(self.tasks)
    if not running:
        return 0, 0
    done, pending = await asyncio.wait(running, timeout=timeout)
    if pending:
        names = ", ".join(sorted(task.get_name() for task in pending))
        self.log.warning("shutdown: %d background task(s) still running after %gs, "
                         "cancelling: %s", len(pending), timeout, names)
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=max(0.1, timeout / 2))
    return len(done), len(pending)

TaskRegistry.drain = drain

# %% [markdown]
# Two details before you try it. `drain` waits on a *copy* of the set, because each task
# that ends removes itself from `self.tasks` while the wait goes on. And the early return
# keeps an app with nothing running from calling `asyncio.wait` on an empty set, which
# raises `ValueError`.
#
# Two tasks, a timeout of 0.2 s: the quick one finishes in time, the slow one is cancelled.
# Read the log: one line from `drain` naming what it cancelled, one from the done callback.

# %%
task_log.lines.clear()
registry = TaskRegistry(timeout=0.2)
registry.spawn(asyncio.sleep(0.05), name="quick")
registry.spawn(asyncio.sleep(30), name="slow")
print(await registry.drain())
task_log.lines

# %% [markdown]
# `(1, 1)`: one finished, one cancelled, and both facts are in the log. The cancelled
# task got a `CancelledError` raised inside it at its `await`, so it could still clean up
# (a `finally:` block, a closed connection) before it ended. The cell took about 0.2 s,
# not 30: the timeout, not the slowest task, decides how long a shutdown can take.
# `TaskRegistry`'s default of one second suits this notebook; a real app picks it from
# the work it expects (a mail send of a few seconds, say) and from how long its process
# manager lets a stopping process live, which the shutdown section comes back to.
#
# ## The middleware: start the tasks after the last body
#
# Now the piece that joins `bare` and the registry. For an `http` scope the middleware
# puts a fresh `BackgroundTasks` in `scope["background"]`, watches `send` for the last
# `http.response.body` (`more_body` false), and only then spawns the collected calls. If
# the handler failed before finishing its response, nothing runs: the work was asked for
# by a request that did not succeed.
#
# Bare's `Request` copies the scope dictionary, but the collector inside is the same
# object, so what the handler adds, the middleware sees. As usual for ASGI middleware
# (chapter 16), the class keeps the app it wraps; here it also keeps the registry it will
# spawn on.

# %%
#| export
class BackgroundMiddleware:
    """ASGI middleware: a BackgroundTasks per http request in ``scope["background"]``,
    spawned on ``registry`` once the response is complete. Other scopes pass through."""

    def __init__(self, app, registry: TaskRegistry):
        self.app, self.registry = app, registry

# %% [markdown]
# The work is in `__call__`. A `lifespan` or `websocket` scope passes straight through:
# there is no response body to watch. For `http`, read it in three steps: make the
# collector, wrap `send` in a spy that notices the last body, call the app; then, after
# the app returned, spawn the calls if the response was complete and the handler asked
# for any.

# %%
#| export
async def middleware_call(self, scope, receive, send) -> None:
    """Run the app with a fresh collector; spawn its calls once the response is complete."""
    if scope["type"] != "http":
        return await self.app(scope, receive, send)
    tasks, complete = BackgroundTasks(), False

    async def send_watching(message):
        nonlocal complete
        await send(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            complete = True

    await self.app({**scope, "background": tasks}, receive, send_watching)
    if complete and tasks:
        self.registry.spawn(tasks.run(self.registry.log),
                            name=f"{scope['method']} {scope['path']}")

BackgroundMiddleware.__call__ = middleware_call

# %% [markdown]
# Four details in that cell. `nonlocal complete` lets the inner `send_watching` change
# a variable of the enclosing call. `{**scope, "background": tasks}` gives the app a new
# dictionary, so the server's own scope is left untouched. The check comes *after*
# `await send(message)`: by the time `complete` is true, the last body has been handed
# on towards the server, so nothing the task does can delay it. And the spawn waits for
# the app to *return*, so a handler that sent its whole response and then raised starts
# nothing.
#
# A WebSocket gets no collector at all: its connection *is* the response, and there is
# no moment after it at which the client has everything. A WebSocket handler that wants
# work to outlive it can call `spawn` on the registry `with_background` returns.
#
# The task is named after the request (`POST /signup`), which is the name the log lines
# below will use. `tasks.run(...)` is only *called* here, which makes a coroutine object;
# the registry's `spawn` turns it into a running task.
#
# ## Wiring it into `bare`
#
# Two small functions finish the API. `background(request)` is what a handler calls to
# get its collector. `with_background(app)` installs the middleware and a shutdown hook
# that drains the registry; it returns the registry so you can look at it.

# %%
#| export
def background(request) -> BackgroundTasks:
    """The collector of this request (a bare Request, or anything with ``.scope``)."""
    tasks = request.scope.get("background")
    if tasks is None:
        raise RuntimeError("no background tasks here: call with_background(app) before "
                           "the app serves its first request")
    return tasks

# %% [markdown]
# Outside a request with the middleware, the collector is missing, and the error says what
# to do about it instead of a bare `KeyError`. The section "Break it first" below shows it.
#
# `with_background` does the wiring with two public hooks of `bare` from chapter 18.
# `app.add_middleware(factory, **options)` appends a middleware factory and passes the
# options on as keywords (here the registry) when the stack is built. Ours becomes the
# innermost layer so far, right around bare's core: it sees the handler's response first
# hand, and when its `await send(...)` of the last body returns, every layer outside has
# passed that message on towards the server.
#
# `app.stack_built` says whether the first request has already built the middleware
# stack. A middleware added after that would never be called, so `add_middleware` refuses
# it; `with_background` checks first, to refuse with a message that names itself before it
# has touched the app.

# %%
#| export
def with_background(app: Bare, *, timeout: float = 1.0,
                    log: logging.Logger = logger) -> TaskRegistry:
    """Give ``app`` background tasks: the middleware, and a shutdown hook that drains."""
    if app.stack_built:
        raise RuntimeError("the app already built its middleware stack: call "
                           "with_background(app) before its first request")
    registry = TaskRegistry(timeout=timeout, log=log)
    app.add_middleware(BackgroundMiddleware, registry=registry)

    async def drain_background(state) -> None:
        await registry.drain()

    app.on_shutdown(drain_background)
    return registry

# %% [markdown]
# Bare runs shutdown hooks in reverse order of adding. Hooks added *after*
# `with_background` (say, one that closes a database pool) therefore run *before* the
# drain; add `with_background` last if your tasks need those resources.
#
# Try the guard on an app that has already served. `barelab.call_asgi` sends it one
# request in-process (a 404: the app has no routes), and that request builds the stack:

# %%
served = Bare(name="served")
print("before:", served.stack_built, "| status:", barelab.call_asgi(served).status,
      "| after:", served.stack_built)
try:
    with_background(served)
except RuntimeError as error:
    print("RuntimeError:", error)

# %% [markdown]
# `stack_built` flipped from `False` to `True` with the first request, and from then on
# `with_background` refuses. Without the guard, the call would have returned a registry
# as if all was well, and the mistake would only show later, far from its cause, at the
# first request whose handler asks for a collector.
#
# ## Why not `request.call_after_response`?
#
# Chapter 18 gave bare a hook made for "after the response": a handler calls
# `request.call_after_response(fn, *args)`, and bare calls `fn` once the response is out.
# Why not build the collector on that, with no middleware at all? Two facts about the
# hook decide it. Here is the first, on a small app whose handler asks for a callback and
# then fails:

# %%
events = []
hooked = Bare(name="hooked")

@hooked.get("/")
async def hooked_home(request):
    request.call_after_response(events.append, "callback ran")
    raise ValueError("the sign-up failed")

print(barelab.call_asgi(hooked, raise_errors=False).status, events)

# %% [markdown]
# A 500, and the callback ran anyway. That is by design: bare runs the callbacks in a
# `finally`, after error responses and after a client that left too, so that cleanup
# work (closing a file, releasing a lock) always happens. For a welcome email it is the
# wrong rule: the sign-up failed, and no email should go out.
#
# The second fact is *where* the callbacks run: inside the app call, awaited one after
# the other before the app returns to the server. A callback that takes 0.3 s keeps the
# call open for 0.3 s:

# %%
@hooked.get("/slow")
async def slow_after(request):
    request.call_after_response(asyncio.sleep, 0.3)
    return "ok"

started = time.monotonic()
call = barelab.call_asgi(hooked, "GET", "/slow")
lasted = time.monotonic() - started
print(call.status, "| the app call lasted the callback too:", lasted > 0.25)

# %% [markdown]
# The client had its "ok" before the sleep began, like Starlette's background tasks, but
# the app call did not end until the callback did. A callback that only *spawned* the
# task on the registry would fix that, but not the first fact: a callback cannot tell a
# 500 from a 200. The middleware can, because it sees both the `send` of the last body
# and whether the app returned or raised. So the middleware stays, and
# `call_after_response` stays what it is good at: short work that must happen whatever
# the outcome.
#
# The two triggers on one time line, for a request whose handler returned normally:
#
# ```mermaid
# sequenceDiagram
#     participant S as server
#     participant M as BackgroundMiddleware
#     participant B as bare's respond
#     participant R as TaskRegistry
#     S->>M: app(scope, receive, send)
#     M->>B: the inner app, with scope["background"]
#     B->>S: the whole response, through M's watching send
#     Note over B: finally: the call_after_response callbacks, awaited here
#     B-->>M: returns (a 500 that escaped would raise instead)
#     M->>R: spawn the collected calls
#     M-->>S: returns: the app call is over, the tasks run on
# ```
#
# One line the middleware draws deserves a sentence. An error that bare *answers* (a
# `NotFound`, or an error one of your `exception_handler`s turns into a response) ends in
# a complete response and a normal return, so its tasks run. Only an error that escapes
# the app, the one that becomes a plain 500, stops them.
#
# ## Break it first: a handler without the middleware
#
# A handler asks for its collector on an app that never got `with_background`. Watch what
# the client sees, and what it does not see.

# %%
plain = Bare(name="plain")

@plain.post("/signup")
async def signup_plain(request):
    background(request).add_task(print, "welcome!")
    return {"ok": True}

plain

# %% [markdown]
# Nothing complains yet: the route is there, and `background` is only a function name
# until a request runs the handler. Send one. `raise_app_exceptions=False` makes the test
# client behave like a real server and answer the app's error with a 500.

# %%
with TestClient(plain, raise_app_exceptions=False) as client:
    answer = client.post("/signup", json={"email": "ada@example.com"})
answer.status_code, answer.text

# %% [markdown]
# A plain 500 with no traceback in it (bare's rule from chapter 18): the client learns
# nothing about the server's insides. The message that explains it is in the exception,
# which a test sees directly when the test client re-raises the app's errors (its
# default):

# %%
try:
    with TestClient(plain) as client:
        client.post("/signup", json={"email": "ada@example.com"})
except RuntimeError as error:
    print("RuntimeError:", error)

# %% [markdown]
# The message names the fix: one line, `with_background(app)`, called before the app
# serves anything. The next section does exactly that.
#
# ## A sign-up app with background tasks
#
# The demo app: `POST /signup` answers at once and leaves a welcome email (an async task
# that takes 0.5 s) and an audit line (a plain, blocking function) for later. `GET /fail`
# asks for a task that raises. Every task writes to `done`, with the time it ended.
#
# First the app and its wiring. Look at what `with_background` left on it: one middleware
# factory and one shutdown hook.

# %%
app = Bare(name="signup")
registry = with_background(app, timeout=1.0)
registry, app.middleware, [hook.__name__ for hook in app.shutdown_hooks]

# %% [markdown]
# The registry is empty for now. The middleware list holds a `functools.partial` of
# `BackgroundMiddleware` with the registry filled in: that is what
# `add_middleware(BackgroundMiddleware, registry=registry)` stored, and bare will call it
# with the inner app at the first request. (The class shows as `__main__.` because it
# was defined in this notebook; imported from `barelab.built.bare_tasks`, it would carry
# that module's name.) The shutdown hook is the drain.
#
# Now the two tasks. Each one appends to `done` a short label, its argument, and the
# `time.monotonic()` clock at the moment it finished; the timing proof below compares
# that clock with the client's.

# %%
done = []

async def send_welcome(email):
    await asyncio.sleep(0.5)
    done.append(("welcome sent", email, time.monotonic()))

def write_audit(line):
    time.sleep(0.1)
    done.append(("audit written", line, time.monotonic()))

inspect.iscoroutinefunction(send_welcome), inspect.iscoroutinefunction(write_audit)

# %% [markdown]
# That is the test `run_call` makes. `True` for the email: it is awaited on the server's
# loop, and its `asyncio.sleep` lets other requests run meanwhile. `False` for the audit:
# it goes to a worker thread, where its `time.sleep` blocks nobody.
#
# Both stand in for real work with a known duration, so the timings below have something
# to show: a real email call would take as long as the mail server makes it.
#
# The handlers only *ask*: `background(request).add_task(...)`, then return the answer.
# Note that `signup` reads the body *before* returning: once the response is sent, the
# request is over, and a task must get everything it needs as arguments (here the email
# address), never the `request` object itself. A task that read the body itself would
# find the request long finished, its body already consumed or its client gone.
#
# The same goes for what the request *holds*. A connection pool from `request.state` may
# be passed along, since it lives as long as the app. A per-request database session,
# opened for the handler and closed when the response is done, may not: the task would
# find it closed. Give a task the pool, and let it open what it needs itself.

# %%
@app.post("/signup")
async def signup(request):
    email = (await request.json())["email"]
    later = background(request)
    later.add_task(send_welcome, email)
    later.add_task(write_audit, f"signup {email}")
    return {"welcome": email}

@app.get("/fail")
async def fail(request):
    background(request).add_task(broken_task)
    return "accepted\n"

app

# %% [markdown]
# The app's outline lists both routes (bare answers `HEAD` wherever it answers `GET`).
# A `HEAD /fail` runs the task too: bare drops the body's bytes, but its last body
# message still goes out, empty, so the middleware sees a complete response.
#
# Note what the handlers do *not* contain: no thread, no `create_task`, no `try`. A
# handler only writes a to-do list; everything that makes the list safe lives in the
# middleware and the registry.

# %% [markdown]
# ## Proof by timing, over a real socket
#
# Serve the app, send one request with `barelab.http_request` (a real TCP connection),
# and note the moment the full response was in hand. The tasks run on the server's event
# loop, in a thread of its own, so the notebook cannot `await` them. A small helper polls
# instead, and gives up after a timeout rather than hang the notebook; it returns whether
# the condition finally held.

# %%
def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)
    return predicate()

wait_for(lambda: True)

# %% [markdown]
# `True` at once, since the condition already holds. Polling every 20 ms is crude, but
# only the notebook polls; the app never waits on its own tasks.
#
# Now start the server: the link it shows is live while the notebook runs.

# %%
server = barelab.serve(app)
server

# %% [markdown]
# Send the request and stamp the time the last byte arrived. `http_request` returns only
# once it has read the whole response, so `answered_at` is the moment the client was done.
# Look at the status and the body: the client is finished here.

# %%
done.clear(); task_log.lines.clear()
sent_at = time.monotonic()
result = barelab.http_request(server, "POST", "/signup", json={"email": "ada@example.com"})
answered_at = time.monotonic()
result.status, result.json()

# %% [markdown]
# The `200` and the JSON came back while both tasks were, at best, just starting: the
# email needs half a second and the audit a tenth.
#
# Now wait for the tasks and compare clocks. `time.monotonic()` is one clock for the whole
# process, so the client's stamp and the task's stamp can be compared even though they
# were taken in different threads. The exact durations change from run to run (the checks
# mask them), so the cell prints the fact that does not: the order of events.

# %%
wait_for(lambda: len(done) == 2)
welcome = next(entry for entry in done if entry[0] == "welcome sent")
print("tasks done:", sorted(entry[0] for entry in done))
print("response complete before the email was sent:", answered_at < welcome[2])
print(f"response took {answered_at - sent_at:.3f}s; "
      f"the email came {welcome[2] - answered_at:.3f}s after it")

# %% [markdown]
# The client had its whole response (status, headers and body, framed by
# `Content-Length`) while the email task was still sleeping: it knew the body was complete
# because it had read exactly `Content-Length` bytes, with no need to wait for anything
# else. The email came about half a second later, the length of its `asyncio.sleep`.
#
# The server's log agrees: one request, answered 200, with a duration far below the
# task's half second. The server measured the app call, and the app call ended as soon
# as the middleware had spawned the task.

# %%
server.log

# %% [markdown]
# ## A task that fails, seen by the client and by the log
#
# `GET /fail` accepts the work and the task raises afterwards. The client sees a normal 200:
# its request *was* accepted. The failure goes to the `bare.tasks` log with the traceback.

# %%
task_log.lines.clear()
result = barelab.http_request(server, "GET", "/fail")
wait_for(lambda: task_log.lines)
print(result.status_line, repr(result.text))
task_log.lines

# %% [markdown]
# This is the honest contract of background work: "accepted" does not mean "done". If the
# client needs to know the outcome, the app has to store it somewhere the client can ask
# (a job id and a status endpoint), which is a queue system's job, not a framework's.
# A stricter API would not even say 200 here, but `202 Accepted`, as the reindex route
# below does.
#
# ## Shutdown waits, then cancels
#
# Stopping a server sets off a chain of four steps, and the drain is the last link:
#
# 1. `server.stop()` stops accepting connections and sends the app a `lifespan.shutdown`
#    event (the ASGI lifespan protocol; `bare` handles it since chapter 18);
# 2. bare runs its shutdown hooks, the last added first;
# 3. the hook `with_background` added calls `registry.drain()`;
# 4. only when the drain returns does the app answer `lifespan.shutdown.complete`, and
#    only then does `stop()` return.
#
# Start a sign-up (its email task takes 0.5 s) and stop the server right away. Look at
# `done`: both tasks made it, because the drain waited for them within its 1 s timeout.

# %%
done.clear(); task_log.lines.clear()
barelab.http_request(server, "POST", "/signup", json={"email": "grace@example.com"})
server.stop()
sorted(entry[0] for entry in done), task_log.lines

# %% [markdown]
# Both tasks made it and the log is empty: nothing had to be cancelled. `server.stop()`
# returned only after the drain, so it took about as long as the tasks, not longer. The
# request itself was answered before `stop()` began: the drain is what kept the email
# from being cut off half-way.
#
# Now a task longer than the timeout: a route that leaves a 30-second job. `202 Accepted`
# is the status RFC 9110 (section 15.3.3) gives for exactly this: the request was accepted
# for processing, and the processing is not finished.

# %%
async def rebuild_index():
    await asyncio.sleep(30)
    done.append(("index rebuilt",))

@app.post("/reindex")
async def reindex(request):
    background(request).add_task(rebuild_index)
    return Response(status=202)

# %% [markdown]
# Adding a route after the app has served is fine: routes are looked up on every
# request, unlike the middleware stack, which is built once. The server was stopped, so
# serve the app again (same app, same registry) and ask for a reindex; `stop()` will then
# wait one second and cancel.

# %%
server = barelab.serve(app)
done.clear(); task_log.lines.clear()
print(barelab.http_request(server, "POST", "/reindex").status_line)

# %% [markdown]
# The client already has its `202 Accepted` ("I took the job, it is not done"). Now stop
# the server while the 30-second job runs, and read `done` and the log:

# %%
server.stop()
done, task_log.lines

# %% [markdown]
# Nothing in `done`: the index was never rebuilt. Two lines in the log say so: the drain
# gave up after its timeout and named the task, and the task's end was recorded as a
# cancellation. A silent loss has become a logged one, which is all a server can promise.
#
# Which timeout is right depends on your deployment. A process manager (systemd, a
# container runtime) gives a stopping process a grace period before it kills it outright,
# often ten to thirty seconds; the drain's timeout should end well inside it, or the kill
# arrives first and nothing gets logged at all. Docker, for one, waits 10 seconds by
# default, Kubernetes 30.
#
# ## In-process, with chapter 17's test client
#
# A test wants to check that the email task ran. In a session (`with TestClient(app)`),
# the client runs the lifespan: leaving the block sends `lifespan.shutdown`, so the drain
# has waited for the tasks. After the block, the task's entry is there.

# %%
done.clear()
with TestClient(app) as client:
    answer = client.post("/signup", json={"email": "linus@example.com"})
answer.status_code, sorted(entry[0] for entry in done)

# %% [markdown]
# A 200 and both entries: no `wait_for` needed, because the end of the `with` block did
# the waiting. That is the pattern for your own tests: assert on the response inside the
# block, and on the background work after it.
#
# Without a session there is no lifespan, so there is no drain. Each call gets a private
# event loop that is stopped (its tasks cancelled) right after the response. Same request,
# no `with`; compare the entries and the log:

# %%
done.clear(); task_log.lines.clear()
answer = TestClient(app).post("/signup", json={"email": "barbara@example.com"})
answer.status_code, sorted(entry[0] for entry in done), task_log.lines

# %% [markdown]
# The response was fine and the tasks were cancelled: logged, not silent, but not done.
# The one log line comes from the registry's done callback, named after the request
# (`POST /signup`) as the middleware named the task. Neither call reached its
# `done.append`: the email was still in its `asyncio.sleep` when its loop was stopped,
# and the audit, second in line, never started.
#
# Use a session whenever background tasks matter to a test. This mirrors production: a
# server run without lifespan support (uvicorn's `--lifespan off`, for instance) never
# sends `lifespan.shutdown`, so nothing drains and a stop simply cuts running tasks.
#
# ## Compared with Starlette and FastAPI
#
# Now you can read theirs. Starlette attaches a `BackgroundTasks` to a response
# (`Response(..., background=tasks)`), and FastAPI hands one to any handler that declares
# a parameter of that type. Both run the tasks after the last body, like yours, but
# *inside* the app call, the way `call_after_response` does. That has three
# consequences you can now name. The server's graceful shutdown, which waits for open
# requests, waits for the tasks too, with the server's timeout instead of one of your
# own. A task's error escapes the app call and lands in the server's log, after a
# response that already said 200. And a test client that waits for the app to return
# also waits for the tasks, so a test needs no session to see them done.
#
# Neither design is wrong. Theirs keeps each task tied to its request; yours lets the
# request end and makes the registry answer for the task. What both need, and what the
# next section shows going wrong without it, is someone who holds on to the running work.
#
# ## The trap: `asyncio.create_task` without a reference
#
# It is tempting to skip all this and write `asyncio.create_task(send_welcome(email))` in
# the handler. The asyncio documentation warns against exactly that, under
# [`asyncio.create_task`](https://docs.python.org/3/library/asyncio-task.html#asyncio.create_task):
#
# > Important: Save a reference to the result of this function, to avoid a task
# > disappearing mid-execution. The event loop only keeps weak references to tasks. A task
# > that isn't referenced elsewhere may get garbage collected at any time, even before
# > it's done.
#
# Watch it happen. The task below waits on a future that nothing else refers to; only a
# weak reference points at the task, so the notebook can ask whether it still exists. The
# loop's exception handler is swapped for one that keeps messages, and put back after.

# %%
loop = asyncio.get_running_loop()
loop_messages, old_handler = [], loop.get_exception_handler()
loop.set_exception_handler(lambda loop, context: loop_messages.append(context["message"]))

async def waits_for_a_reply():
    await asyncio.get_running_loop().create_future()    # a reply that never comes

loop.get_exception_handler() is not old_handler

# %% [markdown]
# `True`: the notebook's handler is in place. Create the task and keep only a weak
# reference to it: calling `task_ref()` gives the task back while it exists and `None` once
# it was freed, and, unlike a variable, it does not keep the task alive. Let the task
# start, then run the garbage collector (which, in a busy server, runs whenever it likes).

# %%
task_ref = weakref.ref(asyncio.create_task(waits_for_a_reply()))
await asyncio.sleep(0)
print("alive before gc.collect():", task_ref() is not None)
gc.collect()
print("alive after gc.collect():", task_ref() is not None)
loop_messages

# %% [markdown]
# Before the collection the task existed; after it, it was gone, although it never
# finished. It was collected while still pending: its work simply stopped, and the only trace
# is a message given to the loop's exception handler, which by default goes to the
# `asyncio` logger, not to your app's log. A task and the future it waits on refer to
# each other, but nothing outside does, so the collector frees them both.
#
# Why does this matter in a server? The garbage collector runs when Python decides, based
# on how many objects were created, not when you expect. The same code can send every
# welcome email on your laptop and lose one in a hundred under production load, and no
# log will say which.
#
# Errors vanish too. A task that fails and that nobody ever awaits reports its exception
# only when it is freed, and if some list keeps it around forever, never. The list below
# plays the part of a careless app's "keep the tasks somewhere" fix: it holds a reference,
# but nobody looks at the task again.

# %%
loop_messages.clear()
forgotten = [asyncio.create_task(fails_at_once())]
await asyncio.sleep(0.01)
print("failed and nobody knows:", forgotten[0].done(), loop_messages)
forgotten.clear(); gc.collect()
print("reported only when freed:", loop_messages)

# %% [markdown]
# The task failed during the `sleep`, yet `loop_messages` stayed empty while the list held
# it: nobody had asked for its exception, and asyncio waits until the task is freed to
# say so. Only then, far from the request that caused it, does "Task exception was never
# retrieved" appear, without the name of the request that started it.

# %% [markdown]
# Put the loop's handler back. `TaskRegistry` avoids both problems: its set holds a strong
# reference until the task ends, and its done callback retrieves the exception at once.

# %%
loop.set_exception_handler(old_handler)
loop.get_exception_handler() is old_handler

# %% [markdown]
# ## Summary
#
# - ASGI leaves room after the last `http.response.body`: the client can have its whole
#   response while the app keeps working. Background tasks live in that room.
# - `BackgroundTasks` collects calls; `BackgroundMiddleware` starts them only once the
#   response is complete and the app returned; plain functions go to a thread
#   (`asyncio.to_thread`), async ones are awaited on the loop.
# - A background error cannot reach the client, so it goes to a log (`bare.tasks`) with its
#   traceback; "accepted" is not "done".
# - `TaskRegistry` keeps a strong reference to each task (the loop keeps only weak ones),
#   and at `lifespan.shutdown` waits up to a timeout, then cancels and logs what is left.
# - `with_background(app)` plugs in through bare's public hooks: `add_middleware`, guarded
#   by `stack_built`, and `on_shutdown`. `request.call_after_response` is the wrong trigger
#   here: it runs after failed requests too, and inside the app call.
# - Tests check background work inside a `TestClient` session, whose end runs the drain.
# - This is in-process background work: it dies with the process. Work that must survive
#   a crash or a deploy belongs in a job queue with its own storage.

# %% [markdown]
# ## Exercises
#
# ### Exercise 1 — count what is pending
#
# Write `pending_names(registry)` that returns the sorted list of the names of the tasks
# a `TaskRegistry` is still running. The check spawns two tasks and asks. Hint: the
# registry's `tasks` attribute is a set of `asyncio.Task`, and `Task.get_name()` gives a
# task's name.

# %% tags=["solution"]
def pending_names(registry):
    ### BEGIN SOLUTION
    return sorted(task.get_name() for task in registry.tasks)
    ### END SOLUTION

# %% tags=["check"]
with check("Exercise 1"):
    assert callable(pending_names), "define pending_names first"
    probe = TaskRegistry(timeout=0.1)
    probe.spawn(asyncio.sleep(5), name="b-task")
    probe.spawn(asyncio.sleep(5), name="a-task")
    names = pending_names(probe)
    print(names)
    assert names == ["a-task", "b-task"], f"expected both names, sorted; got {names}"
    await probe.drain(0.01)
    assert pending_names(probe) == [], "after drain() nothing should be left running"

# %% [markdown]
# ### Exercise 2 — a handler that asks for two tasks
#
# Write an app `notes_app` (a `Bare` with `with_background(notes_app)`) with a route
# `POST /notes` that answers `201` with the text `saved\n` right away and leaves one task:
# the plain function `remember(text)` below, called with the request body decoded as
# UTF-8. The check posts in a `TestClient` session and looks at `remembered`. Hint: read
# the body in the handler (`await request.body()`), not in the task.

# %%
remembered = []

def remember(text):
    remembered.append(text)

# %% tags=["solution"]
### BEGIN SOLUTION
notes_app = Bare(name="notes")
with_background(notes_app)

@notes_app.post("/notes")
async def add_note(request):
    background(request).add_task(remember, (await request.body()).decode("utf-8"))
    return Response("saved\n", status=201)
### END SOLUTION

# %% tags=["check"]
with check("Exercise 2"):
    assert notes_app is not None, "define notes_app first"
    remembered.clear()
    with TestClient(notes_app) as client:
        answer = client.post("/notes", content=b"buy milk")
    print(answer.status_code, repr(answer.text), remembered)
    assert answer.status_code == 201, f"expected 201, got {answer.status_code}"
    assert answer.text == "saved\n", f"expected 'saved\\n', got {answer.text!r}"
    assert remembered == ["buy milk"], f"the task should have run once; got {remembered}"

# %% [markdown]
# ### Exercise 3 — no tasks for a failed request
#
# The middleware starts tasks only after a *complete* response. Write
# `tasks_after_500()` that builds a small app whose handler adds a task (appending to a
# list) and then raises `ValueError`, calls it in a `TestClient` session with
# `raise_app_exceptions=False`, and returns `(status_code, list_of_what_ran)`. A session
# matters here too: without one, there is no drain, and an empty list would prove nothing.

# %% tags=["solution"]
def tasks_after_500():
    ### BEGIN SOLUTION
    ran = []
    broken = Bare(name="broken")
    with_background(broken)

    @broken.get("/")
    async def home(request):
        background(request).add_task(ran.append, "task")
        raise ValueError("bug")

    with TestClient(broken, raise_app_exceptions=False) as client:
        status = client.get("/").status_code
    return status, ran
    ### END SOLUTION

# %% tags=["check"]
with check("Exercise 3"):
    assert callable(tasks_after_500), "define tasks_after_500 first"
    status, ran = tasks_after_500()
    print(status, ran)
    assert status == 500, f"a handler that raises gets a 500, not {status}"
    assert ran == [], f"no task should run for a failed request; got {ran}"

# %% [markdown]
# ### Exercise 4 — a slower drain
#
# Write `drained_counts(timeout)` that makes a `TaskRegistry(timeout=timeout)`, spawns
# `asyncio.sleep(0.05)` and `asyncio.sleep(0.3)`, drains it and returns what `drain()`
# returned. It is an `async def`: the check awaits it with two timeouts.

# %% tags=["solution"]
async def drained_counts(timeout):
    ### BEGIN SOLUTION
    registry = TaskRegistry(timeout=timeout)
    registry.spawn(asyncio.sleep(0.05), name="short")
    registry.spawn(asyncio.sleep(0.3), name="long")
    return await registry.drain()
    ### END SOLUTION

# %% tags=["check"]
with check("Exercise 4"):
    assert callable(drained_counts), "define drained_counts first"
    short_wait, long_wait = await drained_counts(0.15), await drained_counts(1.0)
    print(short_wait, long_wait)
    assert short_wait == (1, 1), f"0.15s: one finished, one cancelled; got {short_wait}"
    assert long_wait == (2, 0), f"1s: both finish; got {long_wait}"

# %% [markdown]
# ## Clean up
#
# Stop every server this chapter started (the number is how many were still running) and
# give the `bare.tasks` logger back its default behaviour.

# %%
logger.handlers.clear(); logger.propagate = True
barelab.stop_all()
