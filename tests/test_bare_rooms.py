"""barelab.built.bare_rooms (chapter 24): WebSocket rooms on bare.

In-process tests use chapter 17's TestClient (presence, relaying, rooms kept apart, the
room going away on the last leave); the slow-client policy is tested with a WebSocket
whose send never returns, and then once over real sockets with barelab.serve.
"""

import asyncio
import json
import threading
import time

import pytest

import barelab
from barelab.built.bare_rooms import (QUEUE_SIZE, Member, Room, Rooms, ROOMS_PAGE,
                                      make_rooms_app)
from barelab.built.bare import WebSocket, WebSocketDisconnect
from barelab.built.testing import TestClient


def wait_until(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def test_join_presence_and_leave_removes_the_room():
    app = make_rooms_app()
    with TestClient(app) as client:
        with client.websocket_connect("/ws/kitchen?name=alice") as alice:
            assert alice.receive_json() == {"type": "presence", "room": "kitchen",
                                            "event": "join", "name": "alice",
                                            "members": ["alice"]}
            with client.websocket_connect("/ws/kitchen?name=bob") as bob:
                assert bob.receive_json()["members"] == ["alice", "bob"]
                assert alice.receive_json()["name"] == "bob"
                assert app.rooms.presence("kitchen") == ["alice", "bob"]
            event = alice.receive_json()
            assert (event["event"], event["name"], event["members"]) == ("leave", "bob",
                                                                         ["alice"])
        assert app.rooms.rooms == {} and app.rooms.presence("kitchen") == []


def test_text_is_relayed_as_json_and_bytes_untouched_not_to_the_sender():
    app = make_rooms_app()
    with TestClient(app) as client:
        with client.websocket_connect("/ws/k?name=a") as a, \
             client.websocket_connect("/ws/k?name=b") as b:
            a.receive_json(), a.receive_json(), b.receive_json()
            b.send_text("héllo")
            b.send_bytes(b"\x00\xff")
            assert a.receive_json() == {"type": "message", "room": "k", "name": "b",
                                        "text": "héllo"}
            assert a.receive_bytes() == b"\x00\xff"
            a.send_text("back")
            assert b.receive_json()["text"] == "back"     # b's own messages never came back


def test_rooms_are_apart_and_names_are_unique():
    app = make_rooms_app()
    with TestClient(app) as client:
        with client.websocket_connect("/ws/one?name=x") as x, \
             client.websocket_connect("/ws/one?name=x") as x2, \
             client.websocket_connect("/ws/two?name=y") as y:
            assert x2.receive_json()["name"] == "x-2"
            assert y.receive_json()["members"] == ["y"]
            x.send_text("only room one")
            assert x2.receive_json()["text"] == "only room one"
            y.send_text("only room two")
            assert [x.receive_json()["name"] for _ in range(2)] == ["x", "x-2"]
            x2.send_text("still room one")
            assert x.receive_json()["text"] == "still room one"   # nothing from room two
        assert sorted(app.rooms.rooms) == []
    assert app.rooms.rooms == {}


@pytest.mark.parametrize("room", ["x" * 41, "a%01b"])
def test_bad_room_names_are_refused_before_accept(room):
    app = make_rooms_app()
    server = barelab.serve(app, name="rooms_refusal")
    try:
        with pytest.raises(barelab.WebSocketRejected) as refused:
            barelab.websocket_connect(server, f"/ws/{room}")
        assert refused.value.status == 403
    finally:
        server.stop()


def test_page_builds_a_relative_websocket_url():
    assert 'location.pathname.replace(/\\/$/, "") + "/ws/"' in ROOMS_PAGE
    assert 'location.protocol === "https:" ? "wss://" : "ws://"' in ROOMS_PAGE
    with TestClient(make_rooms_app()) as client:
        page = client.get("/")
    assert page.status_code == 200 and page.text == ROOMS_PAGE
    assert page.headers["content-type"].startswith("text/html")


class StuckWebSocket:
    """A WebSocket whose client never reads: every send waits forever; close is noted."""

    def __init__(self, name):
        self.scope = {"query_string": f"name={name}".encode()}
        self.sent, self.closed_with = [], None

    async def send_text(self, text):
        await asyncio.Event().wait()

    send_bytes = send_text

    async def close(self, code=1000, reason=""):
        self.closed_with = (code, reason)


class ListeningWebSocket(StuckWebSocket):
    async def send_text(self, text):
        self.sent.append(text)

    send_bytes = send_text


def test_a_full_queue_drops_that_member_with_1008_and_nobody_else():
    async def scenario():
        rooms = Rooms(queue_size=4)
        good, stuck = ListeningWebSocket("good"), StuckWebSocket("stuck")
        member_good = rooms.join("hall", good)
        member_stuck = rooms.join("hall", stuck)
        for n in range(20):
            rooms.broadcast(member_good.room, bytes([n]))
            await asyncio.sleep(0)
        await member_stuck.closing
        await asyncio.sleep(0.01)
        rooms.leave(member_good)
        return rooms, good, stuck, member_stuck
    rooms, good, stuck, member_stuck = asyncio.run(scenario())
    assert rooms.dropped == ["hall/stuck"]
    assert stuck.closed_with == (1008, "too slow: 4 messages waiting")
    assert member_stuck.left and member_stuck.sender.cancelled()
    assert [m for m in good.sent if isinstance(m, bytes)] == [bytes([n]) for n in range(20)]
    events = [json.loads(m) for m in good.sent if isinstance(m, str)]
    assert [(e["event"], e["name"]) for e in events] == [("join", "good"), ("join", "stuck"),
                                                        ("drop", "stuck")]
    assert rooms.rooms == {}


def test_a_dropped_members_handler_ends_on_the_clients_answer_and_relays_nothing_late():
    async def scenario():
        rooms = Rooms(queue_size=2)
        good = ListeningWebSocket("good")
        member_good = rooms.join("hall", good)
        inbox, sent = asyncio.Queue(), []

        async def send(message):                # the slow client never reads a message
            sent.append(message)
            if message["type"] == "websocket.send":
                await asyncio.Event().wait()

        scope = {"type": "websocket", "path": "/ws/hall", "headers": [],
                 "query_string": b"name=slow"}
        websocket = WebSocket(scope, inbox.get, send)
        inbox.put_nowait({"type": "websocket.connect"})
        handler = asyncio.create_task(rooms.talk(websocket, "hall"))
        await asyncio.sleep(0.01)               # joined; its sender is stuck on the join
        for n in range(3):
            rooms.broadcast(member_good.room, bytes([n]))
            await asyncio.sleep(0.001)          # good's sender keeps up
        await asyncio.sleep(0.01)               # dropped, and the 1008 close is sent
        inbox.put_nowait({"type": "websocket.receive", "text": "late"})
        inbox.put_nowait({"type": "websocket.disconnect", "code": 1008})
        with pytest.raises(WebSocketDisconnect):
            await asyncio.wait_for(handler, 2)
        rooms.leave(member_good)
        return rooms, good, websocket, sent
    rooms, good, websocket, sent = asyncio.run(scenario())
    assert rooms.dropped == ["hall/slow"] and rooms.rooms == {}
    assert {"type": "websocket.close", "code": 1008,
            "reason": "too slow: 2 messages waiting"} in sent
    assert websocket.state_name == "closed" and websocket.client_gone == (1008, "")
    assert not any("late" in m for m in good.sent if isinstance(m, str)), good.sent


def test_leave_twice_is_harmless():
    async def scenario():
        rooms = Rooms()
        member = rooms.join("r", ListeningWebSocket("m"))
        rooms.leave(member)
        rooms.leave(member)
        return rooms
    assert asyncio.run(scenario()).rooms == {}
    assert QUEUE_SIZE == 32


def test_slow_client_over_sockets_does_not_stall_the_room():
    app = make_rooms_app()
    server = barelab.serve(app, name="rooms_slow")
    n, payload = 250, bytes(65536)
    try:
        listener = barelab.websocket_connect(server, "/ws/hall?name=listener")
        sleeper = barelab.websocket_connect(server, "/ws/hall?name=sleeper")
        speaker = barelab.websocket_connect(server, "/ws/hall?name=speaker", timeout=30)
        assert wait_until(lambda: app.rooms.presence("hall") == ["listener", "sleeper",
                                                                 "speaker"])
        sleeping = app.rooms.rooms["hall"].members["sleeper"]

        def speak():
            try:
                for _ in range(n):
                    speaker.send_bytes(payload)
            except OSError:
                pass
        threading.Thread(target=speak, daemon=True).start()
        got = 0
        while got < n:
            got += isinstance(listener.receive(timeout=5), bytes)
        assert wait_until(lambda: app.rooms.dropped == ["hall/sleeper"])
        assert app.rooms.presence("hall") == ["listener", "speaker"]
        # the sleeper's handler went back to receive_message on a socket we closed: it
        # ended with WebSocketDisconnect once the connection was gone (1006: no Close)
        assert wait_until(lambda: sleeping.websocket.client_gone is not None)
        assert sleeping.websocket.client_gone[0] == 1006
        listener.close()
        speaker.close()
        sleeper.close()
        assert wait_until(lambda: app.rooms.rooms == {})
        assert len(server.log.errors) == 0
    finally:
        server.stop()


def test_room_names():
    from barelab.built.bare_rooms import MAX_ROOM_NAME, room_name_ok
    assert room_name_ok("kitchen") and room_name_ok("x" * MAX_ROOM_NAME)
    assert not any(room_name_ok(n) for n in ("", "x" * (MAX_ROOM_NAME + 1), "a\x01b", "a\nb"))
