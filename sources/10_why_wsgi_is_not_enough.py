# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 10. Why WSGI is not enough
#
# A WSGI app holds a thread for as long as it is answering, and a server has only so many
# threads. In this chapter you measure what that means when the answer is slow: first on a
# WSGI server with four worker threads, then on an ASGI server that runs everything in one.
#
# ## Learning goals
#
# By the end of this chapter you can:
#
# - measure throughput and latency of a server under N concurrent clients, with a helper
#   you write yourself;
# - explain, from your own numbers, why a slow WSGI endpoint makes *every* request slow once
#   the thread pool is busy, and why adding threads only moves the limit;
# - say what long polling, streaming (server-sent events) and WebSockets need from a server,
#   and why a blocking worker per connection is the wrong shape for them;
# - serve the same slow endpoint as an ASGI app and see the latency stay flat;
# - recognise the ASGI trap, blocking code such as `time.sleep` inside `async def`, and fix
#   it with `asyncio.to_thread`.

# %% [markdown]
# ## A slow endpoint
#
# Most slow web requests are not busy computing. They are *waiting*: for a database query,
# for another web service, for a message that has not arrived yet. Here `time.sleep(0.5)`
# stands in for that wait. The CPU does nothing for half a second, but the function does
# not return until it is over.

# %%
import time

import barelab

SLEEP = 0.5  # seconds: the "slow database" every endpoint in this chapter waits for

def slow_wsgi(environ, start_response):
    time.sleep(SLEEP)  # waiting for the database
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return [b"done\n"]

# %% [markdown]
# Call it once, directly, the way a server would, and time the call. `time.perf_counter()`
# is Python's clock for measuring intervals: read it before and after, and the difference
# is how long the call took, in seconds.

# %%
start = time.perf_counter()
status = barelab.call_wsgi(slow_wsgi).status
print(status, f"after {time.perf_counter() - start:.1f} s")

# %% [markdown]
# One request, half a second, `200 OK`. Nothing wrong with that on its own. The question
# for this chapter is what happens when sixteen people ask at the same moment.

# %% [markdown]
# ## A server with four workers
#
# A WSGI server calls `app(environ, start_response)` and waits until the app has returned
# and the body has been sent. That is an ordinary, *blocking* function call: the thread
# that makes it can do nothing else until it is over. So a WSGI server needs one thread
# (or one process) per request in progress, and every real one keeps a fixed number of
# them. gunicorn's default `sync` worker, for example, is one process handling one request
# at a time; you run a few of them side by side.
#
# You will build such a server from the standard library's `wsgiref` server. `wsgiref` is
# built on `socketserver`, which accepts a connection and then calls one method,
# `process_request`, to deal with it. Here is what that method does by default:

# %%
import inspect
import socketserver

print(inspect.getsource(socketserver.BaseServer.process_request))

# %% [markdown]
# `finish_request` reads the request, calls the app and writes the response;
# `shutdown_request` closes the connection. Both run right there, in the thread that
# accepts connections. So the plain `wsgiref` server answers one connection at a time, and
# the server does not even call `accept()` for the next connection until the current one
# is done.
#
# The docstring names the standard way out, `ThreadingMixIn`, which starts a new thread
# for every connection. That has no limit at all, and real servers always have one. So
# instead you override `process_request` to hand each connection to a *pool* of four
# worker threads: a `ThreadPoolExecutor`, which runs the work you `submit` on one of its
# threads and makes the rest wait in its queue, in order, until a thread comes free.
#
# First the class itself, and the pool it creates when it starts listening:

# %%
import threading
from concurrent.futures import ThreadPoolExecutor
from wsgiref.simple_server import WSGIServer

class PooledWSGIServer(WSGIServer):
    """wsgiref's WSGI server, with a fixed pool of worker threads."""
    workers = 4
    request_queue_size = 64  # the listen() backlog

    def server_activate(self):  # runs once, when the server starts listening
        super().server_activate()
        self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="worker")

WSGIServer.request_queue_size, PooledWSGIServer.request_queue_size

# %% [markdown]
# `request_queue_size` is how many new connections the operating system may hold for the
# server before it calls `accept()`. `socketserver` asks for only 5. A burst of sixteen
# clients can overflow that; Linux then drops the extra connection attempts, and those
# clients try again a whole second later. That second would show up in every measurement
# below without having anything to do with the app, so this server asks for 64.
#
# Now the two methods that do the work. `process_request` only submits the connection to
# the pool and returns at once, so the accepting thread goes straight back to accepting.
# `handle_in_worker` is what a worker thread then runs: the same two calls as the default
# above, with `finally` making sure the connection is closed whatever the app did.

# %%
def process_request(self, request, client_address):  # called for each new connection
    self.pool.submit(self.handle_in_worker, request, client_address)

def handle_in_worker(self, request, client_address):  # runs in a worker thread
    try:
        self.finish_request(request, client_address)  # reads, runs the app, writes
    finally:
        self.shutdown_request(request)

PooledWSGIServer.process_request = process_request
PooledWSGIServer.handle_in_worker = handle_in_worker
[name for name in vars(PooledWSGIServer) if not name.startswith("__")]

# %% [markdown]
# A method is just a function stored on the class, so defining the two functions first
# and attaching them afterwards gives the same class as writing them inside it. The list
# shows everything `PooledWSGIServer` now adds to `WSGIServer`.
#
# Two more small pieces and the server is ready to use. `wsgiref` prints a line for every
# request to stderr, from the worker threads; in a notebook those lines would land in
# whatever cell runs at that moment, so a quiet handler drops them. And a context manager
# starts the server in a background thread and always stops it, so a cell that uses it
# leaves nothing running behind.

# %%
from contextlib import contextmanager
from wsgiref.simple_server import WSGIRequestHandler, make_server

class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        pass

@contextmanager
def pooled_server(app):
    httpd = make_server("127.0.0.1", 0, app, PooledWSGIServer, QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}/"
    finally:
        httpd.shutdown()                       # stop accepting
        httpd.server_close()                   # free the port
        httpd.pool.shutdown(wait=True)         # let the workers finish
        thread.join()

# %% [markdown]
# Port `0` asks the operating system for any free port. The `0.05` passed to
# `serve_forever` is its `poll_interval`: between connections the loop checks every
# 0.05 s whether `shutdown()` has asked it to stop. The default is half a second, which
# would add up to half a second to every cell below that uses the server.
#
# Start it, send it one request, and let the `with` block stop it again:

# %%
with pooled_server(slow_wsgi) as url:
    print(url, barelab.http_request(url).status)

# %% [markdown]
# The server answered `200` on its own free port. The `finally` clause is what makes the
# cleanup reliable: even if a cell inside the `with` block fails, the server is shut down
# and its port freed.
#
# Here is the picture to keep in mind for the measurements that follow. Every client gets
# its connection accepted at once, but only four of them are inside the app at any moment;
# the rest wait in the queue.
#
# ```mermaid
# flowchart LR
#     C1["client 1"] --> Q
#     C2["client 2"] --> Q
#     C3["…"] --> Q
#     C16["client 16"] --> Q
#     Q["queue of accepted<br/>connections"] --> W1["worker 1<br/>time.sleep(0.5)"]
#     Q --> W2["worker 2<br/>time.sleep(0.5)"]
#     Q --> W3["worker 3<br/>time.sleep(0.5)"]
#     Q --> W4["worker 4<br/>time.sleep(0.5)"]
# ```

# %% [markdown]
# ## Measuring a server under load
#
# To see what sixteen clients at once do to it, you need a load generator: a function that
# starts N clients at the same instant and writes down how long each one waited. Each
# client is a thread making one blocking `barelab.http_request`. A `threading.Barrier`
# holds them all at the starting line until the last one is ready, so they really do
# arrive together. Each client reads `time.perf_counter()` just before it sends and just
# after the answer arrived.

# %%
def timed_requests(url, clients):
    """Send `clients` requests at the same instant; return (start, end, status) for each."""
    barrier = threading.Barrier(clients)

    def one_client(_):
        barrier.wait()                           # everyone starts together
        start = time.perf_counter()
        status = barelab.http_request(url, timeout=30).status
        return start, time.perf_counter(), status

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(one_client, range(clients)))

# %% [markdown]
# The pool has exactly as many threads as there are clients. Fewer would make some
# clients wait for a client thread, and you would be measuring the load generator instead
# of the server. The client threads cost almost nothing: they spend their time waiting for
# the server, which is the point. Try it with two clients:

# %%
with pooled_server(slow_wsgi) as url:
    trial = timed_requests(url, 2)
[(f"{(end - start) * 1000:.0f} ms", status) for start, end, status in trial]

# %% [markdown]
# Two clients, each answered after about half a second, both `200`: with four workers,
# two clients never wait for each other.
#
# From such timings come the three numbers people quote about a server:
#
# - **throughput**: requests answered per second, over the whole burst;
# - **latency**: how long one client waited. The **p50** (median) is the typical wait; the
#   **p95** is the wait that 95 % of clients did not exceed, so it tells you about the
#   unlucky ones. (With only 16 clients, the p95 is simply the slowest of them.)
#
# `Load` keeps one measurement and works out all three when it is created. A `@dataclass`
# writes `__init__` for the two fields; `__post_init__` runs right after it and derives
# the rest.

# %%
import math
import statistics
from dataclasses import dataclass

@dataclass
class Load:
    clients: int
    timings: list  # (start, end, status) per client

    def __post_init__(self):
        self.latencies = sorted(end - start for start, end, _ in self.timings)
        self.total = max(e for _, e, _ in self.timings) - min(s for s, _, _ in self.timings)
        self.throughput = self.clients / self.total  # requests per second
        self.p50 = statistics.median(self.latencies)
        self.p95 = self.latencies[math.ceil(0.95 * self.clients) - 1]

# %% [markdown]
# - `total` runs from the first client's start to the last client's answer: how long the
#   whole burst took. Throughput is the number of clients divided by it.
# - `latencies` are sorted, so the median is the middle one and the p95 sits at the
#   "nearest rank": the smallest latency that at least 95 % of the clients did not exceed.
#
# A bug here would quietly distort every number that follows, so check it first on a
# burst you can work out by hand: two clients that start together, one answered after half
# a second and one after a full second. The burst took 1 s, so the throughput is 2 requests
# per second; the median of 0.5 and 1.0 is 0.75; the p95 is the slower of the two.

# %%
made_up = Load(2, [(0.0, 0.5, 200), (0.0, 1.0, 200)])
made_up.total, made_up.throughput, made_up.p50, made_up.p95

# %% [markdown]
# All four numbers as predicted. Last, a table, one row per `Load`, so that several
# measurements can be read side by side. The `200 OK` column counts the clients that got a
# `200` (a failed request would show up here before anywhere else), and times are printed
# in milliseconds. The last column divides the p95 by `SLEEP` and rounds it: "how many
# sleeps did an unlucky client wait?". That one number is easy to predict, and you will
# predict it before you measure. Here is the made-up burst again, as a table:

# %%
def load_table(loads):
    rows = []
    for load in loads:
        answered = sum(status == 200 for *_, status in load.timings)
        rows.append((load.clients, f"{answered}/{load.clients}", f"{load.total * 1000:.0f} ms",
                     f"{load.p50 * 1000:.0f} ms", f"{load.p95 * 1000:.0f} ms",
                     round(load.p95 / SLEEP)))
    columns = ("clients", "200 OK", "all done after", "p50", "p95", "p95 in sleeps")
    return barelab.show_transcript(rows, columns=columns)

load_table([made_up])

# %% [markdown]
# ## Four workers, sixteen clients
#
# Predict first. Four workers each finish one request per `SLEEP`. With 4 clients,
# everyone is served at once: one sleep. With 8, four wait for a worker to come free: two
# sleeps. With 16, the last four are in the fourth wave: four sleeps.
#
# `measure(url, clients)` is the one call the rest of the chapter uses: it sends the burst
# and returns a `Load`. Measure the three bursts on a fresh four-worker server:

# %%
def measure(url, clients):
    return Load(clients, timed_requests(url, clients))

with pooled_server(slow_wsgi) as url:
    wsgi_loads = [measure(url, clients) for clients in (4, 8, 16)]

load_table(wsgi_loads)

# %% [markdown]
# Every request was answered: nothing failed, no error anywhere. And yet with 16 clients
# the p95 is four times the endpoint's own half second. The p50 grew too. With 8 clients,
# half were served in the first wave (0.5 s) and half in the second (1.0 s), so the median
# lands between them at about 0.75 s; with 16, the *typical* client waits more than twice
# as long as the work takes. Those are the waves you predicted: the queue is the latency.
#
# The throughput tells the same story from the server's side. The helper below divides the
# throughput of the biggest burst by that of the smallest and rounds it, so you read one
# small whole number instead of two noisy ones:

# %%
def compare_throughput(loads):
    first, last = loads[0], loads[-1]
    ratio = last.throughput / first.throughput
    print(f"{last.clients} clients got about {round(ratio)}× the throughput of {first.clients}")

compare_throughput(wsgi_loads)

# %% [markdown]
# (`wsgi_loads[-1].throughput` holds the number itself, in requests per second.) Four
# times the clients, the same throughput, four times the wait. The server was never
# busy in the CPU sense: the four threads spent nearly all their time asleep. It was
# *full*. Four workers that each wait half a second can answer at most
# 4 ÷ 0.5 s = 8 requests per second, whatever the hardware, and every client beyond
# that waits in line.

# %% [markdown]
# ### Full, the other way: turned away
#
# A queue is one way for a full server to behave. The other is to refuse. barelab's own
# WSGI server gives each connection a thread and takes a `max_connections` limit; one
# connection over the limit gets `503 Service Unavailable` at once (RFC 9110 §15.6.4: "the
# server is currently unable to handle the request due to a temporary overload"). Serve
# the same app with a limit of four and send eight clients. `Counter` counts equal values,
# here how many clients got each status:

# %%
from collections import Counter

limited = barelab.serve(slow_wsgi, name="limited", max_connections=4)
limited_load = measure(limited.url, 8)
sorted(Counter(status for *_, status in limited_load.timings).items())

# %% [markdown]
# Four clients got `200` after half a second; the other four got a `503` in no time at
# all. Neither behaviour is wrong: waiting is kind to a brief burst, refusing protects
# a server that would otherwise queue forever. But both say the same thing. A WSGI server
# can work on as many requests at once as it has threads, and no more.
#
# Stop this server (the chapter does not need it again) and read what it logged:

# %%
limited.stop()
limited.log

# %% [markdown]
# The four `503` lines come first: they were sent the moment the connections arrived,
# before the server read a single byte of the requests, which is why they show `- -` where
# a method and a path would be. The four `200` lines follow half a second later.

# %% [markdown]
# ## Why not just more threads?
#
# If four is too few, use four hundred? That does move the limit, and for plain request /
# response traffic a bigger pool is often the right fix. But each thread has a price, so
# the limit only moves.
#
# The first price is memory. Every thread gets its own call stack, reserved when the thread
# starts. `threading.stack_size()` tells you what Python asks for:

# %%
threading.stack_size()

# %% [markdown]
# Zero means "the platform's default": Python leaves the choice to the operating system,
# unless you call `threading.stack_size(n)` to ask for a size of your own. On Linux with
# glibc, that default is the process's stack limit (what `ulimit -s` shows in a shell),
# unless the limit is "unlimited". The `resource` module reads the same limit from
# Python, in bytes:

# %%
import resource

soft_limit, _ = resource.getrlimit(resource.RLIMIT_STACK)
print("stack reserved per new thread:", soft_limit // 2**20, "MiB of address space")

# %% [markdown]
# With 8 MiB each, four hundred threads would reserve over three gigabytes of address
# space. But
# *reserved* is not *used*. The operating system hands out real memory page by page, as a
# stack actually grows, so most of those megabytes stay virtual. To see what a thread
# really costs, start 200 idle ones and read how much resident memory (RSS, the memory
# that is really in RAM) the process gained. `/proc/self/status` is Linux's report on the
# current process; its `VmRSS` line is the resident size in KiB.
#
# Each thread runs `gate.wait()`: it blocks on a `threading.Event` until the function sets
# it. So between starting them and setting the gate, 200 threads exist and do nothing,
# exactly like 200 workers waiting for a slow database.

# %%
import re

def resident_kib():
    status = open("/proc/self/status").read()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))

def resident_cost_of_threads(count=200):
    gate = threading.Event()
    threads = [threading.Thread(target=gate.wait) for _ in range(count)]
    before = resident_kib()
    for thread in threads:
        thread.start()
    grown = resident_kib() - before
    gate.set()
    for thread in threads:
        thread.join()
    return grown / count  # KiB per thread

# %% [markdown]
# Run it, and compare what one idle thread added to the process with the stack it
# reserved:

# %%
thread_kib = resident_cost_of_threads()
print("an idle thread costs less than 1 % of its reserved stack:",
      thread_kib < soft_limit / 1024 / 100)

# %% [markdown]
# The cell prints a comparison rather than the number, because the exact figure depends on
# the machine and on how deep the thread's calls go. On the machine this chapter was
# written on, an idle thread cost roughly 12 to 16 KiB of RSS; print `thread_kib` to see
# yours. A thread inside a real framework, with a deep call stack and its own buffers,
# touches more.
#
# Compare an asyncio *task*, the unit of concurrency an ASGI server uses. A task wraps one
# coroutine (the object an `async def` function returns when you call it) and lets an
# *event loop* run it: the loop runs one task until it reaches an `await` on something that
# is not ready, then runs another. Jupyter already runs an event loop for this notebook,
# which is why a cell may use `await` at the top level, as the next one does.
#
# Here are 10,000 tasks, all waiting on an `asyncio.Event`, on the notebook's own loop.
# (Running tasks there is fine: they only wait. What you must never do is *serve* an app on
# the notebook's loop, because a cell making a blocking request would freeze the very loop
# that should answer it.)

# %%
import asyncio

async def resident_cost_of_tasks(count=10_000):
    gate = asyncio.Event()
    before = resident_kib()
    tasks = [asyncio.create_task(gate.wait()) for _ in range(count)]
    await asyncio.sleep(0)  # let every task start and block on the gate
    grown = resident_kib() - before
    gate.set()
    await asyncio.gather(*tasks)
    return grown / count  # KiB per task

task_kib = await resident_cost_of_tasks()
print("a waiting task costs less than a waiting thread:", task_kib < thread_kib)

# %% [markdown]
# Fifty times as many tasks as threads, and each one still cost less. `await
# asyncio.sleep(0)` gives the loop one turn, in which every new task starts and stops at
# `gate.wait()`. Python may reuse memory it freed earlier, so a second run of this cell can
# report close to nothing for the tasks: one more reason to read these as rough sizes, not
# as exact prices.
#
# Memory is only the first price. The operating system caps threads per process and per
# user, switching between thousands of them costs time, and Python's global interpreter
# lock (the GIL) lets only one of them run Python code at a time anyway. Ten thousand
# threads that all sleep are possible. Ten thousand threads for ten thousand *connections
# that stay open for an hour* are where this design stops making sense.

# %% [markdown]
# ## Connections that stay open
#
# Which brings you to the traffic WSGI was not designed for. Each of these keeps one
# connection open for a long time while mostly doing nothing:
#
# | technique | what the server does | how long the connection lives |
# | --- | --- | --- |
# | **long polling** | holds a request until there is news (a chat message, a finished job), then answers | seconds to minutes, then the client asks again |
# | **streaming** (server-sent events, `text/event-stream`) | sends one response whose body never ends: an event now, another in a minute | as long as the page is open |
# | **WebSocket** (RFC 6455) | upgrades the connection to a two-way message channel | as long as the page is open |
#
# Under WSGI each of them holds a worker thread for its whole life, asleep. gunicorn's
# design notes ("Choosing a Worker Type") name these, streaming, long polling and
# WebSockets, together with long blocking calls, among the cases that need asynchronous
# workers. And WebSockets do not fit WSGI at all. A WebSocket app must be ready, at any
# moment, both to read a message from the client and to send one of its own. PEP 3333
# gives the app `wsgi.input`, a blocking file to read the *request body* from, and a
# response body that the server sends after the app has returned it (or through the
# legacy `write()` callable). Nothing in it lets an app wait for "the client said
# something *or* I have news", so WebSocket support in WSGI servers has always been an
# extension outside the spec.
#
# Streaming, at least, can be written in WSGI: return a generator and the server sends
# each piece as it comes. Here is a generator of server-sent events, `count` of them,
# `seconds` apart. `data: ...` followed by an empty line is one event; a browser's
# `EventSource` hands each one to the page as it arrives.

# %%
def tick_every(seconds, count):
    for number in range(1, count + 1):
        time.sleep(seconds)
        yield f"data: tick {number}\n\n".encode()  # one server-sent event

list(tick_every(0.01, 2))

# %% [markdown]
# Two events, each after its pause, each a few bytes the server can send on their own.
# The app below serves a stream of four such events, a quarter second apart, on
# `/events`, and a fast one-line answer on every other path. The fast path needs no time
# at all:

# %%
def events_or_fast(environ, start_response):
    if environ["PATH_INFO"] == "/events":
        start_response("200 OK", [("Content-Type", "text/event-stream")])
        return tick_every(0.25, 4)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"fast\n"]

barelab.call_wsgi(events_or_fast, path="/fast").body

# %% [markdown]
# Now put four listeners on the four-worker server, the way four open browser tabs would,
# and while they listen, ask the fast endpoint for its one line. The listeners run in
# their own small thread pool: `listeners.submit` starts each one and returns at once with
# a *future*, whose `.result()` later hands you that listener's response. The cell itself
# plays the fifth visitor and times its request.

# %%
with pooled_server(events_or_fast) as url:
    with ThreadPoolExecutor(4) as listeners:
        streams = [listeners.submit(barelab.http_request, url, path="/events")
                   for _ in range(4)]
        time.sleep(0.1)  # the four streams have started
        start = time.perf_counter()
        barelab.http_request(url, path="/fast")
        fast_wait = time.perf_counter() - start

print(f"the fast endpoint answered after {fast_wait:.2f} s")
print("it waited for a stream to end:", fast_wait > 0.5)
print("one listener got:", streams[0].result().body)

# %% [markdown]
# A request that needs no time at all waited almost a second: the streams had been
# running for 0.1 s when it arrived, and it got a worker only when the first of them
# ended. The last line shows one listener's whole stream: all four events arrived, so the
# streams did their job. But four open tabs were enough to stop the server answering
# anyone else. With streams that last an hour, that is an hour. And nothing about the fast
# endpoint was wrong: it was simply behind four sleeping workers.

# %% [markdown]
# ## The same endpoint, as ASGI
#
# An ASGI app is a coroutine function: `async def app(scope, receive, send)`. Where the
# WSGI app called `time.sleep`, this one *awaits* `asyncio.sleep`. The response goes out
# as the two `send` events you met in chapter 01: `http.response.start` with the status
# and headers, then `http.response.body` with the bytes. Chapter 11 goes through them in
# detail. A small helper sends both, so every app below can stay short:

# %%
async def answer(send, text):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
    await send({"type": "http.response.body", "body": text.encode()})

# %% [markdown]
# The app itself is the WSGI one with `await` in front of the wait. It answers only
# `http` scopes: an app that raises for `lifespan` tells the server it does
# not take part in startup and shutdown, as chapter 01 showed.

# %%
async def slow_asgi(scope, receive, send):
    if scope["type"] != "http":  # say no to lifespan and websocket (chapter 01)
        raise RuntimeError(f"slow_asgi only speaks http, not {scope['type']}")
    await asyncio.sleep(SLEEP)  # waiting for the database, without blocking anyone
    await answer(send, "done\n")

asgi_server = barelab.serve(slow_asgi)
asgi_server

# %% [markdown]
# `barelab.serve` saw an `async def` app and picked its ASGI server for it, as in
# chapter 01. That server runs one event loop in one thread, and nothing else: no pool, no
# workers to run out of. Send it the same three bursts as the WSGI server, and predict
# first: if waiting costs no thread, how many sleeps should the unlucky client wait?

# %%
asgi_loads = [measure(asgi_server.url, clients) for clients in (4, 8, 16)]
load_table(asgi_loads)

# %% [markdown]
# Every client waited one sleep, however many there were; the p50 and p95 barely moved
# from 4 clients to 16. Compare the throughput again:

# %%
compare_throughput(asgi_loads)

# %% [markdown]
# Four times the clients, four times the throughput, and the same wait. One thread served
# sixteen slow requests at once.
#
# ### How one thread waits for sixteen things
#
# `await asyncio.sleep(0.5)` does not stop the thread. It tells the event loop "wake me in
# half a second" and hands control back to it. The loop then runs whatever else is ready:
# the next connection, the next request. When a timer fires, the loop resumes the
# coroutine that set it, right after its `await`.
#
# ```mermaid
# sequenceDiagram
#     participant L as event loop (one thread)
#     participant A as request A
#     participant B as request B
#     L->>A: start slow_asgi
#     A-->>L: await asyncio.sleep(0.5): wake me at t=0.5
#     L->>B: start slow_asgi
#     B-->>L: await asyncio.sleep(0.5): wake me at t=0.5
#     Note over L: nothing to do: the loop waits for timers and sockets
#     L->>A: t=0.5, resume after the await
#     A-->>L: await send(...): response written
#     L->>B: t=0.5, resume after the await
#     B-->>L: await send(...): response written
# ```
#
# A waiting request costs a suspended coroutine, a small object on the heap, instead of a
# whole thread. That is why an ASGI server can hold thousands of long polls, streams and
# WebSockets open at once: holding one costs a little memory, not a worker. And
# `receive()` and `send()` are both awaitable, so an app can wait for the client and for
# the rest of the world at the same time. That is the shape a WebSocket needs.

# %% [markdown]
# ## The trap: blocking inside `async def`
#
# The price of that design is a promise every coroutine must keep: *never block*. The loop
# can only switch at an `await`. Code that blocks without one (`time.sleep`, a synchronous
# database driver, `requests.get`, a long computation) holds the one thread, and every
# other request on the server stands still.
#
# Here is the mistake, and it is an easy one to make: `async def` on the outside, a
# blocking call on the inside.

# %%
async def blocking_asgi(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError(f"blocking_asgi only speaks http, not {scope['type']}")
    time.sleep(SLEEP)  # blocks the event loop: nobody else runs for half a second
    await answer(send, "done\n")

blocking_server = barelab.serve(blocking_asgi)
blocking_server

# %% [markdown]
# It serves, and one request on its own gets its `done` after half a second, exactly like
# `slow_asgi`. Nothing warns you. The difference only shows when requests overlap, so send
# four at once:

# %%
blocking_load = measure(blocking_server.url, 4)
load_table([blocking_load])

# %% [markdown]
# Four clients, four sleeps for the unlucky one. It is worse than the four-worker WSGI
# server, which handled four at once: this is a server with exactly *one* worker. Sort the
# four waits and count them in sleeps, and you see the staircase: each client waited for
# every client served before it.

# %%
[round(latency / SLEEP) for latency in blocking_load.latencies]

# %% [markdown]
# One, two, three, four: the same waves as the WSGI queue, one request per wave. In a real
# app the blocking call is rarely this easy to spot. asyncio's debug mode helps: run
# Python with `PYTHONASYNCIODEBUG=1` (or `asyncio.run(main(), debug=True)`) and the loop
# logs every step that held it for longer than 0.1 s, naming the task that did.

# %% [markdown]
# ### The fix: move the blocking call off the loop
#
# When a blocking call cannot be replaced by an awaitable one, run it in a thread and
# *await* the thread. `asyncio.to_thread(function, *args)` does exactly that: the call runs
# in a worker thread, and the coroutine waits for it with `await`, so the loop stays free
# meanwhile. Note the shape: you pass the function and its arguments *separately*.
# `asyncio.to_thread(time.sleep(SLEEP))` would call `time.sleep` right away, on the loop,
# and hand its result (`None`) to the thread. The same four clients should be back to one
# sleep each:

# %%
async def unblocked_asgi(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError(f"unblocked_asgi only speaks http, not {scope['type']}")
    await asyncio.to_thread(time.sleep, SLEEP)  # the wait happens in a worker thread
    await answer(send, "done\n")

unblocked_server = barelab.serve(unblocked_asgi)
load_table([measure(unblocked_server.url, 4)])

# %% [markdown]
# One sleep again. The four `time.sleep` calls ran side by side in four threads of a pool,
# while the loop's own thread went on accepting connections and starting the other
# requests. `loop.run_in_executor(None, function, *args)` is the older spelling of the
# same thing.
#
# Notice where the blocking call went, though: into a thread pool. `to_thread` uses the
# loop's default executor, whose size is `min(32, os.cpu_count() + 4)` threads. Send it
# more blocking calls than that and they queue exactly as in the WSGI server. So
# `to_thread` is the right fix for the occasional blocking call, a file read or an old
# library; for the thing your app waits on all the time, use an async library (an async
# database driver, `httpx.AsyncClient` instead of `requests`), so the waiting costs no
# thread at all.

# %% [markdown]
# ## Summary
#
# - A WSGI app is a blocking call, so a WSGI server needs one thread per request in
#   progress, and it has a fixed number of them.
# - You measured it: four workers and a half-second endpoint give at most 8 requests per
#   second. With 16 clients the throughput stayed the same while the p95 latency grew
#   fourfold, because the waiting happened in a queue. A server with a connection limit
#   answers 503 instead of queueing; either way it is full.
# - More threads move the limit without removing it: each thread reserves a stack (8 MiB
#   of address space on a typical Linux), costs real memory once it runs, and the OS and
#   the GIL limit how many help.
# - Long polling, server-sent events and WebSockets keep a connection open for minutes or
#   hours while mostly idle. Under WSGI each one holds a worker; four open streams were
#   enough to stall a fast endpoint on your four-worker server.
# - An ASGI app awaits instead of blocking. One event loop in one thread served 16 slow
#   clients with a flat latency, because a waiting request is a suspended coroutine, not
#   a thread.
# - The trap: blocking code inside `async def` stalls every request on the loop. Replace it
#   with an awaitable call, or move it to a thread with `await asyncio.to_thread(...)`.
#
# Chapter 11 reads the ASGI spec itself: the scope, every event `receive()` and `send()`
# carry, and what a server says when an app gets them wrong.

# %% [markdown]
# ## Exercises
#
# Each exercise has a cell for your answer and a check cell below it. Run the check cell:
# it prints ✅ when your answer works and says what is wrong when it does not.
#
# ### Exercise 1 — predict the queue
#
# Write `predicted_p95(clients, workers, seconds)`: how long the unlucky clients wait when
# `clients` requests arrive together at a pool of `workers` threads and each request takes
# `seconds`. (Think in waves: how many rounds of work does the last client wait for?) The
# check compares your prediction with the numbers you measured on the four-worker server.

# %% tags=["solution"]
def predicted_p95(clients, workers, seconds):
    ### BEGIN SOLUTION
    return math.ceil(clients / workers) * seconds
    ### END SOLUTION

# %% tags=["check"]
from barelab.exercises import check

with check("Exercise 1"):
    assert predicted_p95(4, 4, 0.5) == 0.5, "4 clients, 4 workers: everyone is in the first wave"
    assert predicted_p95(5, 4, 0.5) == 1.0, "the fifth client waits for a second wave"
    assert predicted_p95(100, 10, 0.2) == 2.0, f"got {predicted_p95(100, 10, 0.2)}, expected 2.0"
    for load in wsgi_loads:
        guess = predicted_p95(load.clients, 4, SLEEP)
        assert abs(load.p95 - guess) < SLEEP / 2, \
            f"{load.clients} clients: measured {load.p95:.2f} s, you predicted {guess} s"

# %% [markdown]
# ### Exercise 2 — unblock a report
#
# `report_app` below looks up a customer with `lookup_customer`, a blocking function from
# an old library you cannot change. Four clients at once take four lookups' time. Write
# `report_app_fixed`, which gives the same answer without blocking the event loop.

# %%
def lookup_customer(number):
    time.sleep(0.3)  # a synchronous database driver
    return f"customer {number}: Ada Lovelace\n"

async def report_app(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError("http only")
    await answer(send, lookup_customer(7))

barelab.call_asgi(report_app).text

# %% tags=["solution"]
async def report_app_fixed(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError("http only")
    ### BEGIN SOLUTION
    await answer(send, await asyncio.to_thread(lookup_customer, 7))
    ### END SOLUTION

# %% tags=["check"]
with check("Exercise 2"):
    assert barelab.call_asgi(report_app_fixed).text == "customer 7: Ada Lovelace\n", \
        "the answer changed: it should still be lookup_customer(7)'s text"
    report_server = barelab.serve(report_app_fixed)
    report_load = measure(report_server.url, 4)
    report_server.stop()
    assert all(status == 200 for *_, status in report_load.timings), "some requests failed"
    assert report_load.p95 < 0.55, (f"the slowest of 4 clients waited {report_load.p95:.2f} s; "
                                    "unblocked, all four finish in about 0.3 s")

# %% [markdown]
# ### Exercise 3 — a stream that holds no thread
#
# Write an ASGI app `ticker` that streams three server-sent events, `data: tick 1\n\n`,
# `data: tick 2\n\n` and `data: tick 3\n\n`, with `content-type: text/event-stream` and a
# pause of 0.05 s (`await asyncio.sleep`) before each. To stream, send one
# `http.response.body` event per tick with `"more_body": True`, and end the response with
# a last `http.response.body` that has `"more_body": False` (its `body` may be empty).

# %% tags=["solution"]
async def ticker(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError("http only")
    ### BEGIN SOLUTION
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream")]})
    for number in (1, 2, 3):
        await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": f"data: tick {number}\n\n".encode(),
                    "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
    ### END SOLUTION

# %% tags=["check"]
with check("Exercise 3"):
    call = barelab.call_asgi(ticker)
    assert call.status == 200, f"the status is {call.status}, expected 200"
    assert call.header("content-type") == "text/event-stream", \
        f"content-type is {call.header('content-type')!r}, expected 'text/event-stream'"
    assert call.body == b"data: tick 1\n\ndata: tick 2\n\ndata: tick 3\n\n", \
        f"the body is {call.body!r}"
    bodies = [m for m in call.sent if m["type"] == "http.response.body"]
    assert len(bodies) >= 3, "send each tick as its own http.response.body, so it streams"
    ticker_server = barelab.serve(ticker)
    ticker_load = measure(ticker_server.url, 16)
    ticker_server.stop()
    assert ticker_load.p95 < 0.5, f"16 listeners took {ticker_load.p95:.2f} s: is it blocking?"

# %% [markdown]
# ## Clean up
#
# Stop every server this chapter started. The number is how many were still running.

# %%
barelab.stop_all()
