# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 03. What a framework does for you
#
# In chapter 01 an app got a tidy dict and gave back a status, headers and a body. Somebody
# had to turn raw bytes into that dict, and the answer back into bytes. In this chapter that
# somebody is you. You write a web app straight on a socket: no framework, no WSGI, no
# parser library. It takes twenty lines and it works. Then you break it with real bytes, six
# ways and two bonus ones, and each break points at a job that frameworks and servers do for
# you without a word.
#
# ## Learning goals
#
# By the end of this chapter you can:
#
# - list the jobs that sit between a socket and your handler code, and say which chapter of
#   this course builds each one;
# - serve HTTP from a plain `socket` loop in a background thread, and stop it cleanly;
# - route two paths, parse a query string and answer with HTML or JSON, all by hand;
# - explain why one `recv()` does not return "one request", and what goes wrong when code
#   assumes it does;
# - break a server on purpose with `barelab.raw_exchange` and read what came back.

# %% [markdown]
# ## The checklist
#
# If you have written a Flask app, you have already relied on most of these jobs without
# seeing them. `@app.route` is **routing**. `request.args`, `request.form` and
# `request.get_json()` are **request parsing**. Returning a string or a dict from a view,
# and Flask turning it into a response with the right headers, is **response
# serialization**. `abort(404)` is a **status code**, `request.cookies` and `set_cookie` are
# **cookies**, `send_from_directory` serves **static files**. Reading the request off the
# network, limits, timeouts and many clients at once are done by the server under Flask
# (Werkzeug's development server, or gunicorn in production).
#
# Here is the whole list as a dict. Each job maps to a pair: what the job takes, and the
# chapters of this course where you build it. There is no need to read it line by line: the
# next cell draws it as a table. The last line shows the shape of one entry.

# %%
JOBS = {
    "Reading the request": ("up to the blank line, then Content-Length bytes", "02, 06"),
    "Routing": ("pick the code from the method and path; 404 vs 405", "08"),
    "Request parsing": ("query strings, forms, JSON, percent-decoding", "05, 09"),
    "Response serialization": ("status line, headers, Content-Length, bytes", "02, 09"),
    "Error pages": ("a 500 when a handler crashes, without leaking the traceback", "06, 18"),
    "Status codes": ("400, 404, 405, 413, 431, each for the right reason", "06, 08, 09"),
    "Headers": ("case-insensitive names, repeated headers", "02, 09"),
    "Cookies": ("reading Cookie, sending several Set-Cookie", "09"),
    "Content negotiation": ("Accept-Encoding, gzip, Vary", "16"),
    "Static files": ("files from disk, without path traversal", "04"),
    "Streaming": ("bodies that arrive or leave in pieces", "05, 06, 12"),
    "Timeouts and limits": ("never wait forever, never read without a limit", "02, 06, 13"),
    "Keep-alive and concurrency": ("many connections, many requests each", "06, 10, 13"),
}
JOBS["Routing"]

# %% [markdown]
# `checklist()` draws the table. Its last column, "broken here", comes from the dict
# `broken`, which is empty for now. Each time this chapter breaks a job, the break is written
# there, so by the end the table shows what your hand-made app got wrong.
#
# The first line imports everything the chapter needs: the standard library, plus `barelab`
# to serve and to poke at servers.

# %%
import json, socket, threading, time
from IPython.display import Markdown
import barelab

broken = {}  # job -> the ways this chapter broke it

def checklist():
    rows = ["| job | what it takes | built in chapter | broken here |", "|---|---|---|---|"]
    for job, (what, chapters) in JOBS.items():
        rows.append(f"| {job} | {what} | {chapters} | {'; '.join(broken.get(job, []))} |")
    return Markdown("\n".join(rows))

checklist()

# %% [markdown]
# ## An app on a bare socket
#
# A **socket** is one end of a network connection: you `recv()` bytes from it and
# `sendall()` bytes into it. In chapter 01 the app got a tidy dict. This app gets the
# connected socket itself and does everything else: it reads once, splits off the request
# line, splits the path from the query string, turns `a=2&b=3` into a dict, picks a branch
# and writes the reply bytes. It knows two pages: `/` says hello, and `/add` adds two numbers.
#
# The head of a request is bytes. Decoding them as `latin-1` maps each byte to one
# character, so it never fails (chapter 02 explains why HTTP heads are read this way). The
# reply ends its head with `Connection: close`, which tells the client that the connection
# ends after this one response (RFC 9112 §9.6).
#
# It is one long function on purpose. This is what "no framework" looks like: reading,
# parsing, routing and writing, welded together. There is nothing to see yet; the cell after
# the next one runs it.

# %%
def raw_app(conn):
    data = conn.recv(4096)                       # one read, and hope it is the whole request
    head, _, body = data.partition(b"\r\n\r\n")
    method, target = head.split(b"\r\n")[0].decode("latin-1").split(" ")[:2]
    path, _, query = target.partition("?")
    if method == "POST":
        query = body.decode()                    # a posted form looks like a query: name=Ada
    params = dict(pair.split("=", 1) for pair in query.split("&") if pair)
    if path == "/":
        status, kind = "200 OK", "text/html; charset=utf-8"
        text = f"<h1>Hello, {params.get('name', 'world')}!</h1>"
    elif path == "/add":
        status, kind = "200 OK", "application/json"
        text = json.dumps({"sum": int(params["a"]) + int(params["b"])})
    else:
        status, kind, text = "404 Not Found", "text/plain", "no such page"
    payload = text.encode("utf-8")
    conn.sendall(f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\n"
                 f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload)

# %% [markdown]
# Before you run it, count what this function takes for granted:
#
# - one `recv()` returns the whole request, body included;
# - the first line has a space in it, between a method and a target;
# - only POST needs care; any other method can get the same answer as GET;
# - `a` and `b` are numbers, and nobody percent-encodes anything.
#
# Keep that list in mind. The second half of this chapter sends bytes that break each of
# these assumptions.

# %% [markdown]
# Since `raw_app` only needs a socket, you can try it before any server exists.
# `socket.socketpair()` gives you two sockets already connected to each other: write a
# request into one end, let `raw_app` answer on the other, and read the reply. Both get a
# timeout, so a mistake raises an error instead of freezing the kernel.
#
# The request is three lines: the request line, a `Host` header (HTTP/1.1 requires one, RFC
# 9112 §3.2; `raw_app` ignores it, so any value will do), and the empty line that ends the
# head. `barelab.show_bytes` draws the reply with its `\r\n` line endings visible.

# %%
client, conn = socket.socketpair()
with client, conn:
    client.settimeout(2.0)
    conn.settimeout(2.0)
    client.sendall(b"GET /add?a=2&b=3 HTTP/1.1\r\nHost: x\r\n\r\n")
    raw_app(conn)
    reply = client.recv(4096)
barelab.show_bytes(reply)

# %% [markdown]
# That is a whole HTTP response: a status line, three headers, an empty line and the body.
# `Content-Length: 10` is the size of the body, `{"sum": 5}`, in bytes. It is also all the
# client has to tell where the body ends.
#
# ## A server loop to run it
#
# To serve `raw_app` to a browser you need a loop around it. A TCP server does the same few
# things over and over:
#
# ```mermaid
# flowchart LR
#     L["listening socket"] -- "accept()" --> C["a connection<br/>to one client"]
#     C -- "recv()" --> A["raw_app:<br/>parse, route,<br/>build the reply"]
#     A -- "sendall()" --> X["close()"]
#     X -- "next client" --> L
# ```
#
# The **listening socket** is bound to a port and only waits. `accept()` blocks until a
# client connects, then returns a new socket for that one connection; the listening socket
# stays as it was, ready for the next client.
#
# Here is that loop as a function. It takes the listening socket, the app to call for each
# connection, a log to write to (so it never has to print) and a `stopping` flag. Each
# connection gets a timeout and is closed when the app is done, whatever happens. An
# exception in the app is written to the log, and the loop moves on to the next client.

# %%
def serve_forever(sock, app, log, stopping):
    while True:
        conn, (host, port) = sock.accept()     # wait for the next client
        if stopping.is_set():
            conn.close()
            return
        with conn:                             # close the connection afterwards, always
            conn.settimeout(2.0)               # never wait longer than 2 s for a client
            try:
                app(conn)
                log.info(f"answered {host}:{port}")
            except Exception as error:
                log.error(f"{host}:{port} {type(error).__name__}: {error}", error)

# %% [markdown]
# To run the loop from a notebook, put it in a background thread so the cell returns at
# once. `barelab.serve` can drive any server class that has a `start()` and a `stop()`
# method; subclassing barelab's `Engine` is the easy way to get one. barelab binds the
# listening socket and hands it in as `self.sock`, along with the app as `self.app` and a
# log as `self.log`. The class attribute `kind` is only a label that barelab shows next to
# the server. Its own servers say `wsgi` or `asgi`; this app gets a bare socket, so say that.
#
# Stopping is the tricky part. `accept()` blocks until someone connects, so setting the
# `stopping` flag is not enough: the loop would only notice it after the next visitor. So
# `stop()` sets the flag and then **knocks on its own door**: it connects to its own port.
# `accept()` returns, the loop sees the flag, and the thread ends at once. Nothing polls.
#
# The last two lines of the cell start the server. `server=RawServer` tells barelab to use
# your loop instead of its own.

# %%
from barelab.engines.base import Engine

class RawServer(Engine):
    kind = "socket"  # its app gets a bare socket: neither WSGI nor ASGI

    def start(self):
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=serve_forever, daemon=True,
                                       args=(self.sock, self.app, self.log, self.stopping))
        self.thread.start()

    def stop(self, timeout=2.0):
        self.stopping.set()
        socket.create_connection(self.sock.getsockname(), timeout=1.0).close()  # knock
        self.thread.join(timeout)
        self.sock.close()

server = barelab.serve(raw_app, server=RawServer)
server

# %% [markdown]
# Click the link: your browser gets "Hello, world!". The label `(socket)` is the `kind` you
# gave `RawServer`.
#
# Three small details in `RawServer` matter. `daemon=True` means a thread you forgot about
# cannot keep Python running when the kernel shuts down. `join(timeout)` waits for the thread
# to end, but never longer than `timeout`, so even a stuck loop cannot hang `stop()`. And the
# knock has a timeout of its own, like every socket operation in this chapter.
#
# Now ask with `curl`, first the JSON route with its query string. `-i` shows the response
# head too, and `-m 5` gives curl five seconds at most, so a server that never answers
# cannot freeze the cell.

# %%
# !curl -s -i -m 5 "{server.url}add?a=2&b=3"

# %% [markdown]
# The same bytes you read from the socket pair, now over a real TCP connection. Then the
# HTML page, with and without a name. Without `-i`, curl shows only the body.

# %%
# !curl -s -m 5 "{server.url}"; echo; curl -s -m 5 "{server.url}?name=Ada"

# %% [markdown]
# A form post (the body `name=Ada`, as a browser sends it), and a path that does not exist.
# `barelab.http_request` is a small HTTP client for cells; it always has a timeout.

# %%
form = {"Content-Type": "application/x-www-form-urlencoded"}
print(barelab.http_request(server, "POST", "/", headers=form, body="name=Ada").text)
print(barelab.http_request(server, path="/nope").status_line)

# %% [markdown]
# And the server's log. The first line is barelab announcing the server. After it comes one
# line per connection your loop answered: five requests, five lines. The number after
# `127.0.0.1:` is the client's port. The client's operating system picks a fresh one for each
# connection, and that is how the server tells connections apart.

# %%
server.log

# %% [markdown]
# It works. curl is happy, your browser is happy, and the code fits on one screen. Most
# tutorials stop right here.
#
# ## Six ways to break it
#
# Every line of `raw_app` assumes something the network never promised. Below you send it
# bytes that are perfectly valid HTTP, or just realistic, and watch what happens. You need
# one more tool: a client that sends a request **in pieces**, pausing between them, the way
# a slow network delivers it.

# %%
def send_in_pieces(server, *pieces, pause=0.2):
    """Send each piece separately, `pause` seconds apart; return the reply bytes."""
    reply = b""
    with socket.create_connection((server.host, server.port), timeout=2.0) as sock:
        for piece in pieces:
            sock.sendall(piece)
            time.sleep(pause)
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except ConnectionResetError:
            pass                        # the server hung up hard; keep what arrived
    return barelab.show_bytes(reply)

send_in_pieces(server, b"GET /add?a=1&b=1 HTTP/1.1\r\nHost: x\r\n\r\n")

# %% [markdown]
# In one piece, that is an ordinary request and an ordinary answer.
#
# The `pause` is what makes the pieces real. Without it, they leave so close together that
# they would probably arrive as one and `recv()` would never notice the cut. With it, each
# piece travels on its own, as it can on a real network.
#
# ### 1. A request split in two
#
# TCP carries a stream of bytes, not a series of messages. A client may write its request
# in several calls, and the network may cut it anywhere. `recv(4096)` returns whatever has
# arrived *so far*: at least one byte, at most 4096. Cut the request line in the middle of
# the query string:

# %%
send_in_pieces(server, b"GET /add?a=1", b"&b=1 HTTP/1.1\r\nHost: x\r\n\r\n")

# %% [markdown]
# Nothing came back at all: no status, no error page, only a closed connection. The reason
# is in the server's log. `raw_app` read `GET /add?a=1`, took it for the whole request, and
# crashed looking for `b`:

# %%
print(server.log.errors[-1].message)

# %% [markdown]
# Cut inside the path instead, and you get something worse than a crash: a wrong answer,
# for a path the client never asked for.

# %%
send_in_pieces(server, b"GET /ad", b"d?a=1&b=1 HTTP/1.1\r\nHost: x\r\n\r\n")

# %% [markdown]
# A 404 for `/ad`. The fix is to keep reading until the blank line that ends the head (RFC
# 9112 §2.1). Chapter 02 builds exactly that, and exercise 2 below asks you for it.
#
# Time to start the bill. `tick(job, how)` writes one break into the "broken here" column
# of the checklist and says which chapters build the fix.

# %%
def tick(job, how):
    if how not in broken.setdefault(job, []):
        broken[job].append(how)
    chapters = JOBS[job][1]
    print(f"☑ {job}: {how} (chapter{'s' if ',' in chapters else ''} {chapters})")

tick("Reading the request", "a split request line: a crash, or a 404 for /ad")

# %% [markdown]
# ### 2. A body that arrives after the headers
#
# A form post sends the head, then the body. Clients often write them separately, and a
# slow link can deliver them far apart. The head even says how much body is coming:
# `Content-Length: 8`, the eight bytes of `name=Ada`.

# %%
send_in_pieces(server, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n", b"name=Ada")

# %% [markdown]
# "Hello, world!" instead of "Hello, Ada!". `raw_app` got the head, found no body after
# it, and answered before the body arrived. The head told it eight more bytes were on the
# way, but it never read `Content-Length` at all. A server must read exactly that many bytes
# after the head (RFC 9112 §6.2).

# %%
tick("Reading the request", "a late body ignored: Content-Length never read")

# %% [markdown]
# ### 3. A header that is too big
#
# HTTP sets no limit on the size of a header section (RFC 9110 §5.4); each server picks
# its own. Real headers can be large: a few cookies and a long `Authorization` token easily
# pass 4 KiB. Send a GET with a 10,000-byte `Cookie` header. This time use
# `barelab.raw_exchange`, which sends exactly the bytes you give it and records what comes
# back, and how the connection ended:

# %%
request = b"GET /?name=Ada HTTP/1.1\r\nHost: x\r\nCookie: id=" + b"a" * 10_000 + b"\r\n\r\n"
exchange = barelab.raw_exchange(server, request)
print(len(request), "bytes sent")
print(exchange.received.split(b"\r\n")[0])
print(exchange.ending)

# %% [markdown]
# The answer came back, and then the connection was **reset**. `raw_app` read the first
# 4096 bytes, answered and closed the socket with some 6,000 bytes still unread. A TCP that
# closes with unread data sends a reset, to say "data was lost" (RFC 1122 §4.2.2.13).
#
# Here the response arrived before the reset did. Nothing guarantees that: a reset can
# wipe the response out of the client's buffer before the client reads it, and the client
# then sees an error instead of an answer. RFC 9112 §9.6 describes exactly this trap.
#
# A real server reads the whole head, up to a limit it chooses, and answers
# `431 Request Header Fields Too Large` (RFC 6585 §5) when a client goes past it. Without
# such a limit, a client could send a gigabyte of "header" and the server would keep
# storing it.

# %%
tick("Timeouts and limits", "a 10,000-byte header cut at 4,096 bytes, then a reset")

# %% [markdown]
# ### 4. A client that says nothing
#
# Open a connection and send nothing at all. `raw_exchange` waits one second for an answer
# and then gives up:

# %%
barelab.raw_exchange(server, b"", timeout=1.0)

# %% [markdown]
# No answer, because the server is still inside `recv()`, waiting for a request. When your
# client gave up and hung up, `recv()` returned `b""`, the end of the stream. `raw_app`
# crashed on that: splitting an empty first line gives one piece, not the method and target
# it unpacks. You will see that crash in the log in a moment.
#
# But what if the client never hangs up? Open a silent connection, keep it open, and time
# an ordinary request that arrives behind it:

# %%
with socket.create_connection((server.host, server.port), timeout=3.0):  # connect, say nothing
    start = time.perf_counter()
    reply = barelab.http_request(server, path="/add?a=1&b=1")
    print(f"{reply.status} after {time.perf_counter() - start:.1f} s")
for entry in server.log.errors[-2:]:
    print(entry.message)

# %% [markdown]
# The ordinary request waited two seconds for its turn. Two seconds is the
# `conn.settimeout(2.0)` in `serve_forever`. The log shows both silent clients: the first one
# that hung up (the `ValueError`) and the one that never spoke (the `TimeoutError`).
#
# Delete that `settimeout` line and the wait is **forever**. `recv()` would block until the
# silent client left, and no one else would get in. `server.stop()` would give up on the
# thread after its own timeout and return, but the thread would stay stuck inside `recv()`.
# That is why the line is there, and why every wait in barelab has a timeout.

# %%
tick("Timeouts and limits", "a silent client holds the server: 2 s, or forever")

# %% [markdown]
# ### 5. One slow client, and everyone behind it
#
# `RawServer` handles one connection at a time. First, time an ordinary request on an idle
# server:

# %%
start = time.perf_counter()
barelab.http_request(server, path="/add?a=1&b=1")
alone = time.perf_counter() - start
print(f"alone: {alone:.4f} s")

# %% [markdown]
# Now a slow client, in a thread of its own: it connects, then takes one second before it
# sends its request, like a phone on a bad network. While it dawdles, time the same ordinary
# request again.

# %%
def slow_client():
    with socket.create_connection((server.host, server.port), timeout=3.0) as sock:
        time.sleep(1.0)                      # connected, but thinking
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.recv(65536)

slow = threading.Thread(target=slow_client, daemon=True)
slow.start()
time.sleep(0.1)                              # let the slow client connect first
start = time.perf_counter()
barelab.http_request(server, path="/add?a=1&b=1")
behind = time.perf_counter() - start
slow.join(timeout=3.0)
print(f"alone: {alone:.4f} s, behind a slow client: {behind:.2f} s")

# %% [markdown]
# The request was ready in no time and waited about a second anyway, doing nothing, because
# the only thread was busy waiting for someone else. A thousand visitors on slow phones
# would make that a very long queue.
#
# Real servers handle many connections at once: a thread per connection (chapter 06) or an
# event loop (chapter 13). Chapter 10 measures what each one costs.

# %%
tick("Keep-alive and concurrency", "one slow client delays everyone")

# %% [markdown]
# ### 6. A handler that crashes
#
# Ask `/add` to add a word:

# %%
barelab.raw_exchange(server, b"GET /add?a=2&b=three HTTP/1.1\r\nHost: x\r\n\r\n")

# %% [markdown]
# No status, no headers, no body, only a closed connection. A browser would show "empty
# response" or "connection closed", and the person using it would have no idea what went
# wrong. The error only reached the server's log:

# %%
print(server.log.errors[-1].message)

# %% [markdown]
# A real server catches the exception and answers `500 Internal Server Error`, as long as
# it has not sent the headers yet (chapter 06). A framework goes further: it turns
# `int("three")` into a `400 Bad Request` with a readable page, and never shows the
# traceback to the client (chapters 09 and 18).

# %%
tick("Error pages", "a crash in a handler: no response at all")
tick("Status codes", "no 400 for b=three, no 431 for a huge header")

# %% [markdown]
# ### Bonus 1: the method is ignored
#
# `raw_app` looks at the method only to decide where the form data is. Any other method
# gets the GET answer, even one that means "delete this":

# %%
reply = barelab.http_request(server, "DELETE", "/add?a=1&b=2")
print(reply.status_line, reply.text)

# %% [markdown]
# A `200 OK`, as if deleting a sum made sense. A router knows which methods each route
# accepts, and answers anything else with `405 Method Not Allowed` plus an `Allow` header
# that lists the methods it does accept (RFC 9110 §15.5.6). In Flask that is the `methods=`
# list of `@app.route`.

# %%
tick("Routing", "the method ignored: DELETE /add answers 200")

# %% [markdown]
# ### Bonus 2: a query string is not plain text
#
# Spaces and other special characters in a URL are percent-encoded: a space travels as
# `%20`. `raw_app` never decodes them:

# %%
# !curl -s -m 5 "{server.url}?name=Ada%20Lovelace"

# %% [markdown]
# And once you decode the name, a second problem shows. `raw_app` pastes it straight into
# HTML, so a name like `<script>…</script>` would become a script running on the page.
# Escaping output (`html.escape`, or the template engines that frameworks ship, which escape
# by default) is one more job.

# %%
tick("Request parsing", "%20 not decoded; the name pasted into HTML unescaped")

# %% [markdown]
# ## The bill
#
# Here is the checklist again, with the breaks filled in:

# %%
checklist()

# %% [markdown]
# Each fix on its own is small: a loop around `recv()`, a `try`/`except`, a thread. Put
# them all together and you have written a server and a framework. That is the point of
# the split you met in chapter 01.
#
# - The **server** fixes the network problems once, for every app: reading whole
#   requests, limits, timeouts, concurrency, keep-alive.
# - The **framework** fixes the app problems once, for every handler: routing, parsing,
#   error pages, responses.
# - **WSGI and ASGI** are the line between the two, so any server can run any framework.
#
# Some rows are still empty. This app never reads a header or a cookie, never serves a file,
# never compresses and never streams, so it cannot break those jobs yet. Response
# serialization is empty only because `raw_app` happens to count bytes, not characters;
# exercise 3 shows how easily that one goes wrong.
#
# The rest of the course builds both halves, one row of this table at a time.

# %% [markdown]
# ## Summary
#
# - A framework and its server do a long list of jobs between the socket and your handler.
#   The checklist above names them and the chapters that build them.
# - You can serve HTTP from a plain `socket` loop: `accept()`, `recv()`, `sendall()`,
#   `close()`. A background thread keeps the kernel free, and a flag plus a knock on the
#   server's own port stops it at once.
# - **TCP delivers a stream, not messages.** One `recv()` can hold part of a request, or a
#   head without its body. A server reads until the blank line, then exactly
#   `Content-Length` bytes.
# - Every wait needs a timeout and every read needs a limit, or a single client can stall
#   or flood the server.
# - One thread with one connection at a time means one slow client delays everyone.
# - An exception in a handler must become a `500` response, not a silently closed
#   connection.
# - The app side has traps of its own: the method decides the route (or a `405`), query
#   strings are percent-decoded, and anything pasted into HTML is escaped.

# %% [markdown]
# ## Exercises
#
# Each exercise has a cell for your answer and a check cell below it. Run the check cell:
# it prints ✅ when your answer works and says what is wrong when it does not.
#
# ### Exercise 1 — add a route
#
# Write `raw_app_v2(conn)`: everything `raw_app` does, plus `GET /ping`, which answers
# `200 OK` with the `text/plain` body `pong`.
#
# You can copy `raw_app` and add a branch. Notice how much you copy to add two lines: with
# no framework, routing is welded to the socket code. (There is a shorter way, too.
# `conn.recv(4096, socket.MSG_PEEK)` looks at the waiting bytes without taking them, so
# `raw_app` can still read them afterwards.)

# %% tags=["solution"]
def raw_app_v2(conn):
    ### BEGIN SOLUTION
    first = conn.recv(4096, socket.MSG_PEEK)     # look, but leave the bytes for raw_app
    if first.startswith(b"GET /ping "):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n"
                     b"Connection: close\r\n\r\npong")
    else:
        raw_app(conn)
    ### END SOLUTION

# %% tags=["check"]
from barelab.exercises import check

with check("Exercise 1"):
    with barelab.serve(raw_app_v2, server=RawServer) as v2:
        ping = barelab.http_request(v2, path="/ping")
        add = barelab.http_request(v2, path="/add?a=20&b=22")
    assert ping.status == 200, f"GET /ping answered {ping.status}, expected 200"
    assert ping.body == b"pong", f"GET /ping answered {ping.body!r}, expected b'pong'"
    assert add.json() == {"sum": 42}, f"/add stopped working: it answered {add.body!r}"

# %% [markdown]
# ### Exercise 2 — read until the blank line
#
# Write `read_head(conn, limit=16384)`. It calls `conn.recv()` again and again until the
# bytes received so far contain the blank line `b"\r\n\r\n"`, then returns all of them.
# If the client closes the connection first, or more than `limit` bytes arrive with no
# blank line, raise `ValueError`.
#
# To test it you need a socket on which bytes arrive in pieces. `socket_receiving` makes
# one from a `socket.socketpair()`: a background thread writes the pieces into the other
# end, 50 ms apart. One `recv()` on it shows the problem you are solving:

# %%
import contextlib

def socket_receiving(*pieces):
    """A socket on which `pieces` arrive 50 ms apart; then the other end closes."""
    sender, receiver = socket.socketpair()
    receiver.settimeout(2.0)
    def send():
        with sender, contextlib.suppress(OSError):
            for piece in pieces:
                time.sleep(0.05)
                sender.sendall(piece)
    threading.Thread(target=send, daemon=True).start()
    return receiver

with socket_receiving(b"GET / HTTP/1.1\r\n", b"Host: x\r\n\r\n") as conn:
    print(conn.recv(4096))

# %% tags=["solution"]
def read_head(conn, limit=16384):
    ### BEGIN SOLUTION
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > limit:
            raise ValueError(f"no blank line in the first {limit} bytes")
        chunk = conn.recv(4096)
        if not chunk:
            raise ValueError("the client closed the connection before the head ended")
        data += chunk
    return data
    ### END SOLUTION

# %% tags=["check"]
with check("Exercise 2"):
    with socket_receiving(b"GET /ad", b"d?a=1 HTTP/1.1\r\nHost: x\r\n", b"\r\n") as conn:
        head = read_head(conn)
    assert head == b"GET /add?a=1 HTTP/1.1\r\nHost: x\r\n\r\n", f"read_head returned {head!r}"
    with socket_receiving(b"x" * 20_000) as conn:
        try:
            read_head(conn)
        except ValueError:
            pass
        else:
            raise AssertionError("20,000 bytes with no blank line should raise ValueError")

# %% [markdown]
# ### Exercise 3 — Content-Length for a UTF-8 body
#
# A common bug in hand-written servers:
#
# ```python
# f"Content-Length: {len(text)}\r\n\r\n{text}".encode()
# ```
#
# `len(text)` counts **characters**, but `Content-Length` counts **bytes** (RFC 9110
# §8.6). For `"Grüße"` that is 5 characters and 7 bytes, so the client stops reading two
# bytes early. Write `http_response(status, content_type, text)`, which returns the
# complete response as bytes, with the body encoded as UTF-8 and a correct
# `Content-Length`.

# %% tags=["solution"]
def http_response(status, content_type, text):
    ### BEGIN SOLUTION
    payload = text.encode("utf-8")
    head = (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n")
    return head.encode("latin-1") + payload
    ### END SOLUTION

# %% tags=["check"]
with check("Exercise 3"):
    reply = http_response("200 OK", "text/plain; charset=utf-8", "Grüße")
    print(reply)
    assert isinstance(reply, bytes), f"return bytes, not {type(reply).__name__}"
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n"), f"the head starts {head[:20]!r}"
    assert body == "Grüße".encode("utf-8"), f"the body is {body!r}, expected the UTF-8 bytes"
    assert b"\r\nContent-Length: 7" in head, "Content-Length must be 7: bytes, not characters"

# %% [markdown]
# ## Clean up
#
# Stop every server this chapter started. The number is how many were still running.

# %%
barelab.stop_all()
