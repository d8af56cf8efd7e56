# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 20. You know too much now
#
# You have written an HTTP parser, two servers, middleware, a router, a test client and a
# framework. This chapter closes the main course (chapters 21 to 25 are bonus chapters that
# extend `bare`). It looks at what stands between your pieces and the servers that run real
# sites, and shows you the same ideas in the source of Werkzeug, Starlette and uvicorn.
#
# ## Learning goals
#
# By the end of this chapter you can:
#
# - say why Python servers run several **processes**, and watch the GIL limit a threaded
#   server on a CPU-bound handler while two worker processes share one listening socket;
# - stop a server **gracefully**: finish the request in flight, close idle keep-alive
#   connections, refuse new ones; and explain gunicorn's SIGTERM and SIGHUP;
# - say in a paragraph each what **HTTP/2**, **HTTP/3** and **TLS** change, and what they
#   leave alone (the app's callable);
# - put an app **behind a proxy** safely: read `X-Forwarded-For`, `-Proto`, `-Host` and
#   `-Prefix` from the one hop you trust, and spot the spoofing trap;
# - open the real source of Werkzeug, Starlette and uvicorn and find in it the pieces you
#   built yourself.

# %% [markdown]
# ## What you built
#
# Every chapter that built something saved it into `barelab.built`, one module per
# chapter. Here is the whole course as one picture, bonus chapters included. An arrow
# `A --> B` means "B imports A". Two things to notice: the parser from chapter 02 is under
# nearly everything, and every bonus module builds on `bare`, your framework from chapter
# 18. `conformance` (chapter 19) stands alone: it imports none of your modules, because it
# probes servers from the outside, over a socket.
#
# ```mermaid
# flowchart LR
#     subgraph I["Part I: HTTP"]
#         http_wire["http_wire (02)<br/>parse requests, format responses"]
#     end
#     subgraph II["Part II: WSGI"]
#         static_files["static_files (04)"]
#         wsgi_basics["wsgi_basics (05)"]
#         wsgi_server["wsgi_server (06)<br/>threaded server"]
#         wsgi_middleware["wsgi_middleware (07)"]
#         routing["routing (08)"]
#         http_objects["http_objects (09)<br/>Request, Response"]
#     end
#     subgraph III["Part III: ASGI"]
#         asgi_types["asgi_types (11)"]
#         asgi_basics["asgi_basics (12)"]
#         asgi_server["asgi_server (13)<br/>asyncio server"]
#         app_lifespan["app_lifespan (14)"]
#         websocket["websocket (15)"]
#         asgi_middleware["asgi_middleware (16)"]
#     end
#     subgraph IV["Part IV: testing and a framework"]
#         testing["testing (17)<br/>in-process client"]
#         bare["bare (18)<br/>your framework"]
#         conformance["conformance (19)<br/>protocol probes"]
#     end
#     subgraph V["Bonus: extending bare"]
#         bare_errors["bare_errors (21)<br/>exceptions as responses"]
#         bare_depends["bare_depends (22)<br/>dependency injection"]
#         bare_tasks["bare_tasks (23)<br/>background tasks"]
#         bare_rooms["bare_rooms (24)<br/>WebSocket rooms"]
#         bare_suite["bare_suite (25)<br/>a test suite"]
#     end
#     http_wire --> static_files & wsgi_basics & wsgi_server & routing & http_objects & asgi_server
#     static_files --> wsgi_basics --> asgi_basics
#     asgi_server --> websocket
#     asgi_types & asgi_basics & wsgi_middleware --> asgi_middleware
#     asgi_types & http_objects --> testing
#     routing & http_objects & app_lifespan & asgi_basics & wsgi_middleware --> bare
#     bare --> bare_errors & bare_depends & bare_tasks & bare_rooms & bare_suite
#     http_wire & asgi_basics --> bare_errors
#     websocket --> bare_rooms & bare_suite
#     testing --> bare_suite
# ```
#
# Chapters 01, 03 and 10 built no module: they looked at things rather than built them
# (frameworks as callables, what a framework does, why WSGI is not enough). The first
# line of each module's docstring names the notebook that wrote it. The next cell imports all twenty-one, so it fails loudly if one
# is missing, and prints where each came from. If you have not reached the bonus chapters
# yet, their modules are there anyway: the course ships every chapter's export.

# %%
import importlib

BUILT = ["http_wire", "static_files", "wsgi_basics", "wsgi_server", "wsgi_middleware",
         "routing", "http_objects", "asgi_types", "asgi_basics", "asgi_server",
         "app_lifespan", "websocket", "asgi_middleware", "testing", "bare", "conformance",
         "bare_errors", "bare_depends", "bare_tasks", "bare_rooms", "bare_suite"]
for name in BUILT:
    module = importlib.import_module(f"barelab.built.{name}")
    print(f"{name:16} {module.__doc__.splitlines()[0]}")

# %% [markdown]
# Read the list from the top: a parser, servers, middleware, routing, a test client, a
# framework, and the extensions of that framework. That is a working web stack, top to
# bottom, in modules you can read in an afternoon. The rest of this chapter is about what
# the big servers add on top of the same ideas.

# %% [markdown]
# ## Processes: why Python servers fork
#
# Your chapter 06 server runs one thread per connection. Threads share one Python
# interpreter, and in CPython that interpreter has a **global interpreter lock** (the GIL):
# only one thread runs Python code at a time. Threads still help while a handler *waits*
# (for a socket, a database, a sleep), because waiting releases the lock. They do not
# help a handler that *computes*.
#
# First, two facts about this machine: does it have more than one CPU, and does this
# Python have a GIL? (Python 3.13 has an optional build without one;
# `sys._is_gil_enabled` exists from 3.13 on, so older versions always have the lock.)

# %%
import os
import sys

gil = getattr(sys, "_is_gil_enabled", lambda: True)()
print("more than one CPU:", (os.cpu_count() or 1) > 1)
print("GIL enabled:", gil)

# %% [markdown]
# (`os.cpu_count()` gives the exact number; the cell prints only whether it is above one,
# so this notebook's stored output is the same on every machine with several cores.)
#
# ### A handler that computes
#
# Here is a WSGI app that burns CPU for `?rounds=N` and then reports three things: which
# process answered, how long the work took by the clock (`wall`), and how much of that
# time this thread actually ran on a CPU (`cpu`, from `time.thread_time()`). A request
# that bad input would crash gets a 400 instead, and the work is capped, so a typo in
# the number cannot keep a server busy for minutes.

# %%
import json
import time

import barelab

def cpu_app(environ, start_response):
    """Burn CPU for ?rounds=N, then say which process answered and how long it took."""
    rounds = environ["QUERY_STRING"].removeprefix("rounds=")
    if not (rounds.isascii() and rounds.isdecimal()):
        start_response("400 Bad Request", [("Content-Type", "text/plain")])
        return [b"rounds must be a whole number\n"]
    wall, cpu = time.perf_counter(), time.thread_time()
    sum(i * i % 7 for i in range(min(int(rounds), 50_000_000)))
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"pid": os.getpid(), "wall": wall, "cpu": cpu}).encode()]

# %% [markdown]
# Before serving it, call it in-process with a `rounds` that is not a number:

# %%
barelab.call_wsgi(cpu_app, query="rounds=lots").status

# %% [markdown]
# A 400, and no computing: the check ran before the work.
#
# Serve it with your own chapter 06 server (`WSGIServer`, plugged into `barelab.serve`),
# and time one request on its own. Times print as durations, which the course's output
# checker masks, so yours will differ from what is stored here.

# %%
from barelab.built.wsgi_server import WSGIServer

ROUNDS = 3_000_000
threaded = barelab.serve(cpu_app, server=WSGIServer)
alone = barelab.http_request(threaded, path=f"/?rounds={ROUNDS}").json()
print(f"alone: wall {alone['wall']:.2f} s, cpu {alone['cpu']:.2f} s")

# %% [markdown]
# On a quiet machine `cpu` is close to `wall`: the thread ran for nearly all the time the
# work took. If other programs keep the CPUs busy (a shared server, a build in the
# background), `wall` grows and `cpu` does not, so keep an eye on how the two compare
# rather than on the numbers themselves.
#
# Now send two such requests at the same time. A thread pool (`ThreadPoolExecutor`) plays
# two clients, and `pool.map` waits for both answers.

# %%
from concurrent.futures import ThreadPoolExecutor

pool = ThreadPoolExecutor(4)

def two_at_once(target):
    """Two CPU-bound requests sent together; the two JSON answers."""
    path = f"/?rounds={ROUNDS}"
    return [reply.json() for reply in pool.map(
        lambda _: barelab.http_request(target, path=path, timeout=30), range(2))]

pair = two_at_once(threaded)
for answer in pair:
    print(f"wall {answer['wall']:.2f} s, cpu {answer['cpu']:.2f} s")

# %% [markdown]
# Each request used about the same CPU time as before, and about twice that by the clock.
# Two derived facts say it without numbers:

# %%
print("same process:", pair[0]["pid"] == pair[1]["pid"])
print("each computed under 70% of its wall time:",
      all(answer["cpu"] < 0.7 * answer["wall"] for answer in pair))

# %% [markdown]
# Both threads were ready to run, and the machine has more than one CPU, but the GIL let
# only one of them hold the interpreter at a time: they took turns, every few
# milliseconds (`sys.getswitchinterval()`). A threaded server is still *concurrent*, it
# just is not *parallel* for Python code.
#
# ### Pre-fork: one socket, several processes
#
# Separate processes have separate interpreters, each with its own GIL. That is why
# gunicorn, the most common WSGI server, runs **worker processes**. Its design, the
# *pre-fork* model, is older than Python web servers (Apache used it in the 1990s):
#
# ```mermaid
# flowchart LR
#     C1["client"] & C2["client"] & C3["client"] --> L["listening socket<br/>bound once, by the master"]
#     M["master (gunicorn's Arbiter)<br/>starts, watches and restarts workers"] -. "fork" .-> W1 & W2
#     L --> W1["worker 1: accept(), serve, repeat"]
#     L --> W2["worker 2: accept(), serve, repeat"]
# ```
#
# The master binds the listening socket, then starts the workers, which inherit it. Every
# worker calls `accept()` on the same socket, and the operating system hands each new
# connection to exactly one of them. The master serves no requests: it restarts a worker
# that dies, kills one that hangs past `--timeout`, and handles signals.
#
# A worker can be very small. gunicorn's default "sync" worker accepts one connection,
# serves it to the end, and accepts the next. Your chapter 06 server already has the
# middle part: its `Connection` class serves one connection, so a sync worker is a loop
# around it.
#
# Read `worker_main` with that in mind. Its argument `fd` is a file descriptor, the number
# the operating system uses for the listening socket; `socket.socket(fileno=fd)` turns
# that number back into a socket object. The worker then builds your chapter 06
# `WSGIServer` around it directly, without `barelab.serve` (which would open a new
# socket), and only borrows its `stopping` flag and its settings: the loop below replaces
# the server's own accept thread.
#
# Two details. A signal handler runs in the main thread, between two steps of whatever
# code is running there, so this one only sets a flag, `server.stopping`, which chapter
# 06's code already checks. And the timeout on `accept()` lets the loop notice that flag
# within a tenth of a second even when no client comes; gunicorn's sync worker wakes up
# the same way.

# %%
import signal
import socket

from barelab.built.wsgi_server import Connection
from barelab.logs import ServerLog

def worker_main(fd):
    """A sync worker on an inherited listening socket; SIGTERM ends it between clients."""
    server = WSGIServer(cpu_app, socket.socket(fileno=fd), ServerLog())
    signal.signal(signal.SIGTERM, lambda signum, frame: setattr(server, "stopping", True))
    server.sock.settimeout(0.1)        # wake up now and then to see whether SIGTERM came
    print("ready", flush=True)
    while not server.stopping:
        try:
            sock, client = server.sock.accept()
        except TimeoutError:
            continue
        Connection(server, sock, client).serve()

# %% [markdown]
# A worker is a new Python process, and a new process cannot see the variables of this
# notebook. So the next cell writes the two functions, with the imports they need, into a
# small script in a temporary folder. `inspect.getsource` gives back the source of a
# function defined in a cell. The script's last line starts the worker on the file
# descriptor (the socket's number) given on its command line.

# %%
import inspect
import tempfile
from pathlib import Path

worker_dir = Path(tempfile.mkdtemp(prefix="barelab-workers-"))
worker_script = worker_dir / "worker.py"
worker_script.write_text(
    "import json, os, signal, socket, sys, time\n"
    "from barelab.built.wsgi_server import Connection, WSGIServer\n"
    "from barelab.logs import ServerLog\n\n"
    + "\n\n".join(inspect.getsource(function) for function in (cpu_app, worker_main))
    + "\n\nworker_main(int(sys.argv[1]))\n")
[line for line in worker_script.read_text().splitlines() if line.startswith("def ")]

# %% [markdown]
# The list shows both functions made it into the script, with their `def` lines intact.
#
# Now play the master. Bind one listening socket, then start two workers with
# `subprocess.Popen`. `pass_fds` keeps the socket open in each child under the same number.
# Each worker prints `ready` once it is waiting in `accept()`; reading that line is how
# the master knows.

# %%
import subprocess

listener = socket.create_server(("127.0.0.1", 0))
prefork_url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
workers = [subprocess.Popen([sys.executable, str(worker_script), str(listener.fileno())],
                            pass_fds=[listener.fileno()], stdout=subprocess.PIPE, text=True)
           for _ in range(2)]
[worker.stdout.readline().strip() for worker in workers]

# %% [markdown]
# Note the order. The socket was listening *before* any worker existed. A client that
# connects while no worker is ready waits in the socket's backlog queue instead of being
# refused; that is what makes a restart possible without dropping anyone.
#
# The same two requests, sent together, to the pre-fork server:

# %%
pair = two_at_once(prefork_url)
for answer in pair:
    print(f"wall {answer['wall']:.2f} s, cpu {answer['cpu']:.2f} s")
print("answered by two different processes:", pair[0]["pid"] != pair[1]["pid"])

# %% [markdown]
# Two processes answered. Each worker was busy with its own client, so the operating
# system gave the second connection to the idle one. On a machine with two free cores,
# `cpu` is now close to `wall` for both: they ran in parallel, and the pair took no longer
# than one request alone. On a busy machine, or one limited to a single core (some hosted
# notebook services are), `wall` stays high: processes only help when there is a free core
# to run on. Servers are sized to the cores they really get.
#
# This is why the real servers are configured the way they are:
#
# - **gunicorn** `-w 4 app:app` starts four pre-fork workers. Its documentation suggests
#   `2 × cores + 1` sync workers as a starting point, because a sync worker also spends
#   time waiting on the network.
# - **uvicorn** `--workers 4` does the same for ASGI: its `Multiprocess` supervisor binds the
#   socket and spawns processes that each run an event loop. An event loop already handles
#   thousands of *waiting* connections in one process, so you want about one worker per
#   core, no more.
# - A CPU-heavy job (image resizing, a report) belongs in a worker pool or a task queue, not
#   in a request handler. One slow handler holds a sync worker, or a whole event loop, for
#   everyone else.

# %% [markdown]
# ## Graceful shutdown and reload
#
# Deploying new code means stopping the old processes. Stopping them *gracefully* means no
# client notices:
#
# 1. stop accepting new connections (close the listening socket, or hand it on);
# 2. let every request in flight finish, and tell its client the connection will close;
# 3. close idle keep-alive connections at once;
# 4. after a deadline, cut whatever is left (a handler stuck forever must not block a
#    deploy).
#
# On Unix the usual request to stop is the signal **SIGTERM** (what `kill`, systemd and
# Kubernetes send first; SIGKILL, which cannot be caught, comes only after a grace period).
#
# ### SIGTERM to the workers
#
# Your workers handle SIGTERM by setting `stopping`. Send one slow request, wait a moment
# so that a worker is busy with it, then send SIGTERM to both workers.

# %%
in_flight = pool.submit(barelab.http_request, prefork_url, path=f"/?rounds={2 * ROUNDS}",
                        headers=[("Connection", "keep-alive")], timeout=30)
time.sleep(0.15)
for worker in workers:
    worker.send_signal(signal.SIGTERM)
print("exit codes:", [worker.wait(timeout=10) for worker in workers])

# %% [markdown]
# Both workers exited cleanly (exit code 0). The idle one left within a tenth of a second.
# The busy one first finished its request. The client asked to keep the connection open,
# so look at what it got:

# %%
reply = in_flight.result()
print(reply.status, "| Connection:", reply.header("connection"))
listener.close()

# %% [markdown]
# (The cell also closed `listener`, the master's own copy of the listening socket: with
# both workers gone, nobody is left to accept on it.)
#
# A complete `200`, with `Connection: close`: your chapter 06 `Exchange` checks
# `server.stopping` before it writes the response head, and a stopping server keeps no
# connection alive (RFC 9112 §9.6: a server that is about to close says so with
# `Connection: close`). The client knows to open a new connection for its next request,
# and a new worker will accept it.
#
# That is what gunicorn does with its signals:
#
# - **SIGTERM**: graceful stop. The master passes it to the workers; each finishes its
#   current requests, up to `--graceful-timeout` (30 s by default), and then is killed.
# - **SIGHUP**: reload. The master reloads its configuration, starts *new* workers (which
#   import the new code), then stops the old ones gracefully. The listening socket stays
#   open the whole time, so clients queue in the backlog instead of being refused.
# - **SIGUSR2** replaces the master itself (a new binary), handing over the socket.
#
# ```mermaid
# sequenceDiagram
#     participant Ops as you
#     participant M as master
#     participant Old as old workers
#     participant New as new workers
#     Ops->>M: SIGHUP
#     M->>New: start (import the new code, inherit the socket)
#     New-->>M: accepting
#     M->>Old: SIGTERM
#     Old->>Old: finish requests in flight, Connection: close
#     Old-->>M: exit 0
# ```
#
# ### The course server's own stop()
#
# `barelab.serve(...).stop()` calls your chapter 06 server's `stop()`, which follows the
# same four steps. Watch it with an app that sleeps for `?seconds`:

# %%
def slow_app(environ, start_response):
    """Sleep for ?seconds (at most 5), then answer."""
    try:
        seconds = min(float(environ["QUERY_STRING"] or 0), 5.0)
    except ValueError:
        seconds = 0.0
    time.sleep(max(seconds, 0.0))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"done\n"]

# %% [markdown]
# Serve it with your chapter 06 server. The cell shows the link, as every served app in
# the course does:

# %%
slow = barelab.serve(slow_app, server=WSGIServer)
slow

# %% [markdown]
# First, an **idle keep-alive connection**: a client that sent one request, got its
# answer, and kept the connection open for the next one (as a browser does). The status
# line shows the answer arrived; the socket `idle` stays open after this cell.

# %%
idle = socket.create_connection(("127.0.0.1", slow.port))
idle.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
idle.recv(65536).split(b"\r\n")[0]

# %% [markdown]
# Next, a request **in flight**: it asks the app to sleep half a second. Start it in the
# background, give it a tenth of a second to reach the app, and stop the server while the
# app sleeps. The cell prints how long `stop()` took.

# %%
in_flight = pool.submit(barelab.http_request, slow, path="/?0.5",
                        headers=[("Connection", "keep-alive")])
time.sleep(0.1)
started = time.perf_counter()
slow.stop()
print(f"stop() took {time.perf_counter() - started:.2f} s")

# %% [markdown]
# About 0.4 s: `stop()` waited for the sleeping app, and no longer. Now check all three
# clients: the one in flight, the idle one, and a new one.

# %%
reply = in_flight.result()
print("in flight:", reply.status, "| Connection:", reply.header("connection"))
print("idle connection, next read:", idle.recv(100))
idle.close()
try:
    socket.create_connection(("127.0.0.1", slow.port), timeout=1)
except ConnectionRefusedError:
    print("new connection: refused")

# %% [markdown]
# - The request in flight finished with `200` and `Connection: close`.
# - The idle connection was closed: `recv` returning `b""` means the other side hung up.
# - A new connection was refused: the listening socket is closed.
#
# The log agrees: one request answered quickly, one after half a second, then the stop.

# %%
slow.log

# %% [markdown]
# ### Break it: a rude stop
#
# Your chapter 06 `stop()` sets `stopping`, closes the listening socket, then calls
# `end_connections(timeout)`. That method is where steps 2 to 4 live: it shuts idle
# connections at once, waits up to `timeout` for the busy ones, and only then cuts them.
#
# A server that skips step 2 cuts connections that are busy, too. This subclass replaces
# just that one method with one that shuts every connection at once, busy or not:

# %%
class RudeWSGIServer(WSGIServer):
    """Chapter 06's server, with a stop() that cuts every connection at once."""

    def end_connections(self, timeout):
        with self.lock:
            connections = list(self.connections)
        for connection in connections:
            connection.shutdown()              # busy or idle: gone
        for connection in connections:
            connection.thread.join(timeout)

rude = barelab.serve(slow_app, server=RudeWSGIServer, name="rude")
rude

# %% [markdown]
# The same request in flight, the same stop:

# %%
in_flight = pool.submit(barelab.http_request, rude, path="/?0.5")
time.sleep(0.1)
rude.stop()
print("in flight:", type(in_flight.exception()).__name__)

# %% [markdown]
# The client got nothing: `RemoteProtocolError` is h11 (under barelab's client) saying the
# connection closed before any response arrived. A browser shows an error page; a client
# that retries may send a non-idempotent `POST` twice. Exercise 2 asks you to write the test
# that tells the two servers apart.
#
# uvicorn follows the same steps: `Server.handle_exit` turns SIGTERM or SIGINT into
# `should_exit`, and `Server.shutdown` closes the listening sockets, asks every connection
# to close once idle, and waits for tasks in flight, up to `--timeout-graceful-shutdown`.
# Then it runs the lifespan `shutdown` of chapter 14.

# %% [markdown]
# ## HTTP/2 and HTTP/3
#
# **HTTP/2** (RFC 9113) keeps HTTP's meaning (methods, status codes, header fields, RFC
# 9110) and changes the wire. Instead of text lines it sends binary **frames**, each with a
# length, a type (HEADERS, DATA, SETTINGS, WINDOW_UPDATE...) and a **stream** number. One
# TCP connection carries many requests at once, their frames interleaved (multiplexing), so
# a browser no longer opens six connections per site. Header fields are compressed with
# **HPACK** (RFC 7541), which keeps a table of fields already sent, so repeated cookies and
# user agents cost a byte or two. Each stream has its own flow control. The `h2` library
# is to HTTP/2 what `h11` is to HTTP/1.1: a state machine that turns bytes into events
# (`RequestReceived`, `DataReceived`, `StreamEnded`) and back, and does no I/O itself
# (*sans-IO*: your code owns the socket); Hypercorn is an ASGI
# server built on it.
#
# A client that knows a server speaks HTTP/2 without asking (called *prior knowledge*)
# starts with a fixed 24-byte **preface**. It was chosen to look like an HTTP/1.1 request
# that any older server will refuse. Send it to your chapter 06 server:

# %%
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
probe = barelab.serve(slow_app, server=WSGIServer, name="h2-probe")
exchange = barelab.raw_exchange(probe, H2_PREFACE)
print(exchange.status, "|", exchange.ending)

# %% [markdown]
# `505 HTTP Version Not Supported`, then a closed connection: your parser read method
# `PRI`, target `*`, version `HTTP/2.0`, and refused the version (RFC 9110 §15.6.6), which
# is exactly what the preface was designed to make an HTTP/1.1 server do. In practice,
# browsers speak HTTP/2 only over TLS, and the two sides agree on it during the TLS
# handshake (ALPN, next section), so a server never has to guess.
#
# **HTTP/3** (RFC 9114) keeps HTTP/2's ideas and moves them off TCP, onto **QUIC** (RFC
# 9000), a transport over UDP with TLS 1.3 built in. With TCP, one lost packet stalls
# every stream on the connection until it is resent (head-of-line blocking); QUIC orders
# packets per stream, so a loss stalls only its own stream. A connection also survives a
# change of network (Wi-Fi to mobile). Header compression becomes QPACK (RFC 9204). A server
# advertises HTTP/3 with an `Alt-Svc` header on an HTTP/1.1 or HTTP/2 response; `aioquic`
# is the Python implementation.
#
# Now the part that matters to you: **none of this reaches the app**. An ASGI server that
# speaks HTTP/2 sets `scope["http_version"]` to `"2"`, and the app still gets the same
# `http.request` events and sends the same `http.response.start` and `.body`. A WSGI app
# still gets an `environ`. The callable you learned in chapter 01 is the line that lets
# servers change their wire without touching a single app.

# %% [markdown]
# ## TLS
#
# HTTPS is HTTP inside **TLS** (RFC 8446 for TLS 1.3). TLS sits between TCP and HTTP: the
# two sides first run a handshake (agree on keys, the server proves its identity with a
# certificate), then every HTTP byte travels encrypted. Python's `ssl` module wraps a
# socket; after that, `recv` and `sendall` work as before.
#
# You can watch the first message of a handshake without any network. An `SSLObject` over
# two memory buffers writes the client's **ClientHello** into `outgoing` and then stops,
# waiting for a server's answer that will never come:

# %%
import ssl

client_context = ssl.create_default_context()
incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = client_context.wrap_bio(incoming, outgoing, server_hostname="example.test")
try:
    tls.do_handshake()
except ssl.SSLWantReadError:
    hello = outgoing.read()
print("first bytes:", hello[:3])
print("host name readable in it:", b"example.test" in hello)

# %% [markdown]
# Two things to take from this:
#
# - The first byte is `0x16` (a TLS *handshake* record) and the next two are `0x03 0x01`.
#   No HTTP request starts that way, so a server can tell TLS from plain HTTP by its first
#   byte (exercise 3).
# - The host name travels **unencrypted**, in the Server Name Indication (SNI) extension,
#   because the server needs it to pick the right certificate before any key exists. So
#   does the ALPN list (`h2`, `http/1.1`), which is how HTTP/2 is chosen.
#
# ### Serving HTTPS with your own server
#
# Your chapter 06 server needs no change to speak TLS: wrap its listening socket in an
# `ssl.SSLContext` and every connection it accepts comes out already wrapped.
# `do_handshake_on_connect=False` keeps the handshake out of the accept loop: it happens on
# the connection's own thread, at its first `recv`, so a slow client delays nobody else.

# %%
class TLSWSGIServer(WSGIServer):
    """Chapter 06's server, with its listening socket wrapped in TLS by ``context``."""

    context: ssl.SSLContext = None

    def __init__(self, app, sock, log, **options):
        tls_sock = self.context.wrap_socket(sock, server_side=True,
                                            do_handshake_on_connect=False)
        super().__init__(app, tls_sock, log, **options)

ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).minimum_version

# %% [markdown]
# The last line shows one thing a fresh server context does for you: it refuses any
# protocol older than TLS 1.2.
#
# The server also needs a certificate and its private key. For a test, a **self-signed**
# certificate will do: one that vouches for itself, which no browser trusts, but which a
# client can be told to trust. The standard library cannot make one; the `cryptography`
# package can. (The imports sit inside the functions below, so defining them works even
# without `cryptography`.)
#
# The function makes a key, then a certificate for `127.0.0.1`, valid for a day. Look at
# two lines. `subject_name` and `issuer_name` are the same name: the certificate is about
# itself and vouched for by itself, which is what self-signed means. And the
# `SubjectAlternativeName` holds the IP address: that is what a client compares with the
# address it connected to, not the common name.

# %%
import ipaddress
from datetime import datetime, timedelta, timezone

def self_signed_cert(ip: str = "127.0.0.1"):
    """A throwaway certificate for ``ip`` that signs itself, and its private key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, ip)])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key

# %% [markdown]
# `ssl` reads certificates and keys from files in PEM, a base64 text format framed by
# `-----BEGIN ...-----` lines. This function turns the pair into PEM bytes. The key is
# written unencrypted (`NoEncryption`), fine for a throwaway key in a temporary folder and
# never for a real one.

# %%
def as_pem(cert, key) -> tuple[bytes, bytes]:
    """The certificate and its private key, as PEM bytes."""
    from cryptography.hazmat.primitives import serialization
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))

# %% [markdown]
# `cryptography` is not one of the course's dependencies, so the demo below runs only if
# it is installed. If it is not, the cells say so: run `%pip install cryptography` in a
# new cell, restart the kernel, and come back.

# %%
import importlib.util

HAVE_CRYPTOGRAPHY = importlib.util.find_spec("cryptography") is not None
print("cryptography installed:", HAVE_CRYPTOGRAPHY)

# %% [markdown]
# The demo app answers with one word: `wsgi.url_scheme`, the scheme the server told it
# the request came in with. Keep it in mind; it matters in a moment.

# %%
def scheme_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ["wsgi.url_scheme"].encode()]

# %% [markdown]
# Write the certificate and key into the temporary folder, load both into a server
# context, hand that context to `TLSWSGIServer`, and serve `scheme_app` with it:

# %%
if HAVE_CRYPTOGRAPHY:
    cert, key = worker_dir / "cert.pem", worker_dir / "key.pem"
    for path, pem in zip((cert, key), as_pem(*self_signed_cert())):
        path.write_bytes(pem)
    TLSWSGIServer.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    TLSWSGIServer.context.load_cert_chain(cert, key)
    https = barelab.serve(scheme_app, server=TLSWSGIServer, name="https")
print("HTTPS server running:", HAVE_CRYPTOGRAPHY)

# %% [markdown]
# Fetch it twice with `http.client`: once with a client told to trust the certificate
# (`cafile=cert`), once with an ordinary client, which trusts only certificates signed by
# an authority it knows.

# %%
import http.client

if HAVE_CRYPTOGRAPHY:
    for trusting in (ssl.create_default_context(cafile=cert), ssl.create_default_context()):
        connection = http.client.HTTPSConnection("127.0.0.1", https.port, context=trusting)
        try:
            connection.request("GET", "/")
            print(connection.sock.version(), connection.getresponse().read())
        except ssl.SSLCertVerificationError as error:
            print("ordinary client:", error.verify_message)
        connection.close()
    https.stop()
else:
    print("skipped: cryptography is not installed")

# %% [markdown]
# With `cryptography` installed, the cell prints two lines: `TLSv1.3 b'http'` (the
# trusting client got its answer, encrypted), and `ordinary client: self-signed
# certificate` (refused before a single HTTP byte was sent).
#
# Look at the body the trusting client got: `http`. The app was served over HTTPS and
# believes it was not, because chapter 06's `environ` always says `wsgi.url_scheme` is
# `"http"`. A server that terminates TLS itself must set `"https"` (PEP 3333). In
# production you rarely do that yourself: TLS usually ends at a proxy in front of the app
# server, and the app learns the scheme from a header. Which brings the last topic.

# %% [markdown]
# ## Behind a proxy
#
# In production an app server is rarely on the internet directly. A **reverse proxy**
# (nginx, Caddy, a cloud load balancer, Traefik) sits in front. It terminates TLS, serves
# static files, buffers slow clients, and forwards each request over plain HTTP to
# `127.0.0.1:8000`. The app then sees the proxy as its client:
#
# ```mermaid
# flowchart LR
#     B["browser<br/>203.0.113.7"] -- "https://shop.example/app/cart" --> P["reverse proxy<br/>TLS ends here"]
#     P -- "http://127.0.0.1:8000/cart<br/>X-Forwarded-For: 203.0.113.7<br/>X-Forwarded-Proto: https<br/>X-Forwarded-Host: shop.example<br/>X-Forwarded-Prefix: /app" --> A["app server<br/>REMOTE_ADDR 127.0.0.1"]
# ```
#
# The proxy writes down what it knew in `X-Forwarded-*` headers. They are a convention,
# never standardised; RFC 7239 later defined a single `Forwarded` header for the same
# facts, which fewer tools use.
#
# This app reports what it believes about the request it got: the client's address, the
# scheme, and the URL it would put in a link (rebuilt with chapter 09's `request_url`):

# %%
from barelab.built.http_objects import request_url

def who_am_i(environ, start_response):
    facts = {"client": environ.get("REMOTE_ADDR"), "scheme": environ["wsgi.url_scheme"],
             "script_name": environ.get("SCRIPT_NAME", ""), "url": request_url(environ)}
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(facts).encode()]

# %% [markdown]
# Call it as the proxy in the picture would: from `127.0.0.1`, with the four headers.
# `barelab.call_wsgi` builds the `environ` (its `REMOTE_ADDR` is `127.0.0.1`, like a local
# proxy's).

# %%
PROXIED = [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https"),
           ("X-Forwarded-Host", "shop.example"), ("X-Forwarded-Prefix", "/app")]

def ask(app, headers=PROXIED, path="/cart"):
    return json.loads(barelab.call_wsgi(app, "GET", path, headers=headers).body)

ask(who_am_i)

# %% [markdown]
# Every fact is wrong. The client is the proxy, the scheme is `http`, and the URL points
# at `http://127.0.0.1/cart`, a link the browser cannot follow. The headers hold the truth,
# but an app must not believe them blindly.
#
# ### The spoofing trap
#
# `X-Forwarded-For` is a list. Each proxy *appends* the address it received the request
# from. A client can also send the header itself, with anything in it; the proxy then
# appends the real address after the client's invention. The first entry is whatever the
# client wrote. Here is a middleware that believes it:

# %%
class TrustingProxyFix:
    """WRONG on purpose: believes the first X-Forwarded-For entry, which the client wrote."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        forwarded = environ.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            environ = {**environ, "REMOTE_ADDR": forwarded.split(",")[0].strip()}
        return self.app(environ, start_response)

# %% [markdown]
# An attacker at `203.0.113.7` sends `X-Forwarded-For: 10.0.0.1` (an internal address,
# perhaps one an admin page allows). The proxy appends the real address, as it should:

# %%
spoofed = [("X-Forwarded-For", "10.0.0.1, 203.0.113.7")]
ask(TrustingProxyFix(who_am_i), spoofed)["client"]

# %% [markdown]
# The app now believes the request came from inside the network. Rate limits, audit logs
# and IP allow-lists built on that are all fooled.
#
# ### Trust exactly the hops you have
#
# The fix is to count from the **right**. With one proxy in front of the app, only the
# last entry was written by someone you trust: your proxy, which saw the TCP connection.
# The same goes for the other headers, if several proxies append to them.
#
# Your `ProxyFix` takes three small pieces. The first is the rule "believe the last
# entry". Remember that in the `environ` the header `X-Forwarded-For` is the key
# `HTTP_X_FORWARDED_FOR` (PEP 3333). Try the rule on the attacker's header:

# %%
def last_value(environ: dict, key: str) -> str | None:
    """The last comma-separated entry of an environ header, or None if it is empty."""
    values = [value.strip() for value in environ.get(key, "").split(",")]
    return values[-1] or None

last_value({"HTTP_X_FORWARDED_FOR": "10.0.0.1, 203.0.113.7"}, "HTTP_X_FORWARDED_FOR")

# %% [markdown]
# `last_value` picked the entry your proxy wrote and ignored the one the client invented.
#
# The second piece rewrites the `environ`. It takes the "which entry do I believe" rule as
# its `pick` argument, so that exercise 1 can swap in another rule. Look for three habits
# in it: each header changes one key; a value is checked before it is used (a scheme must
# be `http` or `https`, a prefix must start with `/`); and the original values are kept
# under `barelab.proxy_fix.orig`, so a log can still show what the socket said.

# %%
def forwarded_environ(environ: dict, pick) -> dict:
    """A copy of environ with what the trusted X-Forwarded-* entries say."""
    environ = {**environ, "barelab.proxy_fix.orig": {
        key: environ.get(key) for key in ("REMOTE_ADDR", "wsgi.url_scheme", "HTTP_HOST")}}
    if client := pick(environ, "HTTP_X_FORWARDED_FOR"):
        environ["REMOTE_ADDR"] = client
    if (scheme := pick(environ, "HTTP_X_FORWARDED_PROTO")) in ("http", "https"):
        environ["wsgi.url_scheme"] = scheme
    if host := pick(environ, "HTTP_X_FORWARDED_HOST"):
        environ["HTTP_HOST"] = host
    if (prefix := pick(environ, "HTTP_X_FORWARDED_PREFIX") or "").startswith("/"):
        environ["SCRIPT_NAME"] = prefix.rstrip("/") + environ.get("SCRIPT_NAME", "")
    return environ

# %% [markdown]
# The prefix goes into `SCRIPT_NAME`, the "where the app is mounted" key of PEP 3333
# (chapter 04), so every link the app builds starts with it.
#
# The third piece is the middleware, and with the other two written it is a single line
# of work: rewrite the `environ` with `last_value`, then call the app.

# %%
class ProxyFix:
    """Believe the X-Forwarded-* entries written by the one proxy in front of the app."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        return self.app(forwarded_environ(environ, last_value), start_response)

# %% [markdown]
# Send it the honest request from the proxy, the one that got every fact wrong before:

# %%
ask(ProxyFix(who_am_i))

# %% [markdown]
# Every fact is right: the real client, `https`, and a URL the browser can follow. And the
# attacker's request:

# %%
ask(ProxyFix(who_am_i), spoofed)["client"]

# %% [markdown]
# The real address. The invented entry is still in the header, where a log can show it, but
# nothing believes it.
#
# The second half of the trap: `ProxyFix` is only safe if *every* request passes through
# the proxy. Serve the wrapped app directly, with no proxy in front, and anyone can write
# the header your proxy would have written:

# %%
exposed = barelab.serve(ProxyFix(who_am_i), name="exposed")
reply = barelab.http_request(exposed, path="/", headers=[("X-Forwarded-For", "10.0.0.1")])
reply.json()["client"]

# %% [markdown]
# So the app server listens on `127.0.0.1` (or a private network) where only the proxy can
# reach it, and the number of trusted hops matches the real number of proxies. Werkzeug's
# `werkzeug.middleware.proxy_fix.ProxyFix(app, x_for=1, x_proto=1, x_host=0, x_prefix=0)`
# lets you count each header separately, and uvicorn's `--forwarded-allow-ips` trusts the
# headers only from the proxy addresses you list.
#
# ### A proxy you have used all along
#
# If you run this course on Binder or JupyterHub, every link to a server went through one.
# jupyter-server-proxy answers `/user/<you>/proxy/<port>/...`, strips that prefix, and
# forwards the rest to `127.0.0.1:<port>`. To let the app build correct links it sets
# `X-Forwarded-Prefix`, in these lines of its installed source:

# %%
from jupyter_server_proxy import handlers

[line.strip() for line in inspect.getsource(handlers).splitlines()
 if "X-Forwarded-Prefix" in line or "flask/werkzeug" in line]

# %% [markdown]
# Its comment names the readers it has in mind, Flask and Werkzeug apps: Werkzeug's
# `ProxyFix(app, x_prefix=1)` turns that header into `SCRIPT_NAME`, as yours does. The
# prefix under a hub comes from `JUPYTERHUB_SERVICE_PREFIX`; this run has none, so barelab
# links straight to `127.0.0.1`:

# %%
print("proxy prefix:", barelab.serving.proxy_prefix())
exposed

# %% [markdown]
# On Binder, click the link above: the browser goes through the proxy, and the JSON shows
# `script_name` set to the `/user/.../proxy/<port>` prefix, read from the header. (Its
# `scheme` still says `http`: this proxy sends no `X-Forwarded-Proto`.) Run locally, it
# shows an empty `script_name`: no proxy, no prefix.

# %% [markdown]
# ## Reading the real thing
#
# You can now read the source of the servers and frameworks you use: the names in it are
# the names you gave your own pieces. Every installed module is a file on disk;
# `inspect.getsourcefile` finds it and `inspect.getsource` returns its text (in a notebook,
# `werkzeug.serving.WSGIRequestHandler.run_wsgi??` shows the same).
#
# The helper below takes a target written as `module:Qualified.name`, imports it, and
# returns where it lives (relative to the installed packages), the first line of its
# definition, and which of the names you are told to look for appear in its source. Line
# numbers and long excerpts are left out on purpose: they change with every release, and
# a name that a release removed says so instead of failing.

# %%
def locate(target: str):
    """The object named by 'module:Qualified.name', or None if this version lacks it."""
    module_name, _, qualname = target.partition(":")
    try:
        obj = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return None
    return obj

locate("werkzeug.serving:WSGIRequestHandler.run_wsgi")

# %% [markdown]
# That is the function object itself, as `import` found it. `where` turns it into the
# three facts. `inspect.getsource` gives its text, `ast.parse` finds the line where the
# definition starts (after any decorators), and a plain `in` test looks for each name.

# %%
import ast
import textwrap

def where(target: str, *look_for: str) -> str:
    """'file  first line of the definition  [names found]' for 'module:Qual.name'."""
    obj = locate(target)
    if obj is None:
        return "not in the version installed here"
    package = importlib.import_module(target.split(".")[0].split(":")[0])
    path = Path(inspect.getsourcefile(obj)).relative_to(Path(package.__file__).parent.parent)
    source = textwrap.dedent(inspect.getsource(obj))
    node = ast.parse(source).body[0]
    first = source.splitlines()[node.lineno - 1].strip()
    found = [name for name in look_for if name in source]
    return f"{path.as_posix()}\n    {first}\n    has: {', '.join(found) or '-'}"

print(where("werkzeug.serving:WSGIRequestHandler.run_wsgi", "start_response", "write"))

# %% [markdown]
# That is the heart of Werkzeug's development server (what `flask run` starts). Open it:
# inside `run_wsgi` are a `write`, a `start_response` and an `execute`, the same three
# parts as your chapter 06 `Exchange`, and a check that refuses a second `start_response`
# once headers were sent.
#
# Here is a reading list: for each chapter, where the real projects do the same job.

# %%
def reading(rows):
    for chapter, target, *names in rows:
        print(f"ch {chapter}  {target}\n  {where(target, *names)}")

reading([
    ("06", "werkzeug.serving:WSGIRequestHandler.run_wsgi", "start_response", "headers_sent"),
    ("07", "werkzeug.wsgi:ClosingIterator", "close"),
    ("09", "werkzeug.wrappers.response:Response.__call__", "start_response"),
    ("20", "werkzeug.middleware.proxy_fix:ProxyFix", "x_for", "SCRIPT_NAME"),
])

# %% [markdown]
# **Werkzeug** is the WSGI toolkit under Flask. What to look for:
#
# - `run_wsgi` (chapter 06): its `write` refuses to run before `start_response`, frames the
#   body (Content-Length or chunked) and remembers `headers_sent`, exactly the rules you
#   wrote into your `Exchange`.
# - `ClosingIterator` (chapter 07): the same wrapper you exported from `wsgi_middleware`,
#   which calls every `close()` so that a middleware never drops the app's.
# - `Response.__call__` (chapter 09): a response object that is itself a WSGI app, the
#   design your `http_objects.Response` copied.
# - `ProxyFix` (this chapter): your `ProxyFix`, with a separate hop count for each header.
#
# **Starlette** is the ASGI framework under FastAPI:

# %%
reading([
    ("08", "starlette.routing:Route.matches", "Match.FULL", "Match.PARTIAL"),
    ("08", "starlette.routing:Router.app", "partial", "redirect_slashes"),
    ("16", "starlette.middleware.gzip:IdentityResponder.send_with_compression",
     "more_body", "add_vary_header"),
    ("16", "starlette.middleware.gzip:GZipResponder", "compressobj"),
])

# %% [markdown]
# - Routing (chapter 08): `Route.matches` returns `Match.FULL` when path and method fit,
#   `Match.PARTIAL` when only the path does. `Router.app` tries every route and, with no
#   full match, hands the request to the partial one, which answers 405: your
#   404-versus-405 rule. `redirect_slashes` (send `/items` to `/items/`
#   when only that one exists) is a feature you did not build.
# - Gzip (chapter 16): `IdentityResponder.send_with_compression` holds
#   `http.response.start` until the first body message says how big the response is,
#   keeps streaming when `more_body` is set, and adds `Vary: Accept-Encoding`, the rules
#   you followed; its subclass `GZipResponder` only supplies the `zlib` compressor.
#
# **uvicorn** is the ASGI server you served chapters 12 to 18 with:

# %%
reading([
    ("13", "uvicorn.protocols.http.h11_impl:H11Protocol.data_received", "receive_data"),
    ("13", "uvicorn.protocols.http.h11_impl:RequestResponseCycle.send", "http.response.start"),
    ("14", "uvicorn.lifespan.on:LifespanOn", "lifespan.startup", "startup.failed"),
    ("20", "uvicorn.server:Server.shutdown", "close"),
])

# %% [markdown]
# - The HTTP protocol (chapter 13): `data_received` feeds bytes to an `h11` connection
#   (`receive_data`), as barelab's engines do. `RequestResponseCycle` is your `Exchange`,
#   and its `send` enforces the order: `http.response.start`, then the body. uvicorn uses
#   asyncio's callback-style `Protocol` instead of the streams your server used, which
#   saves a little time on every read.
# - `LifespanOn` (chapter 14): `startup` and `shutdown` send the `lifespan.*` events and
#   wait for the answer, failing on `startup.failed`, as your chapter 13 server did.
# - `Server.shutdown` (this chapter): the graceful stop, step by step.
#
# When you open one of these, read the tests as well (they sit in the projects' GitHub
# repositories, not in the installed package): `tests/test_routing.py` in Starlette, say,
# is a list of every corner case its authors met.

# %% [markdown]
# ## What to build next
#
# You have the tools to go further on your own. Four projects, in rising order of effort:
#
# 1. **A production deploy checklist**, applied to `bare`. Serve it with gunicorn
#    (`gunicorn -k uvicorn_worker.UvicornWorker -w 4 app:app`) or `uvicorn --workers 4`
#    behind nginx or Caddy. Check off: the app server binds `127.0.0.1` only; proxy headers
#    trusted for exactly one hop; TLS at the proxy, with HTTP redirected to HTTPS; worker
#    count set by CPU cores; a graceful timeout shorter than your orchestrator's kill
#    timeout; limits on header and body size (as your servers have); request logs with a
#    request ID (chapter 07); no traceback text in responses (chapter 18); a `/health`
#    route for the load balancer; lifespan startup that fails loudly when the database is
#    down (chapter 14).
# 2. **A WSGI-to-ASGI adapter**: `wsgi_to_asgi(wsgi_app)` returns an ASGI app that reads
#    the whole body with `receive`, builds an `environ`, runs the WSGI app in a thread
#    (`loop.run_in_executor`), and sends each chunk of the returned iterable as
#    `http.response.body` with `more_body=True`. Then mount Flask inside `bare`. Compare
#    with `a2wsgi` and `asgiref.wsgi.WsgiToAsgi`.
# 3. **A faster ASGI server**: your chapter 13 server on `uvloop` (a drop-in event loop on
#    libuv) with `httptools` (the parser from Node.js) instead of your own parser. That is
#    exactly uvicorn's `httptools_impl`. Measure with the course's `benchmarks/` folder.
# 4. **HTTP/2 with `h2`**: accept TLS with ALPN `h2`
#    (`context.set_alpn_protocols(["h2", "http/1.1"])`), feed bytes to
#    `h2.connection.H2Connection`, and run one ASGI app call per stream, with
#    `scope["http_version"] = "2"`. Flow control and stream resets are where the real work
#    is. Hypercorn's `hypercorn/protocol/h2.py` is the place to compare notes.

# %% [markdown]
# ## Summary
#
# - A threaded Python server is concurrent but not parallel: the GIL lets one thread run
#   Python at a time, so two CPU-bound requests took twice as long. **Pre-fork** servers
#   (gunicorn, `uvicorn --workers`) bind one listening socket and let several worker
#   processes accept on it; you built one from chapter 06's `Connection` in a few lines.
# - A **graceful stop** closes the listening socket, lets requests in flight finish with
#   `Connection: close`, closes idle connections at once, and cuts the rest after a
#   deadline. SIGTERM asks for it; gunicorn's SIGHUP starts new workers before stopping old
#   ones, while the socket keeps queueing clients. A rude stop left a client with no
#   response at all.
# - **HTTP/2** (binary frames, multiplexed streams, HPACK) and **HTTP/3** (the same over
#   QUIC) change the wire, not the app: the ASGI and WSGI callables stay the same. Your
#   HTTP/1.1 server answers the HTTP/2 preface with 505, as designed.
# - **TLS** wraps the socket; a ClientHello starts with `0x16` and carries the host name in
#   clear. A TLS server must still tell the app `wsgi.url_scheme = "https"`.
# - **Behind a proxy**, believe `X-Forwarded-*` only from the hops you have, counted from
#   the right, and only when the app cannot be reached except through them.
#   jupyter-server-proxy's `X-Forwarded-Prefix` is one live example.
# - Werkzeug, Starlette and uvicorn are made of the parts you built: `run_wsgi`,
#   `ClosingIterator`, `Route.matches`, `RequestResponseCycle`, `LifespanOn`,
#   Starlette's gzip responders. `inspect.getsourcefile` takes you to each.

# %% [markdown]
# ## Exercises
#
# Each exercise has a cell for your answer and a check cell below it. Run the check cell:
# it prints ✅ when your answer works and says what is wrong when it does not.
#
# ### Exercise 1 — a ProxyFix that trusts N hops
#
# Some deployments have two proxies (a cloud load balancer, then nginx): each appends to
# `X-Forwarded-For`, so the client's address is the *second* entry from the right. Write
# `proxy_fix(app, hops)`, a WSGI middleware that believes the `hops`-th entry from the
# right of each `X-Forwarded-*` header. With fewer entries than `hops`, the header cannot
# have come through all your proxies: ignore it. Reuse `forwarded_environ` from above: it
# takes the "which entry" rule as its `pick` argument.

# %% tags=["solution"]
def proxy_fix(app, hops: int = 1):
    ### BEGIN SOLUTION
    def pick(environ, key):
        values = [value.strip() for value in environ.get(key, "").split(",")]
        return values[-hops] or None if len(values) >= hops else None

    def middleware(environ, start_response):
        return app(forwarded_environ(environ, pick), start_response)
    return middleware
    ### END SOLUTION

# %% tags=["check"]
from barelab.exercises import check

with check("Exercise 1"):
    two = [("X-Forwarded-For", "10.0.0.1, 203.0.113.7, 198.51.100.2"),
           ("X-Forwarded-Proto", "https, http")]
    facts = ask(proxy_fix(who_am_i, hops=2), two)
    assert facts["client"] == "203.0.113.7", \
        f"with two hops the client is the 2nd entry from the right, got {facts['client']!r}"
    assert facts["scheme"] == "https", "X-Forwarded-Proto's 2nd entry from the right is https"
    facts = ask(proxy_fix(who_am_i, hops=1), two)
    assert facts["client"] == "198.51.100.2", f"hops=1 believes the last entry: {facts}"
    short = ask(proxy_fix(who_am_i, hops=3), [("X-Forwarded-For", "203.0.113.7")])
    assert short["client"] == "127.0.0.1", \
        f"one entry cannot have passed three proxies: keep REMOTE_ADDR, got {short['client']!r}"
    assert ask(proxy_fix(who_am_i, hops=2), [])["client"] == "127.0.0.1", \
        "no header at all: keep REMOTE_ADDR"

# %% [markdown]
# ### Exercise 2 — a graceful-stop test
#
# Write `stops_gracefully(engine)`: serve `slow_app` with `barelab.serve(...,
# server=engine, name="graceful-test")`, start a request that sleeps half a second, stop
# the server while the app sleeps, and return `True` if that request still got a `200`
# with `Connection: close`, `False` if it got anything else (including an exception). A
# good test tells servers apart, so the check runs it on your chapter 06 server, on
# barelab's own WSGI engine and on the rude one.

# %% tags=["solution"]
def stops_gracefully(engine) -> bool:
    ### BEGIN SOLUTION
    server = barelab.serve(slow_app, server=engine, name="graceful-test")
    future = pool.submit(barelab.http_request, server, path="/?0.5",
                         headers=[("Connection", "keep-alive")])
    time.sleep(0.1)
    server.stop()
    try:
        reply = future.result(timeout=10)
    except Exception:
        return False
    return reply.status == 200 and (reply.header("connection") or "").lower() == "close"
    ### END SOLUTION

# %% tags=["check"]
from barelab.engines.wsgi import WSGIEngine

with check("Exercise 2"):
    assert stops_gracefully(WSGIServer) is True, "chapter 06's server drains: expected True"
    assert stops_gracefully(WSGIEngine) is True, "barelab's WSGI engine drains: expected True"
    assert stops_gracefully(RudeWSGIServer) is False, \
        "the rude server cuts the request in flight: expected False"
    assert not any(s.name == "graceful-test" for s in barelab.running()), \
        "stop the server inside your test"

# %% [markdown]
# ### Exercise 3 — tell the protocols apart
#
# A server that listens for several protocols on one port looks at the first bytes. Write
# `sniff(data)`, which returns `"tls"` for a TLS handshake record (first byte `0x16`,
# second `0x03`), `"h2"` when the data starts with the full HTTP/2 preface, `"http/1"` when
# it starts with an upper-case method token followed by a space (like `GET ` or
# `DELETE `), and `"unknown"` otherwise, including for empty data.

# %% tags=["solution"]
import re

def sniff(data: bytes) -> str:
    ### BEGIN SOLUTION
    if data[:2] == b"\x16\x03":
        return "tls"
    if data.startswith(H2_PREFACE):
        return "h2"
    if re.match(rb"[A-Z]+ ", data):
        return "http/1"
    return "unknown"
    ### END SOLUTION

# %% tags=["check"]
with check("Exercise 3"):
    assert sniff(hello) == "tls", "the ClientHello from the TLS section is TLS"
    assert sniff(H2_PREFACE + b"\x00\x00\x12\x04") == "h2", "the preface, then frames: h2"
    assert sniff(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == "http/1", "a GET is HTTP/1"
    assert sniff(b"PRI * HTTP/2.0\r\n") == "http/1", \
        "half a preface is not HTTP/2 yet: it looks like an HTTP/1 request line"
    assert sniff(b"get / HTTP/1.1\r\n") == "unknown", "methods are upper-case tokens"
    assert sniff(b"") == "unknown" and sniff(b"\x00\x01") == "unknown", "nothing to go on"

# %% [markdown]
# ### Exercise 4 — map the real code to your chapters
#
# Fill in `chapter_of`, a dict from each of these five targets to the chapter (as an
# `int`) where you built the same thing:
#
# - `"starlette.staticfiles:StaticFiles"`
# - `"werkzeug.security:safe_join"`
# - `"werkzeug.exceptions:HTTPException"`
# - `"uvicorn.protocols.websockets.wsproto_impl:WSProtocol"`
# - `"werkzeug.formparser:MultiPartParser"`
#
# Use `where(...)`, `inspect.getsource(locate(...))` or `??` to read them. Then set
# `gzip_file` to the file, relative to the installed packages, that holds Starlette's
# `GZipMiddleware`.

# %% tags=["solution"]
### BEGIN SOLUTION
chapter_of = {
    "starlette.staticfiles:StaticFiles": 4,
    "werkzeug.security:safe_join": 4,
    "werkzeug.exceptions:HTTPException": 9,
    "uvicorn.protocols.websockets.wsproto_impl:WSProtocol": 15,
    "werkzeug.formparser:MultiPartParser": 9,
}
gzip_file = where("starlette.middleware.gzip:GZipMiddleware").splitlines()[0]
### END SOLUTION
gzip_file

# %% tags=["check"]
with check("Exercise 4"):
    hints = {
        "starlette.staticfiles:StaticFiles": (4, "which chapter served a folder and refused ../?"),
        "werkzeug.security:safe_join": (4, "safe_join guards against path traversal"),
        "werkzeug.exceptions:HTTPException": (9, "an error that is itself a WSGI app"),
        "uvicorn.protocols.websockets.wsproto_impl:WSProtocol": (15, "frames through wsproto"),
        "werkzeug.formparser:MultiPartParser": (9, "which chapter parsed multipart forms?"),
    }
    for target, (chapter, hint) in hints.items():
        assert chapter_of.get(target) == chapter, f"{target}: {hint}"
    assert gzip_file == "starlette/middleware/gzip.py", \
        f"gzip_file is {gzip_file!r}: the first line of where(...) is the file"

# %% [markdown]
# ## Clean up
#
# Stop the worker processes if any is still running, close the thread pool, remove the
# temporary folder, and stop every server this chapter started. The number is how many
# were still running.

# %%
import shutil

for worker in workers:
    if worker.poll() is None:
        worker.terminate()
        worker.wait(timeout=10)
    worker.stdout.close()
pool.shutdown()
shutil.rmtree(worker_dir, ignore_errors=True)
barelab.stop_all()
