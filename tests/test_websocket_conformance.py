"""Chapter 15's WebSocketASGIServer, probed over real sockets through barelab.serve.

Where the course server and barelab's own ASGIEngine (h11 + wsproto) must behave alike, a test
runs against both (the ``engine`` fixture), which shows they agree. Malformed frames are sent
with raw sockets; well-formed conversations use barelab.websocket_connect. Every wait has a
timeout, and no verdict depends on a fixed sleep.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import threading
import time

import pytest
from wsproto.connection import Connection as FrameConnection
from wsproto.connection import ConnectionType
from wsproto.events import CloseConnection, Pong, TextMessage

import barelab
from barelab.built.websocket import (ChatRoom, WebSocketASGIServer, accept_key, check_origin,
                                     make_chat_app)
from barelab.client import WebSocketClosed, WebSocketRejected
from barelab.engines.asgi import ASGIEngine

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
HANDSHAKE = (b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
MASK = bytes([0x37, 0xFA, 0x21, 0x3D])


def masked(first_byte: int, payload: bytes) -> bytes:
    """One client frame (lengths up to 125), masked as RFC 6455 §5.3 requires."""
    assert len(payload) <= 125
    data = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return bytes([first_byte, 0x80 | len(payload)]) + MASK + data


CLOSE_1000 = masked(0x88, (1000).to_bytes(2, "big"))


# ---------------------------------------------------------------------------------------
# Apps


async def echo(scope, receive, send):
    """Echo text and bytes; plain HTTP gets a 426 that says what to upgrade to."""
    if scope["type"] == "lifespan":
        raise RuntimeError("no lifespan")
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 426,
                    "headers": [(b"upgrade", b"websocket"), (b"content-length", b"0")]})
        return await send({"type": "http.response.body", "body": b""})
    await receive()
    await send({"type": "websocket.accept"})
    while (message := await receive())["type"] == "websocket.receive":
        await send({**message, "type": "websocket.send"})


def recording(log: list):
    """An echo app that records the disconnect it hears; 'close' makes it close with 4001."""
    async def app(scope, receive, send):
        if scope["type"] != "websocket":
            raise RuntimeError("websocket only")
        await receive()
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            if message.get("text") == "close":
                await send({"type": "websocket.close", "code": 4001, "reason": "asked to"})
            else:
                await send({**message, "type": "websocket.send"})
        log.append(message)
    return app


# ---------------------------------------------------------------------------------------
# Harness


ENGINES = {"course": WebSocketASGIServer, "barelab": ASGIEngine}


@pytest.fixture(params=sorted(ENGINES))
def engine(request):
    return ENGINES[request.param]


@pytest.fixture
def serve():
    servers = []

    def start(app, server_cls, **options):
        server = barelab.serve(app, name=f"ws-test-{len(servers)}", server=server_cls,
                               lifespan="off", **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


class Raw:
    """A raw socket that did the handshake; frames in, wsproto events out."""

    def __init__(self, server, request: bytes = HANDSHAKE, extra: bytes = b""):
        self.sock = socket.create_connection((server.host, server.port), timeout=3)
        self.sock.sendall(request + extra)
        self.head, self.buffer = b"", b""
        while b"\r\n\r\n" not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                break
            self.buffer += data
        self.head, _, rest = self.buffer.partition(b"\r\n\r\n")
        self.frames = FrameConnection(ConnectionType.CLIENT)
        self.frames.receive_data(rest)
        self.closed = False

    @property
    def status(self) -> int:
        return int(self.head.split(b" ")[1])

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def events(self, until=CloseConnection, timeout: float = 3.0) -> list:
        """Events until one of type ``until`` (or the connection ends)."""
        seen, deadline = [], time.monotonic() + timeout
        while True:
            for event in self.frames.events():
                seen.append(event)
                if isinstance(event, until):
                    return seen
            if self.closed:
                return seen
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
                self.frames.receive_data(None)
            else:
                self.frames.receive_data(data)

    def close_code(self) -> int | None:
        closes = [e for e in self.events() if isinstance(e, CloseConnection)]
        return int(closes[0].code) if closes else None

    def ended(self, timeout: float = 3.0) -> bool:
        """True once the server closed the TCP connection."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
        return True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()


def status_of(server, request: bytes) -> tuple[int, bytes]:
    with Raw(server, request) as raw:
        return raw.status, raw.head


def wait_for(condition, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# ---------------------------------------------------------------------------------------
# The handshake


def test_accept_key_is_the_rfc_example():
    assert accept_key(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_handshake_is_answered_with_101_and_the_accept_key(engine, serve):
    status, head = status_of(serve(echo, engine), HANDSHAKE)
    assert status == 101
    fields = dict(line.split(b": ", 1) for line in head.lower().split(b"\r\n")[1:])
    assert fields[b"upgrade"] == b"websocket"
    assert fields[b"connection"] == b"upgrade"
    assert fields[b"sec-websocket-accept"] == b"s3pplmbitxaq9kygzzhzrbk+xoo="


@pytest.mark.parametrize("old, new", [
    (b"Sec-WebSocket-Key: " + KEY + b"\r\n", b""),
    (KEY, base64.b64encode(b"x" * 15)),
    (KEY, b"not base64 at all!!!!!!="),
], ids=["missing key", "15-byte key", "not base64"])
def test_bad_key_is_400(engine, serve, old, new):
    status, _ = status_of(serve(echo, engine), HANDSHAKE.replace(old, new))
    assert status == 400


@pytest.mark.parametrize("version", [b"8", b"13, 8", b"14"])
def test_wrong_version_is_426_naming_13(engine, serve, version):
    request = HANDSHAKE.replace(b"Version: 13", b"Version: " + version)
    status, head = status_of(serve(echo, engine), request)
    assert status == 426
    assert b"sec-websocket-version: 13" in head.lower()


def test_missing_version_is_400(engine, serve):
    request = HANDSHAKE.replace(b"Sec-WebSocket-Version: 13\r\n", b"")
    assert status_of(serve(echo, engine), request)[0] == 400


def test_426_also_names_the_upgrade_rfc9110():
    """RFC 9110 §15.5.22: a server that sends 426 MUST send an Upgrade header field."""
    server = barelab.serve(echo, name="ws-426", server=WebSocketASGIServer, lifespan="off")
    try:
        _, head = status_of(server, HANDSHAKE.replace(b"Version: 13", b"Version: 8"))
        assert b"upgrade: websocket" in head.lower()
    finally:
        server.stop()


@pytest.mark.parametrize("old, new", [
    (b"GET /ws", b"POST /ws"),
    (b"Connection: Upgrade", b"Connection: keep-alive"),
], ids=["not GET", "no Connection: Upgrade"])
def test_broken_upgrade_is_not_switched(engine, serve, old, new):
    status, _ = status_of(serve(echo, engine), HANDSHAKE.replace(old, new))
    assert 400 <= status < 500, "refused by the server (400) or answered by the app (426)"


@pytest.mark.parametrize("old, new", [(b"GET /ws", b"POST /ws"),
                                      (b"Connection: Upgrade", b"Connection: x")])
def test_course_server_refuses_a_broken_handshake_itself(serve, old, new):
    status, _ = status_of(serve(echo, WebSocketASGIServer), HANDSHAKE.replace(old, new))
    assert status == 400


def test_missing_upgrade_is_plain_http(engine, serve):
    status, _ = status_of(serve(echo, engine), HANDSHAKE.replace(b"Upgrade: websocket\r\n", b""))
    assert status == 426, "no Upgrade: the request reaches the app as HTTP"


def test_http_10_upgrade_is_ignored(engine, serve):
    """RFC 9110 §7.8: a server MUST ignore Upgrade in an HTTP/1.0 request."""
    status, _ = status_of(serve(echo, engine), HANDSHAKE.replace(b"HTTP/1.1", b"HTTP/1.0"))
    assert status == 426


def test_handshake_with_a_body_is_400(serve):
    request = HANDSHAKE.replace(b"\r\n\r\n", b"\r\nContent-Length: 2\r\n\r\nhi")
    assert status_of(serve(echo, WebSocketASGIServer), request)[0] == 400


def test_close_before_accept_is_403(engine, serve):
    async def refuse(scope, receive, send):
        await receive()
        await send({"type": "websocket.close", "code": 1008})
    with pytest.raises(WebSocketRejected) as refused:
        barelab.websocket_connect(serve(refuse, engine), "/ws")
    assert refused.value.status == 403


def test_denial_response_extension(engine, serve):
    async def deny(scope, receive, send):
        assert "websocket.http.response" in scope["extensions"]
        await receive()
        await send({"type": "websocket.http.response.start", "status": 401,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "websocket.http.response.body", "body": b"who ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"are you?"})
    with pytest.raises(WebSocketRejected) as refused:
        barelab.websocket_connect(serve(deny, engine), "/ws")
    assert (refused.value.status, refused.value.body) == (401, b"who are you?")


def test_subprotocol_negotiation(engine, serve):
    async def pick(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept", "subprotocol": scope["subprotocols"][-1]})
        await send({"type": "websocket.send", "text": ",".join(scope["subprotocols"])})
    client = barelab.websocket_connect(serve(pick, engine), "/", subprotocols=["a.v1", "B.v2"])
    assert client.subprotocol == "B.v2"
    assert client.receive() == "a.v1,B.v2"
    client.close()


def test_subprotocol_not_offered_is_an_app_error(serve):
    async def pick(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept", "subprotocol": "never.offered"})
    server = serve(pick, WebSocketASGIServer)
    with pytest.raises(WebSocketRejected) as refused:
        barelab.websocket_connect(server, "/", subprotocols=["a"])
    assert refused.value.status == 500
    assert "subprotocol" in server.log.errors[-1].details


def test_websocket_scope(engine, serve):
    scopes = []

    async def keep(scope, receive, send):
        scopes.append(scope)
        await receive()
        await send({"type": "websocket.close"})
    server = serve(keep, engine)
    with pytest.raises(WebSocketRejected):
        barelab.websocket_connect(server, "/a%20b?x=1", subprotocols=["p"])
    scope = scopes[0]
    assert scope["type"] == "websocket"
    assert scope["asgi"]["version"] == "3.0"
    assert (scope["path"], scope["raw_path"], scope["query_string"]) == ("/a b", b"/a%20b", b"x=1")
    assert scope["subprotocols"] == ["p"]
    assert scope["scheme"] == "ws" and scope["http_version"] == "1.1"
    assert scope["client"][0] == "127.0.0.1" and scope["server"][1] == server.port
    assert "state" in scope and "websocket.http.response" in scope["extensions"]
    assert all(name == name.lower() for name, _ in scope["headers"])


# ---------------------------------------------------------------------------------------
# Messages and frames


def test_text_and_binary_echo(engine, serve):
    with barelab.websocket_connect(serve(echo, engine), "/") as client:
        client.send_text("héllo")
        client.send_bytes(b"\x00\xff")
        assert client.receive() == "héllo"
        assert client.receive() == b"\x00\xff"


def test_fragmented_message_is_reassembled(engine, serve):
    fragments = masked(0x01, b"Hel") + masked(0x00, b"l") + masked(0x80, b"o")
    with Raw(serve(echo, engine), extra=fragments) as raw:
        events = raw.events(until=TextMessage)
        assert [(e.data, e.message_finished) for e in events] == [("Hello", True)]


def test_ping_between_fragments_is_answered(engine, serve):
    frames = masked(0x01, b"Hel") + masked(0x89, b"ping!") + masked(0x80, b"lo")
    with Raw(serve(echo, engine), extra=frames) as raw:
        events = raw.events(until=TextMessage)
        assert [type(e).__name__ for e in events] == ["Pong", "TextMessage"]
        assert events[0].payload == b"ping!" and events[1].data == "Hello"


def test_ping_is_answered_with_pong(engine, serve):
    with barelab.websocket_connect(serve(echo, engine), "/") as client:
        assert client.ping(b"payload") == b"payload"


def test_frames_in_the_handshake_packet_are_not_lost(engine, serve):
    with Raw(serve(echo, engine), extra=masked(0x81, b"early")) as raw:
        assert [e.data for e in raw.events(until=TextMessage)] == ["early"]


# ---------------------------------------------------------------------------------------
# Closing


def test_client_close_is_echoed_and_reported(engine, serve):
    heard = []
    client = barelab.websocket_connect(serve(recording(heard), engine), "/")
    client.close(1000, "bye")
    assert client.close_code == 1000
    assert wait_for(lambda: heard)
    assert (heard[0]["code"], heard[0]["reason"]) == (1000, "bye")


def test_app_close_with_code_and_reason(engine, serve):
    heard = []
    client = barelab.websocket_connect(serve(recording(heard), engine), "/")
    client.send_text("close")
    with pytest.raises(WebSocketClosed) as closed:
        client.receive(timeout=3)
    assert (closed.value.code, closed.value.reason) == (4001, "asked to")
    assert wait_for(lambda: heard)
    assert heard[0]["code"] == 4001, "the client echoed the app's code"


def test_server_stop_closes_with_1001(engine, serve):
    heard = []
    server = serve(recording(heard), engine)
    client = barelab.websocket_connect(server, "/")
    server.stop()
    with pytest.raises(WebSocketClosed) as closed:
        client.receive(timeout=3)
    assert closed.value.code == 1001
    assert heard and heard[0]["code"] == 1001


def test_app_return_closes_with_1000(engine, serve):
    async def brief(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
    with Raw(serve(brief, engine)) as raw:
        assert raw.close_code() == 1000


def test_tcp_loss_is_disconnect_1006(engine, serve):
    heard = []
    with Raw(serve(recording(heard), engine)):
        pass                                   # the socket closes without a Close frame
    assert wait_for(lambda: heard)
    assert heard[0]["code"] == 1006


def test_invalid_utf8_is_1007(engine, serve):
    with Raw(serve(echo, engine), extra=masked(0x81, b"caf\xc3(")) as raw:
        assert raw.close_code() == 1007


def test_utf8_split_across_fragments_is_fine(engine, serve):
    frames = masked(0x01, b"caf\xc3") + masked(0x80, b"\xa9")
    with Raw(serve(echo, engine), extra=frames) as raw:
        assert [e.data for e in raw.events(until=TextMessage)] == ["café"]


@pytest.mark.parametrize("frame", [
    b"\x81\x05Hello",                             # not masked
    masked(0xC1, b"rsv"),                         # RSV1 without an extension
    masked(0x83, b"x"),                           # reserved opcode
    masked(0x80, b"orphan"),                      # continuation with nothing to continue
    masked(0x09, b"fragmented ping"),             # control frames are never fragmented
    masked(0x88, (1005).to_bytes(2, "big")),      # a code never sent on the wire
], ids=["unmasked", "rsv1", "opcode 3", "orphan continuation", "fragmented ping", "close 1005"])
def test_protocol_errors_are_1002(engine, serve, frame):
    with Raw(serve(echo, engine), extra=frame) as raw:
        assert raw.close_code() == 1002


def test_oversized_message_is_1009(engine, serve):
    server = serve(echo, engine, ws_max_message_bytes=100)
    with barelab.websocket_connect(server, "/") as client:
        client.send_bytes(b"x" * 100)
        assert client.receive() == b"x" * 100
        client.send_bytes(b"x" * 101)
        with pytest.raises(WebSocketClosed) as closed:
            client.receive(timeout=3)
    assert closed.value.code == 1009


def test_oversized_fragmented_message_is_1009(engine, serve):
    frames = masked(0x02, b"x" * 60) + masked(0x80, b"x" * 60)
    with Raw(serve(echo, engine, ws_max_message_bytes=100), extra=frames) as raw:
        assert raw.close_code() == 1009


def test_app_error_after_accept_is_1011(engine, serve):
    async def fail_later(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await receive()
        raise ValueError("boom")
    server = serve(fail_later, engine)
    client = barelab.websocket_connect(server, "/")
    client.send_text("go")
    with pytest.raises(WebSocketClosed) as closed:
        client.receive(timeout=3)
    assert closed.value.code == 1011
    assert wait_for(lambda: server.log.errors)


def test_app_error_before_accept_is_500(engine, serve):
    async def fail_early(scope, receive, send):
        await receive()
        raise ValueError("boom")
    with pytest.raises(WebSocketRejected) as refused:
        barelab.websocket_connect(serve(fail_early, engine), "/")
    assert refused.value.status == 500


def test_app_returning_without_answer_is_500(engine, serve):
    async def silent(scope, receive, send):
        await receive()
    with pytest.raises(WebSocketRejected) as refused:
        barelab.websocket_connect(serve(silent, engine), "/")
    assert refused.value.status == 500


def test_send_after_close_raises_oserror(serve):
    outcome = []

    async def late_sender(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        message = await receive()
        try:
            await send({"type": "websocket.send", "text": "too late"})
        except OSError as exc:
            outcome.append((message["type"], type(exc).__name__))
    client = barelab.websocket_connect(serve(late_sender, WebSocketASGIServer), "/")
    client.close()
    assert wait_for(lambda: outcome)
    assert outcome == [("websocket.disconnect", "ClientDisconnected")]


# ---------------------------------------------------------------------------------------
# Many clients, Origin, HTTP on the same server


def test_ten_concurrent_clients(engine, serve):
    server = serve(echo, engine)
    clients = [barelab.websocket_connect(server, "/") for _ in range(10)]
    for n, client in enumerate(clients):
        client.send_text(f"client {n}")
    assert [c.receive() for c in clients] == [f"client {n}" for n in range(10)]
    for client in clients:
        client.close()
    assert all(c.close_code == 1000 for c in clients)


def test_origin_refused_is_403(engine, serve):
    server = serve(check_origin(echo), engine)
    with pytest.raises(WebSocketRejected) as refused:
        barelab.websocket_connect(server, "/", origin="https://evil.example")
    assert refused.value.status == 403
    same = barelab.websocket_connect(server, "/", origin=f"http://127.0.0.1:{server.port}")
    assert same.ping(b"ok") == b"ok"
    same.close()


def test_origin_allow_list(engine, serve):
    server = serve(check_origin(echo, ["https://app.example"]), engine)
    barelab.websocket_connect(server, "/", origin="https://app.example").close()
    with pytest.raises(WebSocketRejected):
        barelab.websocket_connect(server, "/", origin=f"http://127.0.0.1:{server.port}")


def test_plain_http_still_works(engine, serve):
    server = serve(make_chat_app(), engine)
    page = barelab.http_request(server, path="/")
    assert page.status == 200 and b"new WebSocket(" in page.body
    assert barelab.http_request(server, path="/chat").status == 426
    with barelab.websocket_connect(server, "/chat?name=a") as client:
        assert client.receive().startswith("* welcome a")
    assert barelab.http_request(server, path="/nowhere").status == 404


def test_chat_broadcast_and_leave(engine, serve):
    server = serve(make_chat_app(), engine)
    alice = barelab.websocket_connect(server, "/chat?name=alice")
    bob = barelab.websocket_connect(server, "/chat?name=bob")
    alice.send_text("hi")
    bob.send_bytes(b"\x01")
    assert [alice.receive(), alice.receive(), alice.receive()] == \
        ["* welcome alice; here: nobody else", "* bob joined", b"\x01"]
    assert [bob.receive(), bob.receive()] == ["* welcome bob; here: alice", "alice: hi"]
    bob.close()
    assert alice.receive() == "* bob left"
    alice.close()


def test_chat_room_drops_a_member_with_a_full_queue():
    async def scenario():
        room = ChatRoom(queue_size=2)
        sent, stuck = [], asyncio.Event()

        async def fast(message):
            sent.append(message)

        async def slow(message):
            if message.get("type") == "websocket.close":
                sent.append(("closed slow", message["code"]))
                return
            await stuck.wait()                 # never takes a message
        room.join("fast", fast)
        room.join("slow", slow)
        started = time.perf_counter()
        for n in range(10):
            room.broadcast({"type": "websocket.send", "text": str(n)})
            await asyncio.sleep(0)
        elapsed = time.perf_counter() - started
        await asyncio.sleep(0.01)
        return room, sent, elapsed

    room, sent, elapsed = asyncio.run(scenario())
    assert room.dropped == ["slow"]
    assert ("closed slow", 1008) in sent
    assert [m["text"] for m in sent if isinstance(m, dict)] == [str(n) for n in range(10)]
    assert elapsed < 0.5, "a broadcast never waits for a member"


def test_a_client_that_never_reads_does_not_stall_the_room(serve):
    """The chapter's experiment, smaller: 120 messages of 64 KiB, one client that never
    reads. The listener must get them all; the sleeper is dropped with 1008."""
    app = make_chat_app(ChatRoom(queue_size=8))
    server = serve(app, WebSocketASGIServer)
    listener = barelab.websocket_connect(server, "/chat?name=listener")
    sleeper = socket.create_connection((server.host, server.port))
    sleeper.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sleeper.sendall(HANDSHAKE.replace(b"/ws", b"/chat?name=sleeper"))
    assert wait_for(lambda: "sleeper" in app.room.members)
    speaker = barelab.websocket_connect(server, "/chat?name=speaker", timeout=20)
    payload, count = bytes(65536), 120

    def speak():
        try:
            for _ in range(count):
                speaker.send_bytes(payload)
        except OSError:
            pass
    thread = threading.Thread(target=speak, daemon=True)
    thread.start()
    got = 0
    while got < count:
        got += isinstance(listener.receive(timeout=5), bytes)
    thread.join(5)
    assert wait_for(lambda: "sleeper" not in app.room.members, 5)
    assert app.room.dropped == ["sleeper"]
    sleeper.close()
    listener.close()
    speaker.close()


def test_the_websocket_server_plugs_in_through_connection_class():
    from barelab.built.asgi_server import ASGIServer as Base
    from barelab.built.websocket import WebSocketConnection

    assert WebSocketASGIServer.connection_class is WebSocketConnection
    assert WebSocketASGIServer._accept is Base._accept       # the accept loop is not copied
