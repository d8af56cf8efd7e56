"""Tests of barelab.built.app_lifespan, the app side of the ASGI lifespan protocol (chapter 14).

In-process through barelab.call_lifespan (the message order the spec requires), on
barelab's server (startup before the first request, state copied into requests, shutdown
on stop, LifespanStartupFailed), and with Starlette, whose lifespan= takes the same
async context managers.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

import pytest

import barelab
from barelab.built.app_lifespan import add_state, describe, run_lifespan, with_lifespan


def make_lifespan(events, state=None, fail_on=None):
    @asynccontextmanager
    async def lifespan(app):
        events.append("enter")
        if fail_on == "startup":
            raise RuntimeError("cannot start")
        try:
            yield state
        finally:
            events.append("exit")
            if fail_on == "shutdown":
                raise RuntimeError("cannot stop")
    return lifespan


async def http_app(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError("http only")
    body = repr(sorted(scope.get("state", {}).items())).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def sent_types(call):
    return [m["type"] for m in call.sent]


def test_startup_and_shutdown_complete_in_order():
    events = []
    call = barelab.call_lifespan(with_lifespan(http_app, make_lifespan(events)))
    assert sent_types(call) == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert [m["type"] for m in call.received] == ["lifespan.startup", "lifespan.shutdown"]
    assert events == ["enter", "exit"]


def test_yielded_state_is_added_to_the_dict_the_server_gave():
    server_dict = {"kept": 1}
    call = barelab.call_lifespan(with_lifespan(http_app, make_lifespan([], {"db": "x"})))
    assert call.scope["state"] == {"db": "x"}
    scope = {"type": "lifespan", "state": server_dict}
    add_state(scope, {"db": "y"})
    assert scope["state"] is server_dict and server_dict == {"kept": 1, "db": "y"}


def test_add_state_with_none_adds_nothing_and_refuses_a_server_without_state():
    scope = {"type": "lifespan", "state": {}}
    add_state(scope, None)
    assert scope["state"] == {}
    add_state({"type": "lifespan"}, None)  # nothing to store: fine without state
    with pytest.raises(RuntimeError, match="does not support lifespan state"):
        add_state({"type": "lifespan"}, {"db": 1})


def test_startup_failure_sends_failed_with_the_message_and_no_shutdown_is_awaited():
    events = []
    call = barelab.call_lifespan(with_lifespan(http_app, make_lifespan(events, fail_on="startup")))
    assert sent_types(call) == ["lifespan.startup.failed"]
    assert call.sent[0]["message"] == "RuntimeError: cannot start"
    assert events == ["enter"]


def test_state_on_a_server_without_state_is_a_startup_failure_and_cleans_up():
    events, sent = [], []

    async def receive():
        return {"type": "lifespan.startup"}

    async def send(message):
        sent.append(message)

    context = make_lifespan(events, {"db": 1})(None)
    asyncio.run(run_lifespan({"type": "lifespan"}, receive, send, context))  # no "state" key
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    assert "does not support lifespan state" in sent[0]["message"]
    assert events == ["enter", "exit"]


def test_shutdown_failure_sends_shutdown_failed():
    call = barelab.call_lifespan(with_lifespan(http_app, make_lifespan([], fail_on="shutdown")))
    assert sent_types(call) == ["lifespan.startup.complete", "lifespan.shutdown.failed"]
    assert call.sent[1]["message"] == "RuntimeError: cannot stop"


def test_a_first_message_other_than_startup_is_an_error():
    async def receive():
        return {"type": "lifespan.shutdown"}

    async def send(message):
        raise AssertionError("nothing should be sent")

    with pytest.raises(RuntimeError, match="expected lifespan.startup"):
        asyncio.run(run_lifespan({"type": "lifespan", "state": {}}, receive, send,
                                 make_lifespan([])(None)))


def test_cancellation_while_serving_still_runs_the_clean_up():
    events = []

    async def main():
        messages = asyncio.Queue()
        await messages.put({"type": "lifespan.startup"})
        sent = []

        async def send(message):
            sent.append(message)

        task = asyncio.ensure_future(run_lifespan({"type": "lifespan", "state": {}},
                                                  messages.get, send,
                                                  make_lifespan(events)(None)))
        while not sent:
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert events == ["enter", "exit"]


def test_other_scopes_go_to_the_app_and_the_name_follows_it():
    app = with_lifespan(http_app, make_lifespan([]))
    assert app.__name__ == "http_app_with_lifespan"
    assert barelab.call_asgi(app, "GET", "/").status == 200


def test_describe():
    assert describe(ValueError("bad")) == "ValueError: bad"


def test_served_state_reaches_requests_and_shutdown_runs_on_stop():
    events = []
    app = with_lifespan(http_app, make_lifespan(events, {"db": "conn"}))
    with barelab.serve(app, name="test_app_lifespan_served") as server:
        assert events == ["enter"]
        assert barelab.http_request(server).body == b"[('db', 'conn')]"
    assert events == ["enter", "exit"]
    assert "lifespan shutdown complete" in str(server.log)


def test_served_startup_failure_raises_in_the_caller():
    app = with_lifespan(http_app, make_lifespan([], fail_on="startup"))
    with pytest.raises(barelab.LifespanStartupFailed, match="cannot start"):
        barelab.serve(app, name="test_app_lifespan_fails")
    assert "test_app_lifespan_fails" not in [s.name for s in barelab.running()]


def test_the_same_lifespan_works_with_starlette():
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    events = []

    async def home(request):
        return PlainTextResponse(request.state.db)

    app = Starlette(routes=[Route("/", home)], lifespan=make_lifespan(events, {"db": "conn"}))
    with barelab.serve(app, name="test_app_lifespan_starlette") as server:
        assert barelab.http_request(server).text == "conn"
    assert events == ["enter", "exit"]
