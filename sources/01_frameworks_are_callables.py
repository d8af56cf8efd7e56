# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 01. Frameworks are callables
#
# Flask and Starlette look like big machines: decorators, routers, request objects, a
# development server. In this chapter you open each one up and find a single function call
# at the bottom. You make that call yourself, with no server and no network. Then you hand
# the same object to a real server and fetch it with `curl`.
#
# ## Learning goals
#
# By the end of this chapter you can:
#
# - say what a **server** does and what an **app** does, and where one stops and the other
#   starts;
# - call a Flask app as `app(environ, start_response)` with an `environ` you wrote by hand,
#   and read the status, headers and body it gives back;
# - call a Starlette app as `await app(scope, receive, send)` and watch every event it sends;
# - write the smallest WSGI app and the smallest ASGI app as plain functions, and see that
#   Flask and Starlette objects have exactly the same shape;
# - serve any of them with `barelab.serve`, fetch them with `curl` and
#   `barelab.http_request`, and read what the server logged.

# %% [markdown]
# ## Who does what
#
# When your browser fetches a page from a Python web app, two programs share the work.
#
# - The **server** owns the network. It accepts TCP connections, reads the bytes of each
#   HTTP request and writes the bytes of each response.
# - The **app** owns the answer. Given one request, it decides the status, the headers and
#   the body.
#
# Between the two there is exactly one function call:
#
# ```mermaid
# flowchart LR
#     C["Browser or curl"] -- "HTTP request (bytes)" --> S["Server<br/>gunicorn, uvicorn, barelab…"]
#     S -- "the request as a dict<br/>(environ or scope)" --> A["App: one callable<br/>Flask, Starlette, your function"]
#     A -- "status, headers, body" --> S
#     S -- "HTTP response (bytes)" --> C
# ```
#
# Python has two standard shapes for that call:
#
# - **WSGI** ([PEP 3333](https://peps.python.org/pep-3333/)) is the synchronous one. The
#   server calls `app(environ, start_response)`, where `environ` is a dict that describes
#   the request.
# - **ASGI** (the [ASGI spec](https://asgi.readthedocs.io/en/latest/specs/main.html)) is the
#   asynchronous one. The server calls `await app(scope, receive, send)`, and the two sides
#   trade small dicts called *events*.
#
# Flask speaks WSGI; Starlette (and FastAPI, which is built on it) speak ASGI. The rest of
# this chapter turns those two sentences into code you can run.
#
# The course's helper package is `barelab`. It starts servers from cells and shows you what
# happened. It keeps a list of the servers it is running, which is empty for now:

# %%
import barelab

barelab.running()

# %% [markdown]
# ## A Flask app, called by hand
#
# Here is an ordinary Flask app with two routes. `Flask("greeter")` names the app
# `greeter`; the name comes back later, when you serve it. The last line lists the routes
# Flask now knows.

# %%
from flask import Flask

flask_app = Flask("greeter")

@flask_app.get("/")
def index():
    return "<h1>Hello from Flask</h1>"

@flask_app.get("/hello/<name>")
def hello(name):
    return {"greeting": f"Hello, {name}!"}

[rule.rule for rule in flask_app.url_map.iter_rules()]

# %% [markdown]
# Your two routes are there, plus one you never wrote: Flask adds `/static/...` for files
# in a `static/` folder.
#
# But how does a server *use* this object? It calls it, like a function. Ask Python what
# that call looks like:

# %%
import inspect

inspect.signature(flask_app)

# %% [markdown]
# Two arguments in, an iterable of bytes out. (The names in quotes are type hints:
# `WSGIEnvironment` is a dict, `StartResponse` is a function, and `cabc` is Flask's short
# name for `collections.abc`.) That is the whole WSGI contract. PEP 3333, in the section
# "The Application/Framework Side", puts it in one line: "The application object is
# simply a callable object that accepts two arguments." To call it, you need both.
#
# ### The request, as a dict
#
# `environ` is a plain dict that describes one request. A server builds it from the bytes
# it read off the socket. Here you write it yourself.
#
# Keys in capitals come from CGI, WSGI's 1990s ancestor. Keys that start with `wsgi.`
# are WSGI's own. Each header the client sent becomes `HTTP_` plus its name in
# capitals, so `Host` becomes `HTTP_HOST`. Chapter 04 goes through every key; for now, read
# the comments.

# %%
import io
import sys

environ = {
    "REQUEST_METHOD": "GET",
    "SCRIPT_NAME": "",                # the URL prefix the app lives under (none)
    "PATH_INFO": "/hello/Ada",        # the path inside the app
    "QUERY_STRING": "",               # what follows "?" in the URL (nothing here)
    "SERVER_NAME": "example.test",
    "SERVER_PORT": "80",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "HTTP_HOST": "example.test",      # the Host header the client sent
    "wsgi.version": (1, 0),
    "wsgi.url_scheme": "http",
    "wsgi.input": io.BytesIO(b""),    # the request body, as a file to read (empty for a GET)
    "wsgi.errors": sys.stderr,        # where the app may write error messages
    "wsgi.multithread": False, "wsgi.multiprocess": False, "wsgi.run_once": False,
}
len(environ)

# %% [markdown]
# ### The response, through a callback
#
# A WSGI app does not *return* its status and headers. It passes them to `start_response`,
# a function the server hands in, and then returns the body. The `start_response` below
# just writes down what it was given, so you can look at it afterwards.
#
# (PEP 3333 also asks `start_response` to return a `write()` function. It exists only for
# frameworks older than WSGI, and chapter 06 comes back to it. The `lambda` returned below
# is a do-nothing stand-in.)

# %%
received = []

def start_response(status, headers, exc_info=None):
    received.append((status, headers))
    return lambda data: None

body = flask_app(environ, start_response)
received

# %% [markdown]
# Flask called `start_response` once, with the status line `200 OK` and two headers. It
# worked out the `Content-Type` and the `Content-Length` (27 bytes) for you.
#
# The body is what `flask_app(...)` returned. It is an iterable of byte strings, so join
# them. PEP 3333 also says the server must call the body's `close()` method, if it has one,
# once it is done with it. Do that too:

# %%
data = b"".join(body)
body.close()
data

# %% [markdown]
# That is a whole request handled by Flask, with no socket anywhere. The routing, the
# `<name>` placeholder, turning a Python dict into JSON, counting the bytes: all of it
# happened inside that one call.
#
# ### Break it on purpose
#
# Apps trust the server to build `environ` properly. Leave out one required key and see
# what happens:

# %%
broken = {key: value for key, value in environ.items() if key != "wsgi.url_scheme"}
try:
    flask_app(broken, start_response)
except KeyError as error:
    print("KeyError:", error)

# %% [markdown]
# Flask (through Werkzeug, the WSGI toolkit under it) reads `environ["wsgi.url_scheme"]`
# without a fallback, because PEP 3333 ("environ Variables") requires every server to
# provide it. There is no error page here, only a crash: the code that turns errors into
# pages runs *after* this point. Exercise 2 asks you to find the smallest `environ` Flask
# accepts.
#
# An `environ` that is complete but asks for a page that does not exist gets a proper
# answer instead. Flask writes the 404 page for you:

# %%
received.clear()
body = flask_app({**environ, "PATH_INFO": "/nope"}, start_response)
print(received[0][0])
print(b"".join(body).decode())

# %% [markdown]
# The status line says `404 NOT FOUND` in capitals. That is Werkzeug's spelling, and it
# is harmless: clients go by the number and ignore the words after it (RFC 9112 §4).
#
# ### The same call, with barelab
#
# Writing `environ` by hand once is worth it. After that it is busywork, so
# `barelab.call_wsgi` does it for you: it builds a complete `environ` from a method and a
# path, calls the app, and shows the whole exchange.

# %%
barelab.call_wsgi(flask_app, "GET", "/hello/Ada")

# %% [markdown]
# Read it top to bottom.
#
# - **environ** is folded away; click it to open. It is nearly the dict you wrote, plus
#   `REMOTE_ADDR`, the address of the client.
# - **transcript** lists what happened, in order: the app was called with that `environ`,
#   it called `start_response`, it produced the body (one `yield` row per piece), and
#   `close()` was called.
# - **response** is what a client would receive: status, headers, body.

# %% [markdown]
# ### The smallest WSGI app
#
# Flask is a big, careful version of something that fits in three lines. Here is a WSGI app
# written as a plain function, called with the same `environ` and the same
# `start_response`:

# %%
def hello_wsgi(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return [b"Hello, WSGI!\n"]

received.clear()
body = hello_wsgi(environ, start_response)
received, b"".join(body)

# %% [markdown]
# Same arguments, same kind of answer. To a server, `hello_wsgi` and `flask_app` are the
# same thing: a callable that takes `environ` and `start_response`. That is why one server,
# gunicorn for example, can run a Flask app, a Django app or these three lines without
# knowing which is which.
#
# Notice that the body is a list of **bytes**, not a `str`. The network carries bytes, and
# WSGI makes the app choose the encoding (UTF-8 here).

# %% [markdown]
# ## A Starlette app, called by hand
#
# Now the asynchronous side. Here is the same pair of routes in Starlette. The handlers are
# `async def`, and the routes are a list instead of decorators, but the idea is the same.
# (A FastAPI app is a subclass of `Starlette`, so everything in this section holds for it
# too.)

# %%
from starlette.applications import Starlette
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

async def home(request):
    return HTMLResponse("<h1>Hello from Starlette</h1>")

async def greet(request):
    return JSONResponse({"greeting": f"Hello, {request.path_params['name']}!"})

starlette_app = Starlette(routes=[Route("/", home), Route("/hello/{name}", greet)])
inspect.signature(starlette_app)

# %% [markdown]
# Three arguments this time, and `-> None`: an ASGI app returns nothing.
#
# - Instead of returning the response, it **sends** it, as events, by awaiting `send(...)`.
# - Instead of a file to read the body from, it gets **`receive`**, an async function it
#   awaits to get the next piece of the request.
#
# Trading events both ways makes room for things that are hard or impossible in WSGI:
# waiting for a slow upload without tying up a thread, a response that streams for an
# hour, a WebSocket. Chapters 10 to 15 are about
# exactly that.
#
# ### The request, as a scope
#
# The request itself is described by `scope`, a dict much like `environ`. Its keys are
# lowercase, and the headers sit together in one list instead of being spread over
# `HTTP_...` keys. Each header is a pair of `bytes`, and servers should write the name in
# lowercase (ASGI [HTTP spec](https://asgi.readthedocs.io/en/latest/specs/www.html),
# "HTTP Connection Scope"). The last two lines print the same three facts from each dict.

# %%
scope = {
    "type": "http",                   # what this connection carries: "http", "websocket", ...
    "asgi": {"version": "3.0", "spec_version": "2.4"},  # spec versions the server follows
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/hello/Ada",
    "raw_path": b"/hello/Ada",
    "query_string": b"",
    "root_path": "",                  # ASGI's SCRIPT_NAME
    "headers": [(b"host", b"example.test")],
    "client": ("203.0.113.7", 50123), # who is asking (an address reserved for examples)
    "server": ("example.test", 80),
}
print("WSGI:", environ["REQUEST_METHOD"], environ["PATH_INFO"], environ["HTTP_HOST"])
print("ASGI:", scope["method"], scope["path"], scope["headers"])

# %% [markdown]
# ### Events in, events out
#
# `receive` and `send` are the server's side of the conversation, so here you write them.
# Both write each event down in `events`. `receive` also answers with the request body,
# as an `http.request` event. The last line plays the app and asks for the body once.
# (A notebook lets you `await` right in a cell; more on that in a moment.)

# %%
events = []

async def receive():
    event = {"type": "http.request", "body": b"", "more_body": False}
    events.append(("receive", event))
    return event

async def send(event):
    events.append(("send", event))

await receive()

# %% [markdown]
# That is the event an app gets when it reads the body of this GET: no bytes, and
# `more_body: False`, which says "that was all of it". A long upload would arrive as
# several such events, each with `more_body: True` until the last.
#
# Now clear the log and call the app. First, the mistake everyone makes once: calling it
# without `await`.

# %%
events.clear()
call = starlette_app(scope, receive, send)
print(type(call).__name__, "- events so far:", len(events))
call.close()  # throw it away unrun (and keep Python from warning about it)

# %% [markdown]
# Nothing happened. Calling an `async def` function only builds a *coroutine*, a paused
# piece of work, and waits for someone to run it. In a server that someone is the event
# loop. In a notebook you can `await` right in a cell, and IPython runs it on the kernel's
# loop:

# %%
await starlette_app(scope, receive, send)

for direction, event in events:
    print(direction, event)

# %% [markdown]
# Two `send` events make one response. `http.response.start` carries the status and the
# headers, and `http.response.body` carries the bytes (ASGI HTTP spec, "Response Start"
# and "Response Body").
#
# And `receive` was never called. A GET has no body, and Starlette only reads the body
# when a handler asks for it (`await request.body()`).
#
# ```mermaid
# sequenceDiagram
#     participant S as Server (this notebook)
#     participant A as Starlette app
#     S->>A: await app(scope, receive, send)
#     A->>S: await send(http.response.start: 200, headers)
#     A->>S: await send(http.response.body: b'{"greeting": ...}')
#     A-->>S: returns None
# ```
#
# ### The same call, with barelab
#
# `barelab.call_asgi` builds the `scope`, plays the server's part of `receive` and `send`,
# and shows every event in order:

# %%
barelab.call_asgi(starlette_app, "GET", "/hello/Ada")

# %% [markdown]
# The middle table is the transcript. `app →` marks an event the app sent, and the two rows
# are the same two events you printed yourself. Below it is the response they add up to.
#
# Now open the folded **scope** at the top. After `method` come six keys that barelab
# never wrote: `app`, `router`, `route`, `endpoint`, `path_params` and one for Starlette's
# error handlers. Starlette wrote them into the scope dict while it routed the request;
# that is how `request.path_params['name']` in `greet` found `'Ada'`. barelab shows the
# scope as it was when the app returned.
#
# Your hand-made `scope` went through the same call earlier, so it has them too. It
# started with 12 keys; here is everything after those:

# %%
list(scope)[12:]

# %% [markdown]
# So an app can write into the scope it is given. That does no harm under a real server,
# which builds a fresh scope for every request.
#
# ### The smallest ASGI app
#
# And the plain-function version: two `send` calls, and that is a response.

# %%
async def hello_asgi(scope, receive, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
    await send({"type": "http.response.body", "body": b"Hello, ASGI!\n"})

events.clear()
await hello_asgi(scope, receive, send)
for direction, event in events:
    print(direction, event)

# %% [markdown]
# Put the four apps side by side:
#
# | | WSGI | ASGI |
# | --- | --- | --- |
# | framework object | `flask_app` | `starlette_app` |
# | plain function | `hello_wsgi` | `hello_asgi` |
# | the server calls | `app(environ, start_response)` | `await app(scope, receive, send)` |
# | the request | `environ`, a dict; headers as `str` | `scope`, a dict; headers as `bytes` |
# | the request body | `environ["wsgi.input"]`, a file | `await receive()`, in pieces |
# | the status and headers | `start_response(status, headers)` | `await send({"type": "http.response.start", ...})` |
# | the response body | the returned iterable of `bytes` | `await send({"type": "http.response.body", ...})` |
#
# A framework is a lot of code on the app's side of that line. The server does not know or
# care how much.

# %% [markdown]
# ## Now with a server
#
# So far everything ran inside this notebook as plain function calls. A server adds one
# thing: the network. `barelab.serve` starts one in the background and returns at once.
# The output is a link you can click (under Binder it goes through Jupyter's proxy).

# %%
flask_server = barelab.serve(flask_app)
flask_server

# %% [markdown]
# The server is named after the app, `greeter`, and listens on a free port on
# `127.0.0.1`, the "this machine" address. Fetch a page with `curl`, the command-line HTTP
# client. In a notebook, a line that starts with `!` runs in the shell, and `{...}` drops a
# Python value into it. `flask_server.url` ends with a slash, so the path follows it
# directly. `-s` hides curl's progress bar and `-i` includes the response head.

# %%
# !curl -s -i {flask_server.url}hello/Ada

# %% [markdown]
# That is the same status, the same headers and the same JSON you got from calling the app
# by hand. The server added a few headers of its own, such as `Date` and `Server`: those
# are its job, not the app's.
#
# `barelab.http_request` does the same from Python and returns an object you can inspect.
# `show_raw()` shows both directions byte for byte, with each line's `\r\n` ending made
# visible. The request on top is what the server turned into an `environ` for Flask.
# barelab's client wrote `Host` (every HTTP/1.1 request must carry it, RFC 9112 §3.2) and
# `Connection: close` (one request, then hang up) for you.

# %%
reply = barelab.http_request(flask_server, path="/hello/Ada")
print(reply.status, reply.json())
reply.show_raw()

# %% [markdown]
# The server keeps a log of what it saw. It never prints from its background thread (that
# output would land in whichever cell happens to be running); you ask for the log in the
# cell you are in. Expect two `info` lines from startup, then one line per request: the
# one from `curl` and the one from `http_request`.

# %%
flask_server.log

# %% [markdown]
# ### Running the cell again is safe
#
# In a notebook you re-run cells all the time. Starting a second server on the same port
# would normally fail with "address already in use". `barelab.serve` knows the name
# `greeter` is already running, so it stops the old server first and reuses its port.
# Links in earlier outputs keep working.

# %%
port_before = flask_server.port
flask_server = barelab.serve(flask_app)
print("same port:", flask_server.port == port_before)
print("running:", [server.name for server in barelab.running()])

# %% [markdown]
# ### The Starlette app, served
#
# The same call serves the ASGI app. barelab sees that `starlette_app` is an async
# callable and picks its ASGI server for it. A Starlette app has no name of its own, so
# the server takes the class name.

# %%
starlette_server = barelab.serve(starlette_app)
starlette_server

# %%
# !curl -s -i {starlette_server.url}hello/Ada

# %% [markdown]
# The header names are in lowercase this time. An ASGI app must give the server lowercase
# header names (ASGI HTTP spec, "Response Start"), and HTTP header names are
# case-insensitive (RFC 9110 §5.1), so `content-type` and `Content-Type` mean the same to
# every client. The body is one byte shorter than Flask's because Flask ends its JSON with
# a newline and Starlette does not.
#
# The log:

# %%
starlette_server.log

# %% [markdown]
# The first line is new. Before the first request, an ASGI server tells the app that it is
# starting up, through a third kind of scope, `lifespan`. That gives the app a moment to
# open database connections and the like. Starlette answered "startup complete". Chapter
# 14 is about lifespan.

# %% [markdown]
# ### The plain functions, served
#
# The two plain functions from earlier get the same treatment. To a server, each is just
# another WSGI or ASGI callable.

# %%
hello_wsgi_server = barelab.serve(hello_wsgi)
hello_asgi_server = barelab.serve(hello_asgi)
print(barelab.http_request(hello_wsgi_server).text, end="")
print(barelab.http_request(hello_asgi_server).text, end="")

# %% [markdown]
# Both answer. But `hello_asgi` never looks at `scope["type"]`. When the server called it
# with the `lifespan` scope to announce startup, it sent `http.response.start` as if that
# were a web request. barelab noticed, wrote down why as the first line of the log, and
# carried on without lifespan. Here is that line:

# %%
print(hello_asgi_server.log.entries[0].message)

# %% [markdown]
# Nothing is broken: the ASGI lifespan spec (section "Scope") lets an app say no to
# lifespan by raising an exception, and the server must then carry on without lifespan
# events. The polite version of `hello_asgi` would check `scope["type"]` and raise on any
# type it does not handle, instead of answering the wrong question.

# %% [markdown]
# ## Summary
#
# - A web **server** owns the network: connections, bytes, HTTP. An **app** owns the
#   answer. Between them is one function call.
# - **WSGI** (PEP 3333): `app(environ, start_response)` returns an iterable of bytes. The
#   status and headers go through `start_response`, and the server calls `close()` on the
#   body when it is done.
# - **ASGI**: `await app(scope, receive, send)` returns nothing. The request body comes in
#   through `receive`, and the response goes out as `http.response.start` and
#   `http.response.body` events through `send`.
# - A Flask app and a Starlette app are each exactly such a callable. You called them with
#   dicts you wrote by hand, without any server.
# - `barelab.call_wsgi` / `barelab.call_asgi` make that call for you and show the
#   transcript. `barelab.serve(app)` puts any app on the network, and re-running the cell
#   replaces the server on the same port. `server.log` shows what the server saw.
#
# Chapter 02 looks at the bytes that travel between the browser and the server, and
# chapter 03 tries to answer them without any framework at all.

# %% [markdown]
# ## Exercises
#
# Each exercise has a cell for your answer and a check cell below it. Run the check cell:
# it prints ✅ when your answer works and says what is wrong when it does not.
#
# ### Exercise 1 — an echo app
#
# Write a WSGI app `echo_app` that answers `200 OK` with a `text/plain` body made of the
# request method and path, separated by a space. A `POST` to `/a/b` gets the body
# `b"POST /a/b"`.

# %% tags=["solution"]
def echo_app(environ, start_response):
    ### BEGIN SOLUTION
    text = f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}"
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return [text.encode("utf-8")]
    ### END SOLUTION

# %% tags=["check"]
from barelab.exercises import check

with check("Exercise 1"):
    received.clear()
    answer = b"".join(echo_app({**environ, "REQUEST_METHOD": "POST", "PATH_INFO": "/a/b"},
                               start_response))
    assert received, "echo_app never called start_response"
    assert received[0][0] == "200 OK", f"the status is {received[0][0]!r}, expected '200 OK'"
    assert answer == b"POST /a/b", f"the body is {answer!r}, expected b'POST /a/b'"

# %% [markdown]
# ### Exercise 2 — the smallest environ Flask accepts
#
# Build `minimal_environ`, a dict with as few keys as you can manage, such that
# `flask_app(minimal_environ, start_response)` answers `200 OK` for `/hello/Ada`. Start from
# an empty dict, call the app, and add whichever key the `KeyError` names. When the errors
# stop, make sure the answer is `200` and not `404`. Three keys are enough.
#
# One trap: Flask writes a `werkzeug.request` key into the dict you pass it. Call it with
# a copy, `flask_app(dict(minimal_environ), start_response)`, so your dict keeps only the
# keys you chose.

# %% tags=["solution"]
### BEGIN SOLUTION
minimal_environ = {
    "REQUEST_METHOD": "GET",
    "PATH_INFO": "/hello/Ada",
    "wsgi.url_scheme": "http",
}
### END SOLUTION

# %% tags=["check"]
with check("Exercise 2"):
    print("minimal_environ has the keys", sorted(minimal_environ))
    received.clear()
    answer = b"".join(flask_app(dict(minimal_environ), start_response))
    assert received[0][0] == "200 OK", f"Flask answered {received[0][0]!r}, expected '200 OK'"
    assert b"Hello, Ada!" in answer, f"the body is {answer!r}: is PATH_INFO '/hello/Ada'?"
    assert len(minimal_environ) <= 3, f"{len(minimal_environ)} keys: it works, now remove some"

# %% [markdown]
# ### Exercise 3 — an ASGI app that answers JSON
#
# Write an ASGI app `json_asgi` that answers `200` with the JSON document
# `{"method": ..., "path": ...}` taken from the scope. Set `content-type` to
# `application/json`. Remember that header names and values are `bytes` in ASGI.

# %% tags=["solution"]
import json

async def json_asgi(scope, receive, send):
    ### BEGIN SOLUTION
    payload = json.dumps({"method": scope["method"], "path": scope["path"]}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": payload})
    ### END SOLUTION

# %% tags=["check"]
with check("Exercise 3"):
    events.clear()
    await json_asgi({**scope, "method": "PUT", "path": "/things/7"}, receive, send)
    sent = [event for direction, event in events if direction == "send"]
    assert sent and sent[0]["type"] == "http.response.start", "first send http.response.start"
    assert sent[0]["status"] == 200, f"the status is {sent[0]['status']}, expected 200"
    assert (b"content-type", b"application/json") in sent[0]["headers"], \
        "set the header (b'content-type', b'application/json')"
    body = b"".join(event.get("body", b"") for event in sent[1:])
    assert json.loads(body) == {"method": "PUT", "path": "/things/7"}, f"the body is {body!r}"

# %% [markdown]
# ### Exercise 4 — serve your echo app
#
# Put `echo_app` from exercise 1 on the network with `barelab.serve` and keep the handle in
# `echo_server`. Then try `!curl -s -X DELETE {echo_server.url}anything` in a new cell.

# %% tags=["solution"]
### BEGIN SOLUTION
echo_server = barelab.serve(echo_app)
### END SOLUTION
echo_server

# %% tags=["check"]
with check("Exercise 4"):
    reply = barelab.http_request(echo_server, "DELETE", "/anything")
    assert reply.status == 200, f"the server answered {reply.status}, expected 200"
    assert reply.body == b"DELETE /anything", f"the body is {reply.body!r}"

# %% [markdown]
# ## Clean up
#
# Stop every server this chapter started. The number is how many were still running.

# %%
barelab.stop_all()
