# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 25. A test suite for `bare`
#
# Chapter 18 built `bare` and checked it with a handful of calls. A framework you depend on
# deserves more: a **test suite** that pins down every promise it makes, runs in seconds,
# and tells you exactly what broke when someone changes a line. In this chapter you write
# that suite with pytest, run it from the notebook, watch it catch a bug on purpose, and
# run every test three ways: in-process and over two real servers.
#
# ## Learning goals
#
# By the end of this chapter you can:
#
# - write one app whose routes exercise every feature of a framework, so that each test is
#   a short request and a few asserts;
# - use pytest fixtures to hand the *same* test a different client: chapter 17's in-process
#   `TestClient`, or a `SocketClient` talking to barelab's server or the course's own;
# - check the details that are easy to get wrong: `405` with `Allow`, `HEAD` without a
#   body, `204` without `Content-Length`, no traceback text in any error;
# - test a framework's hooks from the outside: exception handlers, work that runs after
#   the response, middleware added late, a WebSocket that goes on after its own Close;
# - break `bare` on purpose with a small subclass and read pytest's report of what failed;
# - run the suite from a notebook cell so that its output stays the same from run to run.

# %% [markdown]
# ## The plan
#
# A test needs three things: an **app** to talk to, a **client** to talk with, and
# **asserts** about what came back. You will write one app with a route for each feature,
# then one pytest *fixture* named `client` that pytest fills in three different ways. Every
# test that asks for `client` therefore runs three times:
#
# ```mermaid
# flowchart LR
#     T["test_wrong_method_is_405_with_allow(client)"] --> F{"client fixture"}
#     F -- "in-process" --> TC["TestClient (ch 17)"] --> A1["make_app()"]
#     F -- "barelab" --> S1["SocketClient"] -- "TCP" --> E1["barelab.serve"] --> A2["make_app()"]
#     F -- "course" --> S2["SocketClient"] -- "TCP" --> E2["WebSocketASGIServer (ch 13 + 15)"] --> A3["make_app()"]
# ```
#
# The in-process run is fast and shows the ASGI messages' mistakes (chapter 17's client
# validates them). The socket runs prove the same behaviour survives a real HTTP server,
# with real bytes, `Content-Length` and all.
#
# Some promises cannot be seen in one response: a callback that runs after the answer, a
# handler that carries on after its WebSocket closed. For those the app keeps a mailbox,
# `notes`, in its lifespan state, and the test reads it with a second request. The hooks
# that change `bare`'s own behaviour (exception handlers, callbacks, late middleware) get
# a small second app, mounted at `/hooks`, so they cannot disturb the main app's defaults.
#
# Everything the suite needs lives in one module. The next cell names it: the build writes
# every `#| export` cell of this chapter to `barelab/built/bare_suite.py`, and that file is
# what pytest will run.

# %%
#| default_exp bare_suite

# %% [markdown]
# ## The app under test
#
# First the imports, in two cells. The standard library and pytest come first: `asyncio`
# for a stream and a wait, `logging` to name a log level, `partial` to give a middleware
# its option. `pytest` is imported by the module itself because its fixtures and
# `pytest.raises` are part of the suite, not only of the command that runs it.

# %%
#| export
import asyncio
import logging
from contextlib import asynccontextmanager
from functools import partial

import pytest

# %% [markdown]
# Then the course's own parts. Look at where each name comes from: `bare` itself
# (chapter 18), the clients (chapter 17) and the course's WebSocket-capable ASGI server
# (chapter 15). `testing` comes in whole as well, because it has a `WebSocketDisconnect`
# of its own: the client's, raised when the *app* closes, which is not `bare`'s.
# `MethodNotAllowed` and `NotFound` are the router's refusals, which the hook tests name.

# %%
#| export
import barelab
from barelab.built import testing
from barelab.built.bare import (Bare, HTMLResponse, HTTPException, JSONResponse,
                                MethodNotAllowed, NotFound, RedirectResponse, Response,
                                StreamingResponse, WebSocketDisconnect)
from barelab.built.testing import SocketClient, TestClient, WebSocketDenied
from barelab.built.websocket import WebSocketASGIServer

# %% [markdown]
# To test the middleware stack you need middleware whose effect you can *see* from the
# outside. `trail(app, name)` wraps an app and appends an `x-trail: name` header line to
# every HTTP response it passes back up. Two of them stacked leave two lines, and their
# order tells you which one was closer to the app. `name` is an option, the shape
# `bare`'s `add_middleware(factory, **options)` expects: it calls `trail(app, name=...)`.

# %%
#| export
def trail(app, name: str):
    """Middleware: add an ``x-trail: name`` line to every HTTP response on its way up."""
    async def tagged(scope, receive, send):
        async def send_tagged(message):
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"x-trail", name.encode())]
                message = {**message, "headers": headers}
            await send(message)
        await app(scope, receive, send_tagged if scope["type"] == "http" else send)
    return tagged


# %% [markdown]
# The last line decides which `send` the app gets. Only an `http` scope is tagged: a
# WebSocket conversation has no `http.response.start` to add a line to, and the lifespan
# sends no responses at all, so both pass through untouched.
#
# A quick look before relying on it: wrap a bare `Response` (a `Response` is itself an
# ASGI app) and read the headers the client got. The new line sits after the ones the
# response set itself. (No `with` block here: a lone `Response` knows nothing of lifespan,
# so this client makes one request and no session.)

# %%
print(TestClient(trail(Response("hi\n"), name="outer")).get("/").headers)

# %% [markdown]
# Three lines: the two the `Response` made, and `x-trail: outer` last. `content-length` is
# `3` for the three bytes `hi\n`. The middleware changed the headers without touching the
# body, and the response did not notice it was wrapped: that is what lets a test read the
# stack's order from the outside.
#
# The lifespan is chapter 14's idea in the shape `bare` takes it: an async context manager
# whose code before `yield` runs once when the server starts (ASGI's `lifespan.startup`),
# and whose code after `yield` would run at shutdown. This one has nothing to open or
# close; it only yields the state that every handler will see as `request.state`. The empty
# list `closes` is where a WebSocket handler will note how its client left, and the empty
# dict `notes` is where work done *after* a response leaves its results, so that a later
# HTTP request can read them back: the state is copied for each request, but the list and
# the dict inside are shared.

# %%
#| export
@asynccontextmanager
async def lifespan(app):
    yield {"greeting": "hello from the lifespan", "closes": [], "notes": {}}


# %% [markdown]
# Three names, each for one kind of test: `greeting` shows the lifespan ran at all,
# `closes` collects WebSocket close codes, and `notes` is the mailbox for late work. Each
# start of an app runs the lifespan afresh, with a new empty list and dict. Over a socket,
# though, one app serves a whole test session and they fill up as tests run; that is why
# every note will sit under a key that names the test's own request.

# %% [markdown]
# ### Routes for routing
#
# Now the routes, in small groups, one function per group. Each takes a `Bare` app and adds
# routes to it. This first group is about the router: a typed parameter, two methods on
# one path, plain text, and a mounted sub-app that reports which path it was given.

# %%
#| export
def add_routing_routes(app: Bare) -> None:
    @app.get("/items/{id:int}")
    async def item(request):
        number = request.path_params["id"]
        return {"id": number, "type": type(number).__name__}

    @app.delete("/items/{id:int}")
    async def remove(request):
        return None                               # to_response: None is 204 No Content

    @app.get("/hello")
    async def hello(request):
        return "hello\n"


# %% [markdown]
# Two routes share the path `/items/{id:int}`, one for `GET` and one for `DELETE`. That
# pair is what will let the suite ask for a *third* method on the same path and expect a
# 405 rather than a 404. `remove` returns `None`, which `bare` turns into an empty 204.
#
# A mount is the other half of routing: a whole second app living under a prefix, the way
# Starlette's `Mount` or Flask's blueprints work. The sub-app below has one route that
# reports the path it saw and the `root_path` (the ASGI scope key that says which prefix
# was cut off in front of it).

# %%
#| export
def add_mount_route(app: Bare) -> None:
    admin = Bare(name="admin")

    @admin.get("/where")
    async def where(request):
        return {"path": request.path, "root_path": request.scope["root_path"]}

    app.mount("/admin", admin)


# %% [markdown]
# The admin app is a plain `Bare`, whatever class the outer app is: the mount test is
# about the outer router handing a request on, and a plain app at the other end keeps
# that test about one thing. (The `/hooks` app, later, is different: it tests hooks, so it
# is built from the class under test.)
#
# Each group can be tried on its own app. Here is the router group in-process. Look at
# `"type": "int"`: the `{id:int}` converter turned the text `42` into a Python `int`.
# The second dict shows the mount at work: the sub-app got the full `path`, with the
# `/admin` prefix recorded in `root_path` (ASGI keeps `path` whole and adds the prefix to
# `root_path`, so a sub-app can still build links that point back out).

# %%
routing_app = Bare()
add_routing_routes(routing_app)
add_mount_route(routing_app)
with TestClient(routing_app) as client:
    print(client.get("/items/42").json(), client.get("/admin/where").json())

# %% [markdown]
# ### Routes for the request
#
# The second group reads the parts of a request that arrive *before* the body: the query
# string (where a name may repeat), a header, the cookies. Each handler just echoes what
# it read back as JSON. That is the trick for testing a request object from the outside:
# the test sends something, and compares the echo with what it sent.

# %%
#| export
def add_request_routes(app: Bare) -> None:
    @app.get("/search")
    async def search(request):
        return {"tags": request.query.getall("tag"), "q": request.query.get("q")}

    @app.get("/whoami")
    async def whoami(request):
        return {"token": request.headers.get("x-token"), "cookies": dict(request.cookies)}


# %% [markdown]
# `dict(request.cookies)` turns the parsed `Cookie` field into a plain dict, so JSON can
# carry it. `request.headers.get("x-token")` gives `None` when the field is missing, and
# JSON turns that into `null`: a test can tell "not sent" from "sent empty".
#
# The body gets a group of its own, because reading it is where most of the trouble is:
# it may be too big, it may claim to be JSON and not be, it may be a form in either of
# two encodings. `/size` reports how many bytes it read, `/json` echoes the parsed value,
# and `/form` reports the field `name` and, for an upload, the file's name and size.
# None of them reads `scope` directly: `request.body()` collects the `http.request`
# messages until `more_body` is false, and `json()` and `form()` parse what it collected,
# so these routes test that whole path at once. First the raw body and JSON:

# %%
#| export
def add_body_routes(app: Bare) -> None:
    @app.post("/size")
    async def size(request):
        return {"bytes": len(await request.body())}

    @app.post("/json")
    async def echo_json(request):
        return {"got": await request.json()}


# %% [markdown]
# Then forms. `request.form()` gives one `MultiDict` for both encodings, with text fields
# as `str` and uploads as objects that know their `filename` and `size`. The route
# answers `None` for `file` when no upload came, so one route serves the urlencoded test
# and the multipart one.

# %%
#| export
def add_form_route(app: Bare) -> None:
    @app.post("/form")
    async def form(request):
        fields = await request.form()
        upload = fields.get("file")
        return {"name": fields.get("name"),
                "file": None if upload is None else [upload.filename, upload.size]}


# %% [markdown]
# The route reports the upload's `filename` and `size`, not its content: the filename is
# what the browser claimed in the part's header, the size is what `bare` actually read,
# in bytes. A parser that lost the part's last bytes, or kept the `\r\n` that ends it,
# would get the size wrong even though the name came through.

# %% [markdown]
# ### Routes for the response
#
# The third group returns one of each response type, so that the suite can check each
# type's contract: its status, its `Content-Type` and its body. First the two that carry
# a finished body, HTML and JSON; then, in the next cells, a redirect, a stream and a
# response that sets two cookies.

# %%
#| export
def add_response_routes(app: Bare) -> None:
    @app.get("/page")
    async def page(request):
        return HTMLResponse("<h1>bare</h1>")

    @app.get("/data")
    async def data(request):
        return JSONResponse({"ok": True, "café": "crème"}, status=201)


# %% [markdown]
# `/data` answers with status 201 and a non-ASCII value on purpose: a test can then check
# that the status was not lost on the way and that `café` arrives as UTF-8. The next two
# routes do not return a finished body. `/old` returns no body worth reading, only a
# status and a `Location`; `/count` returns an async generator that `bare` sends one piece
# at a time, as one `http.response.body` message per piece with `more_body=True`.

# %%
#| export
def add_redirect_and_stream_routes(app: Bare) -> None:
    @app.get("/old")
    async def old(request):
        return RedirectResponse("/hello", 301)

    @app.get("/count")
    async def count(request):
        async def numbers():
            for n in range(1, 4):
                yield f"{n}\n"
                await asyncio.sleep(0)
        return StreamingResponse(numbers())


# %% [markdown]
# `await asyncio.sleep(0)` between pieces hands control back to the event loop, the way a
# real generator waiting on a database would. Without it the three pieces could be sent
# in one go and the test would never see a body that really arrived in parts.
#
# The cookie route sets two cookies, so the response must carry two `Set-Cookie` lines.
# Cookies are the one field that must never be joined into a single comma-separated line
# (RFC 6265 §3), and a framework that stores headers in a plain dict loses one of them.
# Note the `httponly` on the session cookie: a test will check it made it into its line.

# %%
#| export
def add_cookie_routes(app: Bare) -> None:
    @app.get("/login")
    async def login(request):
        response = Response("welcome\n")
        response.set_cookie("sid", "abc123", httponly=True)
        response.set_cookie("theme", "dark")
        return response


# %% [markdown]
# `set_cookie` is chapter 09's helper: each call appends one `Set-Cookie` line to the
# response's list of headers, which is why `Response.headers` is a list of pairs and not
# a dict. The response type, `Response`, is plain text; only the headers matter here.

# %% [markdown]
# ### Routes that fail, and one that reads the state
#
# The fourth group misbehaves on purpose. `/teapot` raises an `HTTPException`, which `bare`
# turns into a 418. `/crash` has a bug: its exception message holds a secret, and the suite
# will check that the secret never reaches the client. `/state` reports the lifespan state.

# %%
#| export
def add_error_and_state_routes(app: Bare) -> None:
    @app.get("/teapot")
    async def teapot(request):
        raise HTTPException(418, "short and stout")

    @app.get("/crash")
    async def crash(request):
        raise RuntimeError("the database password is hunter2")

    @app.get("/state")
    async def state(request):
        return {"greeting": request.state.greeting, "ready": request.state.ready,
                "closes": request.state.closes}


# %% [markdown]
# `/state` reads three names from `request.state`. Two come from the lifespan, one from
# the startup hook (`ready`, set in `make_app` below). If a name is missing, `State` raises
# `AttributeError`, the handler crashes and the answer is a 500: that, too, is something a
# test can see from the outside.
#
# Some work happens *after* the response: a callback that runs once the client has its
# answer, a WebSocket handler that goes on after it said goodbye. A test cannot see that
# work in the response it got, so the app writes its results into `notes`, under a key the
# test chooses, and `/notes/{key}` reads them back.
#
# Reading too early is the trap: the test's next request may arrive while the late work
# is still running. So `/notes/{key}` waits, up to a second, for the key to appear, and
# answers 404 if it never does. Every wait has a timeout: a bug makes a test fail, never
# hang.

# %%
#| export
def add_notes_route(app: Bare) -> None:
    @app.get("/notes/{key}")
    async def read_note(request):
        notes, key = request.state.notes, request.path_params["key"]
        for _ in range(100):
            if key in notes:
                return notes[key]
            await asyncio.sleep(0.01)
        raise HTTPException(404, f"nothing was noted under {key!r}")


# %% [markdown]
# A hundred tries of 10 ms each: a second at most, and usually no wait at all, because the
# late work is done by the time the next request comes in. `asyncio.sleep` lets the event
# loop run that late work while this handler waits; `time.sleep` would block it and wait
# for nothing.

# %% [markdown]
# ### WebSocket routes
#
# The last routes speak WebSocket. `/ws/echo` answers each message in a way you can tell
# from the original: it shouts text back in capitals and returns bytes reversed. It loops
# until the client leaves; then `receive_message` raises `WebSocketDisconnect`, and the
# handler writes the close code into the shared state, where a test can find it.

# %%
#| export
def add_echo_route(app: Bare) -> None:
    @app.websocket("/ws/echo")
    async def echo(websocket):
        await websocket.accept()
        try:
            while True:
                message = await websocket.receive_message()
                if message.get("text") is not None:
                    await websocket.send_text(message["text"].upper())
                else:
                    await websocket.send_bytes(message["bytes"][::-1])
        except WebSocketDisconnect as gone:
            websocket.state.closes.append(gone.code)


# %% [markdown]
# Two details in the loop. `message.get("text") is not None` is the test for a text
# message, because ASGI sends `text` *or* `bytes` and may put `None` in the other key; an
# empty string is still text. And the loop has no exit of its own: the client ends it by
# leaving, which is exactly the path the suite wants to test.
#
# Two shorter ones. `/ws/json` reads one JSON message, answers with the sum of its
# numbers and closes. `/ws/private` closes *before* accepting: in WebSocket terms that
# refuses the handshake, and the server answers the browser's upgrade request with an
# HTTP 403 instead of `101 Switching Protocols`.

# %%
#| export
def add_websocket_routes(app: Bare) -> None:
    @app.websocket("/ws/json")
    async def add_numbers(websocket):
        await websocket.accept()
        data = await websocket.receive_json()
        await websocket.send_json({"sum": sum(data["numbers"])})
        await websocket.close()

    @app.websocket("/ws/private")
    async def private(websocket):
        await websocket.close()


# %% [markdown]
# `/ws/json` uses `receive_json` and `send_json`, which sit on top of the text messages:
# `bare` parses what arrived and serialises what goes out. `/ws/private` is the shortest
# handler in the app; its whole job is to say no.
#
# One more, for a subtle promise. `/ws/goodbye/{who}` says `bye` and closes the socket
# itself, with code 4000, and *then* asks for another message. A real handler does that
# when its loop calls `receive_message` once more after something inside it closed.
# `bare` must not hang there, nor read from a socket that is gone: it waits for the
# client's answer to the Close (RFC 6455 §5.5.1: each side sends one) and raises
# `WebSocketDisconnect`, with the client's code, or 1006 if no answer came within
# `close_timeout`. The handler notes what it got, under `goodbye-{who}`.
#
# Every client the suite uses answers a Close as a browser does, echoing its code: the
# socket clients with a Close frame, chapter 17's in-process client with the
# `websocket.disconnect` a server would pass on. The note is a list, so that JSON can
# carry it: the class of what was raised, its close code, and `client_gone`, the
# `(code, reason)` that `bare` recorded when the disconnect came.

# %%
#| export
def add_goodbye_route(app: Bare) -> None:
    @app.websocket("/ws/goodbye/{who}")
    async def goodbye(websocket):
        await websocket.accept()
        await websocket.send_text("bye")
        await websocket.close(4000, "enough")
        try:
            await websocket.receive_message()
        except WebSocketDisconnect as gone:
            note = [type(gone).__name__, gone.code, list(websocket.client_gone)]
            websocket.state.notes[f"goodbye-{websocket.path_params['who']}"] = note


# %% [markdown]
# If `receive_message` returned a message instead of raising, or raised anything else,
# the note would never be written, and `/notes/goodbye-...` would answer 404 after its
# second of waiting. So the test only has to read the note: a missing one is already the
# failure.

# %% [markdown]
# ### A second app, with hooks of its own
#
# `bare` has hooks that change how *it* behaves: exception handlers that answer errors your
# way, callbacks that run after the response, middleware added after the app was made.
# An exception handler for `Exception` would also catch `/crash`, and the suite needs
# `/crash` to keep `bare`'s default 500. So the hooks live in a second app, mounted at
# `/hooks`, and built from `framework` too, so that a modified `bare` reaches it.
#
# The first group: a stock lookup that raises `KeyError` for an unknown item, and a
# handler for `LookupError`, `KeyError`'s base class. `bare` finds handlers along the
# error's MRO (its class, then its base classes, nearest first), so this one catches the
# `KeyError`. The second handler catches the router's own refusal, `MethodNotAllowed`, and
# answers with its `.allowed` list as JSON; `error.headers` keeps the `Allow` field a 405
# must carry. It is a plain `def`, to check that `bare` takes sync handlers as well.

# %%
#| export
STOCK = {"apple": 3}


def add_lookup_handlers(hooks: Bare) -> None:
    @hooks.get("/stock/{name}")
    async def stock(request):
        name = request.path_params["name"]
        return {"name": name, "stock": STOCK[name]}

    @hooks.exception_handler(LookupError)
    async def missing(request, error):
        return JSONResponse({"missing": error.args[0]}, 404)

    @hooks.exception_handler(MethodNotAllowed)
    def wrong_method(request, error):
        return JSONResponse({"allowed": error.allowed}, 405, error.headers)


# %% [markdown]
# The second group tests the edges of the lookup. A handler for `Exception` catches every
# bug (`/bug` raises a `ValueError`), but it must *not* catch an `HTTPException`: `bare`
# stops the MRO walk there, because a 404 or a 418 is already an answer, not a bug.
# `/teapot` raises one on purpose, so a test can check that it keeps its 418.

# %%
#| export
def add_catch_all_handlers(hooks: Bare) -> None:
    @hooks.get("/bug")
    async def bug(request):
        raise ValueError("a bug")

    @hooks.get("/teapot")
    async def teapot(request):
        raise HTTPException(418, "short and stout")

    @hooks.exception_handler(Exception)
    async def everything_else(request, error):
        return Response(f"handled {type(error).__name__}\n", 503)


# %% [markdown]
# The catch-all answers 503 Service Unavailable rather than 500 so that a test can tell
# its answer from `bare`'s default at a glance, and it names the error's class (never
# its message) so a test can tell which error it caught.
#
# A handler can itself fail. The `ZeroDivisionError` handler below has a bug of its own,
# so `/ratio` must still end in `bare`'s plain 500, without a word of either error. It is
# nearer in `ZeroDivisionError`'s MRO than the catch-all, so the catch-all never sees it.

# %%
#| export
def add_failing_handler(hooks: Bare) -> None:
    @hooks.get("/ratio")
    async def ratio(request):
        return {"ratio": 1 / 0}

    @hooks.exception_handler(ZeroDivisionError)
    async def broken_handler(request, error):
        raise RuntimeError("the handler's own bug")


# %% [markdown]
# Work after the response needs a witness: who can tell that a callback ran *after* the
# last byte left? A middleware can, since every message passes through it. `note_sent`
# gives each request a fresh `events` list in its scope and appends "client has the
# response" once the last body message has been sent on. The handler finds the list in
# `request.scope`, and the callbacks append to it too, so the list ends up in the order
# things happened.

# %%
#| export
def note_sent(app):
    """Middleware: an ``events`` list in each scope, noting when the last byte has gone."""
    async def noting(scope, receive, send):
        events = []
        async def send_noting(message):
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                events.append("client has the response")
        await app({**scope, "events": events}, receive, send_noting)
    return noting


# %% [markdown]
# Two choices in there matter. The note is appended *after* `await send(message)`
# returns, so it marks the moment the message was handed on, not the moment it was
# made. And the list goes into a copy of the scope, `{**scope, "events": events}`: each
# request gets its own, so two requests at once cannot write into each other's list.
#
# Now the callbacks. `audit` is async and takes a keyword; `announce` is sync and fails,
# the way a mail server that is down makes a real one fail. `bare` must log that failure
# on its logger, `"bare"`, and still run the callbacks after it.

# %%
#| export
async def audit(events, who):
    events.append(f"audited {who}")


def announce(who):
    raise ConnectionError(f"the mail server is down: {who} was not announced")


# %% [markdown]
# Neither function knows it is a callback: they take ordinary arguments. That is the point
# of `call_after_response(fn, *args, **kwargs)`: it stores the call and its arguments, and
# `bare` makes the call later, awaiting the result only if there is one to await.
#
# `/signup/{who}` registers three callbacks: `audit`, the failing `announce`, and last the
# dict's own `__setitem__`, which files the `events` list under `signup-{who}` in `notes`
# once everything else has run. Signing up as `root` is refused with a 409 *after* the
# callbacks were registered: they must run after an error response too.

# %%
#| export
def add_after_response_routes(hooks: Bare) -> None:
    @hooks.post("/signup/{who}")
    async def signup(request):
        who, events = request.path_params["who"], request.scope["events"]
        request.call_after_response(audit, events, who=who)
        request.call_after_response(announce, who)
        notes = request.state.notes
        request.call_after_response(notes.__setitem__, f"signup-{who}", events)
        if who == "root":
            raise HTTPException(409, "root is taken")
        events.append("handler returns")
        return "welcome\n"


# %% [markdown]
# Look at the order inside the handler: the callbacks are registered *before* the 409 is
# raised and before "handler returns" is noted. Registering is cheap and immediate; the
# calls wait until the response is out, whichever response that turns out to be.
#
# `make_hooks_app` puts the four groups together. It adds `note_sent` with
# `add_middleware`, after the app was made, which is the other way to give `bare`
# middleware, and the one a plugin uses.

# %%
#| export
def make_hooks_app(framework=Bare) -> Bare:
    """The app mounted at /hooks: exception handlers and work after the response."""
    hooks = framework(name="hooks")
    hooks.add_middleware(note_sent)
    for add_routes in (add_lookup_handlers, add_catch_all_handlers, add_failing_handler,
                       add_after_response_routes):
        add_routes(hooks)
    return hooks


# %% [markdown]
# The hooks app has no lifespan of its own. It does not need one: a mount passes the
# outer app's scope on, `state` included, so `request.state.notes` in a `/hooks` handler
# is the same dict the outer app's lifespan made.
#
# A look at the first two groups, in-process: an apple in stock, a pear that is not (the
# `KeyError`, answered by the `LookupError` handler), a `PUT` the router refuses, and a bug
# the catch-all handler answered. Each line is one handler's work.

# %%
with TestClient(make_hooks_app()) as client:
    for method, path in [("GET", "/stock/apple"), ("GET", "/stock/pear"),
                         ("PUT", "/stock/apple"), ("GET", "/bug")]:
        response = client.request(method, path)
        print(method, path, response.status_code, response.text.strip())

# %% [markdown]
# Only the first answer is the route's own. The pear's 404 came from the `LookupError`
# handler (the route raised a plain `KeyError`), the 405's JSON from the
# `MethodNotAllowed` handler, which the router reached by raising its refusal, and the
# 503 from the catch-all.
# This demo did not call `/signup`: its failing callback would print a traceback here.

# %% [markdown]
# ### The whole app
#
# First the list of groups, in the order this chapter wrote them. The order matters only
# where two routes could take the same path, and here none do; keeping it in one tuple
# means a new group is one more name, not one more line in `make_app`.

# %%
#| export
ROUTE_GROUPS = (add_routing_routes, add_mount_route, add_request_routes, add_body_routes,
                add_form_route, add_response_routes, add_redirect_and_stream_routes,
                add_cookie_routes, add_error_and_state_routes, add_notes_route,
                add_echo_route, add_websocket_routes, add_goodbye_route)

# %% [markdown]
# `make_app` puts it all together. Its one parameter, `framework`, is the class to build
# the app with: `Bare` normally, or a subclass of it. That parameter is what lets the suite
# test a *modified* `bare` later without changing a single test. The body limit is small
# (1 KiB) so that a test can cross it cheaply, and two `trail` middlewares are stacked:
# `outer` given to the constructor, `inner` added after it with `add_middleware`, as
# chapter 18's "innermost so far". A startup hook sets `ready`, the second way `bare`
# makes lifespan state, next to the context manager's dict.

# %%
#| export
def make_app(framework=Bare) -> Bare:
    """One app with a route for every feature of bare that the suite checks."""
    app = framework(name="suite", lifespan=lifespan, max_body=1024,
                    middleware=[partial(trail, name="outer")])
    app.add_middleware(trail, name="inner")

    @app.on_startup
    async def started(state):
        state.ready = True

    for add_routes in ROUTE_GROUPS:
        add_routes(app)
    app.mount("/hooks", make_hooks_app(framework))
    return app


# %% [markdown]
# Printing a `Bare` lists its routes, in the order they were added. This is the surface
# the suite has to cover. Look at the `GET, HEAD` routes: you only wrote `@app.get`, and
# `bare` added `HEAD` itself, because RFC 9110 §9.3.2 makes `HEAD` valid wherever `GET` is.

# %%
make_app()

# %% [markdown]
# Twenty-three entries: seventeen HTTP routes, four WebSocket routes and two mounts. The
# `/hooks` mount shows as one line, `<Mount /hooks -> Bare>`: the routes inside it belong
# to the other app, and the outer router only knows the prefix. `OPTIONS` appears nowhere
# because no route declares it; `bare` answers it for every path, which a test will check.

# %% [markdown]
# ## Fixtures: one test, three clients
#
# If you have only used pytest's plain `assert` tests, fixtures are the one new idea here.
# A pytest **fixture** is a function decorated with `@pytest.fixture`. pytest reads the
# parameter names of each test, finds the fixture with the same name, calls it, and passes
# its return value in. You never call a fixture yourself. So a test written as
# `def test_x(client):` asks for "a client", and the fixture decides what that means.
#
# A fixture that `yield`s instead of returning works like a `with` block: the code before
# the `yield` is the set-up, the value it yields goes to the test, and the code after the
# `yield` runs once the test is over, even if the test failed. That is where servers stop
# and sessions end. A fixture can itself ask for other fixtures, by the same rule.
#
# `scope=` says how long one value lives. The default, `"function"`, makes a fresh one for
# every test; `"session"` makes one for the whole pytest run and shares it.
#
# The first fixture, `framework`, only returns `Bare`. It exists so that it can be
# *replaced*: a test file that defines its own `framework` fixture tests another class
# with the very same tests. It is session-scoped, so one value serves the whole run.

# %%
#| export
SOCKET_SERVERS = {"barelab": None, "course": WebSocketASGIServer}


@pytest.fixture(scope="session")
def framework():
    """The class under test: override this fixture to test a subclass of Bare."""
    return Bare


# %% [markdown]
# `SOCKET_SERVERS` maps a name to the `server=` engine `barelab.serve` should use; `None`
# means barelab's own. The `servers` fixture starts the app once on each, for the whole
# session, and stops them at the end. Starting a server takes a moment, so doing it once
# instead of once per test keeps the suite fast. The price: over a socket every test talks
# to the *same* app, so no test may rely on what another left behind (a counter, a
# stored note). The tests below each send everything they need.

# %%
#| export
@pytest.fixture(scope="session")
def servers(framework):
    """The app served on each engine of SOCKET_SERVERS, for the whole session."""
    running = {name: barelab.serve(make_app(framework), name=f"suite-{name}", server=engine)
               for name, engine in SOCKET_SERVERS.items()}
    yield running
    for server in running.values():
        server.stop()


# %% [markdown]
# Each server gets a name of its own, `suite-barelab` and `suite-course`. `barelab.serve`
# replaces a running server of the same name, so a second pytest run in the same process
# would not find the port taken. The loop after `yield` is the fixture's teardown: pytest
# runs it once, after the last test of the session.
#
# Now the fixture every HTTP test uses. `params=` makes it a *parametrized* fixture:
# pytest runs every test that asks for it once per value in the list, here three times,
# and writes the value in brackets after the test's name (`test_x[in-process]`,
# `test_x[barelab]`, `test_x[course]`), so a failure report says which run broke. Careful
# with the name `request` in it: this is *pytest's* request object, which describes the
# test being set up, not an HTTP request. `request.param` says which run this is, and
# `request.getfixturevalue("servers")` asks for the servers only when a socket run needs
# them, so an in-process run never starts one.
#
# In-process, each test gets a fresh app inside a `with TestClient(...)` session, so the
# lifespan runs. `validate=True` makes chapter 17's client check every ASGI message the
# app sends, and `raise_app_exceptions=False` lets a test look at the 500 a crash
# produces instead of seeing the exception raised into the test.

# %%
#| export
@pytest.fixture(params=["in-process", *SOCKET_SERVERS])
def client(request, framework):
    """A client for a fresh app in-process, or for the app served over a socket."""
    if request.param == "in-process":
        app = make_app(framework)
        with TestClient(app, raise_app_exceptions=False, validate=True) as client:
            yield client
    else:
        yield SocketClient(request.getfixturevalue("servers")[request.param])


# %% [markdown]
# Both branches `yield`, and that is what keeps them alike for pytest: the in-process
# branch yields from inside its `with` block, so the app's lifespan shutdown runs after the
# test; the socket branch has nothing to close, because the server belongs to `servers`
# and outlives the test.
#
# The two kinds of client share chapter 17's `BaseClient`, so `.get()`, `.post()` and the
# response's `.json()` and `.headers` are the same on both. Here is that promise tested by
# hand: one request in-process, one to barelab's server.

# %%
served = barelab.serve(make_app(), name="suite-demo")
with TestClient(make_app()) as in_process:
    print(in_process.get("/items/7").json(), SocketClient(served).get("/items/7").json())

# %% [markdown]
# Two identical dicts. The first never touched the network; the second went through a
# TCP socket, an HTTP/1.1 request line, barelab's parser and back. That sameness is what
# makes the three-way fixture work: a test cannot tell which client it was given, so any
# difference in the answers is a difference in the server, and the test will catch it.

# %% [markdown]
# ## The tests
#
# Each test is a plain function whose name says the promise it checks, in a sentence:
# when it fails, the name alone tells you what broke. Its body is a request, then
# asserts. pytest rewrites `assert` so that a failure prints both sides of a comparison,
# so most asserts need no message; where the values alone would not say what went wrong,
# the assert carries one.
#
# The tests follow the order of the routes: routing, the request, the response, errors,
# the hooks, middleware and lifespan, WebSockets. Each cell holds one test, with a
# sentence or two on the promise it pins down and on how it could fail.
#
# ### Routing
#
# The router decides which handler runs, and which status a miss gets. The first four
# tests pin down the two misses RFC 9110 tells apart, 404 Not Found (§15.5.5) and 405
# Method Not Allowed (§15.5.6), and the two methods a server must answer without being
# asked to, `HEAD` and `OPTIONS`. Get these wrong and clients retry, cache or report the
# wrong thing.
#
# A typed parameter is converted: the handler gets `42`, an `int`, and says so in its
# answer. The comparison is with the whole dict, so a route that passed the string `"42"`
# fails on `"type": "str"` even though `{"id": "42"}` would look right at a glance.

# %%
#| export
def test_typed_parameter_is_converted(client):
    assert client.get("/items/42").json() == {"id": 42, "type": "int"}


# %% [markdown]
# A value that does not fit the converter is not a match at all: 404, as if the route did
# not exist. This test guards against a router that matches first and converts later,
# which would turn `forty-two` into a crash (500) instead of a 404.

# %%
#| export
def test_a_parameter_of_the_wrong_type_is_404(client):
    assert client.get("/items/forty-two").status_code == 404


# %% [markdown]
# 404 and 405 say different things. 404: nothing lives at this path. 405: something does,
# but not for this method, and then RFC 9110 §15.5.6 requires an `Allow` field listing the
# methods that would work. The 404 must not carry one. The exact `Allow` value matters to
# tools that read it (API explorers, HTTP libraries that tell you which method to use), so
# the test compares the whole string; `bare` sorts the methods, which keeps it predictable.

# %%
#| export
def test_unknown_path_is_404_without_allow(client):
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert response.headers.get("allow") is None


# %% [markdown]
# The 405 test carries a message because a bare `assert 404 == 405` would not say which
# request it was about. It also names the method and path, `PUT /items/1`: when this test
# fails, the first thing you want to know is what was asked.

# %%
#| export
def test_wrong_method_is_405_with_allow(client):
    response = client.put("/items/1")
    assert response.status_code == 405, f"PUT /items/1 answered {response.status_code}"
    assert response.headers["allow"] == "DELETE, GET, HEAD, OPTIONS"


# %% [markdown]
# `HEAD` is `GET` without the body (RFC 9110 §9.3.2): same status, same headers, including
# the `Content-Length` the body *would* have. Link checkers and caches use it to ask
# "is this still there, and how big is it?" without downloading anything. `OPTIONS`
# answers which methods a path takes, as a 204 with `Allow`. Neither route was written
# by hand: `bare` answers both for every path that has a `GET` route.

# %%
#| export
def test_head_has_headers_but_no_body(client):
    get, head = client.get("/hello"), client.head("/hello")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"] == "6"


# %% [markdown]
# The `HEAD` test compares with a real `GET`, not with a number typed in: `6` is checked
# too, but the promise is "the same as `GET`". Now `OPTIONS`. A 204 has no body, and its
# `Allow` lists `OPTIONS` itself along with the methods the routes declared, the same
# string as the 405's.

# %%
#| export
def test_options_lists_the_methods(client):
    response = client.options("/items/1")
    assert response.status_code == 204, f"OPTIONS /items/1 answered {response.status_code}"
    assert response.content == b""
    assert response.headers["allow"] == "DELETE, GET, HEAD, OPTIONS"


# %% [markdown]
# A mount hands everything under its prefix to another app, moving the prefix into
# `root_path`. The prefix must end on a segment boundary: `/adminx` is not under `/admin`.
# That last assert guards against the easiest way to write a mount,
# `path.startswith("/admin")`, which would hand `/adminx/where` to the admin app too.

# %%
#| export
def test_mount_passes_the_rest_of_the_path(client):
    response = client.get("/admin/where")
    assert response.status_code == 200, f"/admin/where answered {response.status_code}"
    assert response.json() == {"path": "/admin/where", "root_path": "/admin"}
    assert client.get("/adminx/where").status_code == 404


# %% [markdown]
# ### Running what you have
#
# Seven tests so far: time to run them. pytest runs in a **separate process**: a cell
# that starts with `!` is a shell command, and `{sys.executable} -m pytest` starts a fresh
# Python (this kernel's own interpreter, so the same packages) running pytest. Nothing in
# this kernel, its servers or its event loop, can get in the way, and nothing the tests
# start can linger here.
#
# pytest needs a test file. Write a tiny one, in a folder of its own, that imports
# everything from the exported module. Next to it goes an empty `pytest.ini`: it marks the
# folder as pytest's root, so the course's own pytest settings (which add nbval and a
# table of slow tests) stay out of this run. `tempfile.mkdtemp` makes a new, empty folder
# with a unique name, so two copies of this notebook running at once never share files.

# %%
import shutil
import sys
import tempfile
from pathlib import Path

suite_dir = Path(tempfile.mkdtemp(prefix="bare_suite_"))
(suite_dir / "pytest.ini").write_text("[pytest]\n")
(suite_dir / "test_bare.py").write_text("from barelab.built.bare_suite import *\n")
sorted(path.name for path in suite_dir.iterdir() if path.suffix in (".py", ".ini"))

# %% [markdown]
# `from ... import *` is enough: pytest collects every `test_*` function and every fixture
# it finds in a test module's namespace, wherever they were defined. The options keep the
# output short and the same on every run: `-q` for one dot per test, `-p no:cacheprovider`
# for no `.pytest_cache` folder, `--color=no` for plain text, and `-k` to pick the routing
# tests by words in their names. `-k` matches pieces of names, so the expression says
# `head_` with its underscore: plain `head` would also pick `test_headers_and_cookies...`.
# `cd` first, so that pytest names files relative to there. Look at the count: seven
# tests, each run three times.

# %%
!cd {suite_dir} && {sys.executable} -m pytest -q -p no:cacheprovider --color=no -k "parameter or 404 or 405 or head_ or options or mount"

# %% [markdown]
# Twenty-one dots, twenty-one passes: seven tests times three clients. The "87
# deselected" are the tests `-k` left out: the module already holds the whole suite,
# including the tests the rest of this chapter walks through. The time at the end
# changes from run to run; the course's notebook checker masks durations like it, so the
# stored output still matches.
#
# ## A failing test, on purpose
#
# A suite that has never failed has not shown that it can. So break `bare`, on purpose,
# and watch. The bug is the kind a tidy-minded refactoring introduces. `Bare.find` looks
# for the route that takes a request; when none does, it also returns the set of methods
# that *other* routes on that path allow, and that set is what turns a 404 into a 405.
# The subclass below throws the set away: "no route, but GET and DELETE live here"
# becomes "no route, nothing here".
#
# The subclass has to reach the pytest process, which cannot see this kernel's variables,
# so the cell writes it into a second test file.

# %%
forgetful = '''
import pytest
from barelab.built.bare import Bare
from barelab.built.bare_suite import *


class ForgetfulBare(Bare):
    """Forgets which methods a path allows: every miss looks like 'nothing here'."""
    def find(self, scope):
        entry, found = super().find(scope)
        return (entry, set()) if entry is None else (entry, found)


@pytest.fixture(scope="session")
def framework():
    return ForgetfulBare
'''
(suite_dir / "test_forgetful.py").write_text(forgetful)
sorted(path.name for path in suite_dir.glob("test_*.py"))

# %% [markdown]
# The override is three lines: call the real `find`, and if it found no route, replace
# the allowed methods with an empty set. Everything else in `ForgetfulBare` is `bare`
# itself. The listing shows the folder now holds two test files; pytest would collect
# both, so the next command names the one to run.
#
# The test file defines its own `framework` fixture after the star import, so it replaces
# the suite's one: every test in this file now runs against `ForgetfulBare`. Run just this
# file. `--tb=no -rf` swaps the long tracebacks for one line per failure, and
# `COLUMNS=130` gives those lines room to show the assert's message.

# %%
!cd {suite_dir} && COLUMNS=130 {sys.executable} -m pytest -q -p no:cacheprovider --color=no --tb=no -rf test_forgetful.py

# %% [markdown]
# Read the report from the top. The dots line has an `F` for each failure, in the
# position of the test that failed. Then one line per failure: the test's id (file,
# function and, in brackets, the parameter), and the assert's message.
#
# One changed method broke three promises, and pytest says which: a `PUT` on a `GET`
# route now answers 404 instead of 405, and `OPTIONS` answers 404 instead of listing the
# methods. The third is a test you will meet later, in the `/hooks` app: its handler for
# wrong methods never runs, because the router now raises `NotFound` instead of
# `MethodNotAllowed`. Each failure shows up three times, once per client: the bug is in
# the framework, not in one server. Every other test still passes, so the failures point
# at the change instead of drowning it. That is what the messages in the asserts were for.
#
# Now the fix: the real `Bare`. Delete the broken file and run the three tests again.

# %%
(suite_dir / "test_forgetful.py").unlink()
!cd {suite_dir} && {sys.executable} -m pytest -q -p no:cacheprovider --color=no -k "wrong_method or options"

# %% [markdown]
# Back to green: the same nine runs that failed pass on the real `Bare`. That is the whole
# cycle a test suite gives you: change, run, read the report, fix, run again. Now the rest
# of the suite, section by section.
#
# ### The request
#
# These tests pin down what reaches the handler: the query string, header fields, cookies
# and the body. Each value crosses a layer that could mangle it: percent-encoding
# (RFC 3986 §2.1); header names, which may arrive in any case (field names are
# case-insensitive, RFC 9110 §5.1, and ASGI servers only *should* lowercase them); the
# `Cookie` field's `name=value; name=value` format (RFC 6265 §4.2.1); and a body that ASGI
# hands over in pieces, as `http.request` messages with `more_body`.
#
# A query string may repeat a name (`?tag=a&tag=b`, the way HTML sends a group of
# checkboxes); `getall` keeps every value in order, `get` the first. The client
# percent-encodes `café` as `caf%C3%A9`, so the first test also checks that the handler
# gets it back as UTF-8 text. (`params=` is a list of pairs rather than a dict because a
# dict cannot hold the key `tag` twice.)

# %%
#| export
def test_query_keeps_repeated_names(client):
    response = client.get("/search", params=[("tag", "a"), ("tag", "b"), ("q", "café")])
    assert response.json() == {"tags": ["a", "b"], "q": "café"}


# %% [markdown]
# The header and cookie test sends `X-Token` with capitals; the handler asked for
# `x-token`. If the answer has the token, the lookup is case-insensitive end to end: the
# client sent capitals, the server (or the in-process client) passed them on as ASGI
# wants, lower case, and `Headers` matched them either way.

# %%
#| export
def test_headers_and_cookies_reach_the_handler(client):
    response = client.get("/whoami", headers={"X-Token": "t0k3n"},
                          cookies={"sid": "abc", "theme": "dark"})
    assert response.json() == {"token": "t0k3n", "cookies": {"sid": "abc", "theme": "dark"}}


# %% [markdown]
# The body limit is 1024 bytes, so test both sides of the edge: exactly 1024 is read,
# 1025 is refused with 413 Content Too Large (RFC 9110 §15.5.14). Testing only "much too
# big" would miss an off-by-one. A limit matters because without one, any client can make
# your server hold a body as big as it likes in memory.

# %%
#| export
def test_a_body_within_the_limit_is_read(client):
    assert client.post("/size", content=b"x" * 1024).json() == {"bytes": 1024}


# %% [markdown]
# 1025 bytes: one more than the limit. `bare` sees the `Content-Length` field, compares it
# with `max_body` and refuses before reading a byte. A framework that only counted while
# reading would still pass this test; one with `>=` where `>` belongs fails one of the two.

# %%
#| export
def test_a_body_over_the_limit_is_413(client):
    assert client.post("/size", content=b"x" * 1025).status_code == 413


# %% [markdown]
# Broken JSON is the client's mistake, so it gets a 400 Bad Request, a 4xx: RFC 9110
# §15.5 keeps 4xx for errors on the client's side and 5xx for the server's. The answer
# must explain, but it must not leak how the server is built: no `Traceback`, no
# `File "..."` lines.

# %%
#| export
def test_invalid_json_is_400_without_a_traceback(client):
    response = client.post("/json", content=b'{"a": ',
                           headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "Traceback" not in response.text and 'File "' not in response.text


# %% [markdown]
# `'File "'` is how every line of a Python traceback that names a source file begins; if
# either string shows up, some layer pasted `traceback.format_exc()` into the answer. Then
# the easy case, for balance: valid JSON comes back as the value that was sent, nested
# list included.

# %%
#| export
def test_valid_json_is_parsed(client):
    assert client.post("/json", json={"a": [1, 2]}).json() == {"got": {"a": [1, 2]}}


# %% [markdown]
# Forms come in two encodings. `data=` sends `application/x-www-form-urlencoded`, what a
# plain HTML form sends: `name=Ada+Lovelace`, the space written as `+`. The answer must
# have the space back, and `None` for the file that was not sent.

# %%
#| export
def test_urlencoded_form(client):
    assert client.post("/form", data={"name": "Ada Lovelace"}).json() == {
        "name": "Ada Lovelace", "file": None}


# %% [markdown]
# The multipart body below is what a browser sends for `<form
# enctype="multipart/form-data">` with a text field and a file. The boundary `XyZ` is
# announced in `Content-Type`; each part starts with `--XyZ`, has its own header lines and
# a blank line, and the body ends with `--XyZ--`. The file's five bytes are `hello`. It is
# written out by hand, byte by byte, so that you can see exactly what a browser sends for
# a file upload.

# %%
#| export
def test_multipart_form_with_a_file(client):
    body = (b"--XyZ\r\n"
            b'Content-Disposition: form-data; name="name"\r\n\r\nAda\r\n'
            b"--XyZ\r\n"
            b'Content-Disposition: form-data; name="file"; filename="notes.txt"\r\n'
            b"Content-Type: text/plain\r\n\r\nhello\r\n"
            b"--XyZ--\r\n")
    response = client.post("/form", content=body,
                           headers={"content-type": "multipart/form-data; boundary=XyZ"})
    assert response.json() == {"name": "Ada", "file": ["notes.txt", 5]}


# %% [markdown]
# ### The response
#
# These tests pin down what goes back: status, `Content-Type`, `Location`, `Set-Cookie`
# and the body, as a client sees them after the server has turned ASGI messages into
# bytes. Each response type has a contract: its content type, its status, its body. A
# browser decides what to do with a body from `Content-Type` alone, so a wrong one is a bug
# (HTML shown as source, JSON downloaded as a file). JSON is UTF-8 by definition
# (RFC 8259 §8.1), so `café` must survive without a `charset`; HTML names its charset,
# since without one a browser may guess wrong.

# %%
#| export
def test_json_response_is_utf8_with_its_status(client):
    response = client.get("/data")
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"ok": True, "café": "crème"}


# %% [markdown]
# `response.json()` decodes the body as UTF-8 before parsing it, so `"café": "crème"`
# arriving intact means the bytes were UTF-8 and no layer re-encoded them. HTML is
# checked the same way: the exact `Content-Type`, charset included, and the body as sent.

# %%
#| export
def test_html_response(client):
    response = client.get("/page")
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.text == "<h1>bare</h1>"


# %% [markdown]
# A redirect is a status and a `Location`; 301 (RFC 9110 §15.4.2) says "moved for good",
# so browsers and search engines remember the new address. The test does not follow the
# redirect: it checks what the server *said*, which is the framework's part.

# %%
#| export
def test_redirect_has_a_location(client):
    response = client.get("/old")
    assert response.status_code == 301 and response.headers["location"] == "/hello"


# %% [markdown]
# A stream must arrive whole, whatever the pieces were. In-process the client gets them
# as separate `http.response.body` messages; over a socket they travel in chunked
# transfer coding (chapter 02), which the client decodes. Either way `.text` is the
# same, so one assert holds for all three clients.

# %%
#| export
def test_streaming_response_arrives_whole(client):
    assert client.get("/count").text == "1\n2\n3\n"


# %% [markdown]
# Two details frameworks get wrong. The first: a 204 has no body, and RFC 9110 §8.6 says
# it must not send `Content-Length` either. A server that adds `Content-Length: 0` to
# every response breaks that rule, and strict clients and proxies complain.

# %%
#| export
def test_204_has_no_body_and_no_content_length(client):
    response = client.delete("/items/1")
    assert response.status_code == 204 and response.content == b""
    assert response.headers.get("content-length") is None


# %% [markdown]
# `response.content == b""` and `content-length is None` are two different promises: the
# first is about the body, the second about the header. A framework can keep the first and
# break the second, which is exactly the bug this test is for.
#
# The second detail: two cookies need two `Set-Cookie` lines, because a cookie's
# `Expires` date contains a comma, so the lines cannot be joined with commas the way
# other fields can. `get_list` returns every line of a field, in order.

# %%
#| export
def test_several_set_cookie_lines(client):
    lines = client.get("/login").headers.get_list("set-cookie")
    assert [line.split(";")[0] for line in lines] == ["sid=abc123", "theme=dark"]
    assert "HttpOnly" in lines[0]


# %% [markdown]
# ### Errors
#
# Error responses are still responses: they need the right status, a `Content-Type` the
# client asked for, and nothing the client should not see. An `HTTPException` is answered
# in the format the client prefers: JSON if its `Accept` field (RFC 9110 §12.5.1) ranks
# JSON first, plain text otherwise.
#
# To test both formats without writing the test twice, use `@pytest.mark.parametrize`. Its
# first argument is a string of parameter names, `"accept, kind"`; its second is a list
# with one tuple per run, giving a value for each name. pytest calls the test once per
# tuple, passing the values as arguments. Stacked with the three-way `client` fixture,
# that is 2 × 3 = six runs from one function.

# %%
#| export
@pytest.mark.parametrize("accept, kind", [("application/json", "application/json"),
                                          ("text/plain", "text/plain; charset=utf-8")])
def test_http_exception_follows_accept(client, accept, kind):
    response = client.get("/teapot", headers={"accept": accept})
    assert response.status_code == 418
    assert response.headers["content-type"] == kind
    assert "short and stout" in response.text


# %% [markdown]
# The plain-text `kind` includes `; charset=utf-8`, the JSON one does not: the test pins
# each `Content-Type` exactly as `bare` sends it. The detail, `short and stout`, must show
# up either way, in a JSON string or in a line of text, because the handler chose to tell
# the client.
#
# A bug is not the client's business. The 500 must say nothing about the exception: not
# the traceback, and not its message, which here holds a secret. (The traceback is not
# lost: `bare` re-raises the error after answering, so the server writes it to its log,
# where the developer looks.) Checking for one specific word is a narrow test, but it is
# exactly the leak that matters; Exercise 2 shows a framework that has it.

# %%
#| export
def test_a_crash_is_a_plain_500(client):
    response = client.get("/crash")
    assert response.status_code == 500
    assert "Traceback" not in response.text and "hunter2" not in response.text


# %% [markdown]
# ### Exception handlers
#
# Now the hooks, through the `/hooks` app. Here is the lookup the next tests pin down,
# for the handlers that app registered. `handler_for` walks each error's MRO from left to
# right and takes the first class that has a handler; at `HTTPException` it stops and
# leaves the error to `bare`'s default rendering:
#
# ```mermaid
# flowchart LR
#     K["KeyError"] --> L["LookupError: handler"]
#     Z["ZeroDivisionError: handler"] --> A["ArithmeticError"] --> E["Exception: handler"]
#     V["ValueError"] --> E
#     M["MethodNotAllowed: handler"] --> H["HTTPException: stop"]
#     N["NotFound"] --> H
# ```
#
# The first test is the MRO at work: the pear's `KeyError` has no handler of its own, so
# `bare` walks up to `LookupError` and uses that one. The apple checks that a handler
# changes nothing when nothing goes wrong.

# %%
#| export
def test_a_handler_catches_subclasses_through_the_mro(client):
    assert client.get("/hooks/stock/apple").json() == {"name": "apple", "stock": 3}
    response = client.get("/hooks/stock/pear")
    assert response.status_code == 404 and response.json() == {"missing": "pear"}


# %% [markdown]
# `error.args[0]` is the key the `dict` could not find, so `{"missing": "pear"}` proves the
# handler got the very exception the route raised, not a new one made up on the way. The
# 404 proves the handler's `JSONResponse` went out as it was, status included.
#
# The router's refusals are exceptions with a class of their own, `NotFound` and
# `MethodNotAllowed`, both subclasses of `HTTPException`. A `MethodNotAllowed` carries
# `.allowed`, sorted, with `HEAD` added wherever `GET` is. This test checks the classes
# themselves, without a client: it builds a refusal by hand, from a *set* (no order), and
# expects a sorted list and the matching `Allow` header line.

# %%
#| export
def test_router_refusals_are_typed():
    assert issubclass(NotFound, HTTPException) and NotFound().status == 404
    refused = MethodNotAllowed({"POST", "GET"})
    assert refused.allowed == ["GET", "HEAD", "POST"]
    assert refused.headers == [("allow", "GET, HEAD, POST")]


# %% [markdown]
# `headers` is the list of `(name, value)` pairs an `HTTPException` carries into its
# response, so the `Allow` line is built once, in the exception, and every way of
# answering it (the default rendering, or a handler passing `error.headers` on) agrees.
#
# Those classes are what a handler is looked up by. The next test checks the router
# raises them: `PUT` on the stock route must reach the `MethodNotAllowed` handler, whose
# JSON and the `Allow` field must agree.

# %%
#| export
def test_wrong_method_handler_sees_what_is_allowed(client):
    response = client.put("/hooks/stock/apple")
    assert response.status_code == 405, f"PUT answered {response.status_code}"
    assert response.json() == {"allowed": ["GET", "HEAD", "OPTIONS"]}
    assert response.headers["allow"] == "GET, HEAD, OPTIONS"


# %% [markdown]
# Where does each method come from? The stock route declared only `GET`; `HEAD` came with
# it; `OPTIONS` came from the router, which answers it on every path that has a route. So
# this one list checks three rules at once, in the order `.allowed` promises: sorted.
#
# A handler for `Exception` answers every bug, and nothing else. A 418 raised on purpose
# and the router's 404 are `HTTPException`s, so they keep `bare`'s own answer; if the
# catch-all took them, every "not found" on the site would become a 503.

# %%
#| export
def test_catch_all_leaves_http_errors_alone(client):
    assert client.get("/hooks/bug").text == "handled ValueError\n"
    teapot, nowhere = client.get("/hooks/teapot"), client.get("/hooks/nowhere")
    assert (teapot.status_code, nowhere.status_code) == (418, 404), \
        f"got {teapot.status_code}, {nowhere.status_code}"


# %% [markdown]
# The first assert compares the whole text, `handled ValueError`, so it also checks which
# handler answered: the catch-all names the class it caught. The message of the second
# assert prints both statuses, since a bug here usually breaks both at once.
#
# A handler with a bug of its own must not make things worse: the client gets `bare`'s
# plain 500, byte for byte, and neither the original error nor the handler's reaches it.

# %%
#| export
def test_a_failing_handler_ends_in_a_plain_500(client):
    response = client.get("/hooks/ratio")
    assert (response.status_code, response.text) == (500, "500 Internal Server Error\n")


# %% [markdown]
# Comparing the whole text, not just the status, is deliberate: any extra word in that
# body (the handler's message, the `ZeroDivisionError`'s) would be a leak. The handler's
# error is not lost, though: `bare` raises it after answering, so the server's log has it,
# with the original error attached as its context.

# %% [markdown]
# ### Work after the response
#
# These tests take two requests each, because the work they check happens after the
# first one's answer. The picture, for `/hooks/signup/ada`:
#
# ```mermaid
# sequenceDiagram
#     participant T as test
#     participant N as note_sent
#     participant B as bare
#     T->>N: POST /hooks/signup/ada
#     N->>B: the scope, with an events list
#     B-->>N: welcome (the last body message)
#     N-->>T: welcome
#     Note over N: "client has the response"
#     Note over B: audit, announce (fails: logged), file events in notes
#     T->>B: GET /notes/signup-ada (waits for the key)
#     B-->>T: the events list
# ```
#
# `/hooks/signup/ada` answers `welcome`; its `events` list then shows up in `notes`. The
# order in the list is the promise: the handler returned, the client had the whole
# response, and only then did `audit` run. The failing `announce` sat between `audit` and
# the filing of the list, and did not stop it.
#
# pytest's `caplog` fixture collects log records while the test runs, from any thread, so
# it also sees records from the servers, which run in this same process. The test asks
# for the `"bare"` logger's errors: exactly one, the `ConnectionError`.

# %%
#| export
def test_work_after_the_response_runs_in_order(client, caplog):
    with caplog.at_level(logging.ERROR, logger="bare"):
        assert client.post("/hooks/signup/ada").text == "welcome\n"
        events = client.get("/notes/signup-ada").json()
    assert events == ["handler returns", "client has the response", "audited ada"]
    failures = [record.exc_info[0] for record in caplog.records if record.name == "bare"]
    assert failures == [ConnectionError], "the failing callback is logged on 'bare'"


# %% [markdown]
# `record.exc_info` is the `(type, value, traceback)` triple that `logger.exception` stores;
# its first item is the class. The test compares classes rather than message text, so a
# change in `bare`'s wording does not break it, while a callback failure that went
# unlogged, or was logged twice, does.
#
# After an error the callbacks run too: cleanup that only ran on success would leak
# whatever the failed request had opened. `root` is refused with 409; the handler never
# returned, so "handler returns" is missing, and the rest is there, in order.

# %%
#| export
def test_work_after_an_error_response_runs_too(client):
    response = client.post("/hooks/signup/root")
    assert response.status_code == 409, f"root's signup answered {response.status_code}"
    events = client.get("/notes/signup-root").json()
    assert events == ["client has the response", "audited root"]


# %% [markdown]
# Set the two lists side by side: `ada`'s has three entries, `root`'s two. The missing
# one is the handler's own, which never ran past the `raise`; what came after the
# response, the callbacks, ran the same either way.

# %% [markdown]
# ### Breaking a hook
#
# The hook tests deserve the same proof as the routing tests: a bug they catch. Here is
# one a tidy-minded refactoring could write. `bare`'s `handler_for` walks the error's MRO
# and stops at `HTTPException`; `GreedyBare` drops the stop, because "a handler for a base
# class should catch its subclasses, shouldn't it?"

# %%
greedy = '''
import pytest
from barelab.built.bare import Bare
from barelab.built.bare_suite import *


class GreedyBare(Bare):
    """Looks for an exception handler along the whole MRO, past HTTPException."""
    def handler_for(self, error):
        for kind in type(error).__mro__:
            if kind in self.exception_handlers:
                return self.exception_handlers[kind]
        return None


@pytest.fixture(scope="session")
def framework():
    return GreedyBare
'''
(suite_dir / "test_greedy.py").write_text(greedy)
sorted(path.name for path in suite_dir.glob("test_*.py"))

# %% [markdown]
# Set it beside chapter 18's `handler_for`: the same loop, minus the two lines that return
# `None` at `HTTPException`. Nothing else changed; the file overrides `framework` the same
# way `test_forgetful.py` did, so every test runs on `GreedyBare`, the `/hooks` app
# included, because `make_hooks_app` builds it from `framework` too.
#
# Run the whole suite on it, with the same one-line-per-failure report as before:

# %%
!cd {suite_dir} && COLUMNS=130 {sys.executable} -m pytest -q -p no:cacheprovider --color=no --tb=no -rf test_greedy.py

# %% [markdown]
# Two tests fail, on all three clients. The catch-all test names the damage: the teapot's
# 418 and the router's 404 both became the catch-all's 503. The second failure is one you
# might not have predicted: `root`'s 409 went the same way, because the catch-all now
# takes every `HTTPException` a handler raises. Two missing lines turned every deliberate
# 4xx of the `/hooks` app into a "server error". Remove the file; the real `Bare` is back:

# %%
(suite_dir / "test_greedy.py").unlink()
!cd {suite_dir} && {sys.executable} -m pytest -q -p no:cacheprovider --color=no -k "catch_all or error_response"

# %% [markdown]
# Six passes: the same two tests on three clients each, on the real `Bare`. Two mutants
# so far, two different kinds of bug, and each one caught by tests with names that say
# what broke.
#
# ### Middleware and lifespan
#
# In ASGI, middleware is just an app that wraps an app, and the lifespan protocol is how a
# server tells the app "starting up" before any request (the ASGI lifespan spec). Both are
# invisible to a single handler, so these tests check them from the outside.
#
# `outer` was given to the constructor and `inner` added after it, so the stack is
# `outer(inner(app))`: the request goes down through `outer` first. The response travels
# back up the other way, through `inner` first, so its header line comes first. If `bare`
# ever reversed its list, or put `add_middleware`'s addition outside instead of inside,
# this test would say so. Over a socket the lifespan test also checks that the *server*
# ran the lifespan, which a server may skip.

# %%
#| export
def test_middleware_wraps_outermost_first(client):
    assert client.get("/hello").headers.get_list("x-trail") == ["inner", "outer"]


# %% [markdown]
# The lifespan test reads `/state`, which echoes two values: `greeting` from the lifespan
# context manager's dict, and `ready` from the startup hook. If either part of the
# lifespan did not run, its key is missing, the handler fails with a 500, and the test
# fails with it.

# %%
#| export
def test_lifespan_state_reaches_handlers(client):
    state = client.get("/state").json()
    assert state["greeting"] == "hello from the lifespan" and state["ready"] is True


# %% [markdown]
# `bare` builds its middleware stack once, on its first call. A middleware added after
# that would never run, silently, so `add_middleware` must refuse it loudly, and
# `stack_built` says which side of that moment the app is on. The test needs a fresh app
# of its own, so it asks for `framework` instead of `client`; the `with` block's lifespan
# startup is the app's first call.

# %%
#| export
def test_add_middleware_is_refused_once_the_stack_is_built(framework):
    app = make_app(framework)
    assert app.stack_built is False
    with TestClient(app):
        assert app.stack_built is True
    with pytest.raises(RuntimeError, match="middleware"):
        app.add_middleware(trail, name="too late")


# %% [markdown]
# `match=` is a regular expression that `pytest.raises` searches for in the exception's
# message. `"middleware"` is loose on purpose: the test pins the promise (a
# `RuntimeError`, that mentions what was refused), not a sentence that could be reworded.

# %% [markdown]
# ### WebSockets in-process
#
# The WebSocket tests pin down the ASGI `websocket.*` messages: an app must `accept`
# before sending, keep text and binary frames apart (RFC 6455 §5.6), and learn the
# client's close code when it leaves.
#
# `SocketClient` speaks HTTP only, so the WebSocket tests get a fixture of their own:
# `session`, an in-process `TestClient` session whose `websocket_connect` holds a whole
# conversation without a socket. It builds its app from `framework` too, so a replaced
# `framework` reaches these tests as well. It has the default function scope on purpose:
# each test gets a fresh app, so the `closes` list in its state starts empty and one test's
# goodbye cannot show up in another's assert.

# %%
#| export
@pytest.fixture
def session(framework):
    """An in-process TestClient session, for the WebSocket tests."""
    with TestClient(make_app(framework), validate=True) as client:
        yield client


# %% [markdown]
# WebSocket messages come in two kinds, text and binary, and a framework must keep them
# apart. The test sends one of each and expects each answer in the same kind.

# %%
#| export
def test_websocket_text_and_binary(session):
    with session.websocket_connect("/ws/echo") as ws:
        ws.send_text("hi")
        assert ws.receive_text() == "HI"
        ws.send_bytes(b"\x00\x01\xff")
        assert ws.receive_bytes() == b"\xff\x01\x00"


# %% [markdown]
# The binary message holds a zero byte and a `0xff`: `0xff` never occurs in UTF-8 text, so
# if any layer decoded the frame as text, it could not come back intact. Next, JSON over a
# WebSocket, and a handshake the app refuses: closing before `accept` is answered with an
# HTTP 403 (the ASGI spec says so: a `websocket.close` sent before `websocket.accept` must
# make the server refuse the handshake with 403), which chapter 17's client raises as
# `WebSocketDenied`. `pytest.raises` is how pytest tests for an exception: the `with`
# block passes only if the exception is raised inside it, and `refused.value` is the
# exception itself.

# %%
#| export
def test_websocket_json(session):
    with session.websocket_connect("/ws/json") as ws:
        ws.send_json({"numbers": [1, 2, 3]})
        assert ws.receive_json() == {"sum": 6}


# %% [markdown]
# The JSON test sends a list and reads back a sum: the answer proves the handler parsed
# the text as JSON, computed, and sent JSON back. The handler then closes by itself, and
# the `with` block ends cleanly on that.

# %%
#| export
def test_websocket_closed_before_accept_is_403(session):
    with pytest.raises(WebSocketDenied) as refused:
        with session.websocket_connect("/ws/private"):
            pass
    assert refused.value.status == 403


# %% [markdown]
# When the client closes, the handler's `receive_message` raises `WebSocketDisconnect`
# with the client's close code; 1001 is "going away" (RFC 6455 §7.4.1), what a browser
# sends when you leave the page. The handler wrote it into the shared state; a plain HTTP
# request in the same session reads it back.

# %%
#| export
def test_websocket_disconnect_reaches_the_handler(session):
    with session.websocket_connect("/ws/echo") as ws:
        ws.send_text("bye")
        ws.receive_text()
        ws.close(1001)
    assert session.get("/state").json()["closes"] == [1001]


# %% [markdown]
# `[1001]`, exactly: one code, this test's. That exact comparison is only safe because the
# `session` fixture gave this test a fresh app; over a shared server other tests' closes
# would be in the list too, which is why the goodbye test further down, which runs over
# sockets as well, reads a note under a key of its own.

# %% [markdown]
# ### WebSockets over a socket
#
# Over a real socket, `barelab.websocket_connect` is the client. Its interface differs
# (one `receive()` returns `str` or `bytes`), so this test takes the server's name as its
# own parameter instead of using `client`. `parametrize` with one name and the list
# `["barelab", "course"]` gives two runs, and the test asks for the session-wide `servers`
# fixture to look the running server up by that name. This is the one test that checks
# the course's own WebSocket handshake and framing with real bytes.

# %%
#| export
@pytest.mark.parametrize("name", list(SOCKET_SERVERS))
def test_websocket_over_a_socket(servers, name):
    with barelab.websocket_connect(servers[name], "/ws/echo") as ws:
        ws.send_text("hi")
        assert ws.receive() == "HI"
        ws.send_bytes(b"\x00\x01\xff")
        assert ws.receive() == b"\xff\x01\x00"


# %% [markdown]
# `receive()` returns a `str` for a text frame and `bytes` for a binary one, so comparing
# with `"HI"` and with `b"\xff\x01\x00"` also checks each frame's type (opcodes 1 and 2,
# RFC 6455 §5.2): a server that sent the shout back as a binary frame would fail the first
# assert, even with the right letters.

# %% [markdown]
# ### After our own Close
#
# Both kinds of client have `websocket_connect`, with the same interface: chapter 17's
# `SocketClient` does the handshake and framing over a real socket. So the goodbye test
# can take `client` and run three times. On the client's side, the app's Close arrives as
# the *testing* module's `WebSocketDisconnect`, with the app's code, 4000. On the app's
# side, the note must say that `receive_message` raised `bare`'s `WebSocketDisconnect`
# with 4000 too, the client's echo, and that `client_gone` recorded the same code.

# %%
#| export
def test_receive_after_our_own_close_raises_disconnect(client):
    with client.websocket_connect("/ws/goodbye/ada") as ws:
        assert ws.receive_text() == "bye"
        with pytest.raises(testing.WebSocketDisconnect) as closed:
            ws.receive_text()
        assert closed.value.code == 4000
    raised, code, (gone_code, _) = client.get("/notes/goodbye-ada").json()
    assert (raised, code, gone_code) == ("WebSocketDisconnect", 4000, 4000)


# %% [markdown]
# The same 4000 on all three runs: the clients echo the app's code, as RFC 6455 §5.5.1
# suggests, so `bare` never waits out `close_timeout` here. A 1006 would mean a client
# that did not answer, or a `bare` that stopped listening for the answer.
#
# Last, a mistake `bare` catches for you. A `Response` is an ASGI app for HTTP only; one
# that finds itself answering a WebSocket (mounted where a socket arrives, say) must
# refuse with a `TypeError` that names the scope, not send `http.response.start` into a
# WebSocket. In-process the app's exception comes straight back to the test.

# %%
#| export
def test_a_response_refuses_a_websocket_scope():
    with pytest.raises(TypeError, match="'websocket'"):
        with TestClient(Response("hi\n")).websocket_connect("/"):
            pass


# %% [markdown]
# The `TypeError` is raised inside the app, on the client's event loop; chapter 17's
# client hands an app's exception back to the caller, so `pytest.raises` sees it here.
# `match="'websocket'"` checks that the message names the scope type that was refused.

# %% [markdown]
# ## The whole suite
#
# Every test is now in the exported module. Run them all, with no `-k`. Before you look,
# count what to expect: 32 test functions take `client`, one of them parametrized twice
# over `Accept`, which makes 33 cases, each run by three clients: 99. Then four in-process
# WebSocket tests and the socket WebSocket test on two servers: 105. Last, three tests
# that need no client at all: 108.

# %%
!cd {suite_dir} && {sys.executable} -m pytest -q -p no:cacheprovider --color=no

# %% [markdown]
# 108 passes, as counted. The `[ 66%]` and `[100%]` at the ends of the lines are pytest's
# progress marks: how far through the collected tests it was when the line filled up.
#
# The same suite runs in the course's `make test`: `tests/test_bare_suite.py` is the same
# one-line star import you wrote above. If a later chapter changes `bare`, this is the file
# that says whether its promises still hold.
#
# ### What the suite does not check yet
#
# "Every feature" is a goal you keep walking towards. A few promises of `bare` still have
# no test here, and each would make a good next one:
#
# - a `StreamingResponse` stops, and its generator is closed, when the client goes away;
#   `HEAD` on a stream never starts the generator;
# - `receive_text` on a binary message closes with 1003, `receive_json` on bad JSON with
#   1007 (RFC 6455 §7.4.1), and `accept(subprotocol=...)` refuses one the client did not
#   offer;
# - `request.url`, `request.client` and `request.app_state`; `delete_cookie` and
#   `set_header` on a response;
# - a client that leaves in the middle of its body (`RequestAborted`): no answer and no
#   exception handler, but the after-response callbacks still run.
#
# None of them needs a new idea: a route that does the thing, and a test that looks at
# the outcome from outside, through `notes` when the outcome comes late.
#
# ## Summary
#
# - One app with a route per feature (`make_app`) turns every test into a request and a
#   few asserts; its `framework` parameter lets the same app be built from a subclass.
# - A parametrized fixture (`client`) runs each test in-process with chapter 17's
#   `TestClient` and over real sockets with `SocketClient`, on barelab's server and on
#   the course's own: one test, three runs.
# - Overriding a fixture (`framework`) in a test file points the whole suite at a modified
#   `bare`. Two deliberately broken subclasses showed the suite failing exactly where the
#   change broke a promise: a router that forgot its 405s, and a handler lookup that no
#   longer stops at `HTTPException`.
# - The suite pins the details: typed parameters, 404 vs 405, `HEAD`, `OPTIONS`, mounts,
#   query, headers, cookies, the body limit at its edge, JSON and form bodies, every
#   response type, 204 without `Content-Length`, several `Set-Cookie` lines, errors by
#   `Accept`, a 500 with nothing inside, middleware order, lifespan state and WebSockets.
# - The hooks get the same treatment, through a second app mounted at `/hooks`: handlers
#   found along the MRO, a catch-all that leaves `HTTPException` alone, a failing handler,
#   callbacks after the response (in order, after errors too, failures logged),
#   `add_middleware` refused once the stack is built, a `Response` refusing a WebSocket,
#   and `receive_message` after our own Close. Work the client cannot see is written to
#   `notes`, and a route that waits with a timeout reads it back.
# - pytest runs in its own process from a cell; `-q` and `-p no:cacheprovider` (and an
#   empty `pytest.ini`) keep its output short and reproducible.

# %% [markdown]
# ## Exercises
#
# Each test you write here is a plain function that takes a client, so the check cells
# can call it directly, without pytest.
#
# ### Exercise 1 — the query's defaults
#
# Write `test_search_without_a_query(client)`: `GET /search` with no query string must
# answer `{"tags": [], "q": None}`. The check runs it in-process and over barelab's server.

# %% tags=["solution"]
def test_search_without_a_query(client):
    ### BEGIN SOLUTION
    assert client.get("/search").json() == {"tags": [], "q": None}
    ### END SOLUTION


# %% tags=["check"]
from barelab.exercises import check

with check("Exercise 1"):
    assert callable(test_search_without_a_query), "define test_search_without_a_query first"
    with TestClient(make_app()) as in_process:
        test_search_without_a_query(in_process)
    test_search_without_a_query(SocketClient(served))
    print("passes in-process and over a socket")

# %% [markdown]
# ### Exercise 2 — a test that catches a leak
#
# A test is only worth its keep if it fails when it should. Write
# `test_crash_hides_its_message(client)`: `GET /crash` answers 500 and the body does not
# contain `"hunter2"`. The check runs it on `Bare` (it must pass) and on `LeakyBare`, the
# subclass below (it must fail).
#
# `LeakyBare` makes a mistake real frameworks have made in "debug mode": a handler for
# `Exception`, registered through `bare`'s own hook, answers every bug with a 500 *with
# the exception's message in it*. `bare` stops its handler lookup at `HTTPException`, so
# 4xx answers are unchanged; only bugs leak.

# %%
class LeakyBare(Bare):
    """Answers every bug with a 500 that carries the exception's message."""
    def __init__(self, **options):
        super().__init__(**options)

        @self.exception_handler(Exception)
        def leak(request, error):
            return Response(f"500: {error}\n", 500)


with TestClient(make_app(LeakyBare)) as leaky:
    print(leaky.get("/crash").text)

# %% [markdown]
# There is the secret, in plain text, sent to whoever asked. Now write the test that
# refuses it.

# %% tags=["solution"]
def test_crash_hides_its_message(client):
    ### BEGIN SOLUTION
    response = client.get("/crash")
    assert response.status_code == 500
    assert "hunter2" not in response.text
    ### END SOLUTION


# %% tags=["check"]
with check("Exercise 2"):
    assert callable(test_crash_hides_its_message), "define test_crash_hides_its_message first"
    with TestClient(make_app(), raise_app_exceptions=False) as good:
        test_crash_hides_its_message(good)
    with TestClient(make_app(LeakyBare)) as leaky:
        try:
            test_crash_hides_its_message(leaky)
        except AssertionError:
            print("your test caught the leak")
        else:
            raise AssertionError("the test passed on LeakyBare: check the body for 'hunter2'")

# %% [markdown]
# ### Exercise 3 — a mutant of your own
#
# Now the other way round: write a subclass `NoMountBare(Bare)` that ignores mounts (hint:
# override `mount` so that it does nothing). The check confirms that
# `test_mount_passes_the_rest_of_the_path` fails on it and that the routing tests that
# don't involve the mount still pass.

# %% tags=["solution"]
class NoMountBare(Bare):
    def mount(self, prefix, app):
        ### BEGIN SOLUTION
        return None
        ### END SOLUTION


# %% tags=["check"]
with check("Exercise 3"):
    assert isinstance(NoMountBare, type) and issubclass(NoMountBare, Bare), \
        "define NoMountBare as a subclass of Bare"
    with TestClient(make_app(NoMountBare)) as mutant:
        test_typed_parameter_is_converted(mutant)
        test_wrong_method_is_405_with_allow(mutant)
        try:
            test_mount_passes_the_rest_of_the_path(mutant)
        except AssertionError:
            print("the mount test fails on NoMountBare; the other routing tests pass")
        else:
            raise AssertionError("NoMountBare still serves /admin/where: does mount do nothing?")

# %% [markdown]
# ## Cleaning up
#
# The suite's own servers stopped when its pytest process ended. The notebook started one
# more, `suite-demo`; stop it, and delete the temporary folder with its test files.

# %%
shutil.rmtree(suite_dir)
barelab.stop_all()
