# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 15. WebSockets
#
# HTTP answers questions; a chat, a live dashboard or a multiplayer game needs the server to
# speak first. A WebSocket starts as an HTTP request and turns the same TCP connection into a
# two-way pipe of messages. In this chapter you do the handshake by hand, read a frame bit by
# bit, teach chapter 13's server the ASGI WebSocket events, and build a chat server that one
# slow client cannot stall.
#
# ## Learning goals
#
# By the end of this chapter you can:
#
# - compute `Sec-WebSocket-Accept` from `Sec-WebSocket-Key` (RFC 6455 §4.2.2), check it
#   against the RFC's own example, and refuse a broken handshake with the right status;
# - decode a WebSocket frame by hand (FIN, opcode, mask, length, the XOR mask), then let
#   wsproto do the framing, fragmentation and UTF-8 checks;
# - drive every ASGI WebSocket event on your own server: `websocket.connect`, `accept`,
#   `receive`, `send`, `close`, `disconnect`, and the close codes 1000, 1001, 1002, 1007,
#   1009 and 1011, with a close before accept answered by HTTP 403;
# - refuse a handshake from another site with an Origin check, and say what cross-site
#   WebSocket hijacking is;
# - write a chat server with one queue per client, so a client that never reads is
#   disconnected instead of stalling everyone else, and measure it.

# %% [markdown]
# ## One request, then a pipe
#
# A WebSocket connection begins as an ordinary HTTP/1.1 `GET` that asks to *upgrade*. If the
# server agrees, it answers `101 Switching Protocols`, and from the next byte on, neither side
# speaks HTTP any more: both send *frames*, whenever they like, in both directions, until one
# of them sends a Close frame.
#
# ```mermaid
# sequenceDiagram
#     participant B as browser
#     participant S as server
#     B->>S: GET /chat HTTP/1.1<br/>Upgrade: websocket<br/>Sec-WebSocket-Key: ...
#     S->>B: HTTP/1.1 101 Switching Protocols<br/>Sec-WebSocket-Accept: ...
#     Note over B,S: from here on: frames, not HTTP
#     B->>S: text frame "hi"
#     S->>B: text frame "bob: hello"
#     S->>B: text frame "* carol joined"
#     B->>S: close frame 1000
#     S->>B: close frame 1000
# ```
#
# Two protocols share one socket, so the chapter has two halves: the handshake (HTTP, which
# you already parse) and the frames (new, and handled by wsproto after one look by hand).
# Start with the imports: barelab, chapter 13's server, and wsproto's frame-level connection.

# %%
import asyncio
import base64
import hashlib
import socket
import time

import barelab
from barelab.built.asgi_server import ASGIServer
from barelab.display import show_bytes, show_transcript
from wsproto.connection import Connection as FrameConnection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage

barelab.websocket_connect

# %% [markdown]
# `barelab.websocket_connect(server, path)` is the client you will use from cells: it does
# the handshake, then gives you `send_text`, `send_bytes`, `receive(timeout)`, `ping`,
# `close` and a `transcript` of everything that crossed the wire.
#
# ## Trap zero: a server that does not know WebSocket
#
# Here is the smallest WebSocket app: accept, then echo every message back, text as text and
# bytes as bytes, until the client leaves. Notice the events: the app *receives*
# `websocket.connect`, *sends* `websocket.accept`, then loops on `websocket.receive`.

# %%
async def echo(scope, receive, send):
    assert scope["type"] == "websocket", f"echo is a WebSocket app, got a {scope['type']} scope"
    await receive()                                   # {"type": "websocket.connect"}
    await send({"type": "websocket.accept"})
    while (message := await receive())["type"] == "websocket.receive":
        await send({**message, "type": "websocket.send"})

# %% [markdown]
# Serve it on chapter 13's `ASGIServer` and try to connect. That server knows nothing about
# upgrades: it reads the handshake as a plain `GET`, builds an `http` scope, and calls the app
# with it.

# %%
old = barelab.serve(echo, name="old", server=ASGIServer)
try:
    barelab.websocket_connect(old, "/echo")
except barelab.client.WebSocketRejected as refused:
    print(refused)
print(old.log.errors[-1].details.strip().splitlines()[-1])

# %% [markdown]
# The app's assertion failed on the `http` scope, and the server did the right thing for an
# HTTP app that crashes: a 500. To get further, the server must notice the upgrade, answer
# the handshake, and speak frames. Stop the old server; the rest of the chapter builds the
# new one.

# %%
old.stop()

# %% [markdown]
# ## The opening handshake, by hand
#
# Everything this chapter builds goes into one module, `barelab/built/websocket.py`:

# %%
#| default_exp websocket

# %% [markdown]
# The module opens with a short comment on its design, so that whoever opens
# `websocket.py` later finds the map before the code. Read it now as the plan for this
# chapter: three layers (handshake, frames, ASGI events) and one new server class. The
# standard-library imports come with it.

# %%
#| export
# WebSocket (RFC 6455) for the course's ASGI server. The opening handshake is HTTP, so it is
# checked and answered here, by hand, with chapter 02's formatter. After the 101 the bytes
# are frames: wsproto's frame-level Connection turns them into events and events into bytes.
# A WebSocketCycle is the receive and send of one ASGI websocket scope; a reader task feeds
# it frames, answers pings and finishes closing handshakes. WebSocketASGIServer is chapter
# 13's ASGIServer whose connections hand an upgrade request to a cycle instead of an Exchange.
import asyncio
import base64
import binascii
import hashlib
import time
from collections import deque
from contextlib import ExitStack
from urllib.parse import parse_qs, unquote_to_bytes, urlsplit

# %% [markdown]
# The rest of the imports are the parts this chapter stands on. From wsproto it takes only
# the frame layer, not its handshake code: you write the handshake yourself. From chapter 13
# it takes the server, its `Connection` (one TCP connection) and a few helpers; from
# chapter 02, the `HTTPError` family and the response formatters.

# %%
#| export
from wsproto.connection import Connection as FrameConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Message, Ping, TextMessage

from barelab.built.asgi_server import (ASGI_VERSION, ASGIServer, ClientDisconnected,
                                       Connection, http_date, split_target)
from barelab.built.http_wire import (BadRequest, HTTPError, format_response,
                                     format_response_head)

# %% [markdown]
# What does a browser send to open a WebSocket? Here is the example request from RFC 6455
# §1.2, with the RFC's own key. Two optional fields (`Origin` and `Sec-WebSocket-Protocol`)
# are left out for now; both come back later in the chapter. Later you will also send
# exactly these bytes to your server with `raw_exchange`:

# %%
HANDSHAKE = (b"GET /chat HTTP/1.1\r\n"
             b"Host: server.example.com\r\n"
             b"Upgrade: websocket\r\n"
             b"Connection: Upgrade\r\n"
             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             b"Sec-WebSocket-Version: 13\r\n\r\n")
show_bytes(HANDSHAKE)

# %% [markdown]
# Four lines matter. `Upgrade: websocket` names the protocol to switch to, and
# `Connection: Upgrade` says that `Upgrade` is meant for this hop (RFC 9110 §7.8).
# `Sec-WebSocket-Version: 13` is the only version there is. `Sec-WebSocket-Key` is 16 random
# bytes, base64-encoded; the server must prove it read them.
#
# The proof is `Sec-WebSocket-Accept`: append the fixed GUID `258EAFA5-E914-47DA-95CA-
# C5AB0DC85B11` to the key, hash with SHA-1, and base64 the 20-byte digest (§4.2.2, point
# 5.4). It is not security. It shows the answer came from a server that understood
# WebSocket, not from a cache or an HTTP server that echoes headers back.
#
# Do it once by hand, one step per line. The key is used as it was sent, base64 text and
# all; it is not decoded first. Watch the middle value: the key and the GUID simply glued
# together.

# %%
joined = b"dGhlIHNhbXBsZSBub25jZQ==" + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
digest = hashlib.sha1(joined).digest()
joined, digest.hex(" "), len(digest)

# %% [markdown]
# SHA-1 gives 20 raw bytes, which cannot travel in a header as they are. Base64 turns them
# into 28 characters of text, and that text is the whole answer:

# %%
base64.b64encode(digest)

# %% [markdown]
# The same three steps as a function for the module. It takes the key as `bytes` (what the
# server's parser hands over) or as `str` (handier in a cell), and returns a `str`:

# %%
#| export
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"   # RFC 6455 §1.3: the same for every server

def accept_key(key: bytes | str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (RFC 6455 §4.2.2, point 5.4)."""
    if isinstance(key, str):
        key = key.encode("ascii")
    return base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode("ascii")

# %% [markdown]
# RFC 6455 §1.3 works the same example through and prints the answer, so you can hold your
# function against it. `True` means your server and every browser agree:

# %%
accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

# %% [markdown]
# The key itself is not random-looking text of any length: it is the base64 of exactly 16
# bytes (§4.1, point 7), and a server should check that. Decode the RFC's key and see what
# its authors hid in it:

# %%
nonce = base64.b64decode("dGhlIHNhbXBsZSBub25jZQ==")
nonce, len(nonce)

# %% [markdown]
# "the sample nonce": exactly 16 bytes. A real client picks them at random for each
# connection, so two handshakes never carry the same key, and a cache that saw an old
# answer cannot replay it for a new one.
#
# ### Which requests are handshakes
#
# A server first has to decide whether a request asks for a WebSocket at all. Header values
# here are comma-separated lists of case-insensitive tokens (`Connection: keep-alive,
# Upgrade` is common), so `tokens` splits them. A request is a handshake attempt when its
# `Upgrade` names `websocket`; an HTTP/1.0 request never is, because RFC 9110 §7.8 says a
# server MUST ignore `Upgrade` in one.

# %%
#| export
def tokens(headers, name: bytes) -> list[bytes]:
    """The comma-separated tokens of every ``name`` field, lower-cased, in order."""
    joined = b",".join(value for field, value in headers if field == name)
    return [token.strip().lower() for token in joined.split(b",") if token.strip()]

def wants_websocket(head) -> bool:
    """Does this request ask to switch to WebSocket (RFC 6455 §4.1, RFC 9110 §7.8)?"""
    return head.version == b"1.1" and b"websocket" in tokens(head.headers, b"upgrade")

# %% [markdown]
# Chapter 13's `read_head` turns bytes into the `Head` the server works with. Its three
# numbers are chapter 13's limits (longest request line, largest head, largest body), and
# `[0]` keeps the head and drops the rest of the buffer. Parse the RFC's example and ask
# both questions:

# %%
from barelab.built.asgi_server import read_head

def head_of(data):
    return read_head(bytearray(data), 8190, 16384, 1 << 20)[0]

example = head_of(HANDSHAKE)
wants_websocket(example), tokens(example.headers, b"connection")

# %% [markdown]
# `True`, and the `Connection` field reduced to its lower-cased token, `b"upgrade"`. A
# browser that sent `Connection: keep-alive, Upgrade` would give two tokens, and the check
# for `upgrade` among them would still pass.
#
# ### Checking the handshake
#
# RFC 6455 §4.2.1 lists what a server must find in the handshake; §4.2.2 says what to do when
# something is missing: answer with an HTTP error and do not switch. One case has its own
# status: an unknown version gets `426 Upgrade Required` with a `Sec-WebSocket-Version`
# field listing the versions the server speaks (§4.4). RFC 9110 §15.5.22 adds that a 426
# MUST carry an `Upgrade` field. The class carries those fields with it:

# %%
#| export
class UpgradeRequired(HTTPError):
    """A WebSocket version this server does not speak: 426 and the one it does."""
    status = 426                                            # RFC 9110 §15.5.22
    headers = [(b"Upgrade", b"websocket"), (b"Sec-WebSocket-Version", b"13")]

# %% [markdown]
# `check_handshake` walks the list. Each refusal names the rule it enforces, so the client
# (and you, reading the log) learn what was wrong. It returns the key and the subprotocols the
# client offered (more on those later). It expects the `Head` that chapter 13's parser makes:
# `method` as a string, `version` as bytes, `headers` as lower-cased `(name, value)` byte
# pairs, and `length`, the body length the head announced.

# %%
#| export
def _key_is_valid(keys: list[bytes]) -> bool:
    """Exactly one key, and it is the base64 of 16 bytes (RFC 6455 §4.1, point 7)."""
    try:
        return len(keys) == 1 and len(base64.b64decode(keys[0], validate=True)) == 16
    except (binascii.Error, ValueError):
        return False

def tokens_as_sent(headers, name: bytes) -> list[str]:
    """Like ``tokens``, keeping case: subprotocol names are case-sensitive (RFC 6455 §4.1)."""
    joined = b",".join(value for field, value in headers if field == name)
    return [t.strip().decode("latin-1") for t in joined.split(b",") if t.strip()]

# %% [markdown]
# Two small helpers first. `_key_is_valid` decodes the key strictly: `validate=True`
# refuses characters outside the base64 alphabet, and a missing `=` padding is an error
# too. Here is the RFC's key, then the same key with its padding cut off:

# %%
_key_is_valid([b"dGhlIHNhbXBsZSBub25jZQ=="]), _key_is_valid([b"dGhlIHNhbXBsZSBub25jZQ"])

# %% [markdown]
# `tokens_as_sent` lists the subprotocols the client offered. Unlike `tokens`, it keeps
# their case, because subprotocol names are compared exactly (RFC 7936 clarified this for
# RFC 6455): `Chat.V1` and `chat.v1` are two different names.

# %%
tokens_as_sent([(b"sec-websocket-protocol", b"chat.v2, Chat.V1")], b"sec-websocket-protocol")

# %% [markdown]
# Then the checks themselves, in the order of the RFC's list, in two groups. The first
# group asks whether this is an upgrade request at all: a `GET`, with `Upgrade: websocket`
# and `Connection: Upgrade`, and no body. Each failure is a plain 400 with the rule in its
# message.

# %%
#| export
def _check_upgrade_request(head) -> None:
    """RFC 6455 §4.2.1, points 1-4: a GET, without a body, asking to upgrade to websocket."""
    if head.method != "GET":
        raise BadRequest(f"the opening handshake is a GET, not {head.method} (RFC 6455 §4.1)")
    if b"websocket" not in tokens(head.headers, b"upgrade"):
        raise BadRequest("Upgrade must name websocket (RFC 6455 §4.2.1, point 3)")
    if b"upgrade" not in tokens(head.headers, b"connection"):
        raise BadRequest("Connection must include Upgrade (RFC 6455 §4.2.1, point 4)")
    if head.length != 0:
        raise BadRequest("the opening handshake has no body (RFC 6455 §4.1)")

# %% [markdown]
# The second group checks the WebSocket fields and returns the key. A missing version is a
# plain 400: the client did not say which version it speaks, so there is nothing to
# negotiate. A version other than 13 is the 426, which tells the client which one to use.

# %%
#| export
def _check_version_and_key(head) -> bytes:
    """RFC 6455 §4.2.1, points 5-6: version 13 and exactly one well-formed key."""
    versions = [v for n, v in head.headers if n == b"sec-websocket-version"]
    if not versions:
        raise BadRequest("Sec-WebSocket-Version is missing (RFC 6455 §4.2.1, point 6)")
    if versions != [b"13"]:
        raise UpgradeRequired(f"Sec-WebSocket-Version must be 13, got "
                              f"{b', '.join(versions).decode('latin-1')} (RFC 6455 §4.4)")
    keys = [v for n, v in head.headers if n == b"sec-websocket-key"]
    if not _key_is_valid(keys):
        raise BadRequest("Sec-WebSocket-Key must be one base64 value of 16 bytes "
                         "(RFC 6455 §4.2.1, point 5)")
    return keys[0]

# %% [markdown]
# On the RFC's example the first group has nothing to say (`None`) and the second hands
# back the key; the broken requests further down show their errors.

# %%
_check_upgrade_request(example), _check_version_and_key(example)

# %% [markdown]
# `check_handshake` is the one the server calls: both groups, then the subprotocols the
# client offered, for the app to choose from.

# %%
#| export
def check_handshake(head) -> tuple[bytes, list[str]]:
    """``(key, offered subprotocols)`` of a valid opening handshake (RFC 6455 §4.2.1), or an
    ``HTTPError`` carrying the status to refuse it with."""
    _check_upgrade_request(head)
    key = _check_version_and_key(head)
    return key, tokens_as_sent(head.headers, b"sec-websocket-protocol")

# %% [markdown]
# The RFC's example passes, and gives back its key and an empty list (it offers no
# subprotocol):

# %%
check_handshake(example)

# %% [markdown]
# Now break it, one rule at a time. `broken` returns a copy of the example with one piece
# of its bytes replaced, and `cases` names five broken handshakes you will reuse against the
# real server later:

# %%
def broken(old: bytes, new: bytes) -> bytes:
    assert old in HANDSHAKE, old
    return HANDSHAKE.replace(old, new)

cases = {
    "POST instead of GET": broken(b"GET", b"POST"),
    "no Connection: Upgrade": broken(b"Connection: Upgrade", b"Connection: keep-alive"),
    "version 8": broken(b"Version: 13", b"Version: 8"),
    "no key": broken(b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", b""),
    "key of 15 bytes": broken(b"dGhlIHNhbXBsZSBub25jZQ==", base64.b64encode(b"x" * 15)),
}
print(cases["version 8"].decode())

# %% [markdown]
# There is the version-8 case, the same request with one digit changed. `verdict` parses
# each case and reports what `check_handshake` says, as a table:

# %%
def verdict(data):
    try:
        return f"ok: {check_handshake(head_of(data))}"
    except HTTPError as error:
        return f"{error.status}: {error.message}"

show_transcript([(name, verdict(data)) for name, data in cases.items()])

# %% [markdown]
# Each line names the rule it broke, and only the wrong version gets the 426. The missing
# key and the short key share a message, because the rule is the same: one key, 16 bytes.
#
# ### The answer
#
# When everything checks out, the answer is a head with no body: status 101, the two
# fields that confirm the switch, and the accept value. A subprotocol, if the app picked one,
# goes in `Sec-WebSocket-Protocol`; the app's own extra headers (a cookie, say) follow.

# %%
#| export
def handshake_response(key: bytes, subprotocol: str | None = None, headers=()) -> bytes:
    """The ``101 Switching Protocols`` head that accepts a WebSocket (RFC 6455 §4.2.2)."""
    fields = [(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"),
              (b"Sec-WebSocket-Accept", accept_key(key).encode("ascii"))]
    if subprotocol is not None:
        fields.append((b"Sec-WebSocket-Protocol", subprotocol.encode("ascii")))
    return format_response_head(101, fields + list(headers))

# %% [markdown]
# Here is the answer to the RFC's example, with no subprotocol and no extra headers. Check
# the accept value against the one the RFC prints:

# %%
print(handshake_response(b"dGhlIHNhbXBsZSBub25jZQ==").decode())

# %% [markdown]
# Three fields and the blank line that ends the head. The accept value is the one you
# computed by hand above. There is no `Content-Length` and no body: after this blank line,
# the next byte on the connection is already the start of a frame.
#
# A refusal is an ordinary HTTP response that closes the connection. It carries extra
# fields when the error has some, as `UpgradeRequired` does:

# %%
#| export
def refusal(status: int, message: str = "", headers=()) -> bytes:
    """An HTTP response that refuses a handshake; the connection closes after it."""
    body = (message + "\n").encode("utf-8") if message else b""
    fields = [(b"Content-Type", b"text/plain; charset=utf-8"), (b"Connection", b"close"),
              (b"Date", http_date()), *headers]
    return format_response(status, fields, body)

# %% [markdown]
# The 426 is the refusal with the most to say, so try that one. The fields come from the
# exception itself, the way the server will pass them:

# %%
error = UpgradeRequired("Sec-WebSocket-Version must be 13")
show_bytes(refusal(error.status, error.message, error.headers))

# %% [markdown]
# Read the last three fields: `Upgrade: websocket` because RFC 9110 requires it on a 426,
# `Sec-WebSocket-Version: 13` so the client knows what to retry with, and a
# `Content-Length` that chapter 02's formatter added. `Connection: close` tells the client
# not to send another request on this connection.

# %% [markdown]
# ## Frames on the wire
#
# After the 101, every message travels in *frames*. RFC 6455 §5.2 draws a frame like this
# (one row is 32 bits):
#
# ```
#  0                   1                   2                   3
#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
# +-+-+-+-+-------+-+-------------+-------------------------------+
# |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
# |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
# |N|V|V|V|       |S|             |   (if payload len==126/127)   |
# | |1|2|3|       |K|             |                               |
# +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
# |     Extended payload length continued, if payload len == 127  |
# + - - - - - - - - - - - - - - - +-------------------------------+
# |                               |Masking-key, if MASK set to 1  |
# +-------------------------------+-------------------------------+
# | Masking-key (continued)       |          Payload Data         |
# +-------------------------------- - - - - - - - - - - - - - - - +
# ```
#
# - **FIN**: this is the last frame of the message (a message may be split in fragments).
# - **opcode**: 0x1 text, 0x2 binary, 0x0 continuation of a fragmented message; 0x8 close,
#   0x9 ping, 0xA pong (the *control* frames, which are never fragmented).
# - **MASK** and the **masking key**: every frame from a client is masked with 4 random bytes,
#   XORed over the payload (§5.3); frames from a server are not.
# - **payload length**: 0–125 fits in 7 bits; 126 means "the next 2 bytes hold it", 127 "the
#   next 8".
#
# §5.7 gives the bytes of a masked text frame holding `Hello`: eleven bytes in all. Take
# them apart in the order the drawing reads, starting with the first byte. Printed in
# binary, its top bit is FIN and its low four bits are the opcode:

# %%
FRAME = bytes([0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58])
f"{FRAME[0]:08b}", FRAME[0] >> 7, FRAME[0] & 0x0F

# %% [markdown]
# `1000 0001`: FIN is 1, so this frame is a whole message, and the opcode is 1, text. The
# three zero bits between them (RSV1 to RSV3) are reserved for extensions such as
# compression; this server agrees to none, so they must stay zero.
#
# The second byte splits the same way: the top bit is MASK, the other seven the length.

# %%
f"{FRAME[1]:08b}", FRAME[1] >> 7, FRAME[1] & 0x7F

# %% [markdown]
# `1000 0101`: masked, and 5 bytes of payload. Five is below 126, so no extended length
# follows, and the next four bytes are the masking key. The last five bytes are the payload,
# each XORed with the key byte at position *i mod 4*. Undo the first one yourself:

# %%
key, payload = FRAME[2:6], FRAME[6:]
key.hex(" "), payload.hex(" "), chr(payload[0] ^ key[0])

# %% [markdown]
# `0x7f ^ 0x37` is `0x48`, an `H`. The same XOR over all five bytes gives the message back:

# %%
bytes(b ^ key[i % 4] for i, b in enumerate(payload))

# %% [markdown]
# Those steps, plus the two longer length forms (126 and 127), make a complete decoder for
# one frame. It is here to read, not to export: wsproto does this job for the server.

# %%
def decode_frame(data: bytes) -> dict:
    fin, opcode = data[0] >> 7, data[0] & 0x0F
    masked, length, at = data[1] >> 7, data[1] & 0x7F, 2
    if length in (126, 127):
        size = 2 if length == 126 else 8
        length, at = int.from_bytes(data[2:2 + size], "big"), 2 + size
    mask, at = (data[at:at + 4], at + 4) if masked else (b"\0\0\0\0", at)
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(data[at:at + length]))
    return {"FIN": fin, "opcode": hex(opcode), "MASK": masked, "length": length,
            "masking key": mask.hex(" "), "masked payload": data[at:at + length].hex(" "),
            "payload": payload}

decode_frame(FRAME)

# %% [markdown]
# The dictionary says what you just worked out by hand, in one call.
#
# Why mask at all? Not for secrecy: the key travels in the frame. Masking stops a script in a
# browser from choosing the exact bytes that go on the wire, so it cannot craft bytes that a
# confused proxy on the way would read as an HTTP request and cache (§10.3).
#
# ### Let wsproto do the framing
#
# Decoding one frame is easy. Doing it right for every frame is not: lengths split across
# reads, fragments interleaved with pings, UTF-8 characters cut between fragments, close
# codes to validate. wsproto does all that without touching a socket, like h11 does for HTTP:
# you feed it bytes and read events. Its `Connection` handles frames only; the handshake you
# just wrote yourself.

# %%
frames = FrameConnection(ConnectionType.SERVER)
frames.receive_data(FRAME)
list(frames.events())

# %% [markdown]
# The same `Hello`, as a `TextMessage` event. Sending goes the other way: an event in, bytes
# out. A server's frames are not masked, so the reply is the payload after a 2-byte header:

# %%
show_bytes(bytes(frames.send(TextMessage(data="Hello"))))

# %% [markdown]
# `\x81` is FIN and text again, and `\x05` is the length with the MASK bit clear: no key
# follows, and `Hello` goes out as plain bytes.
#
# A longer message shows the extended length. For 200 bytes the 7-bit field says 126
# (`0x7e`, which prints as `~`), and the real length follows in two bytes:

# %%
long_frame = bytes(frames.send(TextMessage(data="x" * 200)))
long_frame[:4], decode_frame(long_frame)["length"]

# %% [markdown]
# `\x00\xc8` is 200, read big-endian. A message of 65,536 bytes or more would put 127 in
# the field and the length in the next eight bytes.

# %% [markdown]
# §5.7 also shows a text message split in two fragments: `Hel` with opcode 1 and FIN clear,
# then `lo` with opcode 0 (continuation) and FIN set. The RFC's example is unmasked (server
# to client); a client must mask, so mask both here with the RFC's key:

# %%
def masked(first_byte: int, payload: bytes, key=bytes([0x37, 0xFA, 0x21, 0x3D])) -> bytes:
    data = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes([first_byte, 0x80 | len(payload)]) + key + data

fragments = masked(0x01, b"Hel") + masked(0x80, b"lo")
frames = FrameConnection(ConnectionType.SERVER)
frames.receive_data(fragments)
[(e.data, e.message_finished) for e in frames.events()]

# %% [markdown]
# Two events, and only the second has `message_finished=True`. wsproto hands over pieces as
# they come; putting them back together is the server's job, and ASGI wants whole messages.
#
# Now break the rules and let wsproto judge. A client frame without a mask, and a text frame
# whose bytes are not UTF-8 (`0xC3` starts a two-byte character that never finishes):

# %%
def verdict_of(data: bytes):
    frames = FrameConnection(ConnectionType.SERVER)
    frames.receive_data(data)
    return list(frames.events())

show_transcript([("unmasked frame", verdict_of(b"\x81\x05Hello")),
                 ("invalid UTF-8", verdict_of(masked(0x81, b"caf\xc3("))),
                 ("ping", verdict_of(masked(0x89, b"are you there?")))])

# %% [markdown]
# Broken frames come back as a `CloseConnection` event with the code to close with:
# **1002** (protocol error) and **1007** (data not consistent with the message type), from
# RFC 6455 §7.4.1. A ping comes back as a `Ping` event; the server must answer it with a
# pong carrying the same payload (§5.5.2), and `event.response()` builds that pong.
#
# ## The ASGI WebSocket events
#
# The ASGI spec's WebSocket part maps the connection onto the same `receive` and `send` you
# know from HTTP. One call of the app is one whole connection:
#
# | direction | message | when |
# | --- | --- | --- |
# | receive | `websocket.connect` | the handshake arrived; the app decides |
# | send | `websocket.accept` (`subprotocol`, `headers`) | yes: the server answers 101 |
# | send | `websocket.close` (`code`, `reason`) | no (before accept: HTTP 403), or close later |
# | send | `websocket.http.response.start` / `.body` | no, with a full HTTP response (an extension) |
# | receive | `websocket.receive` (`text` or `bytes`) | a whole message arrived |
# | send | `websocket.send` (`text` or `bytes`) | send a message |
# | receive | `websocket.disconnect` (`code`, `reason`) | the connection is over |
#
# ```mermaid
# sequenceDiagram
#     participant C as client
#     participant S as server
#     participant A as app
#     C->>S: GET + Upgrade: websocket
#     S->>A: app(scope, receive, send)
#     A->>S: receive()
#     S-->>A: websocket.connect
#     A->>S: send websocket.accept
#     S->>C: 101 Switching Protocols
#     C->>S: frames "Hel" + "lo"
#     S-->>A: websocket.receive text="Hello"
#     A->>S: send websocket.send text="Hello"
#     S->>C: frame "Hello"
#     C->>S: close frame 1000
#     S->>C: close frame 1000
#     S-->>A: websocket.disconnect code=1000
# ```
#
# `barelab.call_asgi` plays the server with a list of events, no network at all, so you can
# watch `echo` take its turns:

# %%
barelab.call_asgi(echo, "GET", "/echo", receive_events=[
    {"type": "websocket.connect"},
    {"type": "websocket.receive", "text": "Hello"},
    {"type": "websocket.receive", "bytes": b"\x00\x01"},
    {"type": "websocket.disconnect", "code": 1000}])

# %% [markdown]
# Read the arrows: `→ app` is what `receive()` returned, `app →` what the app passed to
# `send()`. Each `websocket.receive` is answered by one `websocket.send` with the same key,
# `text` or `bytes`, and the loop ends at `websocket.disconnect`. No frames, no sockets:
# the app only ever sees whole messages as dicts. The rest of this section builds the
# server side of that table.
#
# ### The scope
#
# A `websocket` scope looks like an `http` one without `method`, plus the subprotocols the
# client offered, and `scheme` is `ws`. `extensions` announces that this server supports
# `websocket.http.response`, the extension that lets an app refuse a handshake with a full
# HTTP response of its own.

# %%
#| export
def websocket_scope(head, client, server, state: dict, subprotocols: list[str]) -> dict:
    """The ``websocket`` connection scope of the ASGI WebSocket spec."""
    raw_path, query = split_target(head.method, head.target)
    return {"type": "websocket", "asgi": dict(ASGI_VERSION), "http_version": "1.1",
            "scheme": "ws", "path": unquote_to_bytes(raw_path).decode("utf-8", "replace"),
            "raw_path": raw_path, "query_string": query, "root_path": "",
            "headers": head.headers, "client": client, "server": server,
            "subprotocols": subprotocols, "state": dict(state),
            "extensions": {"websocket.http.response": {}}}

# %% [markdown]
# Build one for the RFC's handshake with a query string added, from a client that offered
# two subprotocols:

# %%
websocket_scope(head_of(broken(b"/chat", b"/chat?room=1")), ("127.0.0.1", 50000),
                ("127.0.0.1", 8000), {}, ["chat.v2", "chat.v1"])

# %% [markdown]
# Compare it with the `http` scopes of chapter 11. The path and query are split the same
# way, and the handshake's headers are all there, the key included, for an app that wants
# to look. What is new: `type` is `websocket`, `scheme` is `ws`, there is no `method` (it is
# always `GET`), and `subprotocols` lists what the client offered, in its order.
#
# ### One cycle per connection
#
# A `WebSocketCycle` is to a WebSocket what chapter 13's `Exchange` is to a request: it holds
# the connection's state and gives the app its `receive` and `send`. The state moves from
# `connecting` to `open` (after `websocket.accept`), or to `responding` (a denial response),
# and always ends `closed`.
#
# ```mermaid
# stateDiagram-v2
#     [*] --> connecting: handshake checked
#     connecting --> open: websocket.accept / 101
#     connecting --> closed: websocket.close / 403, or app error / 500
#     connecting --> responding: websocket.http.response.start
#     responding --> closed: last websocket.http.response.body
#     open --> closed: close handshake, or the TCP connection ends
# ```
#
# Three limits shape it. `CLOSE_TIMEOUT` is how long to wait for the other side's Close frame
# (or for a stuck write) before cutting the TCP connection. `QUEUE_LIMIT` is how many whole
# messages may wait for the app's `receive()` before the server stops reading the socket;
# then TCP itself slows the client down. The size limit for one message is a server option,
# `ws_max_message_bytes`, like barelab's.

# %%
#| export
CLOSE_TIMEOUT = 1.0   # seconds for the peer's Close after ours, or for our Close to be taken
QUEUE_LIMIT = 16      # whole messages waiting for receive() before the socket is not read
READ_SIZE = 65536

# %% [markdown]
# The cycle's `__init__` is the list of what it tracks. `frames` is wsproto's frame
# connection, made only once the app accepts. `messages` holds whole messages waiting for
# `receive()`, and `disconnect` the final event once the connection is over. The two
# `asyncio.Event`s are the doorbells between the reader task and the app: `arrived` rings
# when there is something to receive, `space` when the queue has room again. `parts` and
# `size` collect the fragments of the message being read.

# %%
#| export
class WebSocketCycle:
    """One WebSocket connection: the ``receive`` and ``send`` of an ASGI websocket scope."""

    def __init__(self, connection, head, scope: dict, key: bytes, answered):
        self.connection, self.head, self.scope, self.key = connection, head, scope, key
        self.server, self.writer = connection.server, connection.writer
        self.answered = answered           # called once the handshake is answered
        self.state = "connecting"          # then "open" or "responding"; at last "closed"
        self.frames = None                 # wsproto's frame Connection, from the accept on
        self.connect_sent = False
        self.messages, self.disconnect = deque(), None
        self.arrived, self.space = asyncio.Event(), asyncio.Event()
        self.parts, self.size = [], 0      # fragments of the message being received
        self.reader = self.response = None
        self.started = time.perf_counter()

# %% [markdown]
# ### `receive()`
#
# The first call returns `websocket.connect`. After that it returns whole messages as the
# reader task (below) queues them, and once the connection is over, `websocket.disconnect`
# with the close code, every time it is asked. `_set_disconnect` keeps the *first* code it is
# given: the reason the connection actually ended.

# %%
#| export
async def receive(self) -> dict:
    if not self.connect_sent:
        self.connect_sent = True
        return {"type": "websocket.connect"}
    while True:
        if self.messages:
            self.space.set()                   # the reader may queue more
            return self.messages.popleft()
        if self.disconnect is not None:
            return self.disconnect
        self.arrived.clear()
        await self.arrived.wait()

WebSocketCycle.receive = receive

# %% [markdown]
# No lock is needed around the checks. Between looking at `messages` and calling
# `arrived.clear()` there is no `await`, so no other task can run in between and slip in
# a message that would then be missed.
#
# Whoever learns that the connection is over (the reader task, a failed write, the server
# stopping) calls `_set_disconnect`. It also sets both events, so neither the app waiting in
# `receive()` nor a reader waiting for queue space sleeps through the end.

# %%
#| export
def _set_disconnect(self, code: int, reason: str = "") -> None:
    if self.disconnect is None:
        self.disconnect = {"type": "websocket.disconnect", "code": int(code),
                           "reason": reason or ""}
    self.arrived.set()
    self.space.set()

WebSocketCycle._set_disconnect = _set_disconnect

# %% [markdown]
# ### `send()`
#
# `send` looks at the message type and hands it to the method for it. Anything else is a
# mistake in the app, and the error says which types are allowed.

# %%
#| export
async def send(self, message: dict) -> None:
    kind = message.get("type")
    handler = {"websocket.accept": self._accept, "websocket.send": self._send_message,
               "websocket.close": self._close,
               "websocket.http.response.start": self._response_start,
               "websocket.http.response.body": self._response_body}.get(kind)
    if handler is None:
        raise RuntimeError(f"ASGI WebSocket spec: a websocket app sends websocket.accept, "
                           f"websocket.send, websocket.close or websocket.http.response.*, "
                           f"not {kind!r}")
    await handler(message)

WebSocketCycle.send = send

# %% [markdown]
# Each handler starts with `_expect`: is this message allowed in the current state? Sending
# on a closed connection is `ClientDisconnected` (the client is gone, which an app must
# expect); sending in the wrong state is a `RuntimeError` (a bug in the app).

# %%
#| export
def _expect(self, state: str, kind: str) -> None:
    if self.state == "closed" or self.writer.transport.is_closing():
        raise ClientDisconnected(f"cannot send {kind!r}: the connection is closed")
    if self.state != state:
        raise RuntimeError(f"ASGI WebSocket spec: {kind!r} is not allowed now "
                           f"(the WebSocket is {self.state})")

WebSocketCycle._expect = _expect

# %% [markdown]
# **Accept.** First, is the app's `websocket.accept` message sound? The subprotocol must be
# one the client offered (RFC 6455 §4.2.2: the server *selects* one). The app's headers
# must be byte pairs, and may not include the handshake's own fields: the server writes
# those. `_accept_fields` checks all that and returns what goes into the 101.

# %%
#| export
HANDSHAKE_FIELDS = {b"upgrade", b"connection", b"sec-websocket-accept",
                    b"sec-websocket-protocol", b"sec-websocket-extensions"}

def _accept_fields(self, message: dict) -> tuple[str | None, list]:
    """The subprotocol and extra headers of a ``websocket.accept``, checked."""
    subprotocol, headers = message.get("subprotocol"), list(message.get("headers", []))
    if subprotocol is not None and subprotocol not in self.scope["subprotocols"]:
        raise ValueError(f"RFC 6455 §4.2.2: the subprotocol is one the client offered "
                         f"({self.scope['subprotocols']}), not {subprotocol!r}")
    if any(type(n) is not bytes or type(v) is not bytes for n, v in headers):
        raise TypeError("ASGI WebSocket spec: 'headers' are [name, value] byte strings")
    if {n.lower() for n, _ in headers} & HANDSHAKE_FIELDS:
        raise ValueError("ASGI WebSocket spec: the server writes the handshake fields; "
                         "use 'subprotocol' for Sec-WebSocket-Protocol")
    return subprotocol, headers

WebSocketCycle._accept_fields = _accept_fields

# %% [markdown]
# Try the checks without a socket, as chapter 13 did with `Exchange`: a stand-in
# connection is enough, since `_accept_fields` only reads the message and the scope. The
# client here offered `chat.v1` only. Three accepts: a fair one, one with a subprotocol
# nobody offered, and one that tries to write a handshake field itself.

# %%
from types import SimpleNamespace

cycle = WebSocketCycle(SimpleNamespace(server=None, writer=None), example,
                       {"subprotocols": ["chat.v1"]}, b"", None)
for message in ({"subprotocol": "chat.v1"}, {"subprotocol": "chat.v2"},
                {"headers": [(b"Sec-WebSocket-Accept", b"forged")]}):
    try:
        print("accepted:", cycle._accept_fields(message))
    except ValueError as error:
        print(error)

# %% [markdown]
# Only the first passes, and hands back the subprotocol and an empty header list. The
# other two are bugs in the app, and the messages say which rule each one broke. Raised
# before the 101 is written, they turn into a 500 for the client (you will see that later
# with `picky`).

# %% [markdown]
# Then the switch itself. The 101 goes out, and wsproto takes over the bytes. Note
# `trailing_data`: a fast client may send its first frame right behind the handshake, in
# the same TCP segment, and those bytes are already in the connection's buffer. They are
# handed to wsproto, not lost. Last, a reader task starts (its code comes below).

# %%
#| export
async def _accept(self, message: dict) -> None:
    self._expect("connecting", "websocket.accept")
    subprotocol, headers = self._accept_fields(message)
    self.frames = FrameConnection(ConnectionType.SERVER,
                                  trailing_data=bytes(self.connection.buffer))
    self.connection.buffer.clear()
    self.state = "open"
    self._log(101)
    await self._write(handshake_response(self.key, subprotocol, headers))
    self.reader = asyncio.get_running_loop().create_task(self._read_frames())

WebSocketCycle._accept = _accept

# %% [markdown]
# **Writing.** Every write waits in `drain()` while the client is slow, exactly like chapter
# 13's responses: that is backpressure, and it is why a slow client can stall whoever awaits
# the send (you will see that in the chat). A broken connection becomes
# `ClientDisconnected`, and the app will hear 1006 (closed without a Close frame).

# %%
#| export
async def _write(self, data: bytes) -> None:
    if self.writer.transport.is_closing():
        raise ClientDisconnected("the client connection is closed")
    self.writer.write(data)
    try:
        await self.writer.drain()              # backpressure: wait while the client is slow
    except ConnectionError as exc:
        self._set_disconnect(1006)
        raise ClientDisconnected("the client connection was lost") from exc

WebSocketCycle._write = _write

# %% [markdown]
# A Close frame is different. The server waits at most `CLOSE_TIMEOUT` for the client to
# take it, then cuts the connection, so a client that never reads cannot keep a closed
# WebSocket alive forever. And it is sent only while wsproto says the connection is `OPEN`:
# a second Close would break the protocol.

# %%
#| export
async def _send_close(self, code: int, reason: str = "") -> None:
    """Our Close frame (RFC 6455 §5.5.1), if we may still send one."""
    if self.frames.state is not ConnectionState.OPEN or self.writer.transport.is_closing():
        return
    self.writer.write(self.frames.send(CloseConnection(code=code, reason=reason)))
    try:
        await asyncio.wait_for(self.writer.drain(), CLOSE_TIMEOUT)
    except (OSError, asyncio.TimeoutError):
        self._set_disconnect(1006)             # it does not read: cut it off
        self.writer.transport.abort()

WebSocketCycle._send_close = _send_close

# %% [markdown]
# **Send a message.** Exactly one of `text` and `bytes` is set (the spec lets both keys be
# present, one of them `None`). Text goes in a text frame, bytes in a binary frame. Sending
# on a connection that is closing raises `ClientDisconnected`, an `OSError`, as in chapter 13.

# %%
#| export
async def _send_message(self, message: dict) -> None:
    self._expect("open", "websocket.send")
    text, data = message.get("text"), message.get("bytes")
    if (text is None) == (data is None):
        raise ValueError("ASGI WebSocket spec: websocket.send has exactly one of 'text' "
                         "and 'bytes' (not None)")
    if text is not None and not isinstance(text, str):
        raise TypeError(f"ASGI WebSocket spec: 'text' is a str, not {type(text).__name__}")
    if self.frames.state is not ConnectionState.OPEN:
        raise ClientDisconnected("cannot send 'websocket.send': the WebSocket is closing")
    event = (TextMessage(data=text) if text is not None else BytesMessage(data=bytes(data)))
    await self._write(self.frames.send(event))

WebSocketCycle._send_message = _send_message

# %% [markdown]
# **Close.** Before accept, the ASGI spec is explicit: "If this is sent before the socket is
# accepted, the server must close the connection with a HTTP 403 error code (Forbidden), and
# not complete the WebSocket handshake." After accept, it is a Close frame with the app's
# code and reason. The code must be one an endpoint may send (RFC 6455 §7.4): 1004–1006 and
# 1015 are reserved for reporting, never for the wire.

# %%
#| export
def close_code_allowed(code) -> bool:
    """RFC 6455 §7.4.1–§7.4.2: codes an endpoint may put in a Close frame."""
    return (type(code) is int and (1000 <= code <= 1003 or 1007 <= code <= 1014
                                   or 3000 <= code <= 4999))

async def _close(self, message: dict) -> None:
    code, reason = message.get("code", 1000), message.get("reason") or ""
    if not close_code_allowed(code):
        raise ValueError(f"RFC 6455 §7.4: {code!r} is not a close code an endpoint may send")
    if self.state == "connecting":
        await self._refuse(403, "")            # ASGI WebSocket spec: close before accept
    elif self.state == "open":
        await self._send_close(code, reason)
    elif self.state == "responding":
        raise RuntimeError("ASGI WebSocket spec: finish the websocket.http.response first")

WebSocketCycle._close = _close

# %% [markdown]
# Which codes may an app pass? Try a few from each range of §7.4:

# %%
[(code, close_code_allowed(code)) for code in (1000, 1005, 1006, 1011, 1015, 2000, 4000)]

# %% [markdown]
# 1000 and 1011 are codes to send. 1005 ("no code") and 1006 ("closed without a Close
# frame") only describe what happened, and 1015 (a TLS failure) too: they may appear in a
# `websocket.disconnect`, never on the wire. 2000 is in the range kept for the protocol
# itself and its future extensions, and 4000 is in the private range any application may
# use.

# %% [markdown]
# **Refusing.** A refusal is a plain HTTP response on a connection that then closes. It is
# logged like any request, and the `answered` callback tells the connection the handshake
# has its answer (so `server.log` stops waiting for it).

# %%
#| export
async def _refuse(self, status: int, message: str, headers=()) -> None:
    self.state = "closed"
    self._set_disconnect(1006)
    data = refusal(status, message, headers)
    self._log(status, len(message) + 1 if message else 0)
    try:
        await self._write(data)
    except ClientDisconnected:
        pass

def _log(self, status: int, body_bytes: int = 0) -> None:
    self.server.log.request(self.connection.client, "GET", self.head.target.decode("latin-1"),
                            "1.1", status, body_bytes, time.perf_counter() - self.started)
    self.answered()

WebSocketCycle._refuse, WebSocketCycle._log = _refuse, _log

# %% [markdown]
# **A denial response** (the `websocket.http.response` extension) lets an app refuse with
# its own status, headers and body, say a 401 with a JSON explanation. The body is buffered
# until `more_body` is false and sent with a `Content-Length`: denial bodies are small.

# %%
#| export
async def _response_start(self, message: dict) -> None:
    self._expect("connecting", "websocket.http.response.start")
    status, headers = message.get("status"), list(message.get("headers", []))
    if type(status) is not int or not 200 <= status <= 599:
        raise ValueError(f"ASGI WebSocket spec: 'status' is a final HTTP status, "
                         f"not {status!r}")
    self.response, self.state = [status, headers, b""], "responding"

WebSocketCycle._response_start = _response_start

# %% [markdown]
# Each `websocket.http.response.body` adds to the buffered body. The last one (no
# `more_body`) sends the whole response and ends the connection, which never becomes a
# WebSocket.

# %%
#| export
async def _response_body(self, message: dict) -> None:
    self._expect("responding", "websocket.http.response.body")
    self.response[2] += bytes(message.get("body", b""))
    if not message.get("more_body", False):
        status, headers, body = self.response
        data = format_response(status, [*headers, (b"Connection", b"close")], body)
        self.state = "closed"
        self._set_disconnect(1006)
        self._log(status, len(body))
        await self._write(data)

WebSocketCycle._response_body = _response_body

# %% [markdown]
# Until that last body message nothing is on the wire, which is why an app that fails in
# the middle of a denial response can still get a clean 500. The `Connection: close` is
# added by the server: after a denial, this connection carries nothing else.
#
# ### The reader task
#
# Once accepted, a task of its own reads the socket and feeds wsproto. Why a separate task,
# and not reads inside `receive()`? Because the app may be busy elsewhere (waiting on a
# database, sending to someone else) and a ping must still be answered, and a Close still
# echoed, while it is.
#
# One read first. Normally it just waits for bytes. After our own Close frame the only
# thing left to read is the peer's Close, so the wait is capped at `CLOSE_TIMEOUT`. An empty
# result means "nothing more will come", whether the peer closed the TCP connection, the
# connection broke, or the wait ran out.

# %%
#| export
async def _read_some(self) -> bytes:
    """The client's next bytes; ``b""`` at the end, or when its Close is overdue."""
    read = self.connection.reader.read(READ_SIZE)
    if self.frames.state is ConnectionState.LOCAL_CLOSING:
        read = asyncio.wait_for(read, CLOSE_TIMEOUT)      # only their Close is left
    try:
        return await read
    except (OSError, asyncio.TimeoutError):
        return b""

WebSocketCycle._read_some = _read_some

# %% [markdown]
# The loop handles events *before* it reads, because wsproto may already hold frames that
# came in with the handshake (the `trailing_data` above). It stops when `_handle_events`
# says there is nothing more to read. No Close frame at all, just the end of the TCP
# stream, is an abnormal closure, code **1006** (RFC 6455 §7.1.5). Whatever happened, the
# server then closes the TCP connection, which §7.1.1 asks of the server.

# %%
#| export
async def _read_frames(self) -> None:
    try:
        while await self._handle_events():
            data = await self._read_some()
            if not data:
                self._set_disconnect(1006)    # the TCP connection ended without a Close
                return
            self.frames.receive_data(data)
    except ClientDisconnected:
        self._set_disconnect(1006)
    finally:
        self._hang_up()

WebSocketCycle._read_frames = _read_frames

# %% [markdown]
# Hanging up has one subtlety. `transport.close()` first sends whatever is still buffered,
# however long that takes; for a client that stopped reading, that is forever. So if bytes
# are still waiting, the server aborts the connection instead (a TCP reset).

# %%
#| export
def _hang_up(self) -> None:
    """Close the TCP connection; abort it if the client has not read what we wrote."""
    transport = self.writer.transport
    if transport.get_write_buffer_size():
        transport.abort()
    else:
        transport.close()

WebSocketCycle._hang_up = _hang_up

# %% [markdown]
# `_handle_events` sorts what wsproto parsed into three kinds. A piece of a message goes to
# `_collect` (below). A ping is answered at once with its pong. A Close ends the reading,
# and `_on_close` decides what it means.

# %%
#| export
async def _handle_events(self) -> bool:
    """Act on what wsproto parsed; False once there is nothing more to read."""
    for event in self.frames.events():
        if isinstance(event, Message):
            await self._collect(event)
        elif isinstance(event, Ping) and self.frames.state is ConnectionState.OPEN:
            await self._write(self.frames.send(event.response()))   # the pong (§5.5.3)
        elif isinstance(event, CloseConnection):
            await self._on_close(event)
            return False
    return True

WebSocketCycle._handle_events = _handle_events

# %% [markdown]
# A `CloseConnection` event can mean three things, and wsproto's state tells them apart:
#
# - `REMOTE_CLOSING`: the peer closed first. Answer with the same code (§5.5.1).
# - `CLOSED`: the peer answered *our* Close. The handshake is complete; nothing to send.
# - still `OPEN`: the peer sent no Close at all. wsproto *made this one up* because the bytes
#   were broken. Fail the connection with the code it chose, 1002 or 1007; nothing after a
#   broken frame can be trusted.
#
# In all three cases the app will hear the code in its `websocket.disconnect`.

# %%
#| export
async def _on_close(self, event: CloseConnection) -> None:
    self._set_disconnect(event.code, event.reason)
    if self.frames.state is ConnectionState.REMOTE_CLOSING:        # they close: echo it
        self.writer.write(self.frames.send(event.response()))
    elif self.frames.state is not ConnectionState.CLOSED:          # broken bytes
        await self._send_close(event.code, event.reason)

WebSocketCycle._on_close = _on_close

# %% [markdown]
# `_collect` reassembles fragments into one ASGI message and enforces the size limit while
# the fragments arrive, so a client cannot make the server buffer a gigabyte before it
# notices. Over the limit, the server closes with **1009** (message too big) and reads on
# only to reach the client's Close. `_push` queues the message; when `QUEUE_LIMIT` messages
# are waiting, it waits too, which stops the reading, which lets TCP slow the client down.

# %%
#| export
async def _collect(self, event) -> None:
    if self.frames.state is not ConnectionState.OPEN:
        return                                 # after our Close: read only to reach theirs
    self.parts.append(event.data)
    self.size += len(event.data.encode() if isinstance(event.data, str) else event.data)
    limit = self.server.ws_max_message_bytes
    if self.size > limit:
        self.parts, self.size = [], 0
        self._set_disconnect(1009, f"message larger than {limit} bytes")
        await self._send_close(1009, f"message larger than {limit} bytes")
    elif event.message_finished:
        kind = "text" if isinstance(event.data, str) else "bytes"
        joined = "".join(self.parts) if kind == "text" else b"".join(self.parts)
        self.parts, self.size = [], 0
        await self._push({"type": "websocket.receive", kind: joined})

WebSocketCycle._collect = _collect

# %% [markdown]
# The limit is in bytes on the wire, so a text fragment is measured after encoding it to
# UTF-8: `"é"` is one character but two bytes.
#
# `_push` is the other end of `receive()`: append, and wake the app. The `while` loop is the
# bound: with `QUEUE_LIMIT` messages waiting, the reader task sleeps until `receive()` takes
# one (it sets `space`) or the connection ends.

# %%
#| export
async def _push(self, message: dict) -> None:
    while len(self.messages) >= QUEUE_LIMIT and self.disconnect is None:
        self.space.clear()
        await self.space.wait()               # the app is behind: stop reading
    self.messages.append(message)
    self.arrived.set()

WebSocketCycle._push = _push

# %% [markdown]
# Here is the whole path of an incoming message, from the socket to the app, with the
# method at each step:
#
# ```mermaid
# flowchart LR
#     S(("socket")) --> R["_read_some"] --> W["wsproto<br/>receive_data"]
#     W --> H["_handle_events"]
#     H -- "Ping" --> P["pong, at once"]
#     H -- "Close" --> C["_on_close"]
#     H -- "message piece" --> L["_collect"] --> Q["_push<br/>(waits at QUEUE_LIMIT)"]
#     Q --> M["messages"] --> A["receive()<br/>in the app's task"]
# ```
#
# Everything left of `messages` runs in the reader task, everything right of it in the
# app's. That is why a ping gets its pong even while the app is busy, and why an app that
# stops calling `receive()` ends up slowing the client instead of filling the memory.

# %% [markdown]
# ### Running the app, and ending
#
# `run` calls the app and makes sure every ending is a clean one:
#
# - an exception **before accept** is a `500` (the handshake gets an HTTP answer), **after
#   accept** a Close frame with **1011** (RFC 6455 §7.4.1: "an unexpected condition
#   prevented it from fulfilling the request");
# - an app that returns without answering the handshake gets a 500 and an error in the log;
# - an app that returns while the WebSocket is open closes it normally, with 1000.
#
# `_finish` then waits (briefly) for the closing handshake and hangs up. A
# `ClientDisconnected` from the app is not an error: it is what `send()` raises when the
# client left, and an app that lets it propagate has simply stopped talking.

# %%
#| export
async def run(self) -> None:
    log = self.server.log
    try:
        await self.server.app(self.scope, self.receive, self.send)
    except Exception as exc:
        if isinstance(exc, ClientDisconnected):
            log.info(f"the WebSocket client went away ({type(exc).__name__})")
        else:
            log.error(f"Exception in ASGI application (WebSocket {self.scope['path']})", exc)
            await self._app_failed()
    else:
        if self.state in ("connecting", "responding"):
            log.error("ASGI callable returned without accepting or refusing the WebSocket "
                      "(ASGI WebSocket spec: answer websocket.connect)")
            await self._app_failed()
    finally:
        await self._finish()

WebSocketCycle.run = run

# %% [markdown]
# Compare it with chapter 13's `Exchange.run`: the same `try`, the same special case for
# `ClientDisconnected`, the same "returned without answering" check. What differs is only
# what a failure looks like on the wire, and that is `_app_failed`'s job.
#
# What "failed" means depends on how far the conversation got. Before accept (or during a
# denial response, which is buffered, so nothing is on the wire yet), the client is still
# waiting for an HTTP answer: it gets a 500. After accept, only a Close frame can say it.

# %%
#| export
async def _app_failed(self) -> None:
    if self.state in ("connecting", "responding"):   # nothing is on the wire yet
        await self._refuse(500, "Internal Server Error")
    elif self.state == "open":
        await self._send_close(1011)

WebSocketCycle._app_failed = _app_failed

# %% [markdown]
# `_finish` runs whatever happened. If the WebSocket is still open, the app returned without
# closing it: send 1000 and give the client `CLOSE_TIMEOUT` to answer (unless the server is
# stopping, which should be prompt). Then the reader task is cancelled and allowed to
# unwind, and the TCP connection ends.

# %%
#| export
async def _finish(self) -> None:
    if self.state == "open":
        await self._send_close(1000)           # the app returned: a normal closure
        if self.reader is not None:
            if not self.connection.stopping:   # their Close, unless the server is stopping
                await asyncio.wait({self.reader}, timeout=CLOSE_TIMEOUT)
            self.reader.cancel()
            await asyncio.wait({self.reader}, timeout=CLOSE_TIMEOUT)   # let it unwind
    self.state = "closed"
    self._set_disconnect(1006)
    self._hang_up()

WebSocketCycle._finish = _finish

# %% [markdown]
# `shutdown` cannot wait for anything: the server calls it for every open WebSocket as it
# stops. It tells the app (`websocket.disconnect` with 1001) and writes a Close frame with
# **1001**, Going Away (RFC 6455 §7.4.1), if the WebSocket is still open.

# %%
#| export
def shutdown(self) -> None:
    """The server is stopping: tell the client (1001, Going Away) and the app."""
    self._set_disconnect(1001, "server shutting down")
    if self.state == "open" and self.frames.state is ConnectionState.OPEN:
        self.writer.write(self.frames.send(CloseConnection(code=1001,
                                                           reason="server shutting down")))

WebSocketCycle.shutdown = shutdown

# %% [markdown]
# ### Plugging it into chapter 13's server
#
# Chapter 13's `Connection` reads request heads and calls `self._exchange(head)` for each;
# that is the one place to branch. `WebSocketConnection` is a `Connection` whose `_exchange`
# sends upgrade requests to a `WebSocketCycle` and everything else to chapter 13's code,
# unchanged. After a WebSocket, the connection is never reused for HTTP, so it returns
# `False`.
#
# The log waits for requests "in flight"; for a WebSocket, that lasts until the handshake is
# answered, not for the whole conversation (or `server.log` would wait for a chat to end).

# %%
#| export
class WebSocketConnection(Connection):
    """Chapter 13's Connection, which hands an upgrade request to a WebSocketCycle."""

    websocket = None

    async def _exchange(self, head) -> bool:
        if not wants_websocket(head):
            return await Connection._exchange(self, head)
        with ExitStack() as flight:
            flight.enter_context(self.server.log.in_flight())
            try:
                key, offered = check_handshake(head)
                scope = websocket_scope(head, self.client, self.sockname, self.server.state,
                                        offered)
            except HTTPError as error:
                await self._refuse_handshake(head, error)
                return False
            self.websocket = WebSocketCycle(self, head, scope, key, flight.close)
            await self.websocket.run()
        return False

# %% [markdown]
# `ExitStack` is what makes the "in flight" end early: `flight.close` is handed to the
# cycle as its `answered` callback, and the cycle calls it from `_log` as soon as the 101
# or the refusal is written. The `with` block closes it again at the end, which does
# nothing the second time.
#
# A handshake the server refuses itself (before any app runs) is logged and answered with
# the error's status and fields, then the connection lingers the way chapter 13's refusals
# do, so the client reads the answer before the close. And when the server stops, an open
# WebSocket is told so with 1001 instead of being cut.

# %%
#| export
async def _refuse_handshake(self, head, error: HTTPError) -> None:
    self.server.log.request(self.client, head.method, head.target.decode("latin-1"),
                            head.version.decode(), error.status, len(error.message) + 1, 0.0)
    self.writer.write(refusal(error.status, error.message, getattr(error, "headers", ())))
    await self._linger()

def _shutdown(self) -> None:
    if self.websocket is None:
        return Connection.shutdown(self)
    self.stopping = True
    self.websocket.shutdown()

WebSocketConnection._refuse_handshake, WebSocketConnection.shutdown = _refuse_handshake, _shutdown

# %% [markdown]
# Last, the server. Chapter 13's `ASGIServer` makes one `self.connection_class` for each new
# TCP connection; the subclass sets that attribute to `WebSocketConnection` and takes one
# more option. That is all the new server is: accepting, tracking and stopping connections
# stay chapter 13's code.

# %%
#| export
class WebSocketASGIServer(ASGIServer):
    """Chapter 13's ASGIServer plus WebSocket: ``serve(app, server=WebSocketASGIServer)``."""

    connection_class = WebSocketConnection     # chapter 13's hook: one per TCP connection

    def __init__(self, app, sock, log, *, ws_max_message_bytes: int = 16 * 1024 * 1024,
                 **options):
        super().__init__(app, sock, log, **options)
        if type(ws_max_message_bytes) is not int or ws_max_message_bytes <= 0:
            raise ValueError(f"ws_max_message_bytes is a positive int, "
                             f"not {ws_max_message_bytes!r}")
        self.ws_max_message_bytes = self.options["ws_max_message_bytes"] = ws_max_message_bytes

# %% [markdown]
# Here is what this chapter added to chapter 13, next to what it reuses. Each new class
# either subclasses an old one or sits beside it:
#
# ```mermaid
# classDiagram
#     ASGIServer <|-- WebSocketASGIServer
#     Connection <|-- WebSocketConnection
#     ASGIServer --> Connection : connection_class
#     WebSocketASGIServer --> WebSocketConnection : connection_class
#     Connection --> Exchange : plain HTTP request
#     WebSocketConnection --> WebSocketCycle : upgrade request
#     class WebSocketConnection {
#         _exchange(head)
#         _refuse_handshake(head, error)
#         shutdown()
#     }
#     class WebSocketCycle {
#         receive()
#         send(message)
#         run()
#     }
# ```
#
# `WebSocketCycle` plays the part of `Exchange`: both hold the `receive` and `send` of one
# app call. Compare the two servers' class attributes: the only difference is the
# connection class each one makes for a new client.

# %%
ASGIServer.connection_class.__name__, WebSocketASGIServer.connection_class.__name__

# %% [markdown]
# Chapter 13's `_accept` reads `self.connection_class`, so a `WebSocketASGIServer` runs
# chapter 13's accept, tracking and shutdown code unchanged, with a `WebSocketConnection`
# for every client.

# %% [markdown]
# ## The new server at work
#
# Serve `echo` again, on the new server, and talk to it: a text message, a binary one, a
# ping. The transcript shows each message and control frame that crossed the wire.

# %%
from barelab.built.websocket import WebSocketASGIServer

server = barelab.serve(echo, name="echo", server=WebSocketASGIServer)
client = barelab.websocket_connect(server, "/echo")
client.send_text("Hello")
client.send_bytes(b"\x00\x01\x02")
print(repr(client.receive()), repr(client.receive()), client.ping(b"are you there?"))
client.close()
client

# %% [markdown]
# Text came back as `str` and bytes as `bytes`: the frame type survives the round trip. The
# pong carried the ping's payload. The close was a full closing handshake: the client sent
# 1000, the server echoed 1000. The log shows the handshake as one request with status 101:

# %%
print(server.log)

# %% [markdown]
# The first line is chapter 14's lifespan check: the server sent `echo` a `lifespan`
# scope, the assertion refused it, and the server went on without lifespan, as it should.
# The last line is the whole WebSocket conversation as the log sees it: one `GET`, answered
# 101, with a body of 0 bytes. Everything after the 101 is frames, which an HTTP log does not
# count.

# %% [markdown]
# Now the same handshake by hand, to see the server's 101 byte for byte. `raw_exchange`
# sends the RFC's request; the server answers, then waits for frames until the timeout:

# %%
barelab.raw_exchange(server, HANDSHAKE, timeout=0.3)

# %% [markdown]
# `s3pPLMBiTxaQ9kYGzzhZRbK+xOo=`, the RFC's value, from your server. After the blank line
# nothing came, and the connection stayed open: `echo` was waiting in `receive()` for a
# frame that `raw_exchange` never sent.
#
# And the handshake errors, each on a fresh connection. A request without `Upgrade` is not a
# handshake at all, so it reaches the app as plain HTTP, and `echo` crashes on it (a 500:
# that is the app's business). Everything else is refused by the server before the app runs:

# %%
def status_of(data):
    return barelab.raw_exchange(server, data, timeout=1).status

cases["no Upgrade"] = broken(b"Upgrade: websocket\r\n", b"")
show_transcript([(name, status_of(data)) for name, data in cases.items()])

# %% [markdown]
# The server's own verdicts match the ones `verdict` gave earlier: 400 for each broken
# rule, 426 for the wrong version. Only the last row is a 500, and it is the app's: with
# no `Upgrade`, `wants_websocket` said no, and `echo` got an `http` scope it refuses.
#
# The 426 tells the client which version to use:

# %%
print(barelab.raw_exchange(server, cases["version 8"]).received.decode())

# %% [markdown]
# The two fields from `UpgradeRequired` came after the server's own, and the body says
# which version arrived. A client that supports several versions can retry with 13.

# %% [markdown]
# ### Fragments, and the limits
#
# barelab's client sends each message in one frame, so to see reassembly, write the frames
# yourself: the handshake, then `Hel` and `lo` as two masked fragments, then a Close. The
# echo comes back as one frame:

# %%
CLOSE = masked(0x88, (1000).to_bytes(2, "big"))
reply = barelab.raw_exchange(server, HANDSHAKE + fragments + CLOSE)
frames_back = reply.received.partition(b"\r\n\r\n")[2]
show_bytes(frames_back)

# %% [markdown]
# `\x81\x05Hello` is one unfragmented text frame, and `\x88\x02\x03\xe8` is the server's
# Close with code 1000 (`0x03e8`). Now the failures. `first_close` sends some frames after a
# handshake and returns the code of the server's Close frame:

# %%
def first_close(server, frames: bytes, path=b"/echo") -> int:
    request = HANDSHAKE.replace(b"/chat", path)
    received = barelab.raw_exchange(server, request + frames, timeout=2).received
    client = FrameConnection(ConnectionType.CLIENT)
    client.receive_data(received.partition(b"\r\n\r\n")[2])
    closes = [e.code for e in client.events() if isinstance(e, CloseConnection)]
    return int(closes[0]) if closes else None

show_transcript([("unmasked frame", first_close(server, b"\x81\x05Hello")),
                 ("invalid UTF-8", first_close(server, masked(0x81, b"caf\xc3("))),
                 ("close code 1005 on the wire", first_close(server, masked(0x88, b"\x03\xed")))])

# %% [markdown]
# 1002 for the protocol errors, 1007 for the bad text. The third row deserves a word: 1005
# means "no code was given", a value an endpoint may *report* to its app but never *send*
# (RFC 6455 §7.4.1). A client that sends it is breaking the protocol, hence 1002. These are
# the same verdicts wsproto gave on its own earlier; now they reach a real client as Close
# frames.
#
# The size limit needs a server started with a small `ws_max_message_bytes`. Serving the
# same name again replaces the server:

# %%
server = barelab.serve(echo, name="echo", server=WebSocketASGIServer, ws_max_message_bytes=1000)
small = barelab.websocket_connect(server, "/echo")
small.send_text("x" * 1000)
print(len(small.receive()))
small.send_text("x" * 1001)
try:
    small.receive()
except barelab.client.WebSocketClosed as closed:
    print(closed)

# %% [markdown]
# 1000 bytes pass, 1001 do not: code 1009 and a reason that says why. The limit counts the
# bytes as they arrive, fragment by fragment, so a client cannot make the server hold a
# huge message in memory just to find out it is too big.
#
# ### Close codes, both ways
#
# A close can come from either side, and the app hears about it through
# `websocket.disconnect`. `close_reporter` records every disconnect it receives; a client
# that says `goodbye` is closed by the app with its own code and reason:

# %%
disconnects = []

async def close_reporter(scope, receive, send):
    await receive()
    await send({"type": "websocket.accept"})
    while (message := await receive())["type"] != "websocket.disconnect":
        if message.get("text") == "goodbye":
            await send({"type": "websocket.close", "code": 4000, "reason": "see you"})
    disconnects.append((message["code"], message["reason"]))

# %% [markdown]
# Two helpers for the cells below. `wait_until` polls a condition until it holds or a
# deadline passes (the server works in its own thread, so a cell sometimes has to wait for
# it). `closed_by_server` waits for the server's Close frame and returns its code and
# reason: barelab's client raises `WebSocketClosed` when one arrives.

# %%
def wait_until(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()

def closed_by_server(client):
    try:
        client.receive(timeout=2)
    except barelab.client.WebSocketClosed as closed:
        return int(closed.code), closed.reason

# %% [markdown]
# Three clients: the first closes with 1000 itself, the second asks the app to close it,
# and the third is still connected when the server stops.

# %%
server = barelab.serve(close_reporter, name="echo", server=WebSocketASGIServer)
first = barelab.websocket_connect(server, "/")
first.close(1000, "done")
second = barelab.websocket_connect(server, "/")
second.send_text("goodbye")
third = barelab.websocket_connect(server, "/")
print("second:", closed_by_server(second))
wait_until(lambda: len(disconnects) == 2)      # the app hears second's answer
server.stop()
print("third: ", closed_by_server(third))
print("the app heard:", disconnects)

# %% [markdown]
# Each side saw the same code. The app's `4000` (the range 4000–4999 is for private use,
# RFC 6455 §7.4.2) and its reason reached the client, and the client's answer came back to
# the app as `websocket.disconnect`. On stop, the server said **1001** (Going Away) to the
# client and to the app, instead of just cutting the connection.
#
# ### Errors in the app
#
# An app can fail before it accepts or after. The ASGI spec and RFC 6455 ask for different
# answers, because the handshake is still HTTP and the open WebSocket is not:

# %%
async def fragile(scope, receive, send):
    await receive()
    if scope["path"] == "/early":
        raise ValueError("failed before accept")
    await send({"type": "websocket.accept"})
    await receive()
    raise ValueError("failed after accept")

server = barelab.serve(fragile, name="echo", server=WebSocketASGIServer)
try:
    barelab.websocket_connect(server, "/early")
except barelab.client.WebSocketRejected as refused:
    print("before accept:", refused.status)
late = barelab.websocket_connect(server, "/late")
late.send_text("anything")
print("after accept: ", closed_by_server(late))

# %% [markdown]
# A 500 before accept, a Close with **1011** after. Both errors are in the log with their
# tracebacks, where you can read them; the client learns only that something went wrong
# on the server:

# %%
[entry.message for entry in server.log.errors]

# %% [markdown]
# Each message names the path, so you can tell the two failures apart; the tracebacks are
# in each entry's `details`.
#
# And the rule the ASGI spec states outright: a `websocket.close` **before** accept is an
# HTTP 403, not a WebSocket at all. That is how an app says no:

# %%
async def closed_door(scope, receive, send):
    await receive()
    await send({"type": "websocket.close", "code": 1008})

server = barelab.serve(closed_door, name="echo", server=WebSocketASGIServer)
print(barelab.raw_exchange(server, HANDSHAKE, timeout=1).received.decode())

# %% [markdown]
# A plain `403 Forbidden` with an empty body, and no `Sec-WebSocket-Accept`: the handshake
# never completed, so a browser's `new WebSocket(...)` fails with an error event. The
# `1008` the app passed along is dropped; a close code only means something on an open
# WebSocket.
#
# ### Subprotocols
#
# A client may offer *subprotocols*, application-level dialects on top of WebSocket (say,
# `graphql-transport-ws`), in `Sec-WebSocket-Protocol`; they reach the app as
# `scope["subprotocols"]`, in the client's order. The app picks one in `websocket.accept`,
# and the server answers with it. Picking one the client did not offer is an error:

# %%
async def picky(scope, receive, send):
    await receive()
    wanted = "chat.v2" if "chat.v2" in scope["subprotocols"] else "chat.v3"
    await send({"type": "websocket.accept", "subprotocol": wanted})
    await send({"type": "websocket.send", "text": f"offered {scope['subprotocols']}"})

server = barelab.serve(picky, name="echo", server=WebSocketASGIServer)
offered = barelab.websocket_connect(server, "/", subprotocols=["chat.v1", "chat.v2"])
print(offered.subprotocol, offered.receive())
try:
    barelab.websocket_connect(server, "/", subprotocols=["chat.v1"])
except barelab.client.WebSocketRejected as refused:
    print(refused.status, server.log.errors[-1].details.strip().splitlines()[-1])

# %% [markdown]
# The first client offered `chat.v2`, got it, and read back what it offered. The second
# offered only `chat.v1`, the app tried to answer with `chat.v3`, and `_accept_fields`
# raised. The error happened before accept, so the client got a 500, and the log says which
# rule the app broke.
#
# ### Plain HTTP still works
#
# Everything that is not an upgrade still goes through chapter 13's code, untouched. One app
# can serve both: it looks at `scope["type"]`.

# %%
async def both(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        return await send({"type": "http.response.body", "body": b"plain HTTP\n"})
    await echo(scope, receive, send)

server = barelab.serve(both, name="echo", server=WebSocketASGIServer)
barelab.http_request(server, path="/").text, barelab.websocket_connect(server, "/").ping(b"ok")

# %% [markdown]
# Same port, same app: the plain `GET` got its text, and the upgrade got a WebSocket that
# answered a ping.
#
# ## Origin: who opened this WebSocket?
#
# A browser attaches your cookies to a WebSocket handshake, just as it does to any request
# to your site. And **any** page may open a WebSocket to any host: WebSockets are not
# covered by the same-origin policy or CORS. So if `evil.example` runs
# `new WebSocket("wss://your-bank.example/feed")` in a visitor's browser, the handshake
# arrives carrying the visitor's session cookie. If the server accepts, the attacker's script
# reads and writes the socket as the visitor. That is **cross-site WebSocket hijacking**.
#
# The defence is the `Origin` header. A browser always sends it on a WebSocket handshake
# (RFC 6455 §4.1, point 8; §10.2), with the scheme, host and port of the page that opened
# it, and a script cannot change it. The server compares it with the sites it trusts and
# refuses the others with a 403.
#
# `origin_allowed` implements the rule. With no list given, it allows the *same origin*:
# the page's host and port equal the `Host` the request was sent to (which also works
# through jupyter-server-proxy, which passes both along). A request without `Origin` is not
# from a browser; it cannot carry a victim's cookies without the victim's consent, and
# it could forge any `Origin` anyway, so the check lets it through.

# %%
#| export
def origin_allowed(scope: dict, allowed_origins=None) -> bool:
    """May this handshake proceed? Same origin only, unless ``allowed_origins`` lists more."""
    headers = dict(scope["headers"])
    origin = headers.get(b"origin")
    if origin is None:
        return True                          # not from a browser (RFC 6455 §10.2)
    origin = origin.decode("latin-1").lower().rstrip("/")
    if allowed_origins is not None:
        return origin in {o.lower().rstrip("/") for o in allowed_origins}
    parts = urlsplit(origin)
    host = headers.get(b"host", b"").decode("latin-1").lower()
    return parts.scheme in ("http", "https") and parts.netloc == host

# %% [markdown]
# `check_origin` wraps any ASGI app: a WebSocket from an origin it does not allow is closed
# before accept, which the server turns into a 403. HTTP requests pass, because the browser
# already protects them: a script on another site may *send* an HTTP request but not read
# the answer unless CORS allows it (chapter 07).

# %%
#| export
def check_origin(app, allowed_origins=None):
    """``app``, refusing (403) WebSocket handshakes from origins it does not allow."""
    async def origin_checked(scope, receive, send):
        if scope["type"] == "websocket" and not origin_allowed(scope, allowed_origins):
            await receive()                                      # websocket.connect
            await send({"type": "websocket.close", "code": 1008})   # before accept: 403
            return
        await app(scope, receive, send)
    return origin_checked

# %% [markdown]
# Three handshakes against the echo app behind the check: one from the server's own page,
# one from another site, one from a script with no `Origin` at all:

# %%
server = barelab.serve(check_origin(echo), name="echo", server=WebSocketASGIServer)

def try_origin(origin):
    try:
        with barelab.websocket_connect(server, "/", origin=origin) as client:
            return f"accepted, ping answered: {client.ping(b'hi')!r}"
    except barelab.client.WebSocketRejected as refused:
        return f"refused with {refused.status}"

show_transcript([(str(o), try_origin(o)) for o in
                 (f"http://127.0.0.1:{server.port}", "https://evil.example", None)])

# %% [markdown]
# The page from the server's own origin got in, and so did the script without `Origin`.
# `evil.example` got a 403 before `echo` ever ran: `check_origin` closed it before accept,
# and the server turned that close into an HTTP refusal.
#
# The list form is for a page served from another host you trust, for example a front end
# on its own domain:

# %%
origin_allowed({"headers": [(b"host", b"api.example"), (b"origin", b"https://app.example")]},
               ["https://app.example"])

# %% [markdown]
# `True`, although the host differs: the list names that origin. With a list, the `Host`
# comparison is not made at all, so list your own origin too if your own pages should
# still connect.

# %% [markdown]
# ## A chat server
#
# Now an app worth the protocol: a chat room. Each client connects to `/chat?name=alice`;
# what one sends, the others receive. Text goes out as `alice: hello`, binary messages (a
# picture, say) go out as they came, and the room announces who joins and who leaves.
#
# ### The naive broadcast, and one slow client
#
# Remember that the server calls the app once per connection: with three clients, three
# calls of `naive_chat` run side by side, each with its own `send`. The obvious code keeps
# those `send` functions in a shared dict and, for each message, awaits a send to every
# other member in turn:

# %%
members = {}

async def naive_chat(scope, receive, send):
    await receive()
    await send({"type": "websocket.accept"})
    name = scope["query_string"].decode().partition("name=")[2] or "guest"
    members[name] = send
    while (message := await receive())["type"] == "websocket.receive":
        for other, other_send in list(members.items()):
            if other != name:
                await other_send({**message, "type": "websocket.send"})
    del members[name]

# %% [markdown]
# It looks right, and with three attentive clients it works. Its flaw only shows with a
# client that does not read. The experiment has three clients:
#
# - `listener` reads and counts every message that arrives;
# - `sleeper` connects and never reads a byte, like a phone that went into a tunnel;
# - `speaker` sends 250 binary messages of 64 KiB (16 MiB in all), from a background thread
#   so that the cell itself never blocks on a stalled server.
#
# The numbers are large because the operating system buffers several megabytes per
# connection before a sender notices anything. `flood` connects the three in that order
# and starts the speaker:

# %%
import threading

N, PAYLOAD = 250, bytes(65536)

def flood(server):
    listener = barelab.websocket_connect(server, "/chat?name=listener")
    sleeper = barelab.websocket_connect(server, "/chat?name=sleeper")   # never reads
    speaker = barelab.websocket_connect(server, "/chat?name=speaker", timeout=30)
    def speak():
        try:
            for _ in range(N):
                speaker.send_bytes(PAYLOAD)
        except OSError:
            pass                                  # the server stopped under us
    threading.Thread(target=speak, daemon=True).start()
    return listener, sleeper, speaker

# %% [markdown]
# `count` receives until `N` binary messages arrived, or until nothing came for a second.
# Text messages (the room's announcements) are skipped:

# %%
def count(listener, n=N):
    got, started = 0, time.perf_counter()
    try:
        while got < n:
            got += isinstance(listener.receive(timeout=1), bytes)
    except (TimeoutError, barelab.client.WebSocketClosed):
        pass
    return got, time.perf_counter() - started

# %% [markdown]
# Now run the experiment on the naive chat. `members.clear()` empties the shared dict, so
# that a re-run of the cell starts from an empty room:

# %%
members.clear()
naive_server = barelab.serve(naive_chat, name="naive-chat", server=WebSocketASGIServer)
listener, sleeper, speaker = flood(naive_server)
got, seconds = count(listener)
print(f"listener got all {N} messages: {got == N} (stopped waiting after {seconds:.1f} s)")

# %% [markdown]
# The listener stopped getting messages part way. Nothing is wrong with the listener. For
# each message, the speaker's handler walks the members in the order they joined: first a
# send to the listener, which goes through, then a send to the sleeper. Once the sleeper's
# buffers are full, that `await other_send(...)` waits in `drain()`, correctly, for a client
# that will never read. The speaker's handler never reaches its next `receive()`, so no
# later message reaches anyone:
#
# ```mermaid
# sequenceDiagram
#     participant Sp as speaker's handler
#     participant L as listener
#     participant Sl as sleeper (buffers full)
#     Sp->>L: await send(message 41)
#     L-->>Sp: done
#     Sp->>Sl: await send(message 41)
#     Note over Sp,Sl: drain() waits for a reader that never comes
#     Note over Sp,L: message 42 is never even received from the speaker
# ```
#
# (The message numbers are only for the picture; where exactly it sticks depends on the
# operating system's buffers.) One slow client froze the room. Stop this server (its stuck
# handler is cancelled on the way out):

# %%
naive_server.stop()
naive_server

# %% [markdown]
# ### A queue per client
#
# The fix decouples *deciding* to send from *sending*. Each member gets a bounded
# `asyncio.Queue` (32 messages by default) and a sender task of its own that drains it into
# the socket.
# A broadcast only puts the message into each queue with `put_nowait`, which never waits,
# so the broadcaster moves on at once whatever the clients do.
#
# ```mermaid
# flowchart LR
#     R["alice's handler<br/>receive()"] -->|broadcast| Qb["bob's queue"]
#     R -->|broadcast| Qc["carol's queue"]
#     Qb --> Sb["bob's sender task<br/>await send()"] --> B((bob))
#     Qc --> Sc["carol's sender task<br/>await send()"] --> C((carol))
# ```
#
# A client that does not read still fills its queue. When `put_nowait` finds it full,
# the room has a choice: drop messages (the client silently misses some), grow the queue
# (memory grows without bound), or disconnect the client. The chat disconnects it, with
# close code **1008** (policy violation, RFC 6455 §7.4.1): the server has a policy, at most
# 32 messages waiting per client, and this client broke it by not reading. **1013** (try
# again later) says the *server* is overloaded, which is not the case here; other clients
# are fine, and a client told 1013 would reconnect and fall behind again. (1013 is not in
# RFC 6455's own list; it was registered with IANA later, with 1012 and 1014.)
#
# The whole design rests on one property of `asyncio.Queue`: `put_nowait` never waits. It
# either puts the item in at once or raises `QueueFull` at once. Try it on a queue of two
# with nobody taking anything out:

# %%
def fill(queue, n):
    for item in range(n):
        try:
            queue.put_nowait(item)
        except asyncio.QueueFull:
            return f"item {item}: QueueFull, {queue.qsize()} waiting"

fill(asyncio.Queue(maxsize=2), 5)

# %% [markdown]
# The third put failed immediately, without a single `await`. That is exactly what a
# broadcast needs: it learns at once that a client is behind, and can act on it.
#
# A `ChatMember` pairs one client's queue with its sender task. `_drain` is the only code
# that ever awaits that client's `send`, so if the client is slow, only this task waits.

# %%
#| export
class ChatMember:
    """One client of a ChatRoom: its outgoing queue and the task that drains it."""

    def __init__(self, name: str, send, queue_size: int):
        self.name, self.send = name, send
        self.queue = asyncio.Queue(maxsize=queue_size)
        self.sender = asyncio.get_running_loop().create_task(self._drain())
        self.closing = None                    # the task closing a member that fell behind

    async def _drain(self) -> None:
        while True:
            await self.send(await self.queue.get())

# %% [markdown]
# The sender task starts as soon as the member exists, so a member can only be made
# inside the server's event loop, in the app. `_drain` never returns on its own: it waits
# for the next message, sends it, and again, until the task is cancelled.
#
# The room keeps the members by name. Joining creates a member (and so starts its sender
# task); leaving removes it and cancels the task. `dropped` will list the members the room
# had to throw out.

# %%
#| export
class ChatRoom:
    """Members, and a broadcast that never waits for any of them."""

    def __init__(self, queue_size: int = 32):
        self.queue_size, self.members, self.dropped = queue_size, {}, []

    def join(self, name: str, send) -> ChatMember:
        member = self.members[name] = ChatMember(name, send, self.queue_size)
        return member

    def leave(self, member: ChatMember) -> None:
        self.members.pop(member.name, None)
        member.sender.cancel()

# %% [markdown]
# Now the method the whole section is about. Look at the first line: `def`, not
# `async def`. `broadcast` is a plain function, so it *cannot* wait for anyone, even by
# mistake; Python would refuse an `await` inside it. It offers the message to each queue
# and, on `QueueFull`, drops that member. Members already being closed are skipped.

# %%
#| export
def broadcast(self, message: dict, exclude: ChatMember | None = None) -> None:
    for member in list(self.members.values()):
        if member is exclude or member.closing is not None:
            continue
        try:
            member.queue.put_nowait(message)
        except asyncio.QueueFull:
            self._drop(member)

ChatRoom.broadcast = broadcast

# %% [markdown]
# Dropping a member takes two steps. Its sender task is cancelled first: it may be stuck in
# `await send(...)` behind megabytes the client never read, and cancelling it there is safe
# (a frame is written whole or not at all). Then the 1008 Close is sent from a task of its
# own, because `broadcast` must not wait for it either. `dropped` keeps the names, for you to
# look at.

# %%
#| export
def _drop(self, member: ChatMember) -> None:
    """A member with a full queue is not reading: close it with 1008."""
    member.sender.cancel()
    self.dropped.append(member.name)
    member.closing = asyncio.get_running_loop().create_task(self._close(member))

async def _close(self, member: ChatMember) -> None:
    try:
        await member.send({"type": "websocket.close", "code": 1008,
                           "reason": f"too slow: {self.queue_size} messages waiting"})
    except OSError:
        pass                                   # it is gone already

ChatRoom._drop, ChatRoom._close = _drop, _close

# %% [markdown]
# ### The chat app
#
# The app serves three things: the chat page at `/` (plain HTTP, below), `426 Upgrade
# Required` for a plain HTTP request to `/chat` (RFC 9110 §15.5.22: with the `Upgrade` field
# that says what to upgrade to), and the WebSocket at `/chat`. A name comes from the query
# string, at most 20 characters; a name already in the room gets a number.

# %%
#| export
def member_name(scope: dict, room: ChatRoom) -> str:
    """The ``name`` query parameter, cleaned up and unique in the room."""
    query = parse_qs(scope["query_string"].decode("latin-1"))
    wanted = "".join(c for c in query.get("name", ["guest"])[0] if c.isprintable())
    name = base = wanted.strip()[:20] or "guest"
    number = 1
    while name in room.members:
        number += 1
        name = f"{base}-{number}"
    return name

# %% [markdown]
# `isprintable` drops control characters such as a newline, so nobody can choose a name
# that fakes a second line in everyone else's log.
#
# Try it against a room where `alice` is already present. (The value stored for her does not
# matter here: `member_name` only looks at the names.)

# %%
demo_room = ChatRoom()
demo_room.members["alice"] = None
[member_name({"query_string": query}, demo_room)
 for query in (b"name=alice", b"name=bob", b"", b"name=%20%20")]

# %% [markdown]
# A second `alice` becomes `alice-2`; no name, or only spaces, becomes `guest`.

# %% [markdown]
# What do the others receive when someone speaks? A text message is signed with the
# sender's name; a binary message goes on exactly as it came, since there is no safe place
# to write a name into someone's picture. `relayed` turns an incoming `websocket.receive`
# into the outgoing `websocket.send`:

# %%
#| export
def relayed(name: str, message: dict) -> dict:
    """The ``websocket.send`` the others get when ``name`` sends ``message``."""
    if message.get("text") is not None:
        return {"type": "websocket.send", "text": f"{name}: {message['text']}"}
    return {"type": "websocket.send", "bytes": message["bytes"]}

# %% [markdown]
# One text message and one binary one from `alice`, the second starting like a PNG file:

# %%
relayed("alice", {"type": "websocket.receive", "text": "hi"}), \
    relayed("alice", {"type": "websocket.receive", "bytes": b"\x89PNG"})

# %% [markdown]
# The text is signed, `alice: hi`; the bytes go out untouched. Both are ready to put in a
# queue: their type is already `websocket.send`.
#
# A newcomer is greeted through its *own* queue, so the greeting is the first thing it
# gets, ahead of anything the room sends later. Everyone else hears that it joined.

# %%
#| export
def greet(room: ChatRoom, member: ChatMember) -> None:
    """Welcome ``member`` (with who is here) and tell the others it joined."""
    others = ", ".join(n for n in room.members if n != member.name) or "nobody else"
    member.queue.put_nowait({"type": "websocket.send",
                             "text": f"* welcome {member.name}; here: {others}"})
    room.broadcast({"type": "websocket.send", "text": f"* {member.name} joined"},
                   exclude=member)

# %% [markdown]
# With those two, the WebSocket handler reads almost like the description of a chat.
# Accept, join, greet; then every incoming message is relayed to the room. Notice that the
# loop never awaits a send: its only `await` is `receive()`. When the client leaves,
# whichever way, the `finally` takes it out of the room and the others are told.

# %%
#| export
async def chat_websocket(scope, receive, send, room: ChatRoom) -> None:
    await receive()                                          # websocket.connect
    if scope["path"] != "/chat":
        return await send({"type": "websocket.close"})       # 403
    name = member_name(scope, room)
    await send({"type": "websocket.accept"})
    member = room.join(name, send)
    greet(room, member)
    try:
        while (message := await receive())["type"] == "websocket.receive":
            room.broadcast(relayed(name, message), exclude=member)
    finally:
        room.leave(member)
        room.broadcast({"type": "websocket.send", "text": f"* {name} left"})
        await asyncio.wait({member.sender}, timeout=1.0)      # let it unwind

# %% [markdown]
# The page is plain HTML and a few lines of JavaScript, kept as Python strings in four
# parts. The markup first: a name box and a Join button, the log where messages appear,
# and a form to send text or bytes. Nothing here is WebSocket-specific yet.

# %%
#| export
CHAT_MARKUP = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>barelab chat</title>
<style>body{font:15px system-ui,sans-serif;max-width:42em;margin:2em auto;padding:0 1em}
#log{border:1px solid #ccc;height:18em;overflow-y:auto;padding:.5em;white-space:pre-wrap}
.me{color:#1a5fb4}.note{color:#777}</style></head>
<body><h1>barelab chat</h1>
<p><label>Name <input id="name" value="guest" size="12"></label>
<button id="join">Join</button> <span id="status">not connected</span></p>
<div id="log"></div>
<form id="form"><input id="text" size="36" autocomplete="off" disabled>
<button id="send" disabled>Send</button>
<button id="bytes" type="button" disabled>Send as bytes</button></form>
"""

# %% [markdown]
# The script starts with two helpers: `show` appends a line to the log (announcements, which
# start with `* `, in grey), and `enable` switches the message box on once connected.
# Messages are shown with `textContent`, never `innerHTML`, so a name like `<script>` is
# just text.

# %%
#| export
CHAT_SCRIPT_HELPERS = """const $ = (id) => document.getElementById(id);
let socket = null;
function show(text, kind) {
  const line = document.createElement("div");
  line.className = kind || (text.startsWith("* ") ? "note" : "");
  line.textContent = text;
  $("log").append(line);
  $("log").scrollTop = $("log").scrollHeight;
}
function enable(on) { for (const id of ["text", "send", "bytes"]) $(id).disabled = !on; }
"""

# %% [markdown]
# The one piece of the page that needs thought is the WebSocket URL. It is built from the
# page's own location: `ws://` or `wss://` to match `http:` or `https:`, the same host, and
# the page's path plus `chat`. So it works when you open the server directly
# (`http://127.0.0.1:PORT/` → `ws://127.0.0.1:PORT/chat`), and behind jupyter-server-proxy
# too, where the page lives at `.../proxy/PORT/` and the socket must go to
# `.../proxy/PORT/chat`. A hard-coded `ws://127.0.0.1:PORT/chat` would break there.

# %%
#| export
CHAT_SCRIPT_URL = """function chatUrl(name) {
  // Relative to this page, so it works behind a /proxy/<port>/ prefix too.
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  return scheme + location.host + location.pathname.replace(/\\/$/, "") + "/chat?name="
    + encodeURIComponent(name);
}
"""

# %% [markdown]
# Joining opens the WebSocket at that URL. `binaryType = "arraybuffer"` asks the browser to
# hand binary messages over as raw bytes; the close handler shows the code and reason, so
# you can watch a 1001 when the server stops.

# %%
#| export
CHAT_SCRIPT_CONNECT = """$("join").onclick = () => {
  if (socket) socket.close(1000);
  socket = new WebSocket(chatUrl($("name").value));
  socket.binaryType = "arraybuffer";
  socket.onopen = () => { $("status").textContent = "connected"; enable(true); };
  socket.onmessage = (event) => show(typeof event.data === "string" ? event.data
    : `[${event.data.byteLength} bytes] ` + new TextDecoder().decode(event.data));
  socket.onclose = (event) => {
    $("status").textContent = `closed (${event.code}${event.reason ? ", " + event.reason : ""})`;
    enable(false);
  };
};
"""

# %% [markdown]
# Sending: the form sends a text message, the other button the same text encoded as UTF-8
# bytes, a binary message. The chat does not echo your own messages, so the page shows
# them itself. The page is all the parts together:

# %%
#| export
CHAT_SCRIPT_SEND = """$("form").onsubmit = (event) => {
  event.preventDefault();
  socket.send($("text").value);
  show("me: " + $("text").value, "me");
  $("text").value = "";
};
$("bytes").onclick = () => {
  const data = new TextEncoder().encode($("text").value);
  socket.send(data);
  show(`me: [${data.length} bytes]`, "me");
  $("text").value = "";
};
"""
CHAT_PAGE = (CHAT_MARKUP + "<script>\n" + CHAT_SCRIPT_HELPERS + CHAT_SCRIPT_URL
             + CHAT_SCRIPT_CONNECT + CHAT_SCRIPT_SEND + "</script></body></html>\n")

# %% [markdown]
# The assembled page, in two facts: how many lines it has, and the line that builds the
# WebSocket URL from the page's own location.

# %%
print(CHAT_PAGE.count("\n"), "lines;", [line.strip() for line in CHAT_PAGE.splitlines()
                                       if "location.pathname" in line])

# %% [markdown]
# 54 lines of page, and the URL line: scheme, the page's host, the page's path without a
# trailing slash, then `/chat`. Nothing in it names a port or a host.
#
# The HTTP side serves that page, the 426 and a 404. (A chat keeps a conversation that
# another site must not join in your visitors' name, so the whole app will sit behind
# `check_origin`.)

# %%
#| export
async def chat_http(scope, receive, send, page: str) -> None:
    if scope["path"] == "/":
        status, headers, body = 200, [(b"content-type", b"text/html; charset=utf-8")], page
    elif scope["path"] == "/chat":
        status, body = 426, "/chat is a WebSocket endpoint: connect with ws:// or wss://\n"
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"upgrade", b"websocket"),
                   (b"connection", b"Upgrade"), (b"sec-websocket-version", b"13")]
    else:
        status, body = 404, "not found\n"
        headers = [(b"content-type", b"text/plain; charset=utf-8")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body.encode("utf-8")})

# %% [markdown]
# `make_chat_app` puts the pieces together: one room shared by every connection of this app,
# `scope["type"]` to choose between the HTTP side and the WebSocket side, and the Origin
# check around the whole.

# %%
#| export
def make_chat_app(room: ChatRoom | None = None, page: str = CHAT_PAGE, allowed_origins=None):
    """A chat: the page at ``/``, the WebSocket at ``/chat``, one ChatRoom for all."""
    room = ChatRoom() if room is None else room

    async def chat(scope, receive, send):
        if scope["type"] == "http":
            return await chat_http(scope, receive, send, page)
        if scope["type"] != "websocket":
            raise RuntimeError(f"the chat serves http and websocket, not {scope['type']!r}")
        await chat_websocket(scope, receive, send, room)

    guarded = check_origin(chat, allowed_origins)
    guarded.room = room                        # so that cells can look inside
    return guarded

# %% [markdown]
# ### The slow client again
#
# Same experiment, same numbers, on the chat with queues. `make_chat_app` builds a fresh
# room for this server, and `flood` connects the same three clients:

# %%
from barelab.built.websocket import make_chat_app

chat_app = make_chat_app()
chat_server = barelab.serve(chat_app, name="chat", server=WebSocketASGIServer)
listener, sleeper, speaker = flood(chat_server)
got, seconds = count(listener)
print(f"listener got all {N} messages: {got == N} in {seconds:.2f} s")

# %% [markdown]
# Every message arrived, at full speed. Follow one of them: the speaker's handler receives
# it and calls `broadcast`, which puts it into the listener's queue and the sleeper's queue
# and returns at once. The listener's sender task drains its queue into the socket; the
# sleeper's sender task gets stuck in `send`, exactly like the naive handler did, but now
# that blocks nobody else. The sleeper's queue fills up; once 32 messages wait in it, the
# next `put_nowait` raises `QueueFull` and the room drops the sleeper.
#
# Check that story against the room: who was dropped, who is left, and how many errors the
# server logged.

# %%
wait_until(lambda: "sleeper" not in chat_app.room.members)
chat_app.room.dropped, sorted(chat_app.room.members), len(chat_server.log.errors)

# %% [markdown]
# The sleeper is gone from the room; the listener and the speaker stay. The sleeper's 1008
# Close frame sits behind megabytes it never read, so after `CLOSE_TIMEOUT` the server cut
# its TCP connection. No error was logged: being dropped is the room's policy working, not a
# crash. Close the clients; the room should end up empty:

# %%
for client in (listener, speaker, sleeper):
    client.close()
wait_until(lambda: not chat_app.room.members)     # the handlers end in the server's thread
chat_app.room.members

# %% [markdown]
# An empty dict: each handler's `finally` ran `room.leave`, so no member and no sender task
# is left behind.
#
# ### Two clients in cells
#
# A conversation between `alice` and `bob`. Each `receive()` waits for the next message to
# that client:

# %%
alice = barelab.websocket_connect(chat_server, "/chat?name=alice")
print(alice.receive())
bob = barelab.websocket_connect(chat_server, "/chat?name=bob")
print(bob.receive(), "|", alice.receive())

# %% [markdown]
# alice's welcome says nobody else is here. bob's welcome names alice, and alice heard that
# bob joined. Now one message each way, text from alice and bytes from bob:

# %%
alice.send_text("hi bob")
print(bob.receive())
bob.send_bytes("🙂".encode())
print(alice.receive())

# %% [markdown]
# Text arrived as text with the sender's name, the emoji's four bytes as a binary message.
# When bob leaves, alice is told:

# %%
bob.close()
print(alice.receive())
alice.close()
alice

# %% [markdown]
# ### In a browser
#
# The server's link opens the chat page. Open it in two tabs, join with two names, and
# talk to yourself; a tab you close announces that it left. Under JupyterHub or Binder
# the link goes through jupyter-server-proxy, and the page's relative WebSocket URL follows
# it there.

# %%
chat_server

# %% [markdown]
# The same server answers the plain requests too. `/chat` without an upgrade says what it
# wants:

# %%
page = barelab.http_request(chat_server, path="/")
refused = barelab.http_request(chat_server, path="/chat")
page.status_line, page.header("content-type"), refused.status_line, refused.header("upgrade")

# %% [markdown]
# The page is HTML, and `/chat` answers `426 Upgrade Required` with `upgrade: websocket`,
# which tells whoever typed it into a browser's address bar what the endpoint speaks.
#
# And a page from another site cannot join the room in your name:

# %%
try:
    barelab.websocket_connect(chat_server, "/chat?name=mallory", origin="https://evil.example")
except barelab.client.WebSocketRejected as refused:
    print(refused.status)

# %% [markdown]
# A 403, and nobody in the room heard of `mallory`: the check ran before `chat_websocket`,
# so she never joined, and no announcement went out.
#
# ### The same chat on barelab's server
#
# Nothing in the chat depends on your server: it is an ASGI app. Serve it on barelab's own
# engine (h11 and wsproto) and replay the alice-and-bob conversation on both:

# %%
def conversation(server):
    alice = barelab.websocket_connect(server, "/chat?name=alice")
    bob = barelab.websocket_connect(server, "/chat?name=bob")
    alice.send_text("hi bob")
    bob.send_bytes(b"\x00\x01")
    seen = [alice.receive(), alice.receive(), bob.receive(), bob.receive(), alice.receive()]
    bob.close()
    seen.append(alice.receive())
    alice.close()
    return seen

reference = barelab.serve(make_chat_app(), name="chat-barelab")
ours, theirs = conversation(chat_server), conversation(reference)
print(ours == theirs)
ours

# %% [markdown]
# The same messages in the same order, on both servers: two welcomes, the join, the text
# with its sender's name, the bytes as they were sent, and the leave. The chat only ever
# spoke ASGI, so any server that speaks it correctly gives the same conversation, which is
# the point of a standard interface.

# %% [markdown]
# ## Summary
#
# - A WebSocket is an HTTP/1.1 `GET` with `Upgrade: websocket`, answered `101 Switching
#   Protocols`; after that, frames flow both ways on the same TCP connection.
# - `Sec-WebSocket-Accept` is base64(SHA-1(key + the RFC's GUID)); you checked it against RFC
#   6455's example. A broken handshake gets a 400, an unknown version a 426 with
#   `Sec-WebSocket-Version: 13`; a request without `Upgrade` is plain HTTP.
# - A frame is FIN, opcode, MASK, a length in 7, 16 or 64 bits, a masking key (from clients,
#   always) and the payload. wsproto's frame `Connection` turns bytes into events and back;
#   reassembling fragments into whole messages is the server's job.
# - The ASGI WebSocket events: `connect` → `accept` (with `subprotocol`, `headers`) or
#   `close` (before accept: HTTP 403), then `receive`/`send` with `text` or `bytes`, and
#   `disconnect` with the code. App errors: 500 before accept, 1011 after. Protocol errors:
#   1002; bad UTF-8: 1007; too big: 1009; server stopping: 1001; pings answered at once.
# - `WebSocketASGIServer` is chapter 13's server with one new branch in
#   `Connection._exchange`, plugged in through chapter 13's `connection_class` hook; plain
#   HTTP is untouched.
# - Browsers let any page open a WebSocket to any host with your cookies, so check
#   `Origin` (`check_origin`): cross-site handshakes get a 403.
# - A broadcast must never await a client. A queue per client with a sender task each keeps
#   one slow client from stalling the room; a full queue disconnects that client with 1008.
#
# Everything marked `#| export` is in `barelab.built.websocket`.

# %% [markdown]
# ## Exercises
#
# ### Exercise 1 — Your own accept key
#
# Write `my_accept(key: str) -> str` without calling `accept_key`: SHA-1 over the key plus
# the GUID, then base64. The check tries it on the RFC's example and on random keys against
# `accept_key`.

# %% tags=["solution"]
### BEGIN SOLUTION
def my_accept(key: str) -> str:
    digest = hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
    return base64.b64encode(digest).decode()
### END SOLUTION

# %% tags=["check"]
import random

from barelab.built.websocket import accept_key
from barelab.exercises import check

with check("Exercise 1"):
    assert my_accept("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", \
        "the RFC's example key must give s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    rng = random.Random(15)
    for _ in range(20):
        key = base64.b64encode(bytes(rng.randrange(256) for _ in range(16))).decode()
        assert my_accept(key) == accept_key(key), f"wrong answer for the key {key}"

# %% [markdown]
# ### Exercise 2 — A reverse-echo with a subprotocol
#
# Write an ASGI app `reverser` that accepts only clients offering the subprotocol
# `"reverse.v1"` (accepting with it), and refuses the others by closing before accept
# (so they get a 403). Once accepted, it sends every text message back reversed
# (`"abc"` → `"cba"`) and every binary message back unchanged.

# %% tags=["solution"]
### BEGIN SOLUTION
async def reverser(scope, receive, send):
    await receive()
    if "reverse.v1" not in scope["subprotocols"]:
        return await send({"type": "websocket.close"})
    await send({"type": "websocket.accept", "subprotocol": "reverse.v1"})
    while (message := await receive())["type"] == "websocket.receive":
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"][::-1]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
### END SOLUTION

# %% tags=["check"]
with check("Exercise 2"):
    reversing = barelab.serve(reverser, name="exercise", server=WebSocketASGIServer)
    with barelab.websocket_connect(reversing, "/", subprotocols=["reverse.v1"]) as client:
        assert client.subprotocol == "reverse.v1", "accept with the subprotocol 'reverse.v1'"
        client.send_text("abc")
        assert client.receive() == "cba", "text comes back reversed"
        client.send_bytes(b"abc")
        assert client.receive() == b"abc", "bytes come back unchanged"
    try:
        barelab.websocket_connect(reversing, "/", subprotocols=["other"])
        raise AssertionError("a client without reverse.v1 must be refused")
    except barelab.client.WebSocketRejected as refused:
        assert refused.status == 403, f"close before accept is a 403, got {refused.status}"

# %% [markdown]
# ### Exercise 3 — A room that drops messages instead
#
# Some feeds (stock prices, cursor positions) prefer losing old messages to losing the
# client. Write `LossyRoom(ChatRoom)` whose `broadcast`, on a full queue, throws away the
# *oldest* waiting message of that member (`get_nowait`) and queues the new one, instead
# of dropping the member. The check fills a member's queue without a sender and looks at
# what is left.

# %% tags=["solution"]
### BEGIN SOLUTION
from barelab.built.websocket import ChatRoom

class LossyRoom(ChatRoom):
    def broadcast(self, message, exclude=None):
        for member in list(self.members.values()):
            if member is exclude:
                continue
            if member.queue.full():
                member.queue.get_nowait()
            member.queue.put_nowait(message)
### END SOLUTION

# %% tags=["check"]
async def lossy_check():
    room = LossyRoom(queue_size=3)
    async def never_sends(message):
        await asyncio.Event().wait()
    member = room.join("slow", never_sends)
    member.sender.cancel()                      # nobody drains the queue
    for n in range(10):
        room.broadcast({"type": "websocket.send", "text": str(n)})
    left = [member.queue.get_nowait()["text"] for _ in range(member.queue.qsize())]
    return left, room.dropped

with check("Exercise 3"):
    left, dropped = await lossy_check()
    assert dropped == [], f"a lossy room drops messages, not members; it dropped {dropped}"
    assert left == ["7", "8", "9"], f"the newest three should be left, got {left}"

# %% [markdown]
# ## Clean up
#
# Stop every server this chapter started (the number is how many were still running).

# %%
barelab.stop_all()
