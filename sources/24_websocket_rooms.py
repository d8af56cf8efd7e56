# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 24. WebSocket rooms
#
# Chapter 15 built one chat room for a bare ASGI app, and chapter 18's `bare` has WebSocket
# routes with a path parameter, `/ws/{room}`, but its rooms are plain sets that send to
# every member in turn. In this chapter you build **rooms** for `bare`: many named rooms,
# each member with its own bounded queue and sender task, a policy for clients that stop
# reading, and a presence list that tells everyone who is in the room (what chat apps
# show as "online now").
#
# ## Learning goals
#
# By the end of this chapter you can:
#
# - keep a registry of named rooms that appear on the first join and vanish on the last
#   leave, and explain why the leave must sit in a `finally`;
# - broadcast without ever awaiting a slow client, using one bounded `asyncio.Queue` and
#   one sender task per client;
# - choose a slow-client policy (disconnect with close code 1008, or drop old messages)
#   and say what each one costs;
# - send presence events as JSON so that every client knows who is in the room;
# - show in a notebook that one client that never reads does not stall the others.

# %% [markdown]
# ## Setup
#
# `bare` comes from chapter 18, the in-process `TestClient` from chapter 17, and one small
# helper from chapter 15: `member_name`, which reads `?name=` from the query string and
# makes it unique in a room. The rest is the standard library.

# %%
import asyncio
import json
import threading
import time

import barelab
from barelab.built.bare import Bare                                        # chapter 18
from barelab.built.testing import TestClient                               # chapter 17
from barelab.built.websocket import member_name                            # chapter 15
from barelab.exercises import check

barelab.__name__, Bare.__name__, TestClient.__name__, member_name.__name__

# %% [markdown]
# Try `member_name` on its own. It takes an ASGI scope (only `query_string` is read) and
# anything with a `.members` dict; here a stand-in room where an `alice` already is. Ask
# for `alice`, then ask with no name at all:

# %%
class AnyRoom:                                   # all member_name needs: a .members dict
    members = {"alice": "already here"}

(member_name({"query_string": b"name=alice"}, AnyRoom),
 member_name({"query_string": b""}, AnyRoom))

# %% [markdown]
# A second `alice` becomes `alice-2`, and a client with no name is a `guest`. Since
# `member_name` only looks at a `.members` dict, it works for the rooms built here as well
# as for chapter 15's `ChatRoom`.
#
# One more helper: the server runs in its own thread, so a cell sometimes has to wait for
# it to catch up. `wait_until` polls a condition for up to five seconds and returns it,
# so a cell can show `True` when the server got there in time and `False` when it did
# not. A condition that is true already returns at once:

# %%
def wait_until(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()

wait_until(lambda: True)

# %% [markdown]
# ## What goes wrong without a `finally`
#
# Before building anything, break the simplest part: leaving. Here is a room handler for
# `bare` that adds the client's name to a room, receives messages in a loop (relaying them
# is left out to keep it short), and removes the name after the loop. Read the last two
# lines of the handler and ask when `members.discard` would run:

# %%
leaky = Bare(name="leaky")
leaky.rooms = {}

@leaky.websocket("/ws/{room}")
async def leaky_room(websocket):
    members = leaky.rooms.setdefault(websocket.path_params["room"], set())
    await websocket.accept()
    members.add(websocket.query.get("name"))
    while True:
        await websocket.receive_message()       # raises WebSocketDisconnect at the end
    members.discard(websocket.query.get("name"))

leaky

# %% [markdown]
# The route table shows the one WebSocket route. Connect two clients in-process with
# chapter 17's `TestClient` (it calls the ASGI app directly in this kernel, no socket at
# all), one after the other; each sends a message and leaves when its `with` block ends.
# Then look at who the room thinks is still there:

# %%
with TestClient(leaky) as client:
    for name in ("alice", "bob"):
        with client.websocket_connect(f"/ws/kitchen?name={name}") as websocket:
            websocket.send_text("hello")
{room: sorted(names) for room, names in leaky.rooms.items()}

# %% [markdown]
# Both are gone, yet the room lists both: **ghost members**. A broadcast would try to send
# to them, and a presence list would show them forever. The loop never ends normally:
# when the client leaves, `receive_message` raises `WebSocketDisconnect`, which jumps
# straight past `members.discard` (and `bare` catches it quietly, so nothing even looks
# wrong). Only a `try`/`finally` around the loop runs the leave in every case: a clean
# close, a dropped TCP connection, a bug in the loop, or the server cancelling the handler
# when it stops.
#
# ## The design
#
# Chapter 15 found the real problem with broadcasting: `await send(...)` waits for as long
# as that client's TCP buffers are full, so a loop that awaits each member in turn is as
# slow as its slowest member. The fix separates **deciding** to send from **sending**:
#
# ```mermaid
# flowchart LR
#     A["alice's handler: receive()"] -->|"broadcast: put_nowait"| QB["bob's queue (32)"]
#     A -->|"put_nowait"| QC["carol's queue (32)"]
#     QB --> SB["bob's sender task: await send"] --> B((bob))
#     QC --> SC["carol's sender task: await send"] --> C((carol))
#     QC -. "full: carol is not reading" .-> X["close carol with 1008"]
# ```
#
# A broadcast never waits: `put_nowait` either stores the message or raises `QueueFull`
# at once. Only a member's own sender task ever awaits that member's socket, so only it
# waits when the member is slow.
#
# ### Which slow-client policy?
#
# When a queue is full there are two honest choices, and one that only looks like a
# choice:
#
# | When a member's queue is full | The slow member | Everybody else |
# |---|---|---|
# | **disconnect** it with close code 1008 ("policy violation", RFC 6455 §7.4.1) | is told, and can reconnect | carries on |
# | **drop the oldest** queued message to make room | silently misses messages | carries on |
# | wait until there is room (`await queue.put`) | is fine | waits for the slowest member |
#
# The third row is chapter 15's stall again, with a queue in front of it; it is no
# policy at all.
#
# This chapter disconnects. In a chat, a client that silently missed messages shows a
# conversation with holes in it, and if it missed a presence event it shows a member who
# left long ago, with nothing to tell it that its picture is wrong. A 1008 close is
# explicit: the browser sees the code and the reason, and when it reconnects the join
# event hands it a fresh, correct member list. Dropping old messages suits a feed where
# only the latest value matters, like a price ticker; Exercise 1 writes that policy.

# %% [markdown]
# ## The exported module
#
# Everything from here to the demo page is the component this chapter adds to `bare`. The
# cells marked `#| export` are copied into `barelab/built/bare_rooms.py` by the build, so
# that any later notebook (or your own app) can `from barelab.built.bare_rooms import
# make_rooms_app` without running this one. Here is what the module will hold, in the
# order you build it:
#
# | Name | What it is |
# |---|---|
# | `QUEUE_SIZE`, `MAX_ROOM_NAME` | the two limits |
# | `Member` | one WebSocket in one room: a bounded queue and its sender task |
# | `Room`, `Rooms` | a room's members; the registry of rooms, with `join`, `leave`, `broadcast`, `drop` and `talk` |
# | `room_name_ok` | which room names a client may ask for |
# | `make_rooms_app`, `ROOMS_PAGE` | a `bare` app with the rooms and a demo page |
#
# The next cell names the module:

# %%
#| default_exp bare_rooms

# %% [markdown]
# The module opens with a comment that tells its design in a few lines, then its imports.
# Nothing here is new machinery: `bare` gives the `WebSocket` object with `send_text`,
# `send_bytes` and `close`, chapter 15 gives `member_name`, and `asyncio` gives the queue.
# Throughout, a queued message is either a `str`, sent as a text frame, or `bytes`, sent
# as a binary frame.

# %%
#| export
# WebSocket rooms for bare: a Rooms registry maps room names to Room objects, created on
# the first join and removed on the last leave. Each Member has a bounded asyncio.Queue
# and a sender task, the only code that awaits that member's socket, so a broadcast
# (put_nowait into every queue) never waits for anyone. A member whose queue is full is
# not reading: it leaves the room and is closed with 1008. Joins, leaves and drops are
# announced to the room as JSON presence events that carry the full member list.
import asyncio
import json

from barelab.built.bare import Bare, HTMLResponse, WebSocket      # chapter 18
from barelab.built.websocket import member_name                   # chapter 15

# %% [markdown]
# Two limits come next. `QUEUE_SIZE` is how many messages may wait for one member before
# the room gives up on it: 32, as in chapter 15. It counts messages, not bytes, so what it
# costs in memory depends on what the room carries. `MAX_ROOM_NAME` bounds a room name,
# which comes straight from the URL a client typed.

# %%
#| export
QUEUE_SIZE = 32           # messages that may wait for one member before it is dropped
MAX_ROOM_NAME = 40        # characters in a room name

# %% [markdown]
# What does a full queue hold? In the slow-client experiment at the end of this chapter,
# each message is 64 KiB:

# %%
f"{QUEUE_SIZE} messages of 64 KiB: {QUEUE_SIZE * 64 / 1024:.0f} MiB waiting for one member"

# %% [markdown]
# Two MiB per slow member, on top of what the operating system buffers, is the most this
# app will hold for a client that does not read. Without the bound, that number would
# grow with every message the room sends.

# %% [markdown]
# ### A member: a queue and a sender task
#
# A `Member` is one WebSocket in one room. Three things to notice in the class below:
#
# - `asyncio.Queue(maxsize=queue_size)` is **bounded**. An unbounded queue would never be
#   full, so a client that stopped reading would make the server's memory grow with every
#   message until something crashed. The bound turns "slow" into an event we can act on.
#   (The server's own limit on one message's size, 16 MiB by default in barelab, keeps
#   even the worst case finite.)
# - `create_task(self._send_all())` starts the sender at once, on the server's event loop.
#   It is the only code that ever awaits this member's socket.
# - If the client has gone, `send_text` raises `OSError` (barelab's server raises
#   `ClientDisconnected`, an `OSError`). The task just ends: the handler's receive loop
#   will hear the disconnect too, and its `finally` cleans up.
#
# `left` becomes true once the member is out of the room; `closing` will hold the task
# that closes a dropped member. The `__repr__` shows how many messages wait in the queue,
# which is the number to watch in the cells below.

# %%
#| export
class Member:
    """One WebSocket in a room: a bounded outbox and the sender task that empties it."""

    def __init__(self, name: str, room: "Room", websocket: WebSocket, queue_size: int):
        self.name, self.room, self.websocket = name, room, websocket
        self.outbox = asyncio.Queue(maxsize=queue_size)
        self.left, self.closing = False, None       # closing: the task closing it with 1008
        self.sender = asyncio.get_running_loop().create_task(self._send_all())

    def __repr__(self) -> str:
        return f"<Member {self.name} in {self.room.name}: {self.outbox.qsize()} waiting>"

# %% [markdown]
# The sender task runs `_send_all`, which is not in the class yet. You can add it now,
# from a cell of its own: a function whose first parameter is `self`, assigned to a class
# attribute, becomes a method exactly as if you had written it inside the `class` block.
# (`__init__` only looks `self._send_all` up when a member is created, so it does not
# matter that the method arrives later.) The rest of the chapter grows `Rooms` the same
# way, one method or two per cell.
#
# The loop has two `await`s: one for the next message in the queue, one for the socket.
# A `str` goes out as a text frame, `bytes` as a binary frame.

# %%
#| export
async def _send_all(self: Member) -> None:
    try:
        while True:
            data = await self.outbox.get()
            if isinstance(data, str):
                await self.websocket.send_text(data)
            else:
                await self.websocket.send_bytes(data)
    except OSError:
        pass                     # the client is gone; the handler's finally cleans up

Member._send_all = _send_all

# %% [markdown]
# The `except` catches `OSError` only. When a member leaves, its sender task is
# cancelled, and the cancellation arrives as `asyncio.CancelledError` at whichever
# `await` the task is waiting in. `CancelledError` is not an `OSError` (it is not even an
# `Exception`), so it passes through and the task ends as *cancelled*, which is exactly
# what a cancelled task should do. Swallowing it would leave a task that reports success
# although it was stopped.

# %% [markdown]
# ### A room and the registry
#
# A `Room` is a name and a dict of members by name: exactly the `.members` that chapter
# 15's `member_name` looks at. `names()` is the presence list, sorted so that every client
# sees the members in the same order.

# %%
#| export
class Room:
    """A named room: its members by name."""

    def __init__(self, name: str):
        self.name, self.members = name, {}

    def names(self) -> list[str]:
        return sorted(self.members)

    def __repr__(self) -> str:
        return f"<Room {self.name}: {', '.join(self.names()) or 'empty'}>"

# %% [markdown]
# A room on its own, before anyone is in it. The `__repr__` lists the members, or says
# `empty`:

# %%
Room("den"), Room("den").names()

# %% [markdown]
# `Rooms` is the registry: the rooms by name, the queue size every new member gets, and a
# list of who was dropped for being slow, as `room/name` strings (so that cells and tests
# can check it). `presence` answers "who is in this room?" for a room that may not exist,
# without creating it.

# %%
#| export
class Rooms:
    """Every room of an app, and how members join, leave, talk and get dropped."""

    def __init__(self, queue_size: int = QUEUE_SIZE):
        self.queue_size, self.rooms, self.dropped = queue_size, {}, []

    def __repr__(self) -> str:
        return f"<Rooms {sorted(self.rooms)}>"

    def presence(self, room_name: str) -> list[str]:
        """Who is in ``room_name`` now (sorted names; empty if there is no such room)."""
        room = self.rooms.get(room_name)
        return room.names() if room is not None else []

# %% [markdown]
# An empty registry, and the presence list of a room that does not exist. Asking does not
# create the room: the registry stays empty.

# %%
registry = Rooms()
registry.presence("kitchen"), registry

# %% [markdown]
# An empty list and `<Rooms []>`. That matters more than it looks: a status page that
# polls `presence` for every room name it is asked about must not fill the registry with
# empty rooms. Only `join`, further down, creates a room.

# %% [markdown]
# ### Broadcast and presence events
#
# `broadcast` puts one message into every member's queue, except `exclude` (the sender of
# a chat message does not get its own message back) and members that already left. Look
# for what is *not* there: no `await`. It is a plain function, so it cannot wait for
# anyone, and a `QueueFull` goes straight to the slow-client policy, `drop`.
#
# The loop walks over `list(room.members.values())`, a copy, not the dict itself: `drop`
# removes a member from `room.members` in the middle of the loop, and Python raises
# `RuntimeError: dictionary changed size during iteration` if you change a dict while
# you iterate over it.
#
# `broadcast` is written as a plain function with a `self` parameter and attached to
# `Rooms` in the cell's last line, like `_send_all` above. It calls `self.drop`, which the
# next section adds; Python only looks it up when a queue is actually full.

# %%
#| export
def broadcast(self, room: Room, data: str | bytes, exclude: Member | None = None) -> None:
    """Queue ``data`` for every member of ``room``; never waits."""
    for member in list(room.members.values()):
        if member is exclude or member.left:
            continue
        try:
            member.outbox.put_nowait(data)
        except asyncio.QueueFull:
            self.drop(member)

Rooms.broadcast = broadcast

# %% [markdown]
# `announce` is the only place that writes a presence event. The event says what happened
# (`join`, `leave` or `drop`), to whom, and the room's full member list after it. When Bo
# joins Amy in the den, every member's queue gets this one line of JSON:
#
# ```json
# {"type": "presence", "room": "den", "event": "join", "name": "bo", "members": ["amy", "bo"]}
# ```
#
# Sending the whole list, not just the change, means a client never keeps count itself
# and can never drift out of step: whatever it missed before, the next event repairs its
# picture. It costs a few more bytes per event, which is cheap next to a wrong list.

# %%
#| export
def announce(self, room: Room, event: str, name: str) -> None:
    """Tell ``room`` that ``name`` joined, left or was dropped, with the new member list."""
    self.broadcast(room, json.dumps({"type": "presence", "room": room.name, "event": event,
                                     "name": name, "members": room.names()}))

Rooms.announce = announce

# %% [markdown]
# ### The drop
#
# `drop` is the policy in code. The slow member leaves the room at once, which cancels its
# sender task and announces a `drop` to the others. The 1008 close is sent from a task of
# its own, because that send may wait too: the close frame queues up behind everything the
# client never read. (barelab's server waits a couple of seconds for it and then cuts the
# TCP connection.) `dropped` keeps a record, `room/name`, for cells and tests to check.
#
# Why a task and not an `await`? `drop` is called from `broadcast`, a plain function, and
# a plain function cannot await. `create_task` schedules the close on the event loop and
# returns at once; `member.closing` keeps a handle on it so that the member's own handler
# can wait for it later. The `if member.left` guard makes a second drop of the same member
# do nothing.

# %%
#| export
def drop(self, member: Member) -> None:
    """The slow-client policy: out of the room now, then a close with 1008."""
    if member.left:
        return
    self.dropped.append(f"{member.room.name}/{member.name}")
    self.leave(member, event="drop")
    member.closing = asyncio.get_running_loop().create_task(_close_slow(member))

Rooms.drop = drop

# %% [markdown]
# The close itself carries a reason the client can show, such as `too slow: 32 messages
# waiting`. Keep such reasons short: RFC 6455 §5.5 limits a control frame's payload to
# 125 bytes, and the close code takes two of them. If the client is already gone, the
# send raises `OSError`, and there is nothing left to tell it.

# %%
#| export
async def _close_slow(member: Member) -> None:
    try:
        await member.websocket.close(1008, f"too slow: {member.outbox.maxsize} messages waiting")
    except OSError:
        pass                     # it is gone already

# %% [markdown]
# ### Join and leave
#
# `join` creates the room on first use, picks a unique name with `member_name`, creates
# the `Member` (which starts its sender task) and announces the join. The newcomer is
# already in the room when the event goes out, so it gets the event too: that is how it
# learns who was there before it. `member_name` gets the handshake's ASGI scope, where
# the `?name=` query string is, and the room, whose `members` it checks for a clash: a
# second `alice` in the same room becomes `alice-2`, while an `alice` in another room
# keeps her name.

# %%
#| export
def join(self, room_name: str, websocket: WebSocket) -> Member:
    """Add ``websocket`` to ``room_name`` (named by its ``?name=``) and announce it."""
    room = self.rooms.get(room_name)
    if room is None:
        room = self.rooms[room_name] = Room(room_name)
    name = member_name(websocket.scope, room)
    member = room.members[name] = Member(name, room, websocket, self.queue_size)
    self.announce(room, "join", name)
    return member

Rooms.join = join

# %% [markdown]
# `leave` is written to be called more than once, because it will be: a dropped member
# leaves in `drop`, and then again in its handler's `finally`. The second call finds
# `left` set and does nothing. It cancels the sender task (nobody will read that queue
# again; `cancel` only asks, and the task stops at its next `await`) and, when the last
# member goes, removes the room itself, so the registry does
# not grow with every room name anybody ever typed. The event goes out only if somebody
# is left to hear it; `event` is `"drop"` when `drop` calls it, so the others learn why
# the member went.

# %%
#| export
def leave(self, member: Member, event: str = "leave") -> None:
    """Take ``member`` out of its room (once), stop its sender, announce it."""
    if member.left:
        return
    member.left = True
    member.sender.cancel()
    room = member.room
    del room.members[member.name]
    if room.members:
        self.announce(room, event, member.name)
    else:
        del self.rooms[room.name]

Rooms.leave = leave

# %% [markdown]
# ### Try the registry without a server
#
# `join` only needs something with a `scope` (for `member_name`) and a `send_text`
# method (for the sender task). So you can watch the registry work right here, in the
# notebook's own event loop, with a stand-in socket that writes down the `event:name` of
# each message it is sent:

# %%
class FakeSocket:
    def __init__(self, name):
        self.scope, self.sent = {"query_string": f"name={name}".encode()}, []
    async def send_text(self, text):
        message = json.loads(text)
        self.sent.append(f"{message.get('event', 'message')}:{message['name']}")

# %% [markdown]
# Two members join the `den`. Look at how many messages wait in Amy's queue right after.
# (The cell has no `await`, yet `Member` can create its sender task: a notebook cell runs
# inside the kernel's event loop, the same way a handler runs inside the server's.)

# %%
desk = Rooms()
amy = desk.join("den", FakeSocket("amy"))
bo = desk.join("den", FakeSocket("bo"))
desk.rooms["den"], amy

# %% [markdown]
# Two messages wait, and nothing has been sent yet: `join` called `broadcast`, which only
# queued the two presence events. The sender tasks run once this cell's code gives the
# event loop a turn, which the `await asyncio.sleep` below does:

# %%
await asyncio.sleep(0.05)
amy, amy.websocket.sent, bo.websocket.sent

# %% [markdown]
# Amy's queue is empty and her socket got both joins; Bo, who came second, got only his
# own. Now Bo leaves, twice, as a dropped member would (once in `drop`, once in the
# `finally`):

# %%
desk.leave(bo)
desk.leave(bo)                                  # the second call does nothing
await asyncio.sleep(0.05)
amy.websocket.sent, desk

# %% [markdown]
# Amy's list grew by one line, `leave:bo`, not two: the second `leave` found `left` set.
# When Amy leaves as well, there is nobody to tell, so no event goes out, and the last
# member out takes the room with it:

# %%
desk.leave(amy)
desk

# %% [markdown]
# ### Try the drop
#
# `<Rooms []>`: the den is gone from the registry.
#
# Now a client that stops reading. `StuckSocket`'s `send_text` never returns, like a send
# into full TCP buffers, and its `close` writes down the close code and reason:

# %%
class StuckSocket(FakeSocket):
    async def send_text(self, text):
        await asyncio.Event().wait()            # nobody ever sets it
    async def close(self, code, reason=""):
        self.sent.append(f"close {code}: {reason}")

# %% [markdown]
# Give the registry a queue size of 2 to make the numbers small. Amy and Sam join; after a
# turn of the loop, Sam's sender has taken his own join event and is stuck sending it.
# Look at the number in Sam's `repr`:

# %%
small = Rooms(queue_size=2)
amy = small.join("den", FakeSocket("amy"))
sam = small.join("den", StuckSocket("sam"))
await asyncio.sleep(0.05)
sam

# %% [markdown]
# `0 waiting`, yet Sam is not keeping up: the one message he was sent is out of the
# queue, in the hands of a sender task that will never finish. His queue has room for two
# more before the room notices.
#
# Now three chat messages from Amy, broadcast the way her handler would do it (`exclude`
# is Amy). The first two fill Sam's queue; the third finds it full, and `broadcast` hands
# Sam to `drop`:

# %%
chat = json.dumps({"type": "message", "name": "amy", "text": "hi"})
for _ in range(3):
    small.broadcast(small.rooms["den"], chat, exclude=amy)
await asyncio.sleep(0.05)
small.dropped, small.presence("den"), sam.websocket.sent, amy.websocket.sent

# %% [markdown]
# Read the four values in order: the registry recorded `den/sam` as dropped; only Amy is
# left in the den; Sam's socket got a 1008 close with the reason, and nothing else; Amy
# saw both joins and then `drop:sam`. Amy's own sends never waited for Sam: each
# `broadcast` returned at once. Let Amy go too, so no task is left behind:

# %%
small.leave(amy)
small

# %% [markdown]
# ### One member's whole life
#
# First, which room names to accept. The route's `{room}` matches any text without a
# `/`, already percent-decoded, so `/ws/a%01b` arrives as `"a\x01b"`, with a control
# character in it. A name must be 1 to 40 printable characters:

# %%
#| export
def room_name_ok(name: str) -> bool:
    """A room name is 1 to MAX_ROOM_NAME printable characters."""
    return 0 < len(name) <= MAX_ROOM_NAME and name.isprintable()

# %% [markdown]
# The export cell only defines; this cell tries four names:

# %%
[room_name_ok(name) for name in ("kitchen", "", "x" * 41, "a\x01b")]

# %% [markdown]
# Only `kitchen` passes. The empty name, the 41-character one and the one with a control
# character fail. `str.isprintable()` is false for any control character, including a
# newline or a tab, so no room name can break a log line or the page's member list.

# %% [markdown]
# What does the room get when a member sends something? `_relayed` answers for one
# received message. `receive_message` returns the ASGI `websocket.receive` event, a dict
# with either a `"text"` or a `"bytes"` key set. Text becomes a JSON `message` event with
# the sender's name and room; binary data goes on as it is, because a binary frame has no
# place to put a name.

# %%
#| export
def _relayed(member: Member, message: dict) -> str | bytes:
    """What the room receives for one message from ``member``."""
    if message.get("text") is not None:
        return json.dumps({"type": "message", "room": member.room.name,
                           "name": member.name, "text": message["text"]})
    return message["bytes"]

# %% [markdown]
# Try it with Amy from the drop experiment (she has left, but still knows her room) and
# two hand-made receive events, one text and one binary:

# %%
_relayed(amy, {"type": "websocket.receive", "text": "hi"}), \
    _relayed(amy, {"type": "websocket.receive", "bytes": b"\x00\xff"})

# %% [markdown]
# The text came back as the JSON string every client's page parses; the two bytes came
# back unchanged.
#
# `talk` is the body of the WebSocket route, one member's whole life:
#
# 1. a bad room name is refused **before** `accept`; the server turns that close into an
#    HTTP 403, so the browser never sees an open socket;
# 2. accept, then join (which announces the newcomer);
# 3. relay until the client leaves: each message goes through `_relayed` and then to
#    `broadcast`, which skips the sender;
# 4. **leave in the `finally`**, whatever ended the loop.
#
# After a drop the loop simply goes on. `drop` has closed the socket with 1008, and
# chapter 18's `receive_message` knows what to do on a socket we closed ourselves: it
# waits for the client's answer to our Close (at most `WebSocket.close_timeout`, one
# second) and then raises `WebSocketDisconnect`, the same exception as any other
# departure. So the one `finally` covers every ending. The only care the loop takes is
# `if not member.left`: a message that was already on its way when the member was dropped
# is not relayed to a room it is no longer in.
#
# The `finally` then waits for the 1008 close to finish, and the last `wait` lets the
# cancelled sender task unwind before `bare` returns. Why `asyncio.wait({member.sender})`
# and not `await member.sender`? Awaiting a cancelled task raises `CancelledError` in the
# one who awaits, and the handler would look as if it had been cancelled itself;
# `asyncio.wait` only reports which tasks are done and never raises. It has a timeout,
# like every wait in this course, so that a sender stuck in some library call cannot keep
# the handler alive forever.

# %%
#| export
async def talk(self, websocket: WebSocket, room_name: str) -> None:
    if not room_name_ok(room_name):
        return await websocket.close(1008)          # before accept: the server sends 403
    await websocket.accept()
    member = self.join(room_name, websocket)
    try:
        while True:                                 # until WebSocketDisconnect
            message = await websocket.receive_message()
            if not member.left:                     # dropped: its late messages stay here
                self.broadcast(member.room, _relayed(member, message), exclude=member)
    finally:
        self.leave(member)
        if member.closing is not None:
            await member.closing
        await asyncio.wait({member.sender}, timeout=1.0)

Rooms.talk = talk

# %% [markdown]
# Every way out of that loop goes through the `finally`. Here they are side by side, with
# what `websocket.client_gone` (chapter 18's record of the client's last word, a
# `(code, reason)` pair) holds afterwards:
#
# | How the member goes | What ends the loop | `client_gone` |
# |---|---|---|
# | the client closes | `WebSocketDisconnect` from `receive_message` | the client's code, such as `(1000, '')` |
# | the room drops it | the same: after our 1008 it waits for the client's answer (1 s at most) | the answer, or `(1006, ...)` |
# | the server stops | the same: the server sends a disconnect with 1001 | `(1001, 'server shutting down')` |
# | a bug in the loop | the bug's own exception | `None`; `bare` closes with 1011 and the server logs it |
#
# In each row `leave` runs once, the others hear about it, and the sender task is gone
# before the handler returns.

# %% [markdown]
# ### The app
#
# `make_rooms_app` wires a `Rooms` into a `bare` app: the demo page at `/` and the rooms at
# `/ws/{room}`. The route handler is one line, because `talk` does the work; `bare`
# supplies the `WebSocket` and the typed `path_params`, and ends the connection quietly
# when `talk` ends with `WebSocketDisconnect`. The registry hangs on the app as
# `app.rooms`, so a cell (or a test) can look inside while clients are connected.
# `ROOMS_PAGE` is defined in the next cells; Python looks the name up only when `/` is
# requested. The two optional arguments let a test pass in a `Rooms` with a small queue,
# or your own app serve its own page.

# %%
#| export
def make_rooms_app(rooms: Rooms | None = None, page: str | None = None) -> Bare:
    """A bare app: the two-tab demo page at ``/``, WebSocket rooms at ``/ws/{room}``."""
    app = Bare(name="rooms")
    app.rooms = Rooms() if rooms is None else rooms

    @app.route("/")
    async def index(request):
        return HTMLResponse(ROOMS_PAGE if page is None else page)

    @app.websocket("/ws/{room}")
    async def room_socket(websocket):
        await app.rooms.talk(websocket, websocket.path_params["room"])

    return app

# %% [markdown]
# `make_rooms_app` is a convenience for this chapter. In an app of your own, rooms need
# only a registry on the app and a WebSocket route that hands each socket to `talk`, at
# whatever path suits you:
#
# ```python
# app.rooms = Rooms()
#
# @app.websocket("/chat/{room}")
# async def chat(websocket):
#     await app.rooms.talk(websocket, websocket.path_params["room"])
# ```
#
# ### The demo page
#
# The page has a room and a name field, a log, and a box to send text. The one line that
# matters most builds the WebSocket URL **from the page's own location**: the scheme
# follows the page (`wss://` under HTTPS), and the path keeps whatever prefix the page was
# served under. Behind JupyterHub's `jupyter-server-proxy`, the page lives at
# `/user/you/proxy/8001/`, so a hard-coded `ws://localhost:8001/ws/...` would miss; the
# relative URL goes through the same proxy as the page did.
#
# This first piece is the markup: the `id`s (`room`, `name`, `join`, `status`, `members`,
# `log`, `form`, `text`) are the handles the script below looks elements up by.

# %%
#| export
ROOMS_MARKUP = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>bare rooms</title>
<style>body{font:15px system-ui,sans-serif;max-width:42em;margin:2em auto;padding:0 1em}
#log{border:1px solid #ccc;height:16em;overflow-y:auto;padding:.5em;white-space:pre-wrap}
.note{color:#777}</style></head>
<body><h1>bare rooms</h1><p>Open this page in two tabs and join the same room.</p>
<p><label>Room <input id="room" value="kitchen" size="10"></label>
<label>Name <input id="name" value="guest" size="10"></label>
<button id="join">Join</button> <span id="status">not connected</span></p>
<p>Here: <span id="members">nobody</span></p><div id="log"></div>
<form id="form"><input id="text" size="36" autocomplete="off"> <button>Send</button></form>
"""

# %% [markdown]
# Nothing in the markup talks to the server yet; it is a form and an empty log.
#
# The script starts with two helpers: `show` appends a line to the log (with
# `textContent`, never `innerHTML`, so a message like `<img onerror=...>` stays text),
# and `roomUrl`, the URL line described above, with the room and the name escaped by
# `encodeURIComponent` so that a space or a `?` cannot break the URL. For room `kitchen`
# and name `guest`, the same line gives:
#
# | The page was served from | `roomUrl` gives |
# |---|---|
# | `http://localhost:8001/` | `ws://localhost:8001/ws/kitchen?name=guest` |
# | `https://hub.example/user/you/proxy/8001/` | `wss://hub.example/user/you/proxy/8001/ws/kitchen?name=guest` |
#
# The `replace(/\/$/, "")` removes the trailing slash of the page's path, so that the two
# parts never meet as `//`.

# %%
#| export
ROOMS_SCRIPT_HELPERS = r"""<script>
const $ = (id) => document.getElementById(id);
let socket = null;
function show(text, kind) {
  const line = document.createElement("div");
  line.className = kind || ""; line.textContent = text; $("log").append(line);
}
function roomUrl(room, name) {
  return (location.protocol === "https:" ? "wss://" : "ws://") + location.host
    + location.pathname.replace(/\/$/, "") + "/ws/" + encodeURIComponent(room)
    + "?name=" + encodeURIComponent(name);
}
"""

# %% [markdown]
# Then the two buttons. **Join** opens the WebSocket (closing the previous one), and
# `onmessage` reads the three kinds of message this chapter's server sends: binary data
# (shown by its size), a chat `message`, and a presence event, whose `members` list
# replaces the "Here:" line wholesale. `binaryType = "arraybuffer"` makes binary messages
# arrive as an `ArrayBuffer` (with a `byteLength`) instead of a `Blob`.

# %%
#| export
ROOMS_SCRIPT_JOIN = r"""$("join").onclick = () => {
  if (socket) socket.close(1000);
  socket = new WebSocket(roomUrl($("room").value, $("name").value));
  socket.binaryType = "arraybuffer";
  socket.onopen = () => { $("status").textContent = "connected"; };
  socket.onclose = (e) => { $("status").textContent = `closed (${e.code} ${e.reason})`; };
  socket.onmessage = (e) => {
    if (typeof e.data !== "string") return show(`[${e.data.byteLength} bytes]`, "note");
    const event = JSON.parse(e.data);
    if (event.type === "message") return show(`${event.name}: ${event.text}`);
    $("members").textContent = event.members.join(", ");
    const verb = {join: "joined", leave: "left", drop: "was dropped: too slow"}[event.event];
    show(`* ${event.name} ${verb}`, "note");
  };
};
"""

# %% [markdown]
# Two details in **Join**: it closes the previous socket with 1000 before opening the
# next, so switching rooms is a clean leave that the old room announces; and `onclose`
# shows the close code and reason, which is where a dropped member sees `1008 too slow`.
#
# **Send** sends the text box as a text message and echoes it in the log as `me: ...`,
# since the server does not send a member's own messages back. `e.preventDefault()` stops
# the browser from submitting the form the old way, by loading a new page. The last cell
# of the module joins the pieces into `ROOMS_PAGE`.

# %%
#| export
ROOMS_SCRIPT_SEND = r"""$("form").onsubmit = (e) => {
  e.preventDefault(); socket.send($("text").value);
  show("me: " + $("text").value); $("text").value = "";
};
</script></body></html>
"""
ROOMS_SCRIPT_EVENTS = ROOMS_SCRIPT_JOIN + ROOMS_SCRIPT_SEND
ROOMS_PAGE = ROOMS_MARKUP + ROOMS_SCRIPT_HELPERS + ROOMS_SCRIPT_EVENTS

# %% [markdown]
# ## In-process first
#
# Test the app in-process before giving it a port. With chapter 17's `TestClient` there
# are no sockets and no threads: each `with` block is one client, the whole conversation
# runs in this kernel, and a failing `assert` points at its own line.
#
# Build the app and look at its route table. Look for the two entries `make_rooms_app`
# added: an HTTP route for the page and a WebSocket route with a `{room}` parameter.

# %%
rooms_app = make_rooms_app()
rooms_app

# %% [markdown]
# The `HEAD` next to `GET` came free from chapter 08's routing rule. The WebSocket route
# has no methods: a WebSocket is always opened with a `GET` carrying `Upgrade: websocket`.
#
# A quick look at the page route first: fetch `/` in-process and check that the URL line
# made it into the HTML that the browser gets.

# %%
with TestClient(rooms_app) as client:
    page = client.get("/")
page, page.headers["content-type"], '+ "/ws/" +' in page.text

# %% [markdown]
# A `200` with an HTML content type, and the relative WebSocket URL is in it.
#
# Now the leak test from the start, on the new app, in-process with `TestClient`. Alice
# joins the kitchen and reads one message; then her socket closes and the cell prints the
# registry and the list of dropped members:

# %%
with TestClient(rooms_app) as client:
    with client.websocket_connect("/ws/kitchen?name=alice") as alice:
        print(alice.receive_json())
    print(rooms_app.rooms, rooms_app.rooms.dropped)

# %% [markdown]
# Her first message is the presence event for her own join, with the member list: that
# is how a newcomer learns who is already there. After her socket closed the registry is
# empty: the `finally` ran `leave`, and as the last member out she took the kitchen with
# her. No ghost this time, and nobody was dropped.
#
# Two members now. Bob joins while Alice is in. He sends a text message and a binary one
# (two bytes that are not valid UTF-8, so they could never travel as text). Look at what
# Alice receives for each, and what she receives when Bob leaves:

# %%
with TestClient(rooms_app) as client:
    with client.websocket_connect("/ws/kitchen?name=alice") as alice:
        alice.receive_json()                                   # her own join
        with client.websocket_connect("/ws/kitchen?name=bob") as bob:
            print(alice.receive_json()["members"], bob.receive_json()["members"])
            bob.send_text("tea?")
            bob.send_bytes(b"\x00\xff")
            print(alice.receive_json(), alice.receive_bytes())
        print(alice.receive_json())

# %% [markdown]
# Three lines. Both saw the same member list, `['alice', 'bob']`, in the event for Bob's
# join. Bob's text reached Alice wrapped in a JSON `message` event with his name; his
# bytes reached her untouched, as a binary message. When Bob's socket closed, Alice got
# a `leave` event whose list has only her in it. Bob never got his own messages back:
# `broadcast` was called with `exclude=member`.
#
# ## Served by barelab, with real sockets
#
# In-process tests prove the logic. The slow-client policy, though, is about TCP buffers,
# which only a real socket has. Serve the app with barelab:

# %%
server = barelab.serve(rooms_app)
server

# %% [markdown]
# Open the link in two browser tabs, join the same room with two names, and talk: each
# tab's "Here:" line follows the presence events. In the notebook, `barelab`'s blocking
# WebSocket client stands in for the tabs. First a helper: `inbox` receives every message
# waiting for a client, and stops once nothing has arrived for 0.3 seconds. Why wait for
# quiet instead of counting? The cells below must also show what did *not* reach a
# client, and only waiting a while can show that something never came.

# %%
def inbox(client, wait=0.3):
    got = []
    try:
        while True:
            got.append(client.receive(timeout=wait))
    except TimeoutError:
        return got

inbox

# %% [markdown]
# And one more. `websocket_connect` returns as soon as the server has sent `101`, but the
# join runs a moment later in the server's thread. For outputs that are the same on every
# run, `connect` also waits until the new member is in the room's presence list:

# %%
def connect(room, name, **options):
    client = barelab.websocket_connect(server, f"/ws/{room}?name={name}", **options)
    wait_until(lambda: name in rooms_app.rooms.presence(room))
    return client

connect

# %% [markdown]
# Three clients: `ana` and `ben` in the `kitchen`, `cy` in the `garden`. Each room comes
# into being with its first join; the registry shows both:

# %%
ana = connect("kitchen", "ana")
ben = connect("kitchen", "ben")
cy = connect("garden", "cy")
rooms_app.rooms

# %% [markdown]
# Now `ana` says something, and each client reads everything that reached it, shown as
# `type:name` for each JSON event. Watch `cy`: she is in another room.

# %%
ana.send_text("soup is ready")
for client in (ana, ben, cy):
    print([json.loads(m)["type"] + ":" + json.loads(m)["name"] for m in inbox(client)])

# %% [markdown]
# `ana` got two presence events (her own join, then Ben's) and not her own message. `ben`
# got his join and Ana's message. `cy` got only her own join: the kitchen's traffic never
# reached the garden. Each client keeps a transcript of its frames; Ben's shows the
# handshake, the `101`, and the two text messages as they crossed the wire:

# %%
ben.transcript

# %% [markdown]
# An arrow to the right is what Ben sent, an arrow to the left what he received. The
# transcript cuts each text frame to one line (the `…`); the full JSON is what you saw
# from `receive_json` in the in-process cells.
#
# Bad input gets a clear answer. The route accepts any room name without a `/`, but
# `talk` refuses one longer than 40 characters. The refusal happens before `accept`, so
# the server answers the handshake with an HTTP 403 instead of upgrading:

# %%
try:
    barelab.websocket_connect(server, "/ws/" + "x" * 41)
except barelab.WebSocketRejected as error:
    print(error.status)

# %% [markdown]
# `403 Forbidden`. That is the ASGI spec's rule for a `websocket.close` sent before
# `websocket.accept`: the server must refuse the handshake with HTTP 403 and never
# complete the upgrade. A browser reports it as a failed connection with close code 1006.
#
# Close the three clients. Each handler's `finally` runs in the server's thread, so the
# cell waits until the registry is empty, and shows it:

# %%
for client in (ana, ben, cy):
    client.close()
wait_until(lambda: not rooms_app.rooms.rooms)
rooms_app.rooms

# %% [markdown]
# Both rooms are gone, removed by their last leave.
#
# ## One slow client
#
# Now the experiment from chapter 15, on rooms. Three clients in the `hall`:
#
# - `listener` reads and counts every binary message;
# - `sleeper` joins and never reads a byte, like a phone in a tunnel;
# - `speaker` sends 250 binary messages of 64 KiB (15.6 MiB), from a background thread so
#   that the cell itself cannot hang.
#
# The sizes are large because the operating system buffers several megabytes per
# connection, on the server's side and on the client's, before a writer has to wait at
# all. A slow client only becomes visible to the server once those buffers are full.
#
# Connect the three in that order. The order matters: the sleeper must be in the room
# before the first message, so that every one of the 250 is queued for it too. The
# speaker gets a longer timeout (30 s), which bounds how long one blocked `send_bytes`
# may wait.

# %%
N, PAYLOAD = 250, bytes(65536)
listener = connect("hall", "listener")
sleeper = connect("hall", "sleeper")                     # never reads
speaker = connect("hall", "speaker", timeout=30)
rooms_app.rooms.presence("hall"), f"{N * len(PAYLOAD) / 2**20:.1f} MiB to send"

# %% [markdown]
# Keep a handle on the sleeper's `Member` while it is still in the room: after the drop,
# the registry forgets it, and you will want to look at its `WebSocket` then. For now
# the socket is `open`:

# %%
sleeping = rooms_app.rooms.rooms["hall"].members["sleeper"]
sleeping.websocket

# %% [markdown]
# `speak` is what the speaker's thread will run. It catches `OSError` so that it ends
# quietly if the server is stopped under it.

# %%
def speak():
    try:
        for _ in range(N):
            speaker.send_bytes(PAYLOAD)
    except OSError:
        pass                                       # the server stopped under us

speak

# %% [markdown]
# `count_bytes` receives until `n` binary messages have arrived. Presence events (text)
# are collected on the side, to read afterwards. If the listener were stalled, a receive
# would wait five seconds and raise `TimeoutError`, and the cell below would fail loudly
# instead of hanging.

# %%
def count_bytes(client, n=N):
    got, events = 0, []
    while got < n:
        message = client.receive(timeout=5)
        if isinstance(message, bytes):
            got += 1
        else:
            events.append(json.loads(message))
    return got, events

count_bytes

# %% [markdown]
# Run the experiment. The cell takes a few seconds: 15.6 MiB have to cross the loopback
# to the listener.

# %%
threading.Thread(target=speak, daemon=True).start()
got, events = count_bytes(listener)
print(f"the listener got all {N} messages: {got == N}")

# %% [markdown]
# Every message reached the listener, although the sleeper, in the same room, read
# nothing. The listener's own queue never filled: its sender task wrote to a socket
# whose reader kept up, so each message left the queue soon after it arrived.
#
# Which presence events did the listener see along the way? One line each: the event,
# who it is about, and the member list after it.

# %%
for event in events:
    print(event["event"], event["name"], event["members"])

# %% [markdown]
# Three joins, then a `drop` of `sleeper`, announced to the two who stay. Here is what
# happened inside the server, in order:
#
# ```mermaid
# sequenceDiagram
#     participant Sp as speaker's handler
#     participant QL as listener's queue + sender
#     participant QS as sleeper's queue + sender
#     Sp->>QL: put_nowait(message)
#     Sp->>QS: put_nowait(message)
#     Note over QS: the sender waits in send():<br/>the sleeper's buffers are full
#     Sp->>QS: put_nowait(...) until 32 wait
#     Sp->>QS: put_nowait: QueueFull
#     Note over Sp,QS: drop: leave the room, announce "drop",<br/>close with 1008 in a task
#     Sp->>QL: put_nowait(next message), as before
# ```
#
# The speaker's handler never waited for the sleeper; only the sleeper's own sender task
# did. The registry agrees with the events, and the server logged no error: a drop is the
# policy working, not a crash. (In the browser page, the same event prints "sleeper was
# dropped: too slow", and the sleeper's own tab shows `closed (1008 too slow: ...)`.)

# %%
rooms_app.rooms.dropped, rooms_app.rooms.presence("hall"), len(server.log.errors)

# %% [markdown]
# And the sleeper's own handler? After the drop it went back to `receive_message`, on a
# socket its room had closed. Chapter 18's `WebSocket` handles that case: it waits for the
# client's answer to our Close and then raises `WebSocketDisconnect`, which ends the loop
# in `talk` and runs its `finally`. What the server heard last is kept in
# `websocket.client_gone`, a `(code, reason)` pair. Wait for it and look at the code:

# %%
wait_until(lambda: sleeping.websocket.client_gone is not None)
sleeping.websocket, sleeping.websocket.client_gone[0]

# %% [markdown]
# The socket is `closed`, and the code is 1006, RFC 6455's number for "the connection
# ended without a Close frame" (§7.1.5): the sleeper never read our 1008, so it never
# answered it. The handler did not hang on a client that will never speak again. Here is
# the sleeper's ending from its handler's point of view:
#
# ```mermaid
# sequenceDiagram
#     participant H as sleeper's handler in talk
#     participant W as its bare WebSocket
#     participant S as barelab's server
#     participant C as sleeper's client
#     Note over H: waiting in receive_message()
#     Note over W: drop: close(1008), in a task
#     W->>S: websocket.close 1008
#     S--xC: Close frame, stuck behind unread data
#     Note over S: 2 s later: give up, cut the TCP connection
#     S->>W: websocket.disconnect 1006
#     W->>H: raise WebSocketDisconnect(1006)
#     Note over H: finally: leave (done already), await closing, wait for the sender
# ```
#
# What did the sleeper see? Its 1008 close frame sat behind megabytes it never read, so the
# server waited a couple of seconds for the closing handshake and then cut the TCP
# connection. Reading now, the sleeper finds only old data and then the end.
# `read_to_end` reads and throws the data away until one of two endings: the socket is
# closed (it returns the close code), or five quiet seconds pass (the socket is still
# open, which would be a bug here):

# %%
def read_to_end(client):
    try:
        while True:
            client.receive(timeout=5)
    except barelab.WebSocketClosed as closed:
        return int(closed.code)
    except TimeoutError:
        return "still open"

ending = read_to_end(sleeper)
ending in (1008, 1006)

# %% [markdown]
# `True`: the sleeper either found the 1008 close frame at the end of its buffers, or
# found the connection cut, which barelab's client reports as 1006, the code a browser
# shows for a connection that ended without a Close frame. Which of the two depends on
# how much the operating system had buffered when the server gave up. Both mean the
# server let it go. The server could not tell a slow phone from a dead one, and it did
# not need to.
#
# Close the other two; the hall empties:

# %%
listener.close()
speaker.close()
wait_until(lambda: not rooms_app.rooms.rooms)
rooms_app.rooms

# %% [markdown]
# ## Summary
#
# - A room handler must leave in a `finally`: `receive_message` ends with an exception when
#   the client goes, and code after the loop never runs (the ghost members at the start).
# - After the room closes a member with 1008, the handler's loop needs no special case:
#   `receive_message` waits (at most a second) for the client's answer and then raises
#   `WebSocketDisconnect` too; `websocket.client_gone` says how the client went.
# - `Rooms` keeps named `Room`s, created on the first join and removed on the last leave.
# - Each `Member` has a bounded `asyncio.Queue` and a sender task; `broadcast` only calls
#   `put_nowait`, so it never waits, and only a member's own task waits for its socket.
# - A dropped member's handler does not relay what arrives after the drop
#   (`if not member.left`), and waits for its cancelled sender with `asyncio.wait`, which
#   reports instead of raising `CancelledError`.
# - The slow-client policy here is **disconnect with 1008**: explicit to the client, and a
#   reconnect gets a fresh member list. Dropping old messages is the alternative for feeds.
# - Presence events are JSON with the full member list; text is relayed as a JSON message
#   with the sender's name, binary data is relayed untouched.
# - The demo page builds its WebSocket URL from `location`, so it works behind a proxy
#   prefix such as `/proxy/<port>/`.
# - The registry can be tried without any server: a stand-in socket with a `scope` and an
#   `async send_text` is enough to watch queues fill, events go out and a drop happen.

# %% [markdown]
# ## Exercises
#
# ### Exercise 1 — Drop the oldest instead
#
# Write `put_dropping_oldest(queue, item)`: put `item` into the `asyncio.Queue` `queue`
# without waiting; if the queue is full, first throw away the oldest item. Return how many
# items were thrown away (0 or 1). This is the policy a ticker would want.
#
# Hint: `queue.full()`, `queue.get_nowait()` and `queue.put_nowait(item)`. Checking
# `full()` and then acting is safe here even though other tasks use the queue: asyncio
# runs one task at a time, and a task is only interrupted at an `await`, and this function
# has none. The check fills a queue of 3 with five numbers and looks at what is left.

# %% tags=["solution"]
def put_dropping_oldest(queue, item):
    ### BEGIN SOLUTION
    dropped = 0
    if queue.full():
        queue.get_nowait()
        dropped = 1
    queue.put_nowait(item)
    return dropped
    ### END SOLUTION

# %% tags=["check"]
with check("Exercise 1"):
    queue = asyncio.Queue(maxsize=3)
    thrown = [put_dropping_oldest(queue, n) for n in range(5)]
    assert thrown == [0, 0, 0, 1, 1], f"items thrown away per put: {thrown}"
    kept = [queue.get_nowait() for _ in range(queue.qsize())]
    assert kept == [2, 3, 4], f"the queue should keep the 3 newest, it has {kept}"

# %% [markdown]
# ### Exercise 2 — Room sizes
#
# Write `room_sizes(rooms)` that takes a `Rooms` and returns a dict from each room name to
# its number of members, sorted by room name: what a `GET /rooms` endpoint could return.
#
# Hint: `rooms.rooms` maps names to `Room` objects, and a room's `members` is a dict. The
# check opens three in-process clients in two rooms, calls your function while they are
# connected, and once more after they have all left.

# %% tags=["solution"]
def room_sizes(rooms):
    ### BEGIN SOLUTION
    return {name: len(rooms.rooms[name].members) for name in sorted(rooms.rooms)}
    ### END SOLUTION

# %% tags=["check"]
with check("Exercise 2"):
    sizes_app = make_rooms_app()
    with TestClient(sizes_app) as client:
        with client.websocket_connect("/ws/b?name=x") as x, \
             client.websocket_connect("/ws/a?name=y") as y:
            x.receive_json(), y.receive_json()
            with client.websocket_connect("/ws/b?name=z") as z:
                z.receive_json()
                assert room_sizes(sizes_app.rooms) == {"a": 1, "b": 2}, \
                    room_sizes(sizes_app.rooms)
    assert room_sizes(sizes_app.rooms) == {}, "after everyone left there are no rooms"

# %% [markdown]
# ### Exercise 3 — Read an event like the page does
#
# Write `describe(message)` for a message a client received: `bytes` give `"[N bytes]"`;
# a presence event gives `"* NAME joined"` for a join and `"* NAME left"` otherwise; a chat
# message gives `"NAME: TEXT"`. It is the page's `onmessage`, in Python.
#
# Hint: a `str` message is always JSON here, so `json.loads` it and look at its `"type"`.
# The check connects two real clients to the served app, `dee` then `eli`; `eli` sends a
# text and three bytes, and the check describes everything `dee` received.

# %% tags=["solution"]
def describe(message):
    ### BEGIN SOLUTION
    if isinstance(message, bytes):
        return f"[{len(message)} bytes]"
    event = json.loads(message)
    if event["type"] == "message":
        return f"{event['name']}: {event['text']}"
    return f"* {event['name']} {'joined' if event['event'] == 'join' else 'left'}"
    ### END SOLUTION

# %% tags=["check"]
with check("Exercise 3"):
    with connect("porch", "dee") as dee, connect("porch", "eli") as eli:
        eli.send_text("hi")
        eli.send_bytes(b"abc")
        seen = [describe(m) for m in inbox(dee)]
    assert seen == ["* dee joined", "* eli joined", "eli: hi", "[3 bytes]"], seen

# %% [markdown]
# ## Clean up
#
# Stop every server this chapter started. The number is how many were still running.

# %%
barelab.stop_all()
