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
#   `lifespan.shutdown.complete` or `lifespan.shutdown.failed`;
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
# server calls the app once more, with a third kind of scope next to `"http"` and
# `"websocket"`: `{"type": "lifespan"}`. And it keeps that call open for as long as it
# serves:
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
# Read the diagram top to bottom: one call to the app, two messages in, two messages out.
# The app's call is paused at `await receive()` the whole time the server is serving
# requests; the server wakes it up again only to say "shut down".
#
# If opening fails, the app answers `lifespan.startup.failed` with a `message` instead,
# and the spec says the server "should log/print the message provided and then exit". So
# after a failed startup no `lifespan.shutdown` follows: the server never served, and it
# is already on its way out. Closing can fail too; the app then answers
# `lifespan.shutdown.failed`, and you will see that one near the end of the chapter.
#
# "Once" means once per event loop. The spec says lifespans "should be executed once per
# event loop that will be processing requests", so a server started with four worker
# processes runs the startup four times and opens four databases (or pools). Each worker
# serves its own requests with its own.

# %% [markdown]
# ## A resource to share
#
# The resource here is an in-memory SQLite database: real enough to run queries, small
# enough to need no setup. `Database` has three methods:
#
# - `__init__` opens a connection and creates a `visits` table (this is the slow,
#   do-it-once part that a real app would do at startup);
# - `visit(path)` records one visit and returns how many there are so far;
# - `close()` closes the connection.
#
# Both ends add 1 to a counter in `COUNTS`. Those two numbers are what you will check
# after every experiment: a lifespan that works leaves `opened` and `closed` equal, and
# at 1.

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

# %% [markdown]
# Try it without any server: open one, record two visits, close it. `visit` returns how
# many rows the table holds after the insert.

# %%
db = Database()
print(db.visit("/"), db.visit("/about"))
db.close()
COUNTS

# %% [markdown]
# `1 2`: the second visit found the first one still there, because both went through the
# same connection. That is the whole point of opening it once. And the counter reads one
# open, one close.
#
# (`check_same_thread=False` lets a connection made in one thread be used in another.
# SQLite refuses that by default, and you will need it below: `barelab.call_asgi` runs
# the app on a private event loop in a worker thread, while you open the database here,
# in the notebook's own thread.)

# %% [markdown]
# ## Lifespan by hand
#
# First the part that answers requests. `count_visits` is an HTTP-only app that finds
# the database in `scope["state"]`, records the visit and says how many there were. It
# answers with chapter 12's `send_text`, which sends `http.response.start` (200,
# `text/plain`) and then the body. On any scope type but `"http"` it raises.

# %%
from barelab.built.asgi_basics import send_json, send_text

async def count_visits(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError(f"count_visits speaks HTTP only, not {scope['type']!r}")
    count = scope["state"]["db"].visit(scope["path"])
    await send_text(send, f"visit number {count}\n")

# %% [markdown]
# `count_visits` does not care where the database comes from, only that
# `scope["state"]["db"]` holds one. You can check that with `barelab.call_asgi` and a
# scope you fill in yourself:

# %%
import barelab

db = Database()
print(barelab.call_asgi(count_visits, path="/hello", scope={"state": {"db": db}}).text)
db.close()

# %% [markdown]
# The `scope=` keys replace those of the scope `call_asgi` builds, so the app found a
# `state` with a `db` in it, and answered. What is missing is someone who opens the
# database before the first request and closes it after the last. That is the lifespan
# part of the app. An app that speaks lifespan looks at `scope["type"]` first. For
# `"lifespan"` it waits for startup, opens the database, answers; then waits for
# shutdown, closes it, answers. Look for the two `await receive()` calls: each one waits
# for the server.

# %%
async def visits_app(scope, receive, send):
    if scope["type"] != "lifespan":
        return await count_visits(scope, receive, send)
    await receive()                                    # lifespan.startup
    scope["state"]["db"] = Database()
    await send({"type": "lifespan.startup.complete"})
    await receive()                                    # lifespan.shutdown
    scope["state"]["db"].close()
    await send({"type": "lifespan.shutdown.complete"})

# %% [markdown]
# For `"http"` scopes, `return await count_visits(...)` hands the request over and ends
# the function there; everything below that line is the lifespan.
#
# Straight-line code is enough: a server sends exactly these two messages, in this order,
# and its own example is written the same way. (You will also meet lifespans written as a
# `while True` loop that checks each message's type; Exercise 1 asks for one.)
#
# `scope["state"]` is a dict the server put in the lifespan scope. What the app stores
# in it, each request will find in its own `scope["state"]`.
#
# Before any server, play the server's part in-process. `barelab.call_lifespan` calls
# the app with a lifespan scope, sends `lifespan.startup`, waits for the answer, then
# sends `lifespan.shutdown`, and records every message. Each experiment in this chapter
# starts with `COUNTS.clear()`, so the counters show that experiment alone:

# %%
COUNTS.clear()
barelab.call_lifespan(visits_app)

# %% [markdown]
# Each row is one message. `→ app` is a message the app received (the server speaking),
# `app →` one it sent. Four rows, in the order of the diagram. Click "scope: lifespan" to
# see the scope the app got: its `state` is the dict the app filled. The counters show
# that one database was opened and closed:

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
# The server says it is running, and `COUNTS` already reads `opened: 1` although no
# request has arrived yet. That is the startup you wrote, run by the server.
#
# Three requests. Each one finds the same database in its `scope["state"]`, so the count
# goes up; none of them opens anything:

# %%
for path in ("/", "/a", "/b"):
    print(barelab.http_request(visits, path=path).text, end="")
COUNTS

# %% [markdown]
# Visit number 1, 2, 3: the table remembered the earlier requests, so all three wrote to
# one database. Still one open.
#
# Now stop the server. It stops accepting connections, lets running requests finish,
# sends `lifespan.shutdown`, and waits for the answer:

# %%
visits.stop()
COUNTS

# %% [markdown]
# One open, one close. The log tells the same story from the server's side:

# %%
visits.log

# %% [markdown]
# Look at the order of the first two lines: "lifespan startup complete" comes *before*
# "serving ... on http://...". The server did not take a single connection until the app
# said it was ready, just as the spec asks ("A server must wait for this message before
# it starts processing connections"). At the other end, "lifespan shutdown complete"
# comes after the last request.
#
# The spec also asks that "lifespans and requests are run in the same event loop", and
# barelab does so. That matters for async clients, which are tied to the loop that
# created them: a connection pool opened at startup can be used by every request because
# they all run on that same loop.

# %% [markdown]
# ### The state is copied into each request
#
# The spec (Lifespan Protocol, "Lifespan State") says: "The server will ensure that a
# *shallow copy* of the namespace is passed into each subsequent request/response call
# into the application." A shallow copy is what `dict(state)` makes: a new dict whose
# values are the very same objects. A new one for every request, so two rules follow:
#
# - the objects in it are shared: every request gets the very same `Database`;
# - the dict is not: a key a request adds to its `scope["state"]` is gone for the next
#   request.
#
# A small app shows both. It reports the `id` of its `db` (Python's identity number for
# an object: equal ids mean the same object), and whether a key written by an earlier
# request is there. For lifespan it reuses `visits_app`. Look at the order in the body:
# it checks for `note` *before* it writes `note`, so each answer tells what the request
# found when it arrived.

# %%
async def state_probe(scope, receive, send):
    if scope["type"] == "lifespan":
        return await visits_app(scope, receive, send)
    state = scope["state"]
    seen_before = "note" in state
    state["note"] = "written by a request"
    await send_json(send, {"db id": id(state["db"]), "note seen": seen_before})

# %% [markdown]
# Serve it and make two requests. If the dict were shared, the second request would see
# the first one's `note`:

# %%
COUNTS.clear()
probe = barelab.serve(state_probe)
first, second = (barelab.http_request(probe).json() for _ in range(2))
print("the same db object:", first["db id"] == second["db id"])
print("the first request found a note:", first["note seen"])
print("the second request found a note:", second["note seen"])

# %% [markdown]
# The same `Database` object both times, and the `note` the first request wrote never
# reached the second. Shared objects go in at startup; per-request data stays per
# request. Stop the probe; it shares `visits_app`'s lifespan, so it closes its database
# too:

# %%
probe.stop()
COUNTS

# %% [markdown]
# ## The trap: replacing `scope["state"]`
#
# Who owns the dict? The server creates it, puts it in the lifespan scope, and later
# copies *that dict* into each request; in between it "will not interact with it other
# than to copy it" (Lifespan Protocol, "Lifespan State"). So the app must **update** the
# dict it was given. Here is a version that looks equivalent and is not. Only one line
# differs from `visits_app`: it builds a fresh dict and assigns it to `scope["state"]`.

# %%
async def replacing_app(scope, receive, send):
    if scope["type"] != "lifespan":
        return await count_visits(scope, receive, send)
    await receive()                                    # lifespan.startup
    scope["state"] = {"db": Database()}                # the bug: a new dict
    await send({"type": "lifespan.startup.complete"})
    await receive()                                    # lifespan.shutdown
    scope["state"]["db"].close()
    await send({"type": "lifespan.shutdown.complete"})

# %% [markdown]
# Before you run the next cell, guess: startup sends `startup.complete` as before, so the
# server starts. What will a request find in its `scope["state"]`? Serve it and ask for
# one page:

# %%
COUNTS.clear()
replacing = barelab.serve(replacing_app)
barelab.http_request(replacing, path="/").status, COUNTS

# %% [markdown]
# Startup completed, the database opened, and the request still failed with a 500. The
# client got a plain 500 and no details, as it should; the traceback went to the server
# log. `log.errors` holds each error with its traceback in `details`. Its last three
# lines are the line that failed and the exception:

# %%
print("\n".join(replacing.log.errors[0].details.strip().splitlines()[-3:]))

# %% [markdown]
# `KeyError: 'db'`, and the `^` marks point at `["db"]`: the request's state is empty.
# Assigning to `scope["state"]` made the *lifespan scope* point at a new dict, but the
# server kept its own reference to the old one, still empty, and that is the one it
# copies. Drawn out, with arrows for "refers to":
#
# ```mermaid
# flowchart LR
#     server["the server's own variable"] --> old["dict A: {}, copied for each request"]
#     scope["lifespan scope['state']"] -. before the bug .-> old
#     scope -- "after scope['state'] = {...}" --> new["dict B: {'db': Database}"]
# ```
#
# Nothing in Python can reach into the server and move its arrow. Only a change made
# *inside* dict A is something the server will see.
#
# Plain Python shows the same thing with no server at all. `server_state` plays the dict
# the server keeps; the app rebinds the scope's key:

# %%
server_state = {}                         # what the server keeps
lifespan_scope = {"type": "lifespan", "state": server_state}
lifespan_scope["state"] = {"db": "..."}   # rebinding: the server's dict is untouched
server_state

# %% [markdown]
# Still empty. Now the same thing with an update of the dict that is already there:

# %%
lifespan_scope = {"type": "lifespan", "state": server_state}
lifespan_scope["state"]["db"] = "..."     # updating: the server sees it
server_state

# %% [markdown]
# Updating works; rebinding does not. `scope["state"].update({...})` is the safe way to
# put several things in at once.
#
# Stop the broken server. Its shutdown still finds the database and closes it: the
# lifespan scope's `"state"` now points at the new dict, and that one does hold `db`.

# %%
replacing.stop()
COUNTS

# %% [markdown]
# ## Startup failure
#
# What if something cannot be opened? The app answers `lifespan.startup.failed` with a
# `message` saying why. Say the app also needs a second resource, a cache, and that it is
# down. `connect_cache` stands in for the real client, which would raise something like
# this:

# %%
class CacheUnavailable(Exception):
    pass

def connect_cache():
    raise CacheUnavailable("cache at 127.0.0.1:6379 refused the connection")

# %% [markdown]
# The app opens the database first, then the cache. When the cache fails, the database is
# already open, and no `lifespan.shutdown` will ever come to close it. So the app must
# close it itself before it reports the failure. Look for the `db.close()` in the
# `except` block:

# %%
async def fragile_app(scope, receive, send):
    if scope["type"] != "lifespan":
        return await count_visits(scope, receive, send)
    await receive()                                    # lifespan.startup
    db = Database()
    try:
        scope["state"].update(db=db, cache=connect_cache())
    except Exception as error:
        db.close()                                     # no shutdown will come
        await send({"type": "lifespan.startup.failed", "message": f"startup: {error}"})
        return
    await send({"type": "lifespan.startup.complete"})
    await receive()                                    # lifespan.shutdown
    db.close()
    await send({"type": "lifespan.shutdown.complete"})

# %% [markdown]
# In-process first, with `call_lifespan`. Expect two rows this time, not four:

# %%
COUNTS.clear()
barelab.call_lifespan(fragile_app)

# %% [markdown]
# Two rows only: `lifespan.startup` in, `lifespan.startup.failed` out, with the message.
# `call_lifespan`, like a server, sends `lifespan.shutdown` only after a
# `startup.complete`. The counters confirm the database did not leak:

# %%
COUNTS

# %% [markdown]
# Now on a server. The spec says a server that gets `lifespan.startup.failed` logs the
# message and exits. A notebook cell should not kill the kernel, so `barelab.serve`
# raises `barelab.LifespanStartupFailed` with the app's message instead, in the cell that
# called it.
#
# To check afterwards that the port was given back, the next cell serves on a port
# chosen up front. Binding a socket to port 0 makes the operating system pick a free
# one; the socket is closed again at once and only the number is kept:

# %%
import socket

with socket.create_server(("127.0.0.1", 0)) as free_socket:
    port = free_socket.getsockname()[1]
f"127.0.0.1:{port} is free, for now"

# %% [markdown]
# Serve `fragile_app` on that port:

# %%
COUNTS.clear()
try:
    barelab.serve(fragile_app, port=port)
except barelab.LifespanStartupFailed as error:
    print(f"{type(error).__name__}: {error}")
COUNTS

# %% [markdown]
# The message reached the cell, and the database the app opened was closed again. Under
# uvicorn the same app would print "Application startup failed. Exiting." after the
# message, and the process would exit with status 3, so a process manager sees that it
# never came up.
#
# Here the server did not start: it is not in barelab's list of running servers, and
# its port is free, so a new socket can bind it.

# %%
with socket.create_server(("127.0.0.1", port)):
    print("port is free:", True)
[server.name for server in barelab.running()]

# %% [markdown]
# The empty list is barelab's list of running servers: every server this chapter started
# so far has been stopped, and the failed one never joined it.

# %% [markdown]
# ## An app without lifespan
#
# Most small apps never think about lifespan, like chapter 12's. What should a server do
# with them? The spec (Lifespan Protocol, "Scope") says: "If an exception is raised when
# calling the application callable with a `lifespan.startup` message or a `scope` with
# type `lifespan`, the server must continue but not send any lifespan events." So an app
# without lifespan raises on a scope type it does not know, and the server takes that as
# "no lifespan here". The spec adds why: "This allows for compatibility with
# applications that do not support the lifespan protocol", including every app written
# before lifespan existed. Raising is the app's way of saying "not for me". Here is
# such an app; it answers every request with an empty 204:

# %%
async def plain_app(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError(f"plain_app speaks HTTP only, not {scope['type']!r}")
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})

# %% [markdown]
# barelab's default, `lifespan="auto"`, follows that rule. Serve it and look at the log:

# %%
plain = barelab.serve(plain_app)
print(barelab.http_request(plain).status)
plain.log

# %% [markdown]
# It started at once and it answers. The first line of the log says why there was no
# lifespan: the app raised on the lifespan scope, and the server carried on without it.
# (uvicorn's "ASGI 'lifespan' protocol appears unsupported" in chapter 12 is the same
# rule.)
#
# A server can also be told what to expect. With `lifespan="on"` an app that does not
# complete startup is an error, because the server was told it needs one:

# %%
try:
    barelab.serve(plain_app, name="plain_app_on", lifespan="on")
except barelab.LifespanStartupFailed as error:
    print(f"{type(error).__name__}: {error}")

# %% [markdown]
# The message names the rule (`lifespan='on'`) and then the app's own exception, so you
# can tell at once that the app does not speak lifespan at all.
#
# The third mode is `lifespan="off"`: the app is never called with a lifespan scope. For
# an app that needs its startup, that breaks every request. Serve `visits_app` that way:

# %%
COUNTS.clear()
visits_off = barelab.serve(visits_app, name="visits_off", lifespan="off")
print(barelab.http_request(visits_off).status, dict(COUNTS))
print(visits_off.log.errors[0].details.strip().splitlines()[-1])

# %% [markdown]
# A 500, no database ever opened, and the same `KeyError: 'db'` as the trap above:
# the requests got a state that nobody filled. uvicorn has the same three modes
# (`--lifespan auto|on|off`); `auto` is the default in both. Side by side:
#
# | mode | app completes startup | app raises on the lifespan scope |
# | --- | --- | --- |
# | `auto` | serves, with lifespan | serves, without lifespan (logged) |
# | `on` | serves, with lifespan | does not start: an error |
# | `off` | lifespan never called | lifespan never called |
#
# `off` is for the rare case where you must skip the app's own startup on purpose, for
# example because something else already did that work. Otherwise leave it on `auto`.

# %%
visits_off.stop()

# %% [markdown]
# ## Lifespan as an async context manager
#
# Look back at the three hand-written lifespans. Each one opens things, waits, closes
# them, and `fragile_app` needed an extra `try`/`except` so as not to leak on the way out
# when something failed. Python has a construct for exactly that shape: the `async with`
# statement and its async context manager.
#
# With `contextlib.asynccontextmanager` you write one as a generator function. The code
# before `yield` runs on the way in (startup), the code after it on the way out
# (shutdown), and a `try`/`finally` around the `yield` closes what was opened whatever
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
# You can drive it by hand with `async with` right in a cell (Jupyter lets a cell
# `await`). Inside the block the database is open and the yielded dict is bound to
# `state`; when the block ends, it is closed:

# %%
COUNTS.clear()
async with database_lifespan(None) as state:
    print("inside the block:", list(state), dict(COUNTS))
COUNTS

# %% [markdown]
# The `print` ran inside the block: the state holds `db`, and the database is open but
# not yet closed. Leaving the block ran the `finally`, and now it reads one and one.
#
# Each moment of the lifespan protocol has a place in that function:
#
# | lifespan protocol | in the async context manager |
# | --- | --- |
# | `lifespan.startup` arrives | the code before `yield` runs |
# | `lifespan.startup.complete` | `yield` is reached; what it yields is the state |
# | `lifespan.shutdown` arrives | the code after `yield` runs (here the `finally`) |
# | a `failed` event | an exception comes out of the `async with` |
#
# The lifespan takes the app as its argument (here `None`, since it does not use it) and
# may yield a dict of state. That is the exact shape Starlette's `lifespan=` parameter
# expects, so the same function will serve both below.
#
# What is left is to speak the protocol around it, once, correctly. That goes into
# `barelab/built/app_lifespan.py`:

# %%
#| default_exp app_lifespan

# %% [markdown]
# First a small helper. `add_state` puts what the lifespan yielded into the server's
# dict, with `update`, never by assignment: the trap above, avoided once and for all.
# The spec makes `state` optional ("if missing the server does not support this
# feature"), so yielding state to a server without it is an error, not something to drop
# silently.

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

# %% [markdown]
# Give it a scope whose `state` is a dict you keep, as a server would. A lifespan that
# yields nothing yields `None`, which adds nothing:

# %%
server_state = {}
add_state({"type": "lifespan", "state": server_state}, {"db": "a database"})
add_state({"type": "lifespan", "state": server_state}, None)
server_state

# %% [markdown]
# The server's own dict now holds `db`, because `add_state` changed it in place; the
# `None` left it as it was. And a scope without `state`, as from a server that predates
# it:

# %%
try:
    add_state({"type": "lifespan"}, {"db": "a database"})
except RuntimeError as error:
    print(error)

# %% [markdown]
# The second helper, `describe`, turns an exception into the `message` of a `failed`
# event. The type name matters: "refused the connection" alone does not say which
# client refused.

# %%
#| export
def describe(error: BaseException) -> str:
    """The message of a lifespan.*.failed event: the exception's type and text."""
    return f"{type(error).__name__}: {error}"

# %%
describe(CacheUnavailable("cache at 127.0.0.1:6379 refused the connection"))

# %% [markdown]
# That is the text that goes into the `message` of the failed event, and so into the
# server's log.
#
# Then the protocol itself, `run_lifespan`. Read it in the order things happen:
#
# 1. The first message must be `lifespan.startup`; anything else is a server bug.
# 2. `async with context as state` runs the lifespan up to its `yield`: startup.
# 3. The yielded state goes into the server's dict, `startup.complete` goes out, and
#    `started` remembers that it did.
# 4. The block then waits in `await receive()` while the server serves. When
#    `lifespan.shutdown` arrives, the block ends and the code after `yield` runs.
# 5. If anything raised on the way, in startup or in shutdown, the context manager has
#    already cleaned up by the time the `except` runs. The only decision left is which
#    `failed` event to send, and `started` makes it.
#
# It catches `Exception`, not `BaseException`. When a server gives up and cancels the
# call, the cancellation goes on up to the server as it should, after the `async with`
# has closed what it opened.

# %%
#| export
async def run_lifespan(scope: dict, receive, send, context) -> None:
    """Enter ``context`` (an async context manager) on startup, leave it on shutdown."""
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
# To try it, an app must call it for lifespan scopes and pass everything else on. Here
# is that app written out for `count_visits` and `database_lifespan`. Each lifespan scope
# gets a fresh `database_lifespan(...)`, called with the app, as Starlette calls it:

# %%
async def visits_by_hand(scope, receive, send):
    if scope["type"] == "lifespan":
        return await run_lifespan(scope, receive, send, database_lifespan(visits_by_hand))
    await count_visits(scope, receive, send)

COUNTS.clear()
[message["type"] for message in barelab.call_lifespan(visits_by_hand).sent], COUNTS

# %% [markdown]
# `startup.complete`, then `shutdown.complete`, and one open, one close. The wrapper
# itself is the same four lines for every app, so it is worth writing once.
# `with_lifespan` joins an app that knows nothing of lifespan to a lifespan function. The
# result is named after the app, so `barelab.serve` names its server sensibly.

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
# `app_with_lifespan` is a closure: each call to `with_lifespan` makes a new one that
# remembers its own `app` and `lifespan`. It calls `lifespan(app)` afresh for every
# lifespan scope, because a context manager made by `@asynccontextmanager` can be
# entered only once.
#
# `count_visits` never heard of lifespan. Give it one:

# %%
visits_v2 = with_lifespan(count_visits, database_lifespan)
COUNTS.clear()
[message["type"] for message in barelab.call_lifespan(visits_v2).sent], COUNTS

# %% [markdown]
# The same answers as the hand-written `visits_app`, and one open, one close. Served,
# it behaves like `visits_app` too. Two requests, then a stop; the first line is the name
# `with_lifespan` gave it:

# %%
COUNTS.clear()
visits_server = barelab.serve(visits_v2)
print(visits_server.name)
print([barelab.http_request(visits_server, path=p).text.strip() for p in ("/x", "/y")])
visits_server.stop()
COUNTS

# %% [markdown]
# The server is `count_visits_with_lifespan`, the two visits were counted in one
# database, and stopping it closed that database. You got `visits_app`'s behaviour
# without writing a line of the protocol for `count_visits`.

# %% [markdown]
# ### Failures, startup and shutdown
#
# Now the failing cache again, as a context manager. Compare it with `fragile_app`:
# there is no special path for failure. `connect_cache()` raises while the dict to
# yield is being built, so the `yield` is never reached; the `finally` runs all the
# same.

# %%
@asynccontextmanager
async def fragile_lifespan(app):
    db = Database()
    try:
        yield {"db": db, "cache": connect_cache()}
    finally:
        db.close()

# %% [markdown]
# Run it through `with_lifespan`, and look at what the app sent:

# %%
COUNTS.clear()
call = barelab.call_lifespan(with_lifespan(count_visits, fragile_lifespan))
call.sent, COUNTS

# %% [markdown]
# `lifespan.startup.failed`, with `describe`'s message: the exception's type and text,
# where `fragile_app` had written its own `startup: ...`. And the database closed, by
# the `finally` this time, not by an `except` you had to remember.
#
# The other branch of `run_lifespan` is a failure *after* startup completed. Say the app
# saves its visits somewhere when it stops, and the disk is full. The `raise` below
# stands in for that save:

# %%
@asynccontextmanager
async def saving_lifespan(app):
    db = Database()
    try:
        yield {"db": db}
        raise OSError("disk full while saving the visits")   # the save at shutdown
    finally:
        db.close()

# %% [markdown]
# The `raise` sits after the `yield`, so it runs only when the block is left, at
# shutdown. This time startup completes, so `started` is true when the exception reaches
# `run_lifespan`:

# %%
COUNTS.clear()
call = barelab.call_lifespan(with_lifespan(count_visits, saving_lifespan))
call.sent, COUNTS

# %% [markdown]
# `lifespan.startup.complete`, then `lifespan.shutdown.failed` with the message. The
# spec's rule for that one mirrors startup: the server "should log/print the message
# provided and then terminate". The `finally` still closed the database.

# %% [markdown]
# ## Starlette's `lifespan=`
#
# Starlette (and FastAPI, which passes `lifespan=` on to it) takes the same kind of
# function. Starlette speaks the protocol and copies the yielded dict into
# `scope["state"]`; a handler reads it as `request.state`. In FastAPI it would be
# `app = FastAPI(lifespan=database_lifespan)`, and a handler that takes a
# `request: Request` would find `request.state.db`.
#
# Here is `count_visits` as a Starlette app, with `database_lifespan` unchanged:

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
# `"/{path:path}"` is a Starlette route pattern that matches every path, so every URL
# counts as a visit, as it did for `count_visits`. `request.state.db` is
# `scope["state"]["db"]` read as an attribute. Nothing here opens or closes the database:
# `database_lifespan` does, when Starlette runs it.
#
# In-process, its lifespan answers the same two messages:

# %%
COUNTS.clear()
[message["type"] for message in barelab.call_lifespan(starlette_app).sent], COUNTS

# %% [markdown]
# And on a server, the same pattern: one open at startup, every request shares it, one
# close at stop. The two `print`s of `COUNTS` show the database open while serving and
# closed after the stop:

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
# `shutdown.failed` when it raises. It differs in two ways, and `fragile_lifespan` shows
# both: its `message` is the whole traceback, and after sending it, it re-raises the
# exception. `raise_errors=False` keeps `call_lifespan` from re-raising it in this cell;
# the exception is kept in `call.exception`:

# %%
call = barelab.call_lifespan(Starlette(lifespan=fragile_lifespan), raise_errors=False)
lines = call.sent[0]["message"].splitlines()
print(call.sent[0]["type"], "- first and last line of its message:")
print(lines[0], "...", lines[-1], sep="\n")
repr(call.exception)

# %% [markdown]
# The first line of the message is `Traceback (most recent call last):`, the last the
# exception, and `call.exception` is that same `CacheUnavailable`, re-raised. A
# traceback as the message is handy in a server log and noisy anywhere else; the
# re-raise means a server also sees the exception itself. The protocol, though, is the
# one you wrote in under twenty lines.
#
# If you have used FastAPI you may have met `@app.on_event("startup")` and
# `@app.on_event("shutdown")`. FastAPI marks `on_event` as deprecated in favour of
# `lifespan=`, and the Starlette installed here no longer takes `on_startup=` at all. Two
# separate hooks had nothing to tie what one opened to what the other closed; one
# function with a `yield` in the middle does, and its `finally` covers the failures.
#
# One more place where lifespan bites people who use frameworks: tests. Starlette's
# `TestClient` calls the app directly, like `call_asgi`, and runs the lifespan only when
# you use it as a context manager (`with TestClient(app) as client:`). Without the
# `with`, a request finds no `db` in its state, just as under `lifespan="off"` above.
# Chapter 17 builds a test client of your own.

# %% [markdown]
# ## Summary
#
# - The server calls the app once with `{"type": "lifespan"}` and keeps that call open
#   while it serves. `lifespan.startup` comes before the first request and is answered by
#   `lifespan.startup.complete` or `lifespan.startup.failed` with a `message`;
#   `lifespan.shutdown` comes when the server stops and is answered by
#   `lifespan.shutdown.complete` or `lifespan.shutdown.failed`.
# - `scope["state"]` carries shared resources to requests: the server gives each request
#   a shallow copy of the dict it put in the lifespan scope. Shared objects go in at
#   startup; keys a request adds stay in that request.
# - **Update** `scope["state"]`, never replace it: the server keeps its own reference to
#   the dict, so a rebound `scope["state"]` is never seen by a request (`KeyError` and a
#   500).
# - The lifespan runs once per event loop, so once per worker process: four workers open
#   four databases.
# - A failed startup gets no shutdown, so close what was opened before reporting it.
#   `barelab.serve` raises `LifespanStartupFailed` with the app's message and frees the
#   port.
# - An app without lifespan raises on the lifespan scope; a server in `auto` mode (the
#   default in barelab and uvicorn) then carries on without lifespan and logs why. `on`
#   makes that an error; `off` never runs the lifespan at all.
# - A lifespan is best written as an async context manager: `try`/`finally` around the
#   `yield` closes things on every path. You built `barelab.built.app_lifespan`:
#   `with_lifespan(app, lifespan)`, `run_lifespan`, `add_state` and `describe`.
#   Starlette's `lifespan=` takes the very same function.

# %% [markdown]
# ## Exercises
#
# Each exercise has a cell for your answer and a check cell below it. Run the check cell:
# it prints ✅ when your answer works and says what is wrong when it does not.
#
# ### Exercise 1 — a lifespan by hand
#
# Write `boot_app` without any helper, as a `while True` loop that receives a message and
# acts on its type. On `lifespan.startup` it adds 1 to `BOOTS["startup"]` and puts
# `"booted_at": "startup"` into the state; on `lifespan.shutdown` it adds 1 to
# `BOOTS["shutdown"]`. Each HTTP request answers JSON `{"booted_at": ...}` with the value
# from its `scope["state"]` (use `send_json`).

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
