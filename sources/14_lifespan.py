# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 14. Lifespan
#
# A real app opens things before it can answer anyone: a database connection, an HTTP
# client, a model loaded from disk. And it should close them when the server stops. ASGI
# has a small protocol for exactly those two moments, called **lifespan**. In this
# chapter you speak it by hand, share a resource with every request through
# `scope["state"]`, make startup fail on purpose, and then let Starlette do the same with
# an async context manager.
#
# ## Learning goals
#
# By the end of this chapter you can:
#
# - follow the lifespan messages: `lifespan.startup` answered by `lifespan.startup.complete`
#   or `lifespan.startup.failed`, `lifespan.shutdown` answered by
#   `lifespan.shutdown.complete`;
# - open a resource once at startup, hand it to every request through `scope["state"]`,
#   and close it once at shutdown, with counters that prove it;
# - explain why the app must *update* `scope["state"]` and never *replace* it, and show
#   what breaks when it does;
# - make startup fail with a message the server reports, without leaking what was
#   already opened;
# - tell how a server treats an app without lifespan, and write a lifespan as an async
#   context manager, for your own app and for Starlette's `lifespan=`.

# %% [markdown]
# ## Why the app needs to be told
#
# Where would you open a database connection without lifespan? Three usual answers, each
# with a problem:
#
# - **At import time**, at the top of the module. It works until it does not: importing
#   the module for a test, or for a tool that only wants to read the routes, now connects
#   to a database. And nothing ever closes it.
# - **In the first request that needs it.** Two requests that arrive together both find
#   "no connection yet" and both open one. And again, nothing closes it.
# - **In every request.** Correct, and slow: a connection per request is what pools exist
#   to avoid.
#
# What the app wants is to hear "you are about to serve" and "you are done serving" from
# the server. That is the ASGI lifespan protocol (ASGI spec, "Lifespan Protocol"). The
# server calls the app once more, with a third kind of scope, `{"type": "lifespan"}`, and
# keeps that call open for as long as it serves:
#
# ```mermaid
# sequenceDiagram
#     participant S as Server
#     participant A as App (lifespan call)
#     S->>A: await app({"type": "lifespan", "state": {}}, receive, send)
#     A->>S: await receive()
#     S-->>A: lifespan.startup
#     Note over A: open the database, fill scope["state"]
#     A->>S: send(lifespan.startup.complete)
#     Note over S: only now: accept connections.<br/>Each request scope gets a copy of state.
#     S-->>A: lifespan.shutdown (when the server stops)
#     Note over A: close the database
#     A->>S: send(lifespan.shutdown.complete)
#     A-->>S: the call returns
# ```
#
# If opening fails, the app answers `lifespan.startup.failed` with a `message` instead,
# and the spec says the server "should log/print the message provided and then exit".
# A server never sends `lifespan.shutdown` to an app that did not complete startup.

# %% [markdown]
# ## A resource to share
#
# The resource here is an in-memory SQLite database: real enough to run queries, small
# enough to need no setup. `Database` wraps a connection and counts every open and close
# in `COUNTS`, so you can check later that startup and shutdown each ran exactly once.

# %%
import sqlite3
from collections import Counter

COUNTS = Counter()

class Database:
    def __init__(self):
        self.connection = sqlite3.connect(":memory:", check_same_thread=False)
        self.connection.execute("CREATE TABLE visits (path TEXT)")
        COUNTS["opened"] += 1

    def visit(self, path):
        self.connection.execute("INSERT INTO visits VALUES (?)", (path,))
        return self.connection.execute("SELECT count(*) FROM visits").fetchone()[0]

    def close(self):
        self.connection.close()
        COUNTS["closed"] += 1

db = Database()
print(db.visit("/"), db.visit("/about"))
db.close()
COUNTS

# %% [markdown]
# (`check_same_thread=False` lets a connection made in one thread be used in another. The
# servers in this chapter run the app in a thread of their own, as chapter 01 showed.)

# %% [markdown]
# ## Lifespan by hand
#
# First the part that answers requests. `count_visits` is an HTTP-only app that finds
# the database in `scope["state"]`, records the visit and says how many there were. It
# uses chapter 12's `send_text`, and raises on any other scope type.

# %%
from barelab.built.asgi_basics import send_json, send_text

async def count_visits(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError(f"count_visits speaks HTTP only, not {scope['type']!r}")
    count = scope["state"]["db"].visit(scope["path"])
    await send_text(send, f"visit number {count}\n")

# %% [markdown]
# Now the lifespan part. An app that speaks lifespan looks at `scope["type"]` first. For
# `"lifespan"` it loops: receive a message, act on it, answer. `scope["state"]` is a
# dict the server gave it; what the app puts in there, each request will find in its own
# `scope["state"]`.

# %%
async def visits_app(scope, receive, send):
    if scope["type"] != "lifespan":
        return await count_visits(scope, receive, send)
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            scope["state"]["db"] = Database()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            scope["state"]["db"].close()
            await send({"type": "lifespan.shutdown.complete"})
            return

# %% [markdown]
# Before any server, play the server's part in-process. `barelab.call_lifespan` calls
# the app with a lifespan scope, sends `lifespan.startup`, waits for the answer, then
# sends `lifespan.shutdown`, and records every message:

# %%
import barelab

COUNTS.clear()
barelab.call_lifespan(visits_app)

# %% [markdown]
# Four messages, two in each direction, in the order of the diagram. And the counters
# show one database opened and closed:

# %%
COUNTS

# %% [markdown]
# ## Served: startup before the first request, shutdown after the last
#
# Now a real server. `barelab.serve` runs the lifespan startup *before* it returns, so by
# the time the next cell runs, the database is open:

# %%
COUNTS.clear()
visits = barelab.serve(visits_app)
visits, COUNTS

# %% [markdown]
# Three requests. Each one finds the same database in its `scope["state"]`, so the count
# goes up; none of them opens anything:

# %%
for path in ("/", "/a", "/b"):
    print(barelab.http_request(visits, path=path).text, end="")
COUNTS

# %% [markdown]
# Still one open. Now stop the server. It stops accepting connections, lets running
# requests finish, sends `lifespan.shutdown`, and waits for the answer:

# %%
visits.stop()
COUNTS

# %% [markdown]
# One open, one close. The log tells the same story from the server's side, from
# "lifespan startup complete" to "lifespan shutdown complete":

# %%
visits.log

# %% [markdown]
# ### The state is copied into each request
#
# The spec (Lifespan Protocol, "Lifespan State") says: "The server will ensure that a
# *shallow copy* of the namespace is passed into each subsequent request/response call
# into the application." A new shallow copy for every request, so two rules follow:
#
# - the objects in it are shared: every request gets the very same `Database`;
# - the dict is not: a key a request adds to its `scope["state"]` is gone for the next
#   request.
#
# A small app shows both. It reports the `id` of its `db` (Python's identity number for
# an object), and whether a key written by an earlier request is there.

# %%
async def state_probe(scope, receive, send):
    if scope["type"] == "lifespan":
        return await visits_app(scope, receive, send)   # same lifespan as before
    state = scope["state"]
    seen_before = "note" in state
    state["note"] = "written by a request"
    await send_json(send, {"db id": id(state["db"]), "note seen": seen_before})

COUNTS.clear()
probe = barelab.serve(state_probe)
first, second = (barelab.http_request(probe).json() for _ in range(2))
print("the same db object:", first["db id"] == second["db id"])
print("note seen by the first request:", first["note seen"], "- by the second:",
      second["note seen"])

# %% [markdown]
# The same `Database` object both times, and the `note` the first request wrote never
# reached the second. Shared objects go in at startup; per-request
# data stays per request.

# %%
probe.stop()
COUNTS

# %% [markdown]
# ## The trap: replacing `scope["state"]`
#
# Who owns the dict? The server creates it, puts it in the lifespan scope, and later
# copies *that dict* into each request; in between it "will not interact with it other
# than to copy it" (Lifespan Protocol, "Lifespan State"). So the app must **update** the
# dict it was given. Here is a version that looks equivalent and is not: it builds a
# fresh dict and assigns it to `scope["state"]`.

# %%
async def replacing_app(scope, receive, send):
    if scope["type"] != "lifespan":
        return await count_visits(scope, receive, send)
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            scope["state"] = {"db": Database()}      # the bug: a new dict
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            scope["state"]["db"].close()
            await send({"type": "lifespan.shutdown.complete"})
            return

COUNTS.clear()
replacing = barelab.serve(replacing_app)
barelab.http_request(replacing, path="/").status

# %% [markdown]
# Startup completed, the database opened, and the request still failed with a 500. The
# server log has the traceback (the client got a plain 500, never a traceback):

# %%
print(replacing.log.errors[0].details.strip().splitlines()[-1])

# %% [markdown]
# `KeyError: 'db'`: the request's state is empty. Assigning to `scope["state"]` made the
# *lifespan scope* point at a new dict, but the server kept its own reference to the
# old one, still empty, and that is the one it copies. Plain Python, no server:

# %%
server_state = {}                         # what the server keeps
lifespan_scope = {"type": "lifespan", "state": server_state}
lifespan_scope["state"] = {"db": "..."}   # rebinding: the server's dict is untouched
print(server_state)
lifespan_scope = {"type": "lifespan", "state": server_state}
lifespan_scope["state"]["db"] = "..."     # updating: the server sees it
print(server_state)

# %% [markdown]
# Updating works; rebinding does not. `scope["state"].update({...})` is the safe way to
# put several things in at once. Stop the broken server: its shutdown still closes the
# database, through the dict it rebound.

# %%
replacing.stop()
COUNTS

# %% [markdown]
# ## Startup failure
#
# What if the database cannot be opened? The app answers `lifespan.startup.failed`
# with a `message` saying why. Say the app also needs a second resource, a cache, and
# that one fails after the database is already open. There will be no
# `lifespan.shutdown` after a failed startup, so the app must close the database
# itself before it reports the failure.

# %%
class CacheUnavailable(Exception):
    pass

def connect_cache():
    raise CacheUnavailable("cache at 127.0.0.1:6379 refused the connection")

async def fragile_app(scope, receive, send):
    if scope["type"] != "lifespan":
        return await count_visits(scope, receive, send)
    message = await receive()                     # lifespan.startup
    db = Database()
    try:
        scope["state"].update(db=db, cache=connect_cache())
    except Exception as error:
        db.close()                                # no shutdown will come: close it now
        await send({"type": "lifespan.startup.failed", "message": f"startup: {error}"})
        return
    await send({"type": "lifespan.startup.complete"})
    await receive()                               # lifespan.shutdown
    db.close()
    await send({"type": "lifespan.shutdown.complete"})

barelab.call_lifespan(fragile_app)

# %% [markdown]
# In-process, the transcript shows the failure and no `lifespan.shutdown`: `call_lifespan`
# only sends it after a `startup.complete`. Now on a server. The spec says a server that
# gets `lifespan.startup.failed` logs the message and exits; `barelab.serve` raises
# `barelab.LifespanStartupFailed` with the app's message in the cell that called it. The
# cell asks for a fixed port, so that it can check the port afterwards.

# %%
import socket

with socket.create_server(("127.0.0.1", 0)) as probe_socket:
    port = probe_socket.getsockname()[1]    # a free port, released at once
COUNTS.clear()
try:
    barelab.serve(fragile_app, port=port)
except barelab.LifespanStartupFailed as error:
    print(f"{type(error).__name__}: {error}")
COUNTS

# %% [markdown]
# The message reached the cell, and the database the app opened was closed again. The
# server did not start: it is not in barelab's list of running servers, and its port is
# free, so a new socket can bind it.

# %%
with socket.create_server(("127.0.0.1", port)):
    print("port is free:", True)
[server.name for server in barelab.running()]

# %% [markdown]
# ## An app without lifespan
#
# Most small apps never think about lifespan, like chapter 12's. What should a server do
# with them? The spec (Lifespan Protocol, "Scope") says: "If an exception is raised when
# calling the application callable with a `lifespan.startup` message or a `scope` with
# type `lifespan`, the server must continue but not send any lifespan events." So an app
# without lifespan raises on a scope type it does not know, and the server takes that as
# "no lifespan here". barelab's default, `lifespan="auto"`, does just that:

# %%
async def plain_app(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError(f"plain_app speaks HTTP only, not {scope['type']!r}")
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})

plain = barelab.serve(plain_app)
print(barelab.http_request(plain).status)
plain.log

# %% [markdown]
# It started at once, it answers, and the first line of the log says why there was no
# lifespan. (uvicorn's "ASGI 'lifespan' protocol appears unsupported" in chapter 12 is
# the same rule.) A server can also be told what to expect. With `lifespan="on"` an app
# that does not complete startup is an error, because the server was told it needs one:

# %%
try:
    barelab.serve(plain_app, name="plain_app_on", lifespan="on")
except barelab.LifespanStartupFailed as error:
    print(f"{type(error).__name__}: {error}")

# %% [markdown]
# `lifespan="off"` is the third mode: the app is never called with a lifespan scope.
# uvicorn has the same three (`--lifespan auto|on|off`).

# %% [markdown]
# ## Lifespan as an async context manager
#
# Look back at the three hand-written lifespans. Each one opens things, waits, closes
# them, and must not forget to close on the way out when something fails. Python has a
# construct for exactly that shape: the `async with` statement and its async context
# manager. With `contextlib.asynccontextmanager`, the code before `yield` is startup, the
# code after it is shutdown, and a `try`/`finally` closes what was opened whatever
# happens:

# %%
from contextlib import asynccontextmanager

@asynccontextmanager
async def database_lifespan(app):
    db = Database()
    try:
        yield {"db": db}          # startup is done; this goes into scope["state"]
    finally:
        db.close()                # shutdown, or a failure after the database opened

# %% [markdown]
# The lifespan takes the app as its argument and may yield a dict of state. That is the
# exact shape Starlette's `lifespan=` parameter expects, so the same function will serve
# both below.
#
# What is left is to speak the protocol around it, once, correctly. That goes into
# `barelab/built/app_lifespan.py`:

# %%
#| default_exp app_lifespan

# %% [markdown]
# Two small helpers first. `add_state` puts what the lifespan yielded into the server's
# dict, with `update`, never by assignment. The spec makes `state` optional ("if missing
# the server does not support this feature"), so yielding state to a server without it is
# an error, not something to drop silently. `describe` turns an exception into the
# `message` of a `failed` event.

# %%
#| export
# The app's side of the ASGI lifespan protocol, written once. with_lifespan(app, lifespan)
# answers lifespan scopes by entering and leaving an async context manager (the kind
# Starlette's lifespan= takes) and passes every other scope to the app unchanged.

def add_state(scope: dict, state) -> None:
    """Add the lifespan's yielded mapping to scope["state"], in place (None adds nothing)."""
    if state is None:
        return
    if "state" not in scope:
        raise RuntimeError("this server does not support lifespan state "
                           "(the lifespan scope has no 'state')")
    scope["state"].update(state)

def describe(error: BaseException) -> str:
    """The message of a lifespan.*.failed event: the exception's type and text."""
    return f"{type(error).__name__}: {error}"

# %% [markdown]
# Then the protocol itself. `async with` does the bookkeeping: whatever goes wrong inside
# the block, the context manager's clean-up runs before the exception reaches the
# `except`. The only decision left is which `failed` event to send: before
# `startup.complete` went out, it is a startup failure; after, a shutdown failure.

# %%
#| export
async def run_lifespan(scope: dict, receive, send, context) -> None:
    """Speak the lifespan protocol around ``context``, an async context manager: enter it
    on lifespan.startup, leave it on lifespan.shutdown, report failures with a message."""
    message = await receive()
    if message["type"] != "lifespan.startup":
        raise RuntimeError(f"expected lifespan.startup first, got {message['type']!r}")
    started = False
    try:
        async with context as state:
            add_state(scope, state)
            await send({"type": "lifespan.startup.complete"})
            started = True
            await receive()                        # lifespan.shutdown: leave the block
    except Exception as error:
        phase = "shutdown" if started else "startup"
        await send({"type": f"lifespan.{phase}.failed", "message": describe(error)})
        return
    await send({"type": "lifespan.shutdown.complete"})

# %% [markdown]
# And `with_lifespan` joins an app that knows nothing of lifespan to a lifespan function.
# The result is named after the app, so `barelab.serve` names its server sensibly.

# %%
#| export
def with_lifespan(app, lifespan):
    """``app`` plus a lifespan: lifespan scopes run ``lifespan(app)`` (an async context
    manager, as Starlette's lifespan= takes); every other scope goes to ``app``."""
    async def app_with_lifespan(scope, receive, send):
        if scope["type"] == "lifespan":
            await run_lifespan(scope, receive, send, lifespan(app))
        else:
            await app(scope, receive, send)
    name = getattr(app, "__name__", type(app).__name__)
    app_with_lifespan.__name__ = app_with_lifespan.__qualname__ = f"{name}_with_lifespan"
    return app_with_lifespan

# %% [markdown]
# `count_visits` never heard of lifespan. Give it one, and look at the transcript:

# %%
visits_v2 = with_lifespan(count_visits, database_lifespan)
COUNTS.clear()
barelab.call_lifespan(visits_v2)

# %% [markdown]
# The same four messages as the hand-written `visits_app`, and one open, one close:

# %%
COUNTS

# %% [markdown]
# Served, it behaves like `visits_app` too. Two requests, then a stop:

# %%
COUNTS.clear()
visits_server = barelab.serve(visits_v2)
print(visits_server.name)
print([barelab.http_request(visits_server, path=p).text.strip() for p in ("/x", "/y")])
visits_server.stop()
COUNTS

# %% [markdown]
# Now the failing cache again, as a context manager. There is no special path for
# failure: the `finally` closes the database, and `run_lifespan` reports the exception.

# %%
@asynccontextmanager
async def fragile_lifespan(app):
    db = Database()
    try:
        yield {"db": db, "cache": connect_cache()}
    finally:
        db.close()

COUNTS.clear()
call = barelab.call_lifespan(with_lifespan(count_visits, fragile_lifespan))
call.sent, COUNTS

# %% [markdown]
# `lifespan.startup.failed` with the exception as its message, and the database closed.
# The `yield` was never reached, because `connect_cache()` raised while the dict was
# being built; the `finally` ran all the same.

# %% [markdown]
# ## Starlette's `lifespan=`
#
# Starlette (and FastAPI, which passes `lifespan=` on to it) takes the same kind of
# function. Starlette speaks the protocol and copies the yielded dict into
# `scope["state"]`; a handler reads it as `request.state`. Here is `count_visits` as a
# Starlette app, with `database_lifespan` unchanged:

# %%
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

async def starlette_visit(request):
    count = request.state.db.visit(request.url.path)
    return PlainTextResponse(f"visit number {count}\n")

starlette_app = Starlette(routes=[Route("/{path:path}", starlette_visit)],
                          lifespan=database_lifespan)

# %% [markdown]
# In-process, the lifespan transcript is the same four messages:

# %%
COUNTS.clear()
barelab.call_lifespan(starlette_app)

# %% [markdown]
# And on a server, the same pattern: one open at startup, every request shares it, one
# close at stop.

# %%
COUNTS.clear()
starlette_server = barelab.serve(starlette_app, name="starlette_visits")
print([barelab.http_request(starlette_server, path=p).text.strip() for p in ("/a", "/b")])
print("while serving:", dict(COUNTS))
starlette_server.stop()
print("after stop:   ", dict(COUNTS))

# %% [markdown]
# Under the hood Starlette does what `run_lifespan` does: `async with` around the
# lifespan, `scope["state"].update(...)` with what it yields, `startup.failed` or
# `shutdown.failed` when it raises. (Two differences: its `message` is the whole
# traceback, and it re-raises the exception after sending it.) You wrote the same
# protocol in twenty lines.

# %% [markdown]
# ## Summary
#
# - The server calls the app once with `{"type": "lifespan"}` and keeps that call open
#   while it serves. `lifespan.startup` comes before the first request and is answered by
#   `lifespan.startup.complete` or `lifespan.startup.failed` with a `message`;
#   `lifespan.shutdown` comes when the server stops and is answered by
#   `lifespan.shutdown.complete`.
# - `scope["state"]` carries shared resources to requests: the server gives each request
#   a shallow copy of the dict it put in the lifespan scope. Shared objects go in at
#   startup; keys a request adds stay in that request.
# - **Update** `scope["state"]`, never replace it: the server keeps its own reference to
#   the dict, so a rebound `scope["state"]` is never seen by a request (`KeyError` and a
#   500).
# - A failed startup gets no shutdown, so close what was opened before reporting it.
#   `barelab.serve` raises `LifespanStartupFailed` with the app's message and frees the
#   port.
# - An app without lifespan raises on the lifespan scope; a server in `auto` mode (the
#   default in barelab and uvicorn) then carries on without lifespan and logs why.
# - A lifespan is best written as an async context manager. You built
#   `barelab.built.app_lifespan`: `with_lifespan(app, lifespan)`, `run_lifespan`,
#   `add_state` and `describe`. Starlette's `lifespan=` takes the very same function.

# %% [markdown]
# ## Exercises
#
# Each exercise has a cell for your answer and a check cell below it. Run the check cell:
# it prints ✅ when your answer works and says what is wrong when it does not.
#
# ### Exercise 1 — a lifespan by hand
#
# Write `boot_app` without any helper. On `lifespan.startup` it adds 1 to
# `BOOTS["startup"]` and puts `"booted_at": "startup"` into the state; on
# `lifespan.shutdown` it adds 1 to `BOOTS["shutdown"]`. Each HTTP request answers JSON
# `{"booted_at": ...}` with the value from its `scope["state"]` (use `send_json`).

# %% tags=["solution"]
BOOTS = Counter()

async def boot_app(scope, receive, send):
    ### BEGIN SOLUTION
    if scope["type"] == "http":
        return await send_json(send, {"booted_at": scope["state"]["booted_at"]})
    if scope["type"] != "lifespan":
        raise RuntimeError(f"unsupported scope type {scope['type']!r}")
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            BOOTS["startup"] += 1
            scope["state"]["booted_at"] = "startup"
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            BOOTS["shutdown"] += 1
            await send({"type": "lifespan.shutdown.complete"})
            return
    ### END SOLUTION

# %% tags=["check"]
from barelab.exercises import check

with check("Exercise 1"):
    BOOTS.clear()
    types = [message["type"] for message in barelab.call_lifespan(boot_app).sent]
    assert types == ["lifespan.startup.complete", "lifespan.shutdown.complete"], types
    BOOTS.clear()
    with barelab.serve(boot_app) as boot_server:
        reply = barelab.http_request(boot_server)
        assert reply.status == 200, f"status {reply.status}; see boot_server.log"
        assert reply.json() == {"booted_at": "startup"}, f"the answer is {reply.json()}"
    assert BOOTS == {"startup": 1, "shutdown": 1}, f"BOOTS is {dict(BOOTS)} after one run"

# %% [markdown]
# ### Exercise 2 — refuse to start without a token
#
# Write an async context manager `token_lifespan(app)` for `with_lifespan`. It reads
# `SETTINGS.get("token")`. If there is none, it raises an exception whose text contains
# `no API token`, so startup fails with that message. Otherwise it yields
# `{"token": ...}`.

# %% tags=["solution"]
SETTINGS = {}

@asynccontextmanager
async def token_lifespan(app):
    ### BEGIN SOLUTION
    token = SETTINGS.get("token")
    if not token:
        raise RuntimeError("no API token: set SETTINGS['token'] before starting")
    yield {"token": token}
    ### END SOLUTION

# %% tags=["check"]
with check("Exercise 2"):
    token_app = with_lifespan(plain_app, token_lifespan)
    SETTINGS.clear()
    sent = barelab.call_lifespan(token_app).sent
    assert sent[0]["type"] == "lifespan.startup.failed", f"startup answered {sent[0]}"
    assert "no API token" in sent[0]["message"], f"the message is {sent[0]['message']!r}"
    SETTINGS["token"] = "s3cret"
    sent = barelab.call_lifespan(token_app).sent
    assert [m["type"] for m in sent] == ["lifespan.startup.complete",
                                         "lifespan.shutdown.complete"], sent

# %% [markdown]
# ### Exercise 3 — a Starlette app with its own lifespan
#
# Build a Starlette app `notes_app` with one route, `POST /notes`, that stores the request
# body in a list kept in the lifespan state and answers the number of notes as text. Its
# lifespan opens a `Database` (so `COUNTS` shows it) and yields
# `{"db": db, "notes": []}`; it closes the database on the way out.

# %% tags=["solution"]
### BEGIN SOLUTION
@asynccontextmanager
async def notes_lifespan(app):
    db = Database()
    try:
        yield {"db": db, "notes": []}
    finally:
        db.close()

async def add_note(request):
    request.state.notes.append(await request.body())
    return PlainTextResponse(str(len(request.state.notes)))

notes_app = Starlette(routes=[Route("/notes", add_note, methods=["POST"])],
                      lifespan=notes_lifespan)
### END SOLUTION

# %% tags=["check"]
with check("Exercise 3"):
    COUNTS.clear()
    with barelab.serve(notes_app, name="notes_app") as notes_server:
        answers = [barelab.http_request(notes_server, "POST", "/notes", body=text).text
                   for text in ("one", "two")]
        assert answers == ["1", "2"], f"the answers were {answers}, expected ['1', '2']"
        assert COUNTS["opened"] == 1, f"{COUNTS['opened']} databases opened, expected 1"
    assert COUNTS == {"opened": 1, "closed": 1}, f"COUNTS is {dict(COUNTS)} after the stop"

# %% [markdown]
# ## Clean up
#
# Stop every server this chapter started. The number is how many were still running.

# %%
barelab.stop_all()
