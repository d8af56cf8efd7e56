# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 19. Conformance
#
# You wrote two servers, and you have used barelab's all along. Do they follow the RFCs, or
# only the happy path? This chapter answers with a *battery*: fifty-odd small requests, most
# of them broken on purpose, each tied to one sentence of an RFC. You send them over raw
# sockets to the course's servers and to real ones (wsgiref, gunicorn, uvicorn, hypercorn)
# and read the result as one table.
#
# ## Learning goals
#
# By the end of this chapter you can:
#
# - turn a sentence of an RFC ("a server MUST respond with 400 to...") into a *probe*: the
#   exact bytes to send, and a function that judges what came back;
# - write a client that can never hang: every wait has a timeout, and so does every probe
#   and the whole battery;
# - run the same apps on eight servers, three of them in child processes, and stop them all;
# - read a conformance table: tell a MUST failure from a SHOULD, and explain why a popular
#   server fails a rule the course's servers pass;
# - add probes of your own, and run them everywhere with one call.

# %% [markdown]
# ## What a probe is
#
# Every chapter so far tested its server with a few requests written for it. A conformance
# battery turns that around: the requests come from the specification, and any server can
# be put in front of them. Each probe is three things:
#
# - **a rule**, quoted with its section, and its *level*: RFC 2119 keywords say how strong
#   a requirement is. MUST is an absolute requirement, SHOULD a strong recommendation that
#   a server may break for a good reason, MAY a free choice;
# - **a script**: the exact bytes to send, sometimes in several steps (send, read, pause,
#   send again, hang up);
# - **a verdict**: a function that looks at what came back (status codes, headers, body,
#   WebSocket frames, and whether the connection stayed open) and says pass or fail.
#
# Take one sentence and watch it become those three things. RFC 9112 §5.1: "A server MUST
# reject, with a response status code of 400 (Bad Request), any received request message
# that contains whitespace between a header field name and colon."
#
# - the rule is "RFC 9112 §5.1", and the level is MUST, the word in the sentence;
# - the script sends a request with a header line `X-Probe : a`, then reads the answer;
# - the verdict passes if the status is 400, and fails on anything else, including no
#   answer at all.
#
# ```mermaid
# flowchart LR
#     P["probe<br/>rule · level · script"] -- "raw bytes" --> S["server<br/>(any of eight)"]
#     S -- "responses, frames,<br/>open or closed" --> O["outcome"]
#     O --> V["verdict<br/>✓ or ✗"]
#     V --> T["table:<br/>probes × servers"]
# ```
#
# The servers never know they are being tested. They get bytes on a socket, as always.
#
# Why not test with `requests` or `httpx`, which you already know? Because a good client
# refuses to send a broken request: it will not put a space before a colon, two
# `Content-Length` lines or a bare CR on the wire, and those are exactly the requests you
# want to send. On the way back it hides what you need to see: it decodes chunked bodies,
# merges headers and reuses connections behind your back. So this chapter writes its own
# tiny client, one that sends bytes as written and reports everything it got.
#
# The chapter builds the battery in the order you would build it yourself:
#
# 1. one probe by hand, to see what the whole chapter automates;
# 2. two *echo apps* that make a server's decisions visible, and eight servers to run
#    them on;
# 3. a reader for responses that can never hang, and the dataclasses it fills in;
# 4. probes and verdicts as data, and a runner that turns them into a table;
# 5. seven groups of probes, one section each, with what the table says about each server;
# 6. the whole battery, a test that it cannot hang, and how to add a probe of your own.
#
# If you came for the results, each group's section ends with its table and a few lines on
# why the servers differ; the section "The whole battery" has everything in one table.

# %% [markdown]
# ## A probe by hand
#
# Start with one rule, RFC 9112 §5.2. An old way of writing a long header was to continue it
# on the next line, indented (*obs-fold*, obsolete line folding). The RFC says a server MUST
# either reject such a request with 400 or replace the fold with a space before using the
# value. Here is a tiny WSGI app that shows which value it got, served by the course's WSGI
# server from chapter 06. `barelab.raw_exchange` sends the bytes exactly as written, on a
# fresh connection, and records what came back; `.status` is the status code it found.
# The folded line is the `\r\n b` in the middle of `folded`:

# %%
import barelab
from barelab.built.wsgi_server import WSGIServer

def show_probe(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"x-probe={environ.get('HTTP_X_PROBE')!r}\n".encode()]

course = barelab.serve(show_probe, name="by-hand", server=WSGIServer)
folded = b"GET / HTTP/1.1\r\nHost: x\r\nX-Probe: a\r\n b\r\nConnection: close\r\n\r\n"
barelab.raw_exchange(course, folded).status

# %% [markdown]
# 400: the course server refuses. That is one of the two answers the rule allows, and the
# safer one: the server never has to decide what the folded value means.
#
# Now the same bytes to `wsgiref`, the server in Python's standard library (it is what
# `python -m wsgiref.simple_server` runs, and what many tutorials use for a first WSGI
# app). `make_server` binds a port and returns a server object; its `handle_request()`
# answers exactly one request, so a thread can run it while the cell sends the bytes.
# Look at the last line of the output, the body the app sent back:

# %%
import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

class Quiet(WSGIRequestHandler):
    def log_message(self, *args): pass           # wsgiref prints each request otherwise

reference = make_server("127.0.0.1", 0, show_probe, handler_class=Quiet)
one_request = threading.Thread(target=reference.handle_request, daemon=True)
one_request.start()
by_hand = barelab.raw_exchange(f"http://127.0.0.1:{reference.server_port}/", folded)
one_request.join(timeout=5)
reference.server_close()
by_hand.received.split(b"\r\n\r\n")[-1]

# %% [markdown]
# wsgiref answered 200, and the app saw the value `'a\r\n b'`: the fold kept, CR and LF
# included, inside the header's value. That is neither of the two things the RFC allows.
# Is it serious? An app that copies this value into a response header asks the server to
# write a line break into its response; a server that does not check (the course's does)
# then lets whoever wrote the request write the lines after it (*header injection*). And
# when a server and a proxy in front of it disagree about what a header says, a request
# can mean one thing to each; chapter 02 showed how that turns into *request smuggling*.
#
# That was one probe, done by hand, on two servers. The rest of the chapter makes probes
# into data, so that fifty of them run on eight servers in a few seconds.

# %% [markdown]
# ## The module, and two apps to probe with
#
# Everything marked `#| export` goes to `barelab/built/conformance.py`, so that a test
# file (and you, later) can run the battery without this notebook.

# %%
#| default_exp conformance

# %% [markdown]
# The module starts with its imports, the three RFC 2119 levels, and two time limits. Every
# wait for the server lasts at most `READ_TIMEOUT`, and a whole probe at most
# `PROBE_BUDGET`: a server that never answers costs a second, not your afternoon.
#
# The opening comment is the module's summary for whoever opens the file later. Notice
# what is missing from the imports: no `requests`, no `http.client`, no `h11`. The
# battery talks to servers with nothing but `socket`, so no library can tidy up a request
# on its way out or an answer on its way in.

# %%
#| export
# A conformance battery: probes are data (a rule, its RFC level, a script of socket steps and a
# verdict), run over raw sockets against any server that listens on host:port. Nothing here
# can hang: every socket wait has a timeout, every probe and every battery a deadline. The
# same small echo apps (WSGI and ASGI) run on every server, and Engine classes put wsgiref,
# gunicorn, uvicorn and hypercorn behind barelab.serve, like the course's own servers.
import html
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

# %% [markdown]
# Those are the plain building blocks: sockets for the probes, `subprocess` for the
# servers that run as programs, threads to run several servers at once. The rest are the
# few names the module uses from elsewhere: dataclasses for probes and outcomes, wsgiref's
# server classes (one of the servers under test), and barelab's `Engine`, the base class
# every server plugged into `barelab.serve` extends:

# %%
#| export
from dataclasses import dataclass, field
from importlib.util import find_spec
from typing import Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer as ReferenceServer
from socketserver import ThreadingMixIn

from barelab.engines.base import Engine

# %% [markdown]
# The constants come next. A probe's level is one of three strings, spelled the way the
# RFCs spell them in capitals, so a table row can show it as it is. The two time limits
# look generous for servers on your own machine, which answer in a millisecond or two: a
# second is enough for any server that means to answer, and short enough that a server
# that never will costs little.

# %%
#| export
MUST, SHOULD, MAY = "MUST", "SHOULD", "MAY"     # RFC 2119 keywords
READ_TIMEOUT = 1.0      # seconds any one wait for the server may last
PROBE_BUDGET = 3.0      # seconds one probe may last, all its steps together

# %% [markdown]
# Next, the apps. A probe can only judge what it can see from outside, through the
# socket. When a server gets a folded header, did it join the lines with a space, keep
# the line break, or drop the header? From outside you cannot tell, unless the app tells
# you. So the apps in this chapter do nothing but report what the server handed them.
#
# A request without a body gets one line saying which path, query string and `X-Probe`
# header the app received. Both apps, WSGI and ASGI, write that line with the same
# function, so their answers match byte for byte:

# %%
#| export
def echo_text(path: str, query: str, probe) -> bytes:
    """What the echo apps answer to a request without a body: what they were given."""
    return f"path={path} query={query} x-probe={probe}\n".encode("utf-8", "replace")

# %% [markdown]
# `echo_wsgi` answers a request's body with that body, and a request without one with
# `echo_text`. That is how a probe sees whether a chunked body was decoded (the echo is
# `abc`) and whether a folded header arrived as `a b`. Two paths, `/204` and `/304`,
# answer with those statuses, which must never carry a body: they let the probes check
# that the server does not add one.

# %%
#| export
def echo_wsgi(environ, start_response):
    """Echo the request body; without one, describe the request. /204 and /304 are empty."""
    path = environ.get("PATH_INFO", "")
    if path in ("/204", "/304"):
        start_response("204 No Content" if path == "/204" else "304 Not Modified", [])
        return [b""]
    stream, length = environ["wsgi.input"], environ.get("CONTENT_LENGTH")
    if length:
        body = stream.read(int(length))
    else:       # a chunked body: readable to its end only where the server says so
        body = stream.read() if environ.get("wsgi.input_terminated") else b""
    body = body or echo_text(path, environ.get("QUERY_STRING", ""), environ.get("HTTP_X_PROBE"))
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]

# %% [markdown]
# Two details in it are about servers, not apps. A chunked request has no
# `CONTENT_LENGTH`, and PEP 3333 gives an app no way to know where such a body ends;
# `wsgi.input_terminated` is an extension (gunicorn and mod_wsgi set it) that promises
# `read()` stops at the end of the body. Without it the app reads nothing, rather than
# wait forever. And the `Content-Length` the app sets means the server never has to
# decide how to frame the response.
#
# Call it in-process with `barelab.call_wsgi` (no server at all), once with a body and
# once without:

# %%
[barelab.call_wsgi(echo_wsgi, "POST", "/echo", body=b"abc").body,
 barelab.call_wsgi(echo_wsgi, "GET", "/p?q=1", headers={"X-Probe": "hi"}).body]

# %% [markdown]
# The first request got its body back, `abc`. The second had none, so the app described
# what it was given: the path, the query string and the `X-Probe` header. Every verdict
# in this chapter reads one of these two kinds of body.
#
# Note the `int(length)`: the app trusts the server to hand it a valid `CONTENT_LENGTH`,
# as PEP 3333 lets it. One of the probes below will show a server that breaks that trust.
#
# The ASGI twin does the same for `http` scopes, echoes every WebSocket message back, and
# answers the lifespan protocol so that no server complains. Its parts first:

# %%
#| export
async def read_whole_body(receive) -> bytes | None:
    """Every http.request chunk joined; None if the client went away first."""
    body, more = b"", True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body, more = body + message.get("body", b""), message.get("more_body", False)
    return body

# %% [markdown]
# `None` is the important case: a client that hangs up halfway through its body must not
# get an echo of half a body. An ASGI server tells the app about the hang-up with an
# `http.disconnect` message; a WSGI app has no such message, which will matter in the
# "client vanishes" probe near the end.
#
# The WebSocket part accepts the connection, then sends every message straight back. An
# incoming message looks like `{"type": "websocket.receive", "text": "hello"}`, and the
# message to send one back is the same dictionary with the type changed to
# `websocket.send`, so `{**message, "type": ...}` is the whole echo. Text stays text and
# bytes stay bytes, because the `text` or `bytes` key is copied as it came:

# %%
#| export
async def echo_websocket(receive, send) -> None:
    """Accept, then send every text or bytes message back as it came."""
    await receive()                                     # websocket.connect
    await send({"type": "websocket.accept"})
    while (message := await receive())["type"] == "websocket.receive":
        await send({**message, "type": "websocket.send"})

# %% [markdown]
# uvicorn and hypercorn send a `lifespan` scope at startup and at shutdown, and log a
# warning if the app cannot answer it. The echo app has nothing to set up, so it says
# "complete" to each:

# %%
#| export
async def answer_lifespan(receive, send) -> None:
    """Say yes to startup and to shutdown: the echo app has nothing to set up."""
    while (await receive())["type"] != "lifespan.shutdown":
        await send({"type": "lifespan.startup.complete"})
    await send({"type": "lifespan.shutdown.complete"})

# %% [markdown]
# The HTTP part is `echo_wsgi` again, in ASGI's terms. The status line becomes an
# `http.response.start` message and the body an `http.response.body` message; the
# `X-Probe` header comes out of `scope["headers"]`, a list of byte pairs with lower-case
# names, instead of `environ["HTTP_X_PROBE"]`. A client that vanished gets no answer:

# %%
#| export
async def _echo_http(scope, receive, send):
    if scope["path"] in ("/204", "/304"):
        await send({"type": "http.response.start", "status": int(scope["path"][1:])})
        return await send({"type": "http.response.body"})
    body = await read_whole_body(receive)
    if body is None:
        return
    probe = dict(scope["headers"]).get(b"x-probe")
    body = body or echo_text(scope["path"], scope["query_string"].decode("latin-1"),
                             probe if probe is None else probe.decode("latin-1"))
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})

# %% [markdown]
# And the app itself, which picks one of the three by scope type. This is the one name
# the ASGI servers are given:

# %%
#| export
async def echo_asgi(scope, receive, send):
    """echo_wsgi for ASGI, plus a WebSocket echo on every path."""
    if scope["type"] == "lifespan":
        return await answer_lifespan(receive, send)
    if scope["type"] == "websocket":
        return await echo_websocket(receive, send)
    return await _echo_http(scope, receive, send)

# %% [markdown]
# The same two questions, asked in-process with `barelab.call_asgi`, should get the same
# two answers, byte for byte. If they did not, a WSGI column and an ASGI column of the
# table could differ because of the apps, not the servers:

# %%
[barelab.call_asgi(echo_asgi, "POST", "/echo", body=b"abc").body,
 barelab.call_asgi(echo_asgi, "GET", "/p?q=1", headers={"X-Probe": "hi"}).body]

# %% [markdown]
# The same two bodies as from `echo_wsgi`. From here on, when a WSGI server and an ASGI
# server answer the same probe differently, the difference is in the servers.

# %% [markdown]
# ## Eight servers
#
# The battery needs somewhere to run. Here are the eight servers it will run on, four for
# each interface:
#
# | column | interface | what it is | runs in |
# | --- | --- | --- | --- |
# | course WSGI | WSGI | the server you wrote in chapter 06 | a thread of this kernel |
# | barelab WSGI | WSGI | barelab's own engine, used all through the course | a thread |
# | wsgiref | WSGI | the standard library's reference server | a thread |
# | gunicorn | WSGI | the usual production WSGI server | a child process |
# | course ASGI | ASGI | chapters 13 and 15: your ASGI server with WebSockets | a thread |
# | barelab ASGI | ASGI | barelab's own engine, on h11 | a thread |
# | uvicorn | ASGI | the usual production ASGI server (what `fastapi run` starts) | a child process |
# | hypercorn | ASGI | another production ASGI server | a child process |
#
# Three of the real servers (uvicorn, hypercorn, and barelab's own) parse HTTP with
# *h11*, a small library that turns bytes into request events and leaves every decision
# about connections to the server that uses it. Keep that in mind: when two of them fail
# the same probe, it is often a decision h11 leaves open.
#
# `barelab.serve(app, server=...)` takes any class with `start()` and `stop()` (chapter 06
# plugged its server in that way), so each real server gets a small *engine* class too.
# That way every server, yours or not, is stopped by `barelab.stop_all()` at the end, and
# re-running a cell replaces a server instead of leaking one.
#
# wsgiref first. Its `WSGIServer` handles one connection at a time; mixing in
# `socketserver.ThreadingMixIn` gives each connection a thread, which is how it is usually
# run. The engine hands it the socket barelab bound, and sends what wsgiref would print
# (a line per request, a traceback per app error) to barelab's `server.log` instead, or
# nowhere. First, a file-like object for the tracebacks, which collects what is written
# and logs it as one entry when wsgiref flushes:

# %%
#| export
class ErrorsToLog:
    """wsgi.errors for wsgiref: what it writes (tracebacks) goes to the barelab server log."""

    def __init__(self, log):
        self.log, self.text = log, ""

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        if self.text.strip():
            self.log.error(self.text.strip())
        self.text = ""

# %% [markdown]
# wsgiref's request handler prints a line per request with `log_message`, and hands the app
# `sys.stderr` as `wsgi.errors` (the stream PEP 3333 gives an app for error output)
# through `get_stderr`. Overriding both keeps the notebook's
# cells clean, which matters here: output from a server thread lands in whatever cell runs
# at that moment, and a stored output that changes from run to run would break the
# notebook's own tests. The handler finds the log through its server
# (`self.server.barelab_log`), which the engine sets below. The threading mix-in gives
# every connection its own thread, and `daemon_threads` lets the kernel exit even if a
# connection is still open:

# %%
#| export
class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):   # wsgiref prints every request to stderr
        pass

    def get_stderr(self):                   # and every app traceback
        return ErrorsToLog(self.server.barelab_log)


class ThreadingReferenceServer(ThreadingMixIn, ReferenceServer):
    daemon_threads = True

# %% [markdown]
# The engine itself builds the server without letting it bind (`bind_and_activate=False`),
# swaps in barelab's socket, and runs `serve_forever` in a daemon thread. Read `start()`
# as four steps:
#
# 1. build wsgiref's server object, unbound;
# 2. throw away the socket it made and put barelab's in its place, with the host and port
#    wsgiref would otherwise have learned from binding;
# 3. `setup_environ()` and `set_app()`, the two calls wsgiref's own `make_server` makes;
# 4. start `serve_forever`, which checks every 0.05 s whether it should stop.

# %%
#| export
class WSGIRefServer(Engine):
    """wsgiref's server, one thread per connection: ``serve(app, server=WSGIRefServer)``."""

    kind = "wsgi"

    def start(self) -> None:
        host, port = self.sock.getsockname()[:2]
        self.httpd = ThreadingReferenceServer((host, port), QuietHandler,
                                              bind_and_activate=False)
        self.httpd.socket.close()             # its own, unbound socket: use barelab's
        self.httpd.socket, self.httpd.server_name, self.httpd.server_port = self.sock, host, port
        self.httpd.setup_environ()
        self.httpd.set_app(self.app)
        self.httpd.barelab_log = self.log
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True, name=f"wsgiref-{port}")
        self.thread.start()

# %% [markdown]
# `stop()` has to undo two things. `shutdown()` ends the `serve_forever` loop (which
# checks for it every 0.05 s) but leaves the listening socket open; `server_close()`
# closes it. Forget the second and the port stays taken until the kernel exits.

# %%
#| export
def _stop_wsgiref(self, timeout: float = 2.0) -> None:
    self.httpd.shutdown()                 # ends serve_forever (polls every 0.05 s)
    self.httpd.server_close()             # closes the listening socket
    self.thread.join(timeout)

WSGIRefServer.stop = _stop_wsgiref

# %% [markdown]
# Nothing runs yet: these cells only define the engine. You will see wsgiref serve once
# all eight servers start together, a few cells below.
#
# gunicorn, uvicorn and hypercorn are programs: each runs in its own process, started with
# the kernel's own Python (`sys.executable -m gunicorn ...`). Three details matter:
#
# - **The port.** barelab has bound the socket already. The child inherits it
#   (`pass_fds`) and is told its file descriptor number: `--bind fd://N` for gunicorn and
#   hypercorn, `--fd N` for uvicorn. (A file descriptor is the small integer the
#   operating system uses to name an open socket or file; `pass_fds` keeps it open, under
#   the same number, in the child.) No race for a free port.
# - **The app.** A child process cannot see a notebook cell; it imports the app by name,
#   `module:attribute`. The echo apps live in `barelab.built.conformance`, so the child
#   imports them from there. The child runs in a fresh temporary directory, so nothing
#   in the notebook's folder can shadow that module.
# - **Ready or not.** The socket accepts connections before the child has imported
#   anything, so `start()` asks `GET /` until a `200` comes back, and fails at once if the
#   child exits.
#
# The base class says what differs from server to server: the module `python -m` runs,
# and its command line, built from the socket's file descriptor and the app's
# `module:attribute` name.

# %%
#| export
class ProcessServer(Engine):
    """A server in a child process, on the socket barelab bound; subclasses give command()."""

    kind = "asgi"
    module = ""                                # what `python -m` runs

    def command(self, fd: int, app_ref: str) -> list[str]:
        raise NotImplementedError

# %% [markdown]
# `start()` is the same for all three. It refuses an app defined in a notebook cell (its
# module is `__main__`, which the child cannot import), then runs the command in a fresh
# temporary directory, with everything the child prints going to a file there. A file
# and not a pipe: nobody reads a pipe while the server runs, and a child that fills one
# blocks on its next log line, which looks exactly like a server that hangs.

# %%
#| export
def _start_process(self) -> None:
    if self.app.__module__ == "__main__":
        raise ValueError("a child process cannot import an app defined in a notebook "
                         "cell: put it in a module and serve it from there")
    self.workdir = tempfile.TemporaryDirectory(prefix=f"{self.module}-")
    self.output = open(os.path.join(self.workdir.name, "output.log"), "w")
    fd = self.sock.fileno()
    self.process = subprocess.Popen(
        [sys.executable, "-m", self.module,
         *self.command(fd, f"{self.app.__module__}:{self.app.__name__}")],
        pass_fds=[fd], cwd=self.workdir.name, stdout=self.output, stderr=subprocess.STDOUT)
    self.wait_until_ready()

ProcessServer.start = _start_process

# %% [markdown]
# Waiting for the child: ask `GET /` every 50 ms until the first twelve bytes of the answer
# are `HTTP/1.1 200`, for at most fifteen seconds, and give up at once if the child has
# exited. A server that never comes up is stopped, and its output shown in the error.
#
# Why a full request and not just a connection? Because the kernel accepts connections
# on the listening socket from the moment barelab binds it, before the child has even
# started Python. Only an HTTP answer proves that the server is up and the app imported.
# A typo in the app's name shows up here, as the child's own traceback in the error.

# %%
#| export
def _wait_until_ready(self, timeout: float = 15.0) -> None:
    address, deadline = self.sock.getsockname()[:2], time.monotonic() + timeout
    while time.monotonic() < deadline and self.process.poll() is None:
        try:
            with socket.create_connection(address, timeout=READ_TIMEOUT) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: ready\r\nConnection: close\r\n\r\n")
                if sock.recv(12) == b"HTTP/1.1 200":
                    return
        except OSError:
            pass
        time.sleep(0.05)
    self.stop()
    raise RuntimeError(f"{self.module} did not start; its output:\n{self.output_text()[-2000:]}")

ProcessServer.wait_until_ready = _wait_until_ready

# %% [markdown]
# Stopping closes everything `start()` opened: the process, its output file, the socket
# (the engine owns it, as barelab's engine contract says) and the temporary directory.
# `terminate()` sends SIGTERM, which all three servers treat as "finish what you are
# doing and exit"; a child that has not exited five seconds later gets SIGKILL, which it
# cannot refuse. `output_text()` shows what the server printed, for when something goes
# wrong.

# %%
#| export
def _stop(self, timeout: float = 5.0) -> None:
    self.process.terminate()
    try:
        self.process.wait(timeout)
    except subprocess.TimeoutExpired:
        self.process.kill()
        self.process.wait()
    self.output.close()
    self.sock.close()
    self.workdir.cleanup()


def _output_text(self) -> str:
    with open(self.output.name) as output:
        return output.read()

ProcessServer.stop = _stop
ProcessServer.output_text = _output_text

# %% [markdown]
# Each real server is then just its command line, the one you would type in a terminal
# with `fd://N` in place of a host and port:
#
# - gunicorn runs its default *sync* worker: one process that handles one connection at a
#   time. `--graceful-timeout 2` lets `stop()` finish in two seconds instead of thirty.
# - uvicorn gets `--http h11`, the pure-Python parser; its default is `httptools` when that
#   is installed, h11 otherwise. `--log-level warning` keeps it from logging each request.
# - hypercorn needs nothing but the socket and the app.

# %%
#| export
class Gunicorn(ProcessServer):
    kind, module = "wsgi", "gunicorn"

    def command(self, fd, app_ref):
        return ["--bind", f"fd://{fd}", "--worker-class", "sync", "--workers", "1",
                "--graceful-timeout", "2", app_ref]


class Uvicorn(ProcessServer):
    module = "uvicorn"

    def command(self, fd, app_ref):
        http = self.options.get("http", "h11")
        return ["--fd", str(fd), "--http", http, "--log-level", "warning", app_ref]


class Hypercorn(ProcessServer):
    module = "hypercorn"

    def command(self, fd, app_ref):
        return ["--bind", f"fd://{fd}", app_ref]

# %% [markdown]
# A real server may not be installed. `find_spec` says whether a module could be imported,
# without importing it. `serve_if_installed` serves the app, or returns `None` for a server
# that is missing, and the table will say "not installed" in its column. That keeps the
# chapter runnable on a machine with only the standard library: the table just gets
# narrower.

# %%
#| export
def serve_if_installed(app, name: str, engine, module: str | None = None, **options):
    """barelab.serve(app, name=..., server=engine), or None if ``module`` is not installed."""
    import barelab
    if module is not None and find_spec(module) is None:
        return None
    return barelab.serve(app, name=name, server=engine, **options)

# %% [markdown]
# Now start all eight: four WSGI servers with `echo_wsgi` and four ASGI servers with
# `echo_asgi`. The course's ASGI server is chapter 15's `WebSocketASGIServer`, chapter 13's
# server plus WebSockets. The three child processes take a second or so each to start.
#
# The first line imports names this notebook has just defined. That is on purpose: the
# child processes import the apps from `barelab.built.conformance`, so the notebook does
# too, and every server runs the very same code. Later cells do the same whenever they
# start using something from the module.

# %%
from barelab.built.conformance import (Gunicorn, Hypercorn, Uvicorn, WSGIRefServer,
                                       echo_asgi, echo_wsgi, serve_if_installed)
from barelab.built.websocket import WebSocketASGIServer

servers = {
    "course WSGI": barelab.serve(echo_wsgi, name="course-wsgi", server=WSGIServer),
    "barelab WSGI": barelab.serve(echo_wsgi, name="barelab-wsgi"),
    "wsgiref": serve_if_installed(echo_wsgi, "wsgiref", WSGIRefServer),
    "gunicorn": serve_if_installed(echo_wsgi, "gunicorn", Gunicorn, "gunicorn"),
    "course ASGI": barelab.serve(echo_asgi, name="course-asgi", server=WebSocketASGIServer),
    "barelab ASGI": barelab.serve(echo_asgi, name="barelab-asgi"),
    "uvicorn": serve_if_installed(echo_asgi, "uvicorn", Uvicorn, "uvicorn", http="h11"),
    "hypercorn": serve_if_installed(echo_asgi, "hypercorn", Hypercorn, "hypercorn"),
}
{name: server.url if server else "not installed" for name, server in servers.items()}

# %% [markdown]
# Eight servers, each on its own port (the ports change from run to run). If one of the
# real ones were missing, its line would say "not installed", and its column in every
# table below would say `n/i`.
#
# Each value in `servers` is a barelab server handle, the same kind `barelab.serve` has
# returned all through the course: `.host`, `.port` and `.url` say where it listens,
# `.log` what it logged, and its engine's `kind` ("wsgi" or "asgi") says which interface
# it speaks. The battery uses nothing else.
#
# One question decides what the uvicorn column means. Is `httptools` here, so that
# uvicorn's default would differ from `--http h11`?

# %%
from importlib.util import find_spec

find_spec("httptools") is not None

# %% [markdown]
# No: on this machine uvicorn's default parser *is* h11, so one uvicorn column covers both
# the way it runs here and the way it runs by default.
# (If you have httptools, add `"uvicorn httptools": serve_if_installed(echo_asgi,
# "uvicorn-httptools", Uvicorn, "httptools", http="httptools")` to `servers`.)

# %% [markdown]
# ## Reading what comes back, without ever hanging
#
# A probe reads from a server that may be broken, slow, or deliberately silent. A plain
# `sock.recv()` waits for as long as it takes, which for a silent server is forever, and
# one stuck probe would freeze the whole table. So the
# reader never calls `recv` without a timeout, and never waits past a deadline. `Wire`
# wraps a socket with a buffer and that deadline. When it must stop, it raises `Stopped`
# with one of three reasons: `"closed"` (the server closed or reset the connection),
# `"timeout"`, or a description of bytes it cannot read as HTTP.

# %%
#| export
class Stopped(Exception):
    """A probe's script cannot go on: "closed", "timeout", or what was unreadable."""

# %% [markdown]
# `Wire` itself holds the socket, the bytes read but not used yet (`buffer`), and the
# deadline. `wait_time()` is the one place that decides how long the next wait may be:
# the smaller of `READ_TIMEOUT` and the time left before the deadline, and `Stopped`
# once nothing is left. Even connecting uses it, so a server that never accepts cannot
# hold the probe either.
#
# The deadline is a `time.monotonic()` value, not a clock time: the monotonic clock never
# jumps when the computer's clock is adjusted, so a deadline cannot suddenly be hours
# away. `send` turns a broken pipe into `Stopped("closed")`: a server that hung up while
# the probe was still sending has answered, in its way.

# %%
#| export
class Wire:
    """A client socket with a read buffer; every wait ends by ``deadline`` (time.monotonic)."""

    def __init__(self, host: str, port: int, deadline: float, timeout: float = READ_TIMEOUT):
        self.address, self.deadline, self.timeout = (host, port), deadline, timeout
        self.sock = socket.create_connection(self.address, timeout=self.wait_time())
        self.buffer = b""

    def wait_time(self) -> float:
        wait = min(self.timeout, self.deadline - time.monotonic())
        if wait <= 0:
            raise Stopped("timeout")
        return wait

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:                        # broken pipe, reset: the server hung up
            raise Stopped("closed") from None

# %% [markdown]
# Reading starts with `more()`: wait (never longer than `wait_time()` allows) for the
# next bytes and add them to the buffer. An empty read is the server closing its side. A
# reset (`ConnectionResetError`) counts as closed too: for a client both mean "the server
# hung up". The timeout is set again before every `recv`, because the time left before
# the deadline shrinks with every wait.

# %%
#| export
def _more(self) -> None:
    self.sock.settimeout(self.wait_time())
    try:
        data = self.sock.recv(65536)
    except TimeoutError:
        raise Stopped("timeout") from None
    except ConnectionResetError:
        raise Stopped("closed") from None
    if not data:
        raise Stopped("closed")
    self.buffer += data

Wire.more = _more

# %% [markdown]
# Notice what `Wire` does not do: it never parses anything, and it never decides that a
# response is over. It only moves bytes from the socket to `buffer` under a deadline. The
# parsing comes next, in small readers built on three ways of taking bytes out of
# `buffer`.
#
# `until` and `exactly` are all a parser needs: "give me everything up to this marker"
# (the end of a head, the end of a chunk-size line) and "give me this many bytes" (a body
# whose length is known). Both call `more()` until the buffer holds enough.

# %%
#| export
def _until(self, marker: bytes) -> bytes:
    while marker not in self.buffer:
        self.more()
    data, _, self.buffer = self.buffer.partition(marker)
    return data


def _exactly(self, size: int) -> bytes:
    while len(self.buffer) < size:
        self.more()
    data, self.buffer = self.buffer[:size], self.buffer[size:]
    return data

Wire.until, Wire.exactly = _until, _exactly

# %% [markdown]
# `to_end` is for a body with no length at all, which ends when the server closes. Here a
# close is the expected end, not a reason to stop, so it swallows that one `Stopped`. A
# timeout still stops it: a server that neither closes nor sends more has not finished
# its body.

# %%
#| export
def _to_end(self) -> bytes:
    try:
        while True:
            self.more()
    except Stopped as stop:
        if str(stop) != "closed":
            raise
    data, self.buffer = self.buffer, b""
    return data

Wire.to_end = _to_end

# %% [markdown]
# That is the whole of `Wire`: a socket, a buffer, a deadline, and three ways to take bytes
# out. Everything that reads HTTP or WebSocket frames is built on those three.
#
# What a probe learns from a server goes into plain dataclasses: a `Response` per HTTP
# response (1xx ones included), a `Frame` per WebSocket frame, and an `Outcome` that holds
# them all plus how the connection ended. `closed` means the server hung up; `open` means
# it answered one more request on the same connection; `stopped` says why a script ended
# early. A one-line `summary()` is what the tables show when a probe fails.
#
# Plain dataclasses, and not the request and response classes of chapter 09, because
# those are built to be correct and these must hold whatever a server sent, however
# wrong: a response with two `Content-Length` lines is exactly what some probes hope to
# catch.

# %%
#| export
@dataclass
class Response:
    version: str
    status: int
    headers: list[tuple[str, str]]          # names lower-cased, in order, repeats kept
    body: bytes = b""

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key == name.lower()]
        return ", ".join(values) if values else None

# %% [markdown]
# `Response` is deliberately simpler than a real client's: headers stay a list of
# `(name, value)` pairs, in the order they came and with repeats kept, because a probe
# sometimes needs to see exactly that (two `Content-Length` lines are a different answer
# from one). `header()` is the convenience on top.
#
# A WebSocket frame is an opcode and a payload. A close frame's payload starts with a
# two-byte status code, which `close_code` reads:

# %%
#| export
@dataclass
class Frame:
    opcode: int                              # RFC 6455 §5.2: 1 text, 2 binary, 8 close, 9 ping, 10 pong
    payload: bytes

    @property
    def close_code(self) -> int | None:
        if self.opcode == 8 and len(self.payload) >= 2:
            return int.from_bytes(self.payload[:2], "big")
        return None

# %% [markdown]
# Read a close frame's code, and a header by name (any case, repeats joined as RFC 9110
# §5.3 allows):

# %%
(Frame(8, b"\x03\xe8").close_code,
 Response("HTTP/1.1", 200, [("vary", "a"), ("vary", "b")]).header("Vary"))

# %% [markdown]
# 1000 is "normal closure" (RFC 6455 §7.4.1). The two `vary` lines came back as one value,
# `a, b`, which is what a field sent twice means (RFC 9110 §5.3).
#
# The `Outcome` collects everything one probe saw. Its `closed` and `open` flags are the
# part no ordinary client shows you, and half the rules in this chapter are about them:
# after some requests the server MUST close, after others it should keep the connection
# for the next request. Both can be false, when the script stopped before finding out.
# `FRAME_NAMES` turns opcodes into words for the summary:

# %%
#| export
FRAME_NAMES = {0: "continuation", 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}

@dataclass
class Outcome:
    responses: list[Response] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)
    closed: bool = False       # the server closed (or reset) the connection
    open: bool = False         # the server answered a further request on it
    stopped: str = ""          # why the script ended early, if not "closed"

    @property
    def status(self) -> int | None:
        """The first response's status code, or None if none came."""
        return self.responses[0].status if self.responses else None

# %% [markdown]
# `summary()` writes an outcome as one short line, in three parts: the status codes in
# order, then the WebSocket frames by name, then how the connection ended (`closed`,
# `open`, or why the script stopped). Each part is left out when there is nothing to say.
# The reasons a script stops, as you will meet them in reports: `timeout` (the server
# went quiet), `no connection (ConnectionRefusedError)` (nothing listening), `unreadable
# (ValueError)` (bytes that are not HTTP, such as a chunk size that is not hex), and
# `not a status line: ...` with a quote of what came instead.

# %%
#| export
def _summary(self) -> str:
    parts = [" ".join(str(r.status) for r in self.responses) or "no response"]
    parts += [f"close {f.close_code}" if f.close_code else FRAME_NAMES.get(f.opcode, "?")
              for f in self.frames]
    parts.append(self.stopped or ("closed" if self.closed else "open" if self.open else ""))
    return ", ".join(part for part in parts if part)

Outcome.summary = _summary

# %% [markdown]
# A summary reads like a note you would write by hand:

# %%
from barelab.built.conformance import Frame, Outcome, Response

[Outcome([Response("HTTP/1.1", 400, [])], closed=True).summary(),
 Outcome([Response("HTTP/1.1", 101, [])], [Frame(10, b"hi"), Frame(8, b"\x03\xea")],
         closed=True).summary(),
 Outcome(stopped="timeout").summary()]

# %% [markdown]
# Three outcomes, three lines: a refusal followed by a hang-up; a WebSocket handshake, a
# pong and a close frame with code 1002; a server that never said a word. These are the
# lines the failure reports below print under "got". (`b"\x03\xea"` is 1002 as two
# big-endian bytes: RFC 6455 puts the close code first in a close frame's payload.)
#
# Now the readers. `read_response` is a small, forgiving cousin of chapter 02's parser,
# for the other direction: a status line, header lines up to the empty line, then a body
# framed the way RFC 9112 §6.3 says. No body for a `HEAD` request, for 1xx, 204 and 304;
# chunked if `Transfer-Encoding` says so; `Content-Length` bytes if given; otherwise
# everything until the server closes.
#
# Two choices in it keep a broken server from breaking the reader. The head is decoded as
# latin-1, where every byte is one character, so no byte a server sends can make the
# decoding fail. And the status line is checked before anything else: a server that
# answers with something that is not HTTP at all ends the script with `Stopped` and a
# short quote of what it sent, which the report will show.

# %%
#| export
def read_response(wire: Wire, head_only: bool = False) -> Response:
    """One response from ``wire``; ``head_only`` for the answer to a HEAD request."""
    status_line, *lines = wire.until(b"\r\n\r\n").decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    if not (version.startswith("HTTP/") and rest[:3].isdigit()):
        raise Stopped(f"not a status line: {status_line[:40]!r}")
    headers = [(name.strip().lower(), value.strip())
               for name, _, value in (line.partition(":") for line in lines)]
    response = Response(version, int(rest[:3]), headers)
    if not (head_only or response.status < 200 or response.status in (204, 304)):
        response.body = _read_body(wire, response)
    return response

# %% [markdown]
# Where the body ends is the response's own business, and `_read_body` follows its
# headers in the order RFC 9112 §6.3 gives them: `Transfer-Encoding: chunked` first, then
# `Content-Length`, and with neither, everything up to the close.

# %%
#| export
def _read_body(wire: Wire, response: Response) -> bytes:
    if "chunked" in (response.header("transfer-encoding") or "").lower():
        return read_chunked(wire)
    if (length := response.header("content-length")) is not None:
        return wire.exactly(int(length))
    return wire.to_end()

# %% [markdown]
# Try the reader on a real exchange before trusting it with broken ones: open a `Wire` to
# the course's WSGI server, send a plain request, read one response.

# %%
from barelab.built.conformance import Wire, read_response

course_wsgi = servers["course WSGI"]
wire = Wire(course_wsgi.host, course_wsgi.port, deadline=time.monotonic() + 2)
wire.send(b"GET /p?q=1 HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
answer = read_response(wire)
wire.sock.close()
answer.status, answer.header("Content-Length"), answer.body

# %% [markdown]
# The status, the length the server announced, and exactly that many bytes of body: the
# echo app's description of the request. `read_response` found the end of the head, the
# length, and stopped there, without waiting for the server to close.
#
# A chunked body is a series of chunks, each a size in hex on its own line, then that many
# bytes, then CR LF. `3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n` is `abc`, then `de`, then the
# zero-size chunk that ends the body, then an empty line. A server uses it when it does
# not know the length in advance, for a streamed response, say.
#
# The chunked reader is a loop over chunk-size lines (a size may be followed by
# `;extensions`, which it drops). A size of 0 ends the chunks; then come trailer fields,
# if any, up to an empty line:

# %%
#| export
def read_chunked(wire: Wire) -> bytes:
    body = b""
    while size := int(wire.until(b"\r\n").split(b";")[0], 16):
        body += wire.exactly(size)
        wire.exactly(2)                                   # the CRLF after each chunk
    while wire.until(b"\r\n"):                            # trailer fields, up to an empty line
        pass
    return body

# %% [markdown]
# And a reader for one WebSocket frame (RFC 6455 §5.2): two bytes of flags, opcode and
# length; an extended length when the length says 126 (two more bytes) or 127 (eight);
# a four-byte mask if the mask bit is set; then the payload, unmasked by XOR with the
# mask. Servers do not mask their frames, so for them the mask is four zero bytes:

# %%
#| export
def read_frame(wire: Wire) -> Frame:
    first, second = wire.exactly(2)
    size = second & 0x7F
    if size >= 126:
        size = int.from_bytes(wire.exactly(2 if size == 126 else 8), "big")
    mask = wire.exactly(4) if second & 0x80 else bytes(4)
    payload = wire.exactly(size)
    return Frame(first & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

# %% [markdown]
# ## A probe is data
#
# You have a reader; now the probes themselves. A probe's script is a tuple of *steps*.
# Each step is a small frozen dataclass with a `run(wire, outcome)` method: it acts on the
# wire and notes what it saw in the outcome. Frozen, because the same step object may sit
# in many probes' scripts, and dataclasses, because then a script prints as what it does.
#
# The two moves every probe makes are `Send` (these exact bytes) and `Read` (one
# response, noted in the outcome):

# %%
#| export
@dataclass(frozen=True)
class Send:
    data: bytes
    def run(self, wire, outcome): wire.send(self.data)


@dataclass(frozen=True)
class Read:
    head_only: bool = False                 # True for the answer to a HEAD request
    def run(self, wire, outcome): outcome.responses.append(read_response(wire, self.head_only))

# %% [markdown]
# A script written with them reads like a transcript of what the client will do:

# %%
(Send(b"GET / HTTP/1.1\r\nHost: probe\r\n\r\n"), Read())

# %% [markdown]
# The tuple prints as two steps with their fields: the exact bytes to send, and a `Read`
# that expects a body (`head_only=False`; a HEAD request's answer has none, so its probe
# sets it). A script is just this, a tuple you can print, compare and reuse.
#
# `ReadFrame` is `Read` for one WebSocket frame, and `Pause` waits, for a client that
# sends its request in pieces:

# %%
#| export
@dataclass(frozen=True)
class ReadFrame:
    def run(self, wire, outcome): outcome.frames.append(read_frame(wire))


@dataclass(frozen=True)
class Pause:
    seconds: float
    def run(self, wire, outcome): time.sleep(self.seconds)

# %% [markdown]
# Four more are about the connection itself. `HalfClose` is a client that sends its last
# byte and shuts its side (`shutdown(SHUT_WR)`): the server reads an end of file but can
# still answer. That is how a probe says "this is all you will get" without waiting for
# a timeout. `Reconnect` starts a new connection, for probes that need two.
#
# `STILL_OPEN`, the request the next step sends, is defined here too: a plain `GET` to a
# path of its own, with no `Connection: close`, so that asking it never changes what it
# measures.

# %%
#| export
STILL_OPEN = b"GET /still-open HTTP/1.1\r\nHost: probe\r\n\r\n"

@dataclass(frozen=True)
class HalfClose:
    def run(self, wire, outcome): wire.sock.shutdown(socket.SHUT_WR)


@dataclass(frozen=True)
class Reconnect:
    def run(self, wire, outcome):
        wire.sock.close()
        wire.sock, wire.buffer = socket.create_connection(wire.address, wire.wait_time()), b""

# %% [markdown]
# The last two find out whether the server kept the connection, which is harder than it
# sounds: a connection that is open and a connection that is about to be closed look the
# same until something happens. `StillOpen` makes something happen. It sends one more
# request (`STILL_OPEN`) and marks the connection open only if an answer comes back; if
# the server had closed, the read raises `Stopped("closed")` instead, and the runner
# notes the close. Either way the answer comes at once, with no waiting for a timeout.
# `WaitClose` reads until the server hangs up:

# %%
#| export
@dataclass(frozen=True)
class StillOpen:
    def run(self, wire, outcome):
        wire.send(STILL_OPEN)
        read_response(wire)
        outcome.open = True


@dataclass(frozen=True)
class WaitClose:
    def run(self, wire, outcome):
        wire.to_end()
        outcome.closed = True

# %% [markdown]
# A `Probe` bundles the rule with a script and a verdict. `rule` and `level` are only
# there to be printed: the table shows them in every row, so a ✗ always comes with the
# sentence it breaks. `needs` says what the server must speak: `"http"`, or `"websocket"`
# for probes that make sense only on an ASGI server with a WebSocket route (the others
# get a – in the table). `sent` collects the bytes of every `Send`, for failure reports.
#
# Most probes send one request, read one response and check the connection; `probe()`
# writes that script for you, so a typical probe is one line long.

# %%
#| export
@dataclass(frozen=True)
class Probe:
    name: str
    rule: str                     # "RFC 9112 §5.2": where the requirement is written
    level: str                    # MUST, SHOULD or MAY
    steps: tuple
    verdict: Callable[[Outcome], bool]
    needs: str = "http"           # or "websocket"

    @property
    def sent(self) -> bytes:
        """Every byte the script sends, in order (for reports)."""
        return b"".join(step.data for step in self.steps if isinstance(step, Send))


def probe(name, rule, level, request: bytes, verdict, *, head=False) -> Probe:
    """The usual probe: send ``request``, read the answer, check the connection stayed open."""
    return Probe(name, rule, level, (Send(request), Read(head), StillOpen()), verdict)

# %% [markdown]
# Running a probe takes two functions. The inner one runs the steps in order until one
# raises `Stopped`, and notes why. A stop is not an error here: for a probe that breaks
# a rule on purpose, "the server closed" is often the right answer, so it becomes
# `outcome.closed` and the verdict decides. Bytes that are not HTTP at all (a chunk size
# that is not hex, say) end the script too, noted as "unreadable":

# %%
#| export
def _run_steps(steps, wire: Wire, outcome: Outcome) -> None:
    try:
        for step in steps:
            step.run(wire, outcome)
    except Stopped as stop:
        outcome.closed = str(stop) == "closed"
        outcome.stopped = "" if outcome.closed else str(stop)
    except (OSError, ValueError) as error:       # a chunk size that is not hex, say
        outcome.stopped = f"unreadable ({type(error).__name__})"

# %% [markdown]
# The outer one connects, runs the steps, and always closes the socket. The deadline
# covers the whole script: the caller's deadline or `PROBE_BUDGET` from now, whichever
# comes first (a caller with no deadline passes `None`, read as "infinitely far"). A
# server that refuses the connection is an outcome too, not an exception, so one dead
# server never stops a battery:

# %%
#| export
def run_probe(host: str, port: int, probe: Probe, *, timeout: float = READ_TIMEOUT,
              deadline: float | None = None) -> Outcome:
    """Run one probe's script against host:port; never longer than PROBE_BUDGET."""
    outcome = Outcome()
    deadline = min(deadline or float("inf"), time.monotonic() + PROBE_BUDGET)
    try:
        wire = Wire(host, port, deadline, timeout)
    except (OSError, Stopped) as error:
        outcome.stopped = f"no connection ({type(error).__name__})"
        return outcome
    try:
        _run_steps(probe.steps, wire, outcome)
    finally:
        wire.sock.close()
    return outcome

# %% [markdown]
# Try it: the obs-fold probe from the start of the chapter, as data. The verdict is left
# out for now (`None`); what comes back first. Since a probe is data, you can look inside
# before running it: `probe()` wrote a three-step script.

# %%
from barelab.built.conformance import MUST, probe, run_probe

folding = probe("obs-fold", "RFC 9112 §5.2", MUST,
                b"GET / HTTP/1.1\r\nHost: probe\r\nX-Probe: a\r\n b\r\n\r\n", None)
[type(step).__name__ for step in folding.steps]

# %% [markdown]
# Send the bytes, read one response, ask once more on the same connection. Here is that
# script as a conversation, with the two ways it can end:
#
# ```mermaid
# sequenceDiagram
#     participant P as probe
#     participant S as server
#     P->>S: Send: the request, as written
#     S-->>P: Read: one response (status, headers, body)
#     P->>S: StillOpen: GET /still-open
#     alt the server kept the connection
#         S-->>P: a second response: outcome.open = True
#     else the server had closed it
#         S-->>P: end of file: outcome.closed = True
#     end
# ```
#
# Run it against the course's WSGI server:

# %%
run_probe(course_wsgi.host, course_wsgi.port, folding).summary()

# %% [markdown]
# A 400, then the server hung up when `StillOpen` asked again. Closing after a refusal is
# the safe choice: after a request it could not read, the server cannot know where the
# next one starts. Against wsgiref:

# %%
wsgiref = servers["wsgiref"]
folded_outcome = run_probe(wsgiref.host, wsgiref.port, folding)
folded_outcome.summary(), folded_outcome.responses[0].body

# %% [markdown]
# The same 200 as by hand, the same CR LF inside the value, and a close: wsgiref speaks
# HTTP/1.0 and closes after every response.
#
# Two outcomes, and you can tell by eye which one obeys §5.2. The battery cannot: it needs
# the rule written as code, so that fifty probes on eight servers judge themselves.

# %% [markdown]
# ## Verdicts
#
# A verdict is a function from an `Outcome` to `True` or `False`. Most follow a few
# patterns ("the status is one of these", "refused and closed"), so the module has small
# *factories* for them: `status_is(400, 501)` is not a verdict but a call that builds one,
# the way `@app.route("/")` in Flask is a call that builds a decorator. Each verdict gets
# a docstring that says what it expects, because that is the line the failure report
# prints under "expected". `expects` is the small decorator that sets it:

# %%
#| export
def expects(description: str):
    """Decorator: give a verdict function a readable description (its __doc__)."""
    def name_it(verdict):
        verdict.__doc__ = description
        return verdict
    return name_it


def status_is(*codes: int):
    @expects("status " + " or ".join(map(str, codes)))
    def verdict(got): return got.status in codes
    return verdict


def refused(code: int = 400):
    @expects(f"{code}, then the connection closed")
    def verdict(got): return got.status == code and got.closed
    return verdict

# %% [markdown]
# `refused()` is stricter than `status_is(400)`: it also wants the close. Verdicts are
# plain functions, so you can check that without any server. Build two outcomes by hand,
# a 400 followed by a close and a 400 on a connection that stayed open, and call each
# verdict on them:

# %%
from barelab.built.conformance import refused, status_is

closed_400 = Outcome([Response("HTTP/1.1", 400, [])], closed=True)
open_400 = Outcome([Response("HTTP/1.1", 400, [])], open=True)
refused()(closed_400), refused()(open_400), status_is(400)(open_400), refused.__name__

# %% [markdown]
# Read the first three values against the two outcomes: `refused()` passes the 400 that
# closed and fails the 400 that stayed open; `status_is(400)` passes both, since it looks
# at the status alone. Choosing between the two is choosing what the rule asks for.
#
# Two more factories read the echo app's body: `echoed` wants a 200 whose body is exactly
# these bytes, `saw_probe` a 200 whose description says the app received `X-Probe` with
# this value:

# %%
#| export
def echoed(body: bytes):
    @expects(f"200 echoing {body!r}")
    def verdict(got): return got.status == 200 and got.responses[0].body == body
    return verdict


def saw_probe(value: str):
    @expects(f"200, app saw X-Probe={value}")
    def verdict(got):
        return got.status == 200 and f" x-probe={value}\n".encode() in got.responses[0].body
    return verdict

# %% [markdown]
# Many rules allow more than one answer ("reject it, or replace it with a space"), and
# some want two things at once ("refuse, and close"). `either` and `both` combine
# verdicts, and their descriptions too, so a failure report still says in words what
# would have passed:

# %%
#| export
def either(*verdicts):
    @expects(" or ".join(v.__doc__ or "?" for v in verdicts))
    def verdict(got): return any(v(got) for v in verdicts)
    return verdict


def both(*verdicts):
    @expects(" and ".join(v.__doc__ or "?" for v in verdicts))
    def verdict(got): return all(v(got) for v in verdicts)
    return verdict

# %% [markdown]
# The obs-fold rule allows two answers, and the verdict says exactly that. Call it on the
# wsgiref outcome from above and on the hand-made refusal:

# %%
from barelab.built.conformance import either, saw_probe

fold_rule = either(status_is(400), saw_probe("a b"))
fold_rule.__doc__, fold_rule(folded_outcome), fold_rule(closed_400)

# %% [markdown]
# First the description, built from the two parts: that is what a report will print.
# Then wsgiref's outcome fails (its app saw `a\r\n b`, not `a b`), and the hand-made 400
# passes.
#
# The last few verdicts need no factory, because they take no arguments: whether the
# connection closed or stayed open, whether the request went unserved (`not_served`: no
# response at all, or an error status), and whether the final response carries a `Date`
# header. "Final" matters for `has_date`: a `100 Continue` comes first and needs none.

# %%
#| export
@expects("the connection closed")
def closes(got): return got.closed

@expects("the connection stayed open")
def stays_open(got): return got.open

@expects("not served: no 2xx response")
def not_served(got): return got.status is None or got.status >= 400

@expects("a Date header in the final response")
def has_date(got):
    finals = [response for response in got.responses if response.status >= 200]
    return bool(finals) and finals[0].header("date") is not None

# %% [markdown]
# ## Running a battery
#
# Here is where the pieces built so far fit, and the three still to come:
#
# ```mermaid
# flowchart LR
#     W["Wire<br/>bytes, deadline"] --> RD["read_response<br/>read_frame"]
#     RD --> ST["steps<br/>Send, Read, StillOpen…"]
#     ST --> P["Probe<br/>rule, level, steps, verdict"]
#     P --> RP["run_probe<br/>→ Outcome"]
#     RP --> RB["run_battery<br/>one server"]
#     RB --> RBS["run_batteries<br/>all servers"]
#     RBS --> T["Table"]
# ```
#
# You can run one probe and judge it. A battery is many probes, run against one server,
# one after another, each on a fresh connection so that one probe's mess cannot leak into
# the next. `run_battery(target, probes)` does that and collects a `Result` per probe:
# the probe, its mark (✓, ✗, or – for a probe the server cannot be asked, such as a
# WebSocket probe on a WSGI server) and the outcome, kept so you can look at it later.

# %%
#| export
PASS, FAIL, SKIP = "✓", "✗", "–"

@dataclass
class Result:
    probe: Probe
    mark: str                                # PASS, FAIL or SKIP
    outcome: Outcome | None = None

# %% [markdown]
# `judge` applies a verdict. A verdict that raises counts as ✗: `got.responses[0]` on an
# outcome with no response raises `IndexError`, and a server that sent nothing has not
# passed anything. This keeps every verdict short, with no guard for each way a response
# can be missing. `speaks` decides who gets the WebSocket probes:

# %%
#| export
def judge(probe: Probe, outcome: Outcome) -> str:
    try:
        return PASS if probe.verdict(outcome) else FAIL
    except Exception:                        # IndexError on a missing response, say
        return FAIL


def speaks(target, needs: str) -> bool:
    """HTTP for everyone; WebSocket for ASGI servers (the echo app has the route)."""
    return needs == "http" or getattr(target, "kind", None) == "asgi"

# %% [markdown]
# `Results` is the list for one server. `failures(MUST)` picks the ✗ marks at one level
# (`failures()` with no level picks them all), and its `repr` is the number you will look
# at first, the MUST failures. A test of your own server needs nothing more than
# `assert results.failures(MUST) == []`:

# %%
#| export
@dataclass
class Results:
    name: str
    results: list[Result]

    def failures(self, level: str | None = None) -> list[Result]:
        return [r for r in self.results
                if r.mark == FAIL and level in (None, r.probe.level)]

    def __repr__(self) -> str:
        return f"{self.name}: {len(self.failures(MUST))} MUST failures"

# %% [markdown]
# `run_battery` is the loop: for each probe, skip it if the server cannot speak what it
# needs, otherwise run it and judge the outcome. Every probe shares one `deadline`, so a
# `budget` of 60 seconds bounds the whole battery, however many probes it holds. The
# probes run one after another, never two at once against the same server: a probe that
# leaves the server in a strange state (a half-read body, a stuck thread) could otherwise
# change another probe's answer, and the table would not be the same twice.

# %%
#| export
def run_battery(target, probes, *, name: str | None = None, timeout: float = READ_TIMEOUT,
                budget: float = 60.0) -> Results:
    """Run ``probes`` against ``target`` (anything with .host and .port), in order."""
    deadline, results = time.monotonic() + budget, []
    for each in probes:
        if not speaks(target, each.needs):
            results.append(Result(each, SKIP))
            continue
        outcome = run_probe(target.host, target.port, each, timeout=timeout, deadline=deadline)
        results.append(Result(each, judge(each, outcome), outcome))
    return Results(name or getattr(target, "name", "server"), results)

# %% [markdown]
# ## The first group: request syntax
#
# Everything is in place to write probes. The first group is about the request line and
# header syntax, RFC 9112 §2 to §5 and RFC 9110 §5: the bytes a server must read before it
# knows anything else about a request. Its probes build their requests with `get()`, and
# later groups post bodies with `post()`.
#
# Both helpers put `Host: probe` in every request, so no probe fails for lacking one by
# accident (the Host group leaves it out on purpose). `post()` adds no framing at all:
# the `Content-Length` or `Transfer-Encoding` lines, right or wrong, are the probe's to
# write, since they are what most probes break.

# %%
#| export
HOST = b"Host: probe\r\n"

def get(target=b"/", extra=b"", version=b"HTTP/1.1", method=b"GET") -> bytes:
    """A request with no body; ``extra`` is header lines, each ending in CRLF."""
    return method + b" " + target + b" " + version + b"\r\n" + HOST + extra + b"\r\n"


def post(extra: bytes, body: bytes) -> bytes:
    """A POST to /echo with header lines ``extra`` and ``body`` as given (framing is yours)."""
    return b"POST /echo HTTP/1.1\r\n" + HOST + extra + b"\r\n" + body

# %% [markdown]
# `get()` writes the boring part of a request, so a probe only spells out what it breaks.
# Here is the obs-fold request again, built with it. Compare it with the bytes of the
# very first cell: the same request line, a `Host`, the folded header, the empty line.

# %%
get(extra=b"X-Probe: a\r\n b\r\n")

# %% [markdown]
# One `bytes` value, every CR LF in place, ending in the empty line that closes the head.
# Nothing will add to it or correct it on the way to the server.

# %% [markdown]
# Each entry below is one probe: a name, the rule, the level, the bytes, the verdict. The
# first list is about header fields; read it against the rules (sections of RFC 9112
# unless the RFC is named):
#
# - RFC 9110 §9.1: all general-purpose servers MUST support `GET`. The first probe is also
#   the control: if a plain `GET` failed, the problem would be the setup, not a rule.
# - §5.2: obs-fold MUST get a 400, or be replaced with spaces before the value is used.
# - §5.1: no whitespace between a field name and its colon; a server MUST answer 400.
#   Otherwise `X-Probe :` could be read as the field `X-Probe` by one program and as
#   the field `X-Probe ` (with a space) by another.
# - §2.2: a bare CR (not followed by LF) is invalid; a recipient MUST treat the element as
#   invalid or replace the CR with a space. RFC 9110 §5.5 says the same of NUL in a value.
# - §2.2: a line that starts with whitespace right after the request line MUST be rejected
#   or ignored, with everything on it.
# - RFC 9110 §5.1: a field name is a *token*, and `"` is not allowed in one. The request
#   then does not match the message grammar, and §2.2 says a server SHOULD answer such a
#   request with 400 and close: a SHOULD, so the probe cites §2.2.

# %%
#| export
FIELD_PROBES = [
    probe("plain GET", "RFC 9110 §9.1", MUST, get(), status_is(200)),
    probe("obs-fold", "RFC 9112 §5.2", MUST, get(extra=b"X-Probe: a\r\n b\r\n"),
          either(status_is(400), saw_probe("a b"))),
    probe("space before colon", "RFC 9112 §5.1", MUST, get(extra=b"X-Probe : a\r\n"),
          status_is(400)),
    probe("bare CR in a value", "RFC 9112 §2.2", MUST, get(extra=b"X-Probe: a\rb\r\n"),
          either(status_is(400), saw_probe("a b"))),
    probe("NUL in a value", "RFC 9110 §5.5", MUST, get(extra=b"X-Probe: a\x00b\r\n"),
          either(status_is(400), saw_probe("a b"))),
    probe("space before first field", "RFC 9112 §2.2", MUST,
          b"GET / HTTP/1.1\r\n X-Probe: a\r\n" + HOST + b"\r\n",
          either(status_is(400), saw_probe("None"))),
    probe("quote in a field name", "RFC 9112 §2.2", SHOULD, get(extra=b'X-Pro"be: a\r\n'),
          status_is(400)),
]

# %% [markdown]
# The request-line probes, and their rules:
#
# - §2.3: `HTTP` in the version is case-sensitive, so `http/1.1` is an invalid request
#   line, which §3 says SHOULD get a 400 (or a redirect). The probe cites §3, where the
#   SHOULD is.
# - RFC 9110 §2.5: a server "can send a 505" to refuse a major version it does not speak:
#   a free choice, which the battery files as a MAY. A higher *minor* version
#   (`HTTP/1.2`) SHOULD be served as the highest minor version the server knows.
# - §2.2: a server SHOULD ignore at least one empty line before a request line.
#
# `SYNTAX_PROBES` is both lists together.

# %%
#| export
LINE_PROBES = [
    probe("lowercase http/1.1", "RFC 9112 §3", SHOULD, get(version=b"http/1.1"),
          status_is(400)),
    probe("HTTP/2.0 in a 1.x line", "RFC 9110 §2.5", MAY, get(version=b"HTTP/2.0"),
          status_is(505)),
    probe("HTTP/1.2 served as 1.1", "RFC 9110 §2.5", SHOULD, get(version=b"HTTP/1.2"),
          status_is(200)),
    probe("empty line first", "RFC 9112 §2.2", SHOULD, b"\r\n" + get(), status_is(200)),
]
SYNTAX_PROBES = FIELD_PROBES + LINE_PROBES

# %% [markdown]
# Run the group against one server first. `run_battery` returns a `Results`; its
# `.results` are one `Result` per probe, holding the mark and the `Outcome`. The first four:

# %%
from barelab.built.conformance import SYNTAX_PROBES, run_battery

syntax_course = run_battery(course_wsgi, SYNTAX_PROBES, name="course WSGI")
[(r.probe.name, r.mark, r.outcome.summary()) for r in syntax_course.results[:4]]

# %% [markdown]
# Each tuple is a probe's name, its mark, and the summary of what came back. Read the
# second one against its rule: §5.2 allows a 400, the server sent one and closed, so ✓.
# The first is the control, a 200 on a connection that stayed open. The third and fourth
# are refusals of broken headers, each followed by a close.
#
# `Results` shows the whole group as one count:

# %%
syntax_course

# %% [markdown]
# No MUST failures on the course's WSGI server. One number per server is what you want
# for a test (chapter 17 style: assert it is zero), but to compare servers you need to
# see every probe against every server at once.

# %% [markdown]
# ## A table: probes × servers
#
# `run_batteries` runs a battery on every server at once, one thread per server. Threads
# are the right tool here because the probes spend their time waiting on sockets, not
# computing, so eight threads finish in about the time of the slowest server. A server
# that is `None` (not installed) gets no thread and a "not installed" column: `found`
# starts with every name mapped to `None`, so the columns keep the order you gave.
#
# The `join()` calls have no timeout, which would break this chapter's own rule if the
# threads could hang. They cannot: each runs one `run_battery`, which ends by its budget.

# %%
#| export
def run_batteries(servers: dict, probes, **options) -> "Table":
    """run_battery on every server of ``{name: server or None}`` in parallel; a Table."""
    found = {name: None for name in servers}

    def run(name, server):
        found[name] = run_battery(server, probes, name=name, **options)

    threads = [threading.Thread(target=run, args=item, daemon=True)
               for item in servers.items() if item[1] is not None]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Table(list(probes), found)

# %% [markdown]
# The `Table` holds the probes (its rows) and one `Results` per server (its columns), and
# draws itself twice, like every barelab display: as HTML in JupyterLab and as text in a
# terminal. `rows()` is the grid both drawings share: a probe's name, rule and level, then
# one mark per server. The last row is the number that matters most, the MUST failures per
# server.

# %%
#| export
class Table:
    """Probes down, servers across: ✓ ✗ –, with each probe's rule and level."""

    def __init__(self, probes: list[Probe], columns: dict):
        self.probes, self.columns = probes, columns     # columns: {name: Results or None}

    def mark(self, name: str, row: int) -> str:
        results = self.columns[name]
        return "n/i" if results is None else results.results[row].mark

    def must_failures(self, name: str) -> str:
        results = self.columns[name]
        return "n/i" if results is None else str(len(results.failures(MUST)))

    def rows(self) -> list[list[str]]:
        names = list(self.columns)
        body = [[p.name, p.rule, p.level, *(self.mark(n, i) for n in names)]
                for i, p in enumerate(self.probes)]
        return body + [["MUST failures", "", "", *map(self.must_failures, names)]]

# %% [markdown]
# A mark says *that* a server failed; `outcome()` digs out *what* it answered, by server
# and probe name, for when you want to look closer at one cell. It looks probes up by
# name, not by row number, so it keeps working when a group grows, and it returns `None`
# for a server that is not installed:

# %%
#| export
def _outcome(self, name: str, probe_name: str) -> Outcome | None:
    """What server ``name`` answered to the probe called ``probe_name``."""
    results = self.columns[name]
    found = [r for r in results.results if r.probe.name == probe_name] if results else []
    return found[0].outcome if found else None

Table.outcome = _outcome

# %% [markdown]
# The two renderers. The text one is what you see in a terminal, in a test failure, or in
# this notebook's stored outputs: each column as wide as its widest cell, the names and
# rules on the left, the marks centred under their server, and a rule of dashes above
# the first probe and above the MUST-failure row. "n/i" stands for "not installed".

# %%
#| export
def _table_text(self) -> str:
    header = ["probe", "rule", "level", *self.columns]
    rows = [header, *self.rows()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i < 3 else cell.center(w)
                       for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
             for row in rows]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:-1], "-" * len(lines[0]), lines[-1]])

# %% [markdown]
# The HTML one builds the same rows as `<td>` cells, green for ✓, red for ✗, grey for –,
# and puts the MUST-failure row in bold. Every cell goes through `html.escape`: a probe
# name like `CL and TE together` is harmless, but a table that shows what servers sent
# back must never let those bytes become markup. JupyterLab calls `_repr_html_` when it
# can show HTML; a terminal, and the notebook's tests, use `__repr__`:

# %%
#| export
COLOURS = {PASS: "#1a7f37", FAIL: "#cf222e", SKIP: "#8a8a8a"}

def _table_html(self) -> str:
    def cell(text, i):
        style = f"color:{COLOURS[text]}" if text in COLOURS and i >= 3 else ""
        align = "left" if i < 3 else "center"
        return f'<td style="text-align:{align};{style}">{html.escape(text)}</td>'
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["probe", "rule", "level", *self.columns])
    *body, total = self.rows()
    rows = ["<tr>" + "".join(cell(text, i) for i, text in enumerate(row)) + "</tr>" for row in body]
    rows.append("<tr>" + "".join(f"<td><b>{html.escape(t)}</b></td>" for t in total) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"

Table.__repr__, Table._repr_html_ = _table_text, _table_html

# %% [markdown]
# The syntax group, on all eight servers. Before you look, here is how to read every table
# in this chapter:
#
# - **A row is one probe.** Its first three cells say which broken (or plain) request it
#   sends, where the rule is written, and how strong the rule is.
# - **A column is one server.** WSGI servers on the left, ASGI servers on the right; in
#   each half, the course's server, barelab's engine, then the real ones.
# - **A cell is a verdict**: ✓ the server did what the rule asks, ✗ it did not, – the
#   probe does not apply to this server, n/i the server is not installed here.
# - **The level says how much a ✗ matters.** A ✗ on a MUST row is a broken rule. A ✗ on a
#   SHOULD row is a server that chose otherwise, which the RFC allows when there is a
#   reason. A ✗ on a MAY row only means the server did not take an option the RFC offers:
#   no fault at all.
# - **The bottom row counts the ✗ on MUST rows only.** Read it first; then look for the
#   red marks in MUST rows above it.

# %%
from barelab.built.conformance import run_batteries

run_batteries(servers, SYNTAX_PROBES)

# %% [markdown]
# Start at the bottom row: 0 everywhere except wsgiref's 4. Then read it column by
# column. The four course and barelab columns are all ✓. gunicorn, uvicorn and hypercorn
# pass every MUST here too; they part ways only on the SHOULDs and MAYs, in two rows:
#
# - **empty line first**: uvicorn and hypercorn both parse with h11, which refuses the
#   empty line that §2.2 says a server SHOULD skip. barelab's engine, on h11 as well,
#   strips leading empty lines before h11 sees them. A SHOULD, not a bug: it only matters
#   to old clients that sent an extra CRLF after a POST body.
# - **HTTP/2.0 in a 1.x line**: only the course and barelab servers answer 505. gunicorn
#   says 400; uvicorn and hypercorn serve it as if it were 1.1. Both are allowed by the MAY,
#   and that is exactly what a ✗ in a MAY row looks like: a different choice, not a bug.
#
# wsgiref is the red column. Its four MUST failures are the rows "obs-fold", "space
# before colon", "bare CR in a value" and "NUL in a value": it hands all four to the app
# as they came, and it also takes a quote in a field name. wsgiref is the *reference
# implementation of the WSGI interface*, built on `http.server`, whose documentation
# warns that it is not meant for production: it checks what PEP 3333 needs, not what RFC
# 9112 asks of a server on the internet. Its "lowercase http/1.1" and "empty line first"
# failures are a hang-up without any answer, which is worse than a 400: the client never
# learns what was wrong.
#
# Notice also a row where everyone passes, "space before first field". Passing can look
# different from server to server: some answer 400, some drop the indented line, and both
# are allowed. A ✓ says the server chose one of the answers the rule allows, not which.

# %% [markdown]
# ## Host and the request target
#
# In Flask you read `request.host` and `request.path` and never wonder where they came
# from. They came from the server, and RFC 9112 has rules for how it finds them.
#
# §3.2 has one of the clearest MUSTs in the RFC: a server MUST answer 400 to an HTTP/1.1
# request without `Host`, with two `Host` lines, or with a `Host` whose value is invalid.
# (`a b` is not a host: no host name contains a space.) Two hosts or a broken one leave
# the request's target unclear, and an app that picks a site, a tenant or a password-reset
# link from `Host` must never have to guess.
#
# §3.2.2 says a server MUST accept the *absolute form*, `GET http://probe/abs HTTP/1.1`,
# the form proxies receive. Accepting it means understanding it: §3.3 says that for this
# form the target URI *is* the request target, so the request is for the path `/abs` on
# host `probe`. Here the app must see the path `/abs`, not the whole URL.
#
# And §3.2.4 defines `OPTIONS *`, a request about the server as a whole. No sentence
# requires a particular answer, but it is valid syntax, so a 400 would refuse a valid
# request; the battery files the row as a SHOULD.
#
# Two new verdicts go with this group: `saw_absolute_path` reads the echo app's line to
# check that the app got `/abs` and `q=1` separately, and `answered` accepts any answer
# that is not an error, for `OPTIONS *`.

# %%
#| export
@expects("200, app saw path=/abs and query=q=1")
def saw_absolute_path(got):
    return got.status == 200 and got.responses[0].body.startswith(b"path=/abs query=q=1 ")

@expects("answered without an error")
def answered(got): return got.status is not None and got.status < 400

HOST_PROBES = [
    probe("missing Host (1.1)", "RFC 9112 §3.2", MUST, b"GET / HTTP/1.1\r\n\r\n", status_is(400)),
    probe("two Host fields", "RFC 9112 §3.2", MUST, get(extra=b"Host: other\r\n"), status_is(400)),
    probe("invalid Host value", "RFC 9112 §3.2", MUST, b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
          status_is(400)),
    probe("absolute-form target", "RFC 9112 §3.2.2", MUST, get(b"http://probe/abs?q=1"),
          saw_absolute_path),
    probe("OPTIONS *", "RFC 9112 §3.2.4", SHOULD, get(b"*", method=b"OPTIONS"), answered),
]

# %% [markdown]
# The rule behind this group, in one line: *the server, not the app, decides which host
# and path a request is for, and refuses a request where that is unclear.* The first
# three probes are broken on purpose and want a 400; the last two are valid and want to
# be served. Look at the bottom row, then at which MUST rows turn red. Then find the one
# MUST row where every real server but wsgiref passes, "two Host fields": counting lines
# is easy, so everyone does it; checking what a line says is where they differ.

# %%
from barelab.built.conformance import HOST_PROBES

host_table = run_batteries(servers, HOST_PROBES)
host_table

# %% [markdown]
# Three MUST rows have red in them. "missing Host (1.1)" fails on gunicorn (and wsgiref);
# "invalid Host value" on gunicorn, uvicorn and hypercorn; "absolute-form target" on
# uvicorn and hypercorn. The failure report below says what each of them answered.
#
# The course's servers pass every one, and that is recent. An earlier version of chapter
# 13's server counted the `Host` lines but never looked at the value, so `Host: a b` got a
# 200: a ✗ on a MUST, found by this very table. The fix went where the rule lives: chapter
# 02's `check_host` now checks the value against `uri-host [ ":" port ]`, and chapter 13's
# `read_head` calls it instead of keeping its own copy of the count check.
#
# `failure_report` lists every failure of a given level (MUST unless told otherwise), four
# lines each: the server and probe, the bytes sent, what the verdict expected, what came
# back. `names` picks the servers. The bytes go through `unicode_escape`, so a CR LF
# prints as `\r\n`, the way you would type it, and a long request is cut at 70 bytes with
# an ellipsis. "expected" is the verdict's docstring, which is why every verdict has one.
#
# For the course's and barelab's four servers there is nothing to list:

# %%
#| export
def _failure_report(self, level: str = MUST, names=None) -> str:
    lines = []
    for name, results in self.columns.items():
        if results is None or (names is not None and name not in names):
            continue
        for result in results.failures(level):
            sent = result.probe.sent
            shown = sent[:70].decode("latin-1").encode("unicode_escape").decode("ascii")
            lines.append(f"{name} ✗ {result.probe.name} ({result.probe.rule} {level})\n"
                         f"    sent     {shown}{'…' if len(sent) > 70 else ''}\n"
                         f"    expected {result.probe.verdict.__doc__ or 'see the verdict'}\n"
                         f"    got      {result.outcome.summary()}")
    return "\n".join(lines) or f"no {level} failures"

Table.failure_report = _failure_report

# %%
print(host_table.failure_report(names=["course WSGI", "barelab WSGI", "course ASGI",
                                       "barelab ASGI"]))

# %% [markdown]
# "no MUST failures": an empty report says so in words, so that a printed nothing is never
# mistaken for a crash.
#
# The real servers do fail MUSTs here, and the report shows each one in full. In each
# entry, compare the "expected" line with the "got" line; the "sent" line shows the
# bytes, with `\r\n` written out:

# %%
print(host_table.failure_report(names=["gunicorn", "uvicorn", "hypercorn"]))

# %% [markdown]
# Three stories:
#
# - **gunicorn serves a request without `Host`, and `Host: a b`.** It leaves Host to the
#   app (Django, for one, checks it against `ALLOWED_HOSTS`). The RFC puts the duty on
#   the server, and a framework can only check what reaches it.
# - **uvicorn and hypercorn accept `Host: a b` too.** h11, under both, checks that every
#   header value is made of allowed characters (a space is allowed), but not the stricter
#   grammar of a host name. barelab's engine, also on h11, adds that check itself.
# - **uvicorn and hypercorn hand the app the whole URL as its path.** The app saw
#   `path=http://probe/abs`. The ASGI spec calls `path` "the HTTP request target
#   excluding any query string", and both servers took that literally. But RFC 9112
#   §3.2.2 says a server MUST accept this form, and §3.3 says what it means: the target
#   URI, whose path is `/abs`. A server that passes the URL on as a path has received the
#   form without understanding it, and every route in the app misses. gunicorn, the course
#   servers and barelab take the path out.

# %% [markdown]
# ## Framing: where does a body end?
#
# Chapter 02 spent a long section on framing, because a server and a proxy that disagree
# about where a body ends disagree about where the *next request* starts. Take the first
# probe below: `Content-Length: 3` and `Transfer-Encoding: chunked` on the body
# `3\r\nabc\r\n0\r\n\r\n`. A program that goes by the length reads `3\r\na` as the body
# and `bc\r\n0...` as the start of the next request; a program that goes by chunked reads
# `abc` and nothing after it. Put the two in a row, a proxy and a server, and an attacker
# chooses what the server thinks the next request is.
#
# ```mermaid
# flowchart LR
#     R["Content-Length: 3<br/>Transfer-Encoding: chunked<br/>3 CRLF abc CRLF 0 CRLF CRLF"]
#     R -- "by the length" --> A["body: 3 CRLF a<br/>next request: bc CRLF 0 …"]
#     R -- "by chunked" --> B["body: abc<br/>next request: none yet"]
# ```
#
# RFC 9112 §6.3 settles where a body ends with a numbered list of eight rules, tried in
# order; "rule 5" below means the fifth. These rules are the heart of the battery:
#
# - RFC 9112 §6.1: `Content-Length` and `Transfer-Encoding` together: a server MAY reject
#   the request or go by `Transfer-Encoding` alone, but either way it MUST close the
#   connection after responding.
# - §6.3 rule 5: several `Content-Length` values that differ, or one that is not a plain
#   number (`+3`), MUST get a 400 and a close. The same value twice (`2, 2`) MAY be read as
#   that value (RFC 9110 §8.6) or refused.
# - §6.3 rule 4: if `chunked` is not the last transfer coding, the length cannot be known:
#   400 and close, a MUST. Applying chunked twice is forbidden to the sender (§6.1); a
#   server SHOULD answer a coding it does not understand with 501.
# - §7.1: a recipient MUST be able to decode chunked, and §7.1.1 MUST ignore chunk
#   extensions it does not know. Trailer fields are part of the chunked grammar in §7.1
#   (§7.1.2 says what to do with them), so decoding a body with a trailer is that same
#   MUST. A chunk size that is not hex breaks the grammar, which §2.2 says a server SHOULD
#   answer with 400.
# - §7.1: recipients MUST guard against huge chunk sizes overflowing an integer.
#   `10000000000000003` is 2⁶⁴ + 3 in hex: a parser that keeps it in 64 bits reads 3, and
#   would then take the next bytes, `abc`, as the whole chunk. The probe sends `abc` and
#   hangs up its side, so a correct server has nothing to wait for.
#
# Put together, the group's rule is: *when the length of a body is in any doubt, refuse
# and close.* Most framing probes send such a doubt and want `refused()`, a 400 followed
# by a close; `refused_coding` below also takes 501, the status §6.1 suggests for a
# transfer coding the server does not know:

# %%
#| export
CHUNKED = b"Transfer-Encoding: chunked\r\n"

@expects("400 or 501, then the connection closed")
def refused_coding(got): return got.status in (400, 501) and got.closed

# %% [markdown]
# The framing list. Read each verdict as the rule's allowed answers:
#
# - `CL and TE together` takes a 400 or an echo of `abc` (decoded as chunked), but in both
#   cases a close.
# - `two different CLs` (3 and 4) and `CL +3` want `refused()`: a sign is not a digit.
# - `CL list 2, 2` takes a refusal or an echo of the two bytes.
# - `TE gzip, no chunked` sends a body whose end nothing marks: 400 and close.
# - `TE chunked twice` and `unknown coding → 501` are the SHOULDs of §6.1.

# %%
#| export
FRAMING_PROBES = [
    probe("CL and TE together", "RFC 9112 §6.1", MUST,
          post(b"Content-Length: 3\r\n" + CHUNKED, b"3\r\nabc\r\n0\r\n\r\n"),
          both(closes, either(status_is(400), echoed(b"abc")))),
    probe("two different CLs", "RFC 9112 §6.3", MUST,
          post(b"Content-Length: 3\r\nContent-Length: 4\r\n", b"abcd"), refused()),
    probe("CL +3", "RFC 9112 §6.3", MUST, post(b"Content-Length: +3\r\n", b"abc"), refused()),
    probe("CL list 2, 2", "RFC 9112 §6.3", MUST, post(b"Content-Length: 2, 2\r\n", b"ab"),
          either(refused(), echoed(b"ab"))),
    probe("TE gzip, no chunked", "RFC 9112 §6.3", MUST,
          post(b"Transfer-Encoding: gzip\r\n", b"abc"), refused()),
    probe("TE chunked twice", "RFC 9112 §6.1", SHOULD,
          post(b"Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n"), refused_coding),
    probe("unknown coding → 501", "RFC 9112 §6.1", SHOULD,
          post(b"Transfer-Encoding: foo, chunked\r\n", b"0\r\n\r\n"), status_is(501)),
]

# %% [markdown]
# The chunked probes. The first three are valid bodies that must come back as `abcde` or
# `abc`: two chunks, a chunk with an extension (`;name=value`, to be ignored), and a
# trailer field after the last chunk. The last two are broken, and the huge chunk size
# needs a script of its own: after the body it sends `HalfClose()`, so that a server
# which (correctly) waits for 2⁶⁴ + 3 bytes learns at once that no more are coming.

# %%
#| export
CHUNK_PROBES = [
    probe("chunked body", "RFC 9112 §7.1", MUST,
          post(CHUNKED, b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), echoed(b"abcde")),
    probe("chunk extension", "RFC 9112 §7.1.1", MUST,
          post(CHUNKED, b"3;name=value\r\nabc\r\n0\r\n\r\n"), echoed(b"abc")),
    probe("trailer field", "RFC 9112 §7.1", MUST,
          post(CHUNKED, b"3\r\nabc\r\n0\r\nX-Sum: 1\r\n\r\n"), echoed(b"abc")),
    probe("chunk size not hex", "RFC 9112 §7.1", SHOULD,
          post(CHUNKED, b"zz\r\nabc\r\n0\r\n\r\n"), refused()),
    Probe("chunk size 2⁶⁴+3", "RFC 9112 §7.1", MUST,
          (Send(post(CHUNKED, b"10000000000000003\r\nabc\r\n")), HalfClose(), Read()),
          not_served),
]

# %% [markdown]
# Twelve probes. The first seven break the framing headers, the last five send chunked
# bodies: three valid ones that must be echoed, two broken ones that must not be served.
# Before you run it, make a guess from what you know so far: which servers will keep the
# connection open after "CL and TE together"? (Hint: which ones share a parser?) One
# column is going to stand out:

# %%
from barelab.built.conformance import CHUNK_PROBES, FRAMING_PROBES

framing_table = run_batteries(servers, FRAMING_PROBES + CHUNK_PROBES)
framing_table

# %% [markdown]
# All four course and barelab columns pass every framing MUST. The bottom row shows where
# the rest stand: wsgiref fails nine MUSTs, hypercorn two ("CL and TE together", "TE gzip,
# no chunked"), uvicorn one ("CL and TE together"), and gunicorn none. The report for the
# three production servers, SHOULDs and MAYs left out:

# %%
print(framing_table.failure_report(names=["gunicorn", "uvicorn", "hypercorn"]))

# %% [markdown]
# - **CL and TE together, on uvicorn and hypercorn.** Both went by `Transfer-Encoding`
#   (allowed) and answered `abc`, then kept the connection open for the next request
#   ("got 200, open").
#   That is the one thing §6.1 forbids: after a request that *could* be a smuggling
#   attempt, the connection must not be reused. h11, which both use, leaves the decision
#   to the server, and neither server takes it. barelab's engine is built on h11 too, and
#   adds the close itself.
# - **uvicorn answers the unknown coding with 400, not 501**: every parse error becomes a
#   400 there. Only a SHOULD.
# - **TE gzip on hypercorn: 501 instead of 400.** §6.1 says a coding the server does not
#   understand SHOULD get 501, but §6.3 says that when chunked is not last the server MUST
#   answer 400. The MUST is the stronger rule and the more specific one.
#
# Look at one of those outcomes in full, uvicorn's answer to "CL and TE together":

# %%
smuggle = framing_table.outcome("uvicorn", "CL and TE together")
smuggle.summary(), smuggle.responses[0].body

# %% [markdown]
# The app received `abc`, so uvicorn decoded the chunked body and ignored
# `Content-Length: 3`: the right half of the rule. Then `StillOpen` got an answer on the
# same connection ("open"). Behind a proxy that went by `Content-Length`, proxy and
# server would now disagree about where the next request on this connection starts.
# Closing the connection ends the disagreement before anyone can use it: that is the
# close the rule demands.
#
# And wsgiref fails almost everything here: it never decodes chunked bodies at all (its
# app read nothing and echoed its default line), and it passes `Content-Length` to the app
# as it came. For `2, 2` that made the app's `int("2, 2")` raise, a 500:

# %%
list2 = framing_table.outcome("wsgiref", "CL list 2, 2")
list2.summary(), list2.responses[0].body[:60]

# %% [markdown]
# That body is wsgiref's own error page: the app raised `ValueError`, wsgiref caught it,
# answered 500 and wrote the traceback to `wsgi.errors` (which the engine sends to
# `server.log`). The rule allows two answers, a 400 (the client's fault) or reading the
# list as one length of 2; a 500 is neither, and says the server broke on a request it
# should never have passed on.

# %% [markdown]
# ## Limits
#
# A server that reads "until the request ends" with no limit lets any client fill its
# memory. RFC 9112 §3 makes one limit a MUST: a server that receives a request target
# longer than it wishes to parse MUST answer 414. (A server that reads the whole 12 KiB
# target and answers 200 passes too: it did wish to parse it.) Why 12 KiB? §3 recommends
# that every server accept request lines of at least 8000 octets, so a limit below that
# would be a fault of its own; 12 KiB is safely above it. 431 for a huge header
# section (RFC 6585 §5) and 413 for a body over the limit (RFC 9110 §15.5.14) are status
# codes a server MAY use; whether it has those limits at all is its choice. The body probe
# announces a gibibyte, sends three bytes and hangs up its side, so a server without a
# limit does not keep the probe waiting.

# %%
#| export
LIMIT_PROBES = [
    probe("URI of 12 KiB", "RFC 9112 §3", MUST, get(b"/" + b"a" * 12288), status_is(414, 200)),
    probe("header of 20 KiB", "RFC 6585 §5", MAY, get(extra=b"X-Probe: " + b"a" * 20480 + b"\r\n"),
          status_is(431)),
    Probe("body of 1 GiB", "RFC 9110 §15.5.14", MAY,
          (Send(post(b"Content-Length: 1073741824\r\n", b"abc")), HalfClose(), Read()),
          status_is(413)),
]

# %% [markdown]
# Why only a MAY for the last two? The RFCs define the status codes, so that a server
# with a limit can say which one was hit, but they leave the limits themselves to the
# server: 20 KiB of headers is absurd for a blog and normal behind some single sign-on
# proxies. So two of the three rows are MAYs, and you should expect red that is not a
# fault: a ✗ there says only that the server has no such limit, or answers it with a
# different code.

# %%
from barelab.built.conformance import LIMIT_PROBES

limits_table = run_batteries(servers, LIMIT_PROBES)
limits_table

# %% [markdown]
# - **The 12 KiB URI passes everywhere**: the course servers and gunicorn say 414 (their
#   line limits are 8 KiB and 4 KiB); the others parse it and answer 200.
# - **uvicorn and hypercorn accept a 20 KiB header.** Both use h11, whose limit (16 KiB)
#   applies only while a request head is *incomplete*: a head that arrives whole in one
#   read is parsed whatever its size. A bigger head, sent slowly, would get an error. The
#   sizes here are chosen so that every server sees each request in one read: a probe
#   whose verdict depends on how bytes happen to be split into reads would not give the
#   same table twice.
# - **wsgiref accepts the 20 KiB header too**: its limit, inherited from `http.server`, is
#   64 KiB per line.
# - **No 413 from gunicorn, uvicorn, hypercorn or wsgiref.** They leave body limits to the
#   app or to a proxy in front (nginx's `client_max_body_size`, say). Only a MAY, but a
#   reason never to run them naked on the internet with an app that reads whole bodies.

# %% [markdown]
# ## Persistence, pipelining, HEAD and empty bodies
#
# A browser opens a connection and sends request after request on it: that is what
# "keep-alive" means, and HTTP/1.1 does it by default (RFC 9112 §9.3, which also says
# implementations SHOULD support it). It only works if both sides agree, after every
# response, whether the connection is still usable. So:
#
# - A client asks to close with `Connection: close`, and a server that receives it MUST
#   close after its response (§9.6).
# - A server that does not keep connections open MUST say so with `Connection: close` in
#   every response (§9.6 again). A response marked `HTTP/1.0` says it as well, since a
#   1.0 connection closes unless both sides asked for keep-alive (§9.3); the verdict
#   accepts either.
# - A *pipelined* client sends several requests before reading any answer. The server MAY
#   work on them in parallel, but MUST send the answers in order (§9.3.2): the responses
#   carry no request id, so order is the only way to match them up.
#
# Two new verdicts: `in_order` reads the paths the echo app reports, `announces_close`
# the last response's version and `Connection` header:

# %%
#| export
@expects("/one then /two, or /one then a close")
def in_order(got):
    paths = [r.body.split(b" ")[0] for r in got.responses]
    return paths == [b"path=/one", b"path=/two"] or (paths == [b"path=/one"] and got.closed)


@expects("stays open, or says it will close")
def announces_close(got):
    final = got.responses[-1] if got.responses else None
    return got.open or (final is not None and (final.version == "HTTP/1.0"
                        or "close" in (final.header("connection") or "").lower()))

# %% [markdown]
# `announces_close` is the subtle one: it does not mind a server that closes, only one that
# closes *without warning*. Here is a response that says `Connection: close`, and one that
# says nothing, each followed by a close. The first should pass, the second fail:

# %%
from barelab.built.conformance import announces_close

warned = Outcome([Response("HTTP/1.1", 200, [("connection", "close")])], closed=True)
silent_close = Outcome([Response("HTTP/1.1", 200, [])], closed=True)
announces_close(warned), announces_close(silent_close)

# %% [markdown]
# `(True, False)`: a client that got the second response would reuse the connection and
# have its next request fail for no visible reason. That is the failure a client cannot
# work around, and why the warning is a MUST while keeping the connection is not.
#
# The five persistence probes, using those two and the `closes`/`stays_open` verdicts.
# Each row pairs a request with the connection state it should leave behind: a plain
# 1.1 request keeps the connection (SHOULD), `Connection: close` ends it (MUST), an
# HTTP/1.0 request ends it by default (SHOULD), any answer that ends it says so (MUST),
# and two pipelined requests get two answers in order (MUST):

# %%
#| export
PERSISTENCE_PROBES = [
    probe("keep-alive by default", "RFC 9112 §9.3", SHOULD, get(), stays_open),
    probe("Connection: close honoured", "RFC 9112 §9.6", MUST,
          get(extra=b"Connection: close\r\n"), closes),
    probe("HTTP/1.0 closes by default", "RFC 9112 §9.3", SHOULD, get(version=b"HTTP/1.0"), closes),
    probe("a close is announced", "RFC 9112 §9.6", MUST, get(), announces_close),
    Probe("pipelined, answered in order", "RFC 9112 §9.3.2", MUST,
          (Send(get(b"/one") + get(b"/two")), Read(), Read()), in_order),
]

# %% [markdown]
# (§9.3 states HTTP/1.0's default without a MUST, as a description, so the table counts
# it as a SHOULD.)
#
# Bodies that must not be there. RFC 9110 §9.3.2: a server MUST NOT send content in a
# response to `HEAD`, and SHOULD send the same header fields as for `GET`. §8.6: a server
# MUST NOT send `Content-Length` in a 204. And a 204 or a 304 ends at its empty line: it
# "cannot contain content" (§15.3.5, §15.4.5). That last sentence is a definition, not a
# MUST, so the 304 probe is filed as a SHOULD; the 204 probe is a MUST for its
# `Content-Length`.
#
# How do you *see* a body that should not be there? The client that asked for a 304
# reads no body, whatever the headers say, so stray bytes would not show up in the first
# response at all. Send a second request right behind it: the stray bytes then sit where
# the second status line should be, and the second `Read()` fails.

# %%
#| export
@expects("an empty response, then the next one readable")
def nothing_after(got):
    first = got.responses[0]
    return len(got.responses) == 2 or (got.closed and first.status < 400)


@expects("204 without Content-Length, nothing after it")
def bare_204(got):
    return got.status == 204 and got.responses[0].header("content-length") is None \
        and nothing_after(got)


@expects("HEAD and GET with the same Content-Length")
def same_length(got):
    head, get_ = got.responses
    return head.header("content-length") == get_.header("content-length") is not None

# %% [markdown]
# Three of the four probes send two requests in one go (the `/after` request is the one
# that exposes stray bytes). "HEAD has GET's length" needs two connections instead: a HEAD
# on one, a GET on a fresh one, so that neither answer can disturb the other.

# %%
#| export
BODYLESS_PROBES = [
    Probe("HEAD sends no body", "RFC 9110 §9.3.2", MUST,
          (Send(get(method=b"HEAD") + get(b"/after")), Read(head_only=True), Read()),
          nothing_after),
    Probe("HEAD has GET's length", "RFC 9110 §9.3.2", SHOULD,
          (Send(get(method=b"HEAD")), Read(head_only=True), Reconnect(), Send(get()), Read()),
          same_length),
    Probe("204: no body, no CL", "RFC 9110 §8.6", MUST,
          (Send(get(b"/204") + get(b"/after")), Read(), Read()), bare_204),
    Probe("304: no body", "RFC 9110 §15.4.5", SHOULD,
          (Send(get(b"/304") + get(b"/after")), Read(), Read()),
          both(status_is(304), nothing_after)),
]

# %% [markdown]
# The rule of this group: *after every response, both sides must agree on where the
# connection stands*: open, closed, and where the next response starts. The nine probes
# run together. Expect much less red than in the framing group: these rules are as old as
# HTTP/1.1, and a server that broke them would break ordinary clients every day.

# %%
from barelab.built.conformance import BODYLESS_PROBES, PERSISTENCE_PROBES

persistence_table = run_batteries(servers, PERSISTENCE_PROBES + BODYLESS_PROBES)
persistence_table

# %% [markdown]
# The bottom row is almost all zeros: the one MUST failure is wsgiref's, in the row
# "204: no body, no CL". The red in SHOULD rows is all in the first row, "keep-alive by
# default", for wsgiref and gunicorn.
#
# - **gunicorn's sync worker never keeps a connection open**, and says so with
#   `Connection: close` on every response: a SHOULD skipped, by design. A sync worker
#   serves one connection at a time, so an idle keep-alive connection would block every
#   other client. gunicorn's docs recommend an async worker, or a proxy in front, for
#   keep-alive.
# - **wsgiref answers a 204 with `Content-Length: 0`**, which RFC 9110 §8.6 forbids: its
#   handler adds a length to any response whose body it can count.
# - Everyone else passes every MUST here. Pipelining, HEAD and empty bodies are old,
#   well-known rules; the next group is where real servers slip again.
#
# gunicorn's and wsgiref's SHOULD failures, in full:

# %%
print(persistence_table.failure_report(SHOULD, names=["wsgiref", "gunicorn"]))

# %% [markdown]
# "got 200, closed": the answer came, then the connection closed when `StillOpen` asked
# again. The MUST next to it, "a close is announced", passes for both: wsgiref answers as
# `HTTP/1.0`, gunicorn sends `Connection: close`, so a client knows not to reuse the
# connection.

# %% [markdown]
# ## Expect, Date, and clients that misbehave
#
# Four more server duties:
#
# - RFC 9110 §10.1.1: a client that sends `Expect: 100-continue` waits before sending its
#   body. The server MUST answer at once, with `100 Continue` or with a final status.
#   This is how a client about to upload a large file asks "will you take it?" first, so
#   that a 401 or a 413 costs one round trip instead of the whole upload.
# - RFC 9110 §6.6.1: an origin server with a clock MUST send `Date` in every 2xx, 3xx and
#   4xx response, including the 400s it writes itself. Caches use it to work out how old
#   a response is. ("With a clock" covers every server in this table.)
# - A slow client sends a request in pieces. RFC 9112 §2.2 says a recipient MUST parse a
#   message as a sequence of octets: a request is its bytes, however the network splits
#   them, so three small sends must read as one request.
# - A client that announces ten bytes of body, sends five and vanishes sent an incomplete
#   message. RFC 9112 §6.3 (rule 6): the recipient MUST consider it incomplete and close.
#   So the app must never be served those five bytes as if they were the whole body.
#
# The `Expect` probe plays the client's part exactly: send the head, read the `100`, only
# then send the three bytes of body, and read the final answer. Its verdict wants both
# responses, in that order:

# %%
#| export
EXPECT = b"POST /echo HTTP/1.1\r\n" + HOST + b"Expect: 100-continue\r\nContent-Length: 3\r\n\r\n"

@expects("100, then 200 echoing b'abc'")
def continued(got):
    return [r.status for r in got.responses] == [100, 200] and got.responses[1].body == b"abc"

# %% [markdown]
# The five probes. "Date on a 400" reuses the space-before-colon request, so that the
# server itself writes the answer; "slow client" splits a request in the middle of a word,
# twice; "client vanishes" announces ten bytes, sends five and shuts its side:

# %%
#| export
CLIENT_PROBES = [
    Probe("Expect: 100-continue", "RFC 9110 §10.1.1", MUST,
          (Send(EXPECT), Read(), Send(b"abc"), Read()), continued),
    probe("Date on a 200", "RFC 9110 §6.6.1", MUST, get(), has_date),
    probe("Date on a 400", "RFC 9110 §6.6.1", MUST, get(extra=b"X-Probe : a\r\n"), has_date),
    Probe("slow client", "RFC 9112 §2.2", MUST,
          (Send(b"GET / HT"), Pause(0.05), Send(b"TP/1.1\r\nHo"), Pause(0.05),
           Send(b"st: probe\r\n\r\n"), Read()), status_is(200)),
    Probe("client vanishes mid-body", "RFC 9112 §6.3", MUST,
          (Send(post(b"Content-Length: 10\r\n", b"abcde")), HalfClose(), Read()), not_served),
]

# %% [markdown]
# What the five have in common: *a server answers what the client actually sent, on the
# client's timing*, neither waiting for what will not come nor serving what did not
# arrive. The course and barelab servers pass all five. Watch the "client vanishes" row:
# WSGI makes that rule harder to keep. An ASGI server can tell the app the client left;
# a WSGI server has no message for that, so it must notice the short body itself before
# the app takes five bytes for the whole thing. The course's WSGI server does.

# %%
from barelab.built.conformance import CLIENT_PROBES

client_table = run_batteries(servers, CLIENT_PROBES)
client_table

# %% [markdown]
# Three columns have red in MUST rows: wsgiref in "Expect: 100-continue" and "client
# vanishes mid-body", gunicorn in "Date on a 400" and "client vanishes mid-body", and
# uvicorn in "Date on a 400". The real ones, in full:

# %%
print(client_table.failure_report(names=["wsgiref", "gunicorn", "uvicorn"]))

# %% [markdown]
# - **wsgiref never sends `100 Continue`.** The client waits for it, the server waits for
#   the body, and nothing happens until the client gives up (after `READ_TIMEOUT`, here).
#   Real clients such as curl stop waiting after a second and send the body anyway, which
#   is why this bug goes unnoticed.
# - **gunicorn and uvicorn write their own 400s without `Date`.** Their app responses have
#   one; the error pages they write themselves were missed.
# - **wsgiref and gunicorn serve a truncated body.** Their `wsgi.input.read(10)` returned
#   the five bytes that came before the client vanished, and the app, trusting PEP 3333,
#   answered them as the whole body. An upload cut off halfway is then stored as if it were
#   complete. The ASGI servers tell the app with `http.disconnect` instead.

# %% [markdown]
# ## WebSocket
#
# The last group leaves HTTP behind after one request. A WebSocket starts as an HTTP
# request with `Upgrade: websocket` (the *handshake*, RFC 6455 §4.1); once the server
# answers `101 Switching Protocols`, both sides send *frames* on the same connection.
# The WSGI servers cannot take part: a WSGI app returns one response and is done, so
# these probes only run on the ASGI servers.
#
# The handshake key is the one from the RFC's own example, so the right
# `Sec-WebSocket-Accept` (the server's proof that it read the key) is known in advance.
# `handshake()` leaves out the key, or changes the version, when a probe needs it to:

# %%
#| export
KEY, ACCEPT = "dGhlIHNhbXBsZSBub25jZQ==", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="   # RFC 6455 §1.3
MASK = b"\x37\xfa\x21\x3d"

def handshake(key: str | None = KEY, version: bytes = b"13") -> bytes:
    fields = b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
    if key is not None:
        fields += b"Sec-WebSocket-Key: " + key.encode() + b"\r\n"
    return get(b"/ws", extra=fields + b"Sec-WebSocket-Version: " + version + b"\r\n")

# %% [markdown]
# A client's frames must be masked (§5.3): the payload is XORed with four key bytes that
# the frame carries (why, comes with the rules below). `frame()` builds one frame, masked unless told otherwise, with flags for the
# probes that break the rules on purpose:

# %%
#| export
def frame(opcode: int, payload: bytes = b"", *, fin=True, masked=True, rsv=0) -> bytes:
    """One client frame, payload up to 125 bytes (RFC 6455 §5.2)."""
    first = (0x80 if fin else 0) | rsv | opcode
    if not masked:
        return bytes([first, len(payload)]) + payload
    data = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return bytes([first, 0x80 | len(payload)]) + MASK + data

# %% [markdown]
# A text frame with `hi`, masked and not. Both start with `0x81` (final frame, opcode 1,
# text) and a length of 2; the masked one sets the length byte's top bit (`0x82`), then
# carries the mask, then `hi` scrambled by it. Python prints bytes as ASCII where it can,
# so the mask `37 fa 21 3d` shows up as `7\xfa!=`, and the scrambled `hi` as `_\x93`:

# %%
frame(1, b"hi"), frame(1, b"hi", masked=False)

# %% [markdown]
# The rules, each a MUST:
#
# - §4.2.2: a valid handshake gets `101` with `Sec-WebSocket-Accept` computed from the key.
#   A version the server does not speak makes it abort the handshake with an error such as
#   426 and a `Sec-WebSocket-Version` header listing the versions it does speak.
# - §4.2.1: a handshake without a key gets an error status "such as 400".
# - §6.2: incoming data MUST be parsed as frames, and a data frame's type (text or
#   binary) MUST be noted: a text message reaches the app as text, and the echo app's
#   answer goes back as the same type.
# - §5.5.2: a ping MUST get a pong, carrying the ping's payload (§5.5.3). §5.4: control
#   frames may arrive in the middle of a fragmented message, and an endpoint MUST handle
#   that. §5.5.1: a close frame MUST get a close frame back.
# - §5.1: an unmasked frame from a client MUST make the server close the connection (a
#   close frame with 1002, "protocol error", is optional). §5.2: a reserved bit set with no
#   extension that defines it MUST fail the connection. §8.1: text that is not valid UTF-8
#   MUST fail it too, code 1007.
#
# Each of the last three has a reason you can state in one line. Masking exists so that a
# script in a browser cannot write bytes that a proxy on the way would read as an HTTP
# request (§10.3), so an unmasked frame means the client is not a browser following the
# rules. Reserved bits belong to extensions agreed in the handshake (compression sets
# one), so a bit nobody agreed on means the two sides no longer read frames the same way.
# And a text frame promises UTF-8: the app receives a Python `str`, which invalid bytes
# cannot become.
#
# Three helpers turn those rules into probes and verdicts. `websocket()` is `probe()` for
# this group: it puts a valid handshake and its 101 in front of the steps you give it.
# `frames_are` wants exactly these frames back, in order; `fails_connection` wants the
# server to hang up, with the right close code or with no close frame at all, since
# sending one is optional:

# %%
#| export
def websocket(name, rule, steps, verdict) -> Probe:
    """A MUST probe that starts with a valid handshake and its 101."""
    return Probe(name, rule, MUST, (Send(handshake()), Read(), *steps), verdict, "websocket")


def frames_are(*expected):
    @expects("frames " + ", ".join(f"{FRAME_NAMES[op]} {data!r}" for op, data in expected))
    def verdict(got): return [(f.opcode, f.payload) for f in got.frames] == list(expected)
    return verdict


def fails_connection(code: int):
    @expects(f"closed, with close {code} or no close frame")
    def verdict(got):
        return got.status == 101 and got.closed and all(
            f.opcode == 8 and f.close_code in (code, None) for f in got.frames)
    return verdict

# %% [markdown]
# Three verdicts for the handshake: the right `Sec-WebSocket-Accept`, a 4xx that names the
# version the server speaks, and any 4xx. The first compares the header with `ACCEPT`,
# the value the RFC's example gives for `KEY`, so the verdict needs no SHA-1 of its own.
# The second looks for `13`, the only version RFC 6455 defines, in the server's
# `Sec-WebSocket-Version` header:

# %%
#| export
@expects("a 4xx with Sec-WebSocket-Version: 13")
def names_version(got):
    return got.status is not None and 400 <= got.status < 500 \
        and "13" in (got.responses[0].header("sec-websocket-version") or "")

@expects("101 with the right Sec-WebSocket-Accept")
def accepted(got):
    return got.status == 101 and got.responses[0].header("sec-websocket-accept") == ACCEPT

@expects("a 4xx")
def client_error(got): return got.status is not None and 400 <= got.status < 500

# %% [markdown]
# The three probes for the handshake itself: a valid one, one that asks for version 8 (an
# old draft of the protocol), and one without a key. Each sends only the request and
# reads the answer, so they are `Probe`s written out in full rather than `websocket()`s:

# %%
#| export
HANDSHAKE_PROBES = [
    Probe("handshake → 101", "RFC 6455 §4.2.2", MUST, (Send(handshake()), Read()), accepted, "websocket"),
    Probe("version 8 → 426", "RFC 6455 §4.2.2", MUST, (Send(handshake(version=b"8")), Read()),
          names_version, "websocket"),
    Probe("no key → 400", "RFC 6455 §4.2.1", MUST, (Send(handshake(key=None)), Read()),
          client_error, "websocket"),
]

# %% [markdown]
# The frame probes need one more piece: a close frame with code 1000, "normal closure",
# which a client sends to end a session politely.

# %%
#| export
CLOSE_1000 = frame(8, (1000).to_bytes(2, "big"))

# %% [markdown]
# In hex, byte by byte: `88` is a final frame with opcode 8 (close), `82` a masked payload
# of two bytes, then the four mask bytes, then the code 1000 (`03 e8`) XORed with the
# first two of them:

# %%
CLOSE_1000.hex(" ")

# %% [markdown]
# The frame probes all start with a good handshake (`websocket()` adds it), then send
# frames and read what comes back. The first four are a well-behaved client: text, a ping,
# a ping in the middle of a message split into two fragments (`hel` and `lo`), a polite
# close. The last three break a rule on purpose, and want the server to end the
# connection rather than echo anything.

# %%
#| export
FRAME_PROBES = [
    websocket("text is echoed", "RFC 6455 §6.2", [Send(frame(1, b"hello")), ReadFrame()],
              frames_are((1, b"hello"))),
    websocket("ping → pong", "RFC 6455 §5.5.2", [Send(frame(9, b"beat")), ReadFrame()],
              frames_are((10, b"beat"))),
    websocket("ping inside fragments", "RFC 6455 §5.4",
              [Send(frame(1, b"hel", fin=False) + frame(9, b"p") + frame(0, b"lo")),
               ReadFrame(), ReadFrame()], frames_are((10, b"p"), (1, b"hello"))),
    websocket("close is answered", "RFC 6455 §5.5.1", [Send(CLOSE_1000), ReadFrame(), WaitClose()],
              both(frames_are((8, (1000).to_bytes(2, "big"))), closes)),
    websocket("unmasked → close", "RFC 6455 §5.1",
              [Send(frame(1, b"hello", masked=False)), ReadFrame(), WaitClose()], fails_connection(1002)),
    websocket("reserved bit → close", "RFC 6455 §5.2",
              [Send(frame(1, b"hi", rsv=0x40)), ReadFrame(), WaitClose()], fails_connection(1002)),
    websocket("bad UTF-8 → 1007", "RFC 6455 §8.1",
              [Send(frame(1, b"\xff\xfe")), ReadFrame(), WaitClose()], fails_connection(1007)),
]

# %% [markdown]
# The group is the handshake probes and the frame probes together:

# %%
#| export
WEBSOCKET_PROBES = HANDSHAKE_PROBES + FRAME_PROBES

# %% [markdown]
# Here the rule is: *a valid handshake gets the exact 101 the RFC computes, and after it
# only well-formed frames are accepted; anything else ends the connection.* Expect a
# column of – for every WSGI server: these probes do not apply to them.

# %%
from barelab.built.conformance import WEBSOCKET_PROBES

websocket_table = run_batteries(servers, WEBSOCKET_PROBES)
websocket_table

# %% [markdown]
# The WSGI servers get – all the way down: WSGI has no way to speak WebSocket. Every ASGI
# server passes every probe but one, in the row "version 8 → 426": **hypercorn answers
# with a bare 400**, no `Sec-WebSocket-Version` header, so a client cannot learn which
# version to try instead. The rule asks for both parts, the error and the header.
#
# That uvicorn and hypercorn pass the rest is no surprise: they hand frames to a WebSocket
# library (`websockets` or `wsproto`) that does this part of the RFC for them, and the
# course's server was written against these rules in chapter 15.
#
# One detail about "close is answered": the verdict wants the close frame to carry 1000,
# the code the client sent. RFC 6455 §5.5.1 says the endpoint "typically echos the status
# code it received", and all four do. And "ping inside fragments" passing everywhere
# means each server answered the ping at once, in the middle of a message it had not
# finished reading, and then delivered `hello` whole: the app never sees fragments.

# %% [markdown]
# ## The whole battery
#
# Seven groups, each with one idea behind its rules:
#
# | group | probes | the idea |
# | --- | --- | --- |
# | request syntax | 11 | refuse what does not parse, or repair it the one way the RFC allows |
# | Host and target | 5 | the server decides which host and path a request is for |
# | framing and chunked | 12 | when a body's length is in any doubt, refuse and close |
# | limits | 3 | a server may refuse what is too big, and must say why |
# | persistence and empty bodies | 9 | both sides agree on where the connection stands |
# | clients that misbehave | 5 | answer what the client sent, on the client's timing |
# | WebSocket | 10 | the exact 101, then only well-formed frames |
#
# All groups in one list, `BATTERY`, and one run:

# %%
#| export
BATTERY = (SYNTAX_PROBES + HOST_PROBES + FRAMING_PROBES + CHUNK_PROBES + LIMIT_PROBES
           + PERSISTENCE_PROBES + BODYLESS_PROBES + CLIENT_PROBES + WEBSOCKET_PROBES)

# %%
import time
from barelab.built.conformance import BATTERY, MAY, SHOULD

started = time.monotonic()
table = run_batteries(servers, BATTERY)
len(BATTERY), time.monotonic() - started < 10

# %% [markdown]
# Fifty-five probes on eight servers, well under ten seconds: the servers answer at once,
# and the only waits are the few probes where a server never answers (wsgiref's
# `100 Continue`).
#
# The table is long, so read it the way you read the small ones: bottom row first, then
# scan each column for red in MUST rows, then check each group against the explanations
# above. The column of – under each WSGI server is the WebSocket group at the end.

# %%
table

# %% [markdown]
# The bottom row reads 0, 0, 20, 4 on the WSGI side and 0, 0, 4, 5 on the ASGI side. It
# counts MUSTs only. To see all three levels, count per server: each tuple below is
# (MUST, SHOULD, MAY) failures.

# %%
{name: (len(results.failures(MUST)), len(results.failures(SHOULD)), len(results.failures(MAY)))
 for name, results in table.columns.items()}

# %% [markdown]
# How to read it, server by server, with the rows to look at:
#
# - **The four course and barelab columns: (0, 0, 0).** Not even a SHOULD: chapter 02's
#   parser and chapters 06 and 13's servers were written against these rules.
#   `tests/test_conformance_battery.py` keeps every MUST probe as a test for them, so a
#   regression (like the old `Host` gap of chapter 13) cannot come back unnoticed.
# - **uvicorn (4 MUSTs) and hypercorn (5) fail in the same rows**: "invalid Host value",
#   "absolute-form target" and "CL and TE together". Both sit on h11, and h11 leaves
#   those three decisions to the server using it, which neither takes. The rest is their
#   own: uvicorn's "Date on a 400", hypercorn's "TE gzip, no chunked" and "version 8 →
#   426". Most of these matter much less behind a careful proxy, which is how both are
#   meant to run in production.
# - **gunicorn (4 MUSTs): "missing Host (1.1)", "invalid Host value", "Date on a 400" and
#   "client vanishes mid-body".** Host is left to the framework, the 400 page is its own,
#   and the truncated body reaches the app. Its sync worker is meant to run behind
#   nginx, which fixes all of these before gunicorn sees the request.
# - **wsgiref (20 MUSTs): red in nearly every group**: the header syntax rows, all of Host,
#   all of framing, "204: no body, no CL", "Expect: 100-continue", "client vanishes
#   mid-body". It is a reference for PEP 3333, not an HTTP server for the internet.
#
# And the SHOULD and MAY failures of the real servers sit in a few rows: "keep-alive by
# default" (wsgiref, gunicorn), "empty line first" (the h11 servers and wsgiref),
# "HTTP/2.0 in a 1.x line", and the two size limits. Each is a choice the RFC leaves
# open.
#
# A conformance table is a map of what a server trusts its surroundings to do. The course
# servers trust nothing, because they are the ones you wrote.

# %% [markdown]
# ## What this means for the servers you deploy
#
# You will not deploy the course's servers; you will deploy gunicorn or uvicorn. The table
# does not say "do not", it says what to put around them:
#
# - **Run them behind a reverse proxy** (nginx, a cloud load balancer). A proxy parses
#   every request itself and forwards a clean one: one `Host`, a plain `Content-Length`
#   or a chunked body it has already checked, the path taken out of an absolute URL. Most
#   of the red in the gunicorn, uvicorn and hypercorn columns never reaches them there.
# - **Check `Host` in the app anyway.** Django's `ALLOWED_HOSTS`, Starlette's (and so
#   FastAPI's) `TrustedHostMiddleware` and Werkzeug's `trusted_hosts` exist because
#   servers leave it to the framework, as this table shows.
# - **Set a body limit somewhere**: `client_max_body_size` in nginx, `MAX_CONTENT_LENGTH`
#   in Flask, or a check in your ASGI app. No server in the real columns refused a
#   gibibyte.
# - **Never put `wsgiref` on a network**: it is for reading, for tests and for trying an
#   app on your own machine.
#
# And when you choose a server, or upgrade one, you can now run this battery against it:
# `serve_if_installed` and `run_batteries` work on any server you can start with a
# socket.

# %% [markdown]
# ## A battery that cannot hang
#
# Every wait has a timeout, so a server that never says a word costs `READ_TIMEOUT` per
# probe, and a battery has a `budget`, the deadline for all its probes together. Try the
# worst kind of server: a socket that accepts connections and never answers. Listening is
# enough; the kernel completes the TCP handshake without the program's help.

# %%
from types import SimpleNamespace

silent = socket.create_server(("127.0.0.1", 0))
silent_target = SimpleNamespace(host="127.0.0.1", port=silent.getsockname()[1])
started = time.monotonic()
mute = run_battery(silent_target, BATTERY, name="silent", timeout=0.2, budget=2.0)
silent.close()
mute, time.monotonic() - started < 3

# %% [markdown]
# `run_battery` needs nothing but an object with `.host` and `.port`, so a
# `SimpleNamespace` will do. The `True` says the whole battery ended within three seconds:
# it took about two, its budget. Once the budget is spent, each remaining probe stops at
# its first wait, so a hundred more probes would not have taken longer.
#
# Nearly every probe failed. Two MUST probes passed: "chunk size 2⁶⁴+3" and "client
# vanishes mid-body", whose rule is *do not serve this*, which a server that serves
# nothing obeys. A verdict only ever checks the one thing its rule is about. (The
# WebSocket probes were skipped: this target has no `kind`, so it is not known to speak
# WebSocket.)
#
# The other bad server hangs up at once with a reset (`SO_LINGER` with a zero timeout turns
# `close()` into a TCP RST). A thread accepts and resets until the listening socket closes:

# %%
import struct

def reset_everyone(listener):
    while True:
        try:
            connection, _ = listener.accept()
        except OSError:
            return                                     # the listener was closed
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.close()

# %% [markdown]
# Run the first five probes against it, and list each one's mark and status:

# %%
rude = socket.create_server(("127.0.0.1", 0))
rude_target = SimpleNamespace(host="127.0.0.1", port=rude.getsockname()[1])
threading.Thread(target=reset_everyone, args=(rude,), daemon=True).start()
reset_results = run_battery(rude_target, BATTERY[:5], name="rude")
rude.close()
[(result.mark, result.outcome.status) for result in reset_results.results]

# %% [markdown]
# Each probe failed at once with no response at all (`None`): no traceback, no wait.
# (Depending on when the reset arrives, a probe sees it while connecting, sending or
# reading; the summary says which, the mark is ✗ every time.) Between the silent server
# and the rude one you have seen both ways a server can refuse to take part, and the
# battery survives both: that is what makes it safe to point at a server you do not
# trust.

# %% [markdown]
# ## Adding a probe
#
# A new probe is one `Probe(...)` or `probe(...)` expression: pick the rule, find its
# level in the RFC's own words, write the bytes, and choose (or write) a verdict. Then ask
# one question before trusting it: *is this rule the server's duty, or the app's?*
#
# A first try. RFC 9110 §9.1 says method names are case-sensitive, so `get` is not `GET`,
# and a server SHOULD answer a method it does not implement with 501:

# %%
lowercase_method = probe("lowercase get", "RFC 9110 §9.1", SHOULD, get(method=b"get"),
                         status_is(400, 405, 501))
run_batteries(servers, [lowercase_method])

# %% [markdown]
# Red nearly everywhere: only gunicorn passes. Before calling seven servers broken, look
# at what one of them answered:

# %%
run_battery(servers["course WSGI"], [lowercase_method]).results[0].outcome.summary()

# %% [markdown]
# A 200 on an open connection: the server passed `get` to the app, and the echo app,
# which answers every method, answered. Which methods exist is for the app to say (a
# server cannot know every method an app implements), so the probe tests the echo app,
# not the server. Only gunicorn refuses lower-case method names itself, a stricter choice
# than the RFC asks for. This probe does not belong in a server battery.
#
# A better one: `Content-Length: -1`. RFC 9110 §8.6 defines the value as `1*DIGIT`, so
# `-1` is invalid, and RFC 9112 §6.3 (rule 5) says an invalid `Content-Length` MUST get
# 400 and a close. That duty is the server's alone, since only the server frames requests.

# %%
negative_length = probe("negative CL", "RFC 9112 §6.3", MUST,
                        post(b"Content-Length: -1\r\n", b""), refused())
negative_table = run_batteries(servers, [negative_length])
negative_table

# %% [markdown]
# Every server but wsgiref refuses it, so the probe measures something real. And look
# closer at wsgiref's ✗: it did not answer at all.

# %%
negative_table.outcome("wsgiref", "negative CL").summary()

# %% [markdown]
# wsgiref passed `CONTENT_LENGTH="-1"` to the app, whose `read(int(length))` became
# `read(-1)`, "read to the end". The client is waiting for an answer, the app for an end
# of body that never comes: a connection stuck until one side gives up. The probe gave up
# after `READ_TIMEOUT`; a thread in wsgiref stays stuck until the client closes.
#
# A probe that finds something real can join the battery: `BATTERY + [negative_length]`
# runs it everywhere from then on.
#
# Before a probe of yours joins the battery, check it against this list:
#
# 1. **One rule, quoted.** Find the sentence, and cite the section where its keyword is.
# 2. **The level is the RFC's word**, not your opinion of how much it matters. A sentence
#    without MUST, SHOULD or MAY (a definition, a description) is at most a SHOULD.
# 3. **The verdict takes every answer the rule allows**: "reject, or replace with a
#    space" is `either(...)`, not the one answer your own server happens to give.
# 4. **It is the server's duty.** If the app could decide the answer, the probe tests
#    the app.
# 5. **It gives the same table twice.** No verdict that depends on how the bytes are
#    split into reads, or on how fast the server is.
# 6. **Look at one outcome by hand**, on a server that passes and on one that fails.

# %% [markdown]
# ## Summary
#
# - A **probe** is data: a rule with its RFC section, a level (MUST, SHOULD, MAY), a script
#   of socket steps (`Send`, `Read`, `ReadFrame`, `Pause`, `HalfClose`, `Reconnect`,
#   `StillOpen`, `WaitClose`) and a **verdict**, a plain function of the `Outcome`.
# - Seeing is the hard part. The echo apps make the server's decisions visible (body,
#   path, a header), `StillOpen` tells an open connection from a closed one without
#   waiting, and a second pipelined request exposes any stray body bytes.
# - Nothing hangs: every `recv` has a timeout, every probe and battery a deadline, a
#   silent or resetting server just fails.
# - Real servers run behind the same `barelab.serve` handle as yours: wsgiref in a thread,
#   gunicorn, uvicorn and hypercorn in child processes on a socket barelab bound.
# - The table's MUST row: 0 for the course's servers and for barelab; 4 or 5 for the
#   production servers, each one explained by a design choice (a proxy in front, a
#   decision h11 leaves open) or a missed rule; 20 for wsgiref, a reference
#   implementation, not a server for the internet.
# - A probe must test the server's duty, not the app's: check one outcome by hand before
#   trusting a row of red.
# - Everything is in `barelab.built.conformance`: `Probe`, `probe`, the steps,
#   `run_probe`, `run_battery`, `run_batteries`, `Table`, the verdict factories, the echo
#   apps, the engines, and `BATTERY`.

# %% [markdown]
# ## Exercises

# %% [markdown]
# ### Exercise 1 — two probes of your own
#
# Write two probes, each with the right rule and level:
#
# - `leading_zeros`: `Content-Length: 003` with body `abc`. RFC 9110 §8.6 defines the value
#   as `1*DIGIT`, so leading zeros are valid, and by RFC 9112 §6.3 rule 6 the body is
#   those 3 bytes. File it as a MUST with the other framing rules of §6.3: a server that
#   refuses it, or reads another length, has lost the framing.
# - `chunked_capitals`: `Transfer-Encoding: Chunked`. Transfer coding names are
#   case-insensitive (RFC 9112 §7), so this is a chunked body like any other (MUST,
#   §7.1).

# %% tags=["solution"]
### BEGIN SOLUTION
leading_zeros = probe("CL with leading zeros", "RFC 9112 §6.3", MUST,
                      post(b"Content-Length: 003\r\n", b"abc"), echoed(b"abc"))
chunked_capitals = probe("TE Chunked", "RFC 9112 §7", MUST,
                         post(b"Transfer-Encoding: Chunked\r\n", b"3\r\nabc\r\n0\r\n\r\n"),
                         echoed(b"abc"))
### END SOLUTION

# %% tags=["check"]
from barelab import check

with check("Exercise 1"):
    mine = run_batteries({name: servers[name] for name in ("course WSGI", "barelab ASGI")},
                         [leading_zeros, chunked_capitals])
    for name, results in mine.columns.items():
        for result in results.results:
            assert result.mark == "✓", (f"{result.probe.name!r} fails on {name}: got "
                                        f"{result.outcome.summary()}; check the bytes and verdict")
    assert {leading_zeros.level, chunked_capitals.level} == {MUST}, "both rules are MUSTs"
    wrong = Outcome([Response("HTTP/1.1", 200, [], b"ab")], closed=True)
    assert not leading_zeros.verdict(wrong), "the verdict should reject a body of b'ab'"

# %% [markdown]
# ### Exercise 2 — a WebSocket probe
#
# RFC 6455 §5.6 says binary frames (opcode 2) carry arbitrary bytes, and §6.2 says a
# server MUST note a data frame's type, so a binary message must not come back as text.
# Write `binary_echo`, a WebSocket probe (use `websocket(...)`, citing §6.2) that sends a
# binary frame with the bytes `b"\x00\xffbin"` and expects the same binary frame back.

# %% tags=["solution"]
### BEGIN SOLUTION
binary_echo = websocket("binary is echoed", "RFC 6455 §6.2",
                        [Send(frame(2, b"\x00\xffbin")), ReadFrame()],
                        frames_are((2, b"\x00\xffbin")))
### END SOLUTION

# %% tags=["check"]
with check("Exercise 2"):
    assert binary_echo.needs == "websocket", "a WebSocket probe needs='websocket'"
    ws_table = run_batteries(servers, [binary_echo])
    marks = {name: ws_table.mark(name, 0) for name in ("course ASGI", "barelab ASGI", "course WSGI")}
    assert marks == {"course ASGI": "✓", "barelab ASGI": "✓", "course WSGI": "–"}, \
        f"expected ✓ on the ASGI servers and – on a WSGI one, got {marks}"

# %% [markdown]
# ### Exercise 3 — read the table in code
#
# Write `must_failures(table, name)`, which returns the sorted list of the names of the
# MUST probes that server `name` failed in a `Table` (an empty list for a server that is
# not installed).

# %% tags=["solution"]
def must_failures(table, name):
    ### BEGIN SOLUTION
    results = table.columns[name]
    return [] if results is None else sorted(r.probe.name for r in results.failures(MUST))
    ### END SOLUTION

# %% tags=["check"]
with check("Exercise 3"):
    assert must_failures(table, "course WSGI") == [], "the course WSGI server fails no MUST"
    assert must_failures(table, "course ASGI") == [], \
        f"course ASGI: got {must_failures(table, 'course ASGI')}"
    assert "invalid Host value" in must_failures(table, "uvicorn"), \
        "uvicorn lets 'Host: a b' through: that MUST failure should be in its list"
    expected = sorted(r.probe.name for r in table.columns["uvicorn"].results
                      if r.mark == "✗" and r.probe.level == MUST)
    assert must_failures(table, "uvicorn") == expected, "uvicorn's list does not match the table"

# %% [markdown]
# ### Exercise 4 — a Host check for any ASGI app
#
# The course's ASGI server refuses `Host: a b` now, but uvicorn and hypercorn hand it to
# the app (the Host table above). An app cannot fix its server, but it can refuse what it
# is handed. Write `valid_host(value: bytes) -> bool` for RFC 9112 §3.2's
# `Host = uri-host [ ":" port ]`: a host name of letters, digits, `-` and `.` (or an IPv6
# literal in brackets), then optionally `:` and digits. Then write `host_checked(app)`, an
# ASGI app that answers 400 to an `http` scope whose Host is invalid and passes everything
# else to `app`: wrapped this way, any ASGI app gets the check on any server. (The real fix
# belongs in the server, as chapter 13 does it.)

# %% tags=["solution"]
import re

def valid_host(value):
    ### BEGIN SOLUTION
    return re.fullmatch(rb"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]*)(:[0-9]*)?", value) is not None
    ### END SOLUTION

def host_checked(app):
    ### BEGIN SOLUTION
    async def checked(scope, receive, send):
        hosts = [v for k, v in scope.get("headers", []) if k == b"host"]
        if scope["type"] == "http" and not all(valid_host(h) for h in hosts):
            await send({"type": "http.response.start", "status": 400,
                        "headers": [(b"content-length", b"0")]})
            return await send({"type": "http.response.body"})
        await app(scope, receive, send)
    return checked
    ### END SOLUTION

# %% tags=["check"]
with check("Exercise 4"):
    for good in (b"probe", b"example.org:8080", b"[::1]:80", b"127.0.0.1"):
        assert valid_host(good), f"{good!r} is a valid Host"
    for bad in (b"a b", b"a/b", b"a:b"):
        assert not valid_host(bad), f"{bad!r} is not a valid Host"
    checked = host_checked(echo_asgi)
    refused = barelab.call_asgi(checked, headers={"Host": "a b"})
    assert refused.status == 400, f"Host: a b should get 400, got {refused.status}"
    served = barelab.call_asgi(checked, "GET", "/p", query=b"q=1", headers={"Host": "probe:80"})
    assert (served.status, served.body) == (200, barelab.call_asgi(echo_asgi, "GET", "/p",
                                                                   query=b"q=1").body), \
        "a valid Host should reach the app unchanged"
    fixed = barelab.serve(checked, name="host-checked", server=WebSocketASGIServer)
    fixed_table = run_batteries({"fixed": fixed}, HOST_PROBES)
    assert fixed_table.must_failures("fixed") == "0", fixed_table.failure_report()

# %% [markdown]
# ## Clean up
#
# Stop every server this chapter started, the three child processes included. The number
# is how many were still running.

# %%
barelab.stop_all()
