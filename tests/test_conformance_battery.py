"""Chapter 19's conformance battery (barelab.built.conformance), run for real and in parts.

The battery runs over raw sockets against the course's WSGI and ASGI servers and barelab's
own engines, each serving the chapter's echo apps; every MUST probe must pass. A course
server's known gap is an xfail(strict=True) that names the rule, so it cannot be forgotten
once fixed. Verdicts are checked on canned Outcomes, without any server, and the battery is
shown to end in bounded time against a server that accepts and says nothing, or resets.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from types import SimpleNamespace

import pytest

from battery import battery_table

import barelab
from barelab.serving import detect_kind
from barelab.built.conformance import (
    BATTERY, FAIL, MUST, PASS, Frame, Outcome, Probe, Read, Response, Send,
    WSGIRefServer, announces_close, bare_204, echo_asgi, echo_wsgi, either, fails_connection,
    has_date, in_order, not_served, refused, run_battery, run_probe, saw_probe, status_is)
from barelab.built.websocket import WebSocketASGIServer
from barelab.built.wsgi_server import WSGIServer

SERVERS = {                       # name -> (app, engine class or None for barelab's own)
    "course WSGI": (echo_wsgi, WSGIServer),
    "barelab WSGI": (echo_wsgi, None),
    "course ASGI": (echo_asgi, WebSocketASGIServer),
    "barelab ASGI": (echo_asgi, None),
}

# Known MUST failures of the course's servers: (server, probe) -> why. Remove an entry when
# the server is fixed; strict xfail makes the test fail until you do.
# (None at the moment: chapter 13's server used to let 'Host: a b' through; it now uses
# chapter 02's check_host.)
KNOWN_GAPS: dict[tuple[str, str], str] = {}

MUST_PROBES = [p for p in BATTERY if p.level == MUST]


@pytest.fixture(scope="module")
def tables():
    """The whole battery, run once on the four servers; stopped at the end."""
    with battery_table(SERVERS, BATTERY, prefix="battery-") as table:
        yield table


def _cases():
    for name, (app, _) in SERVERS.items():
        for each in MUST_PROBES:
            if each.needs == "websocket" and detect_kind(app) == "wsgi":
                continue  # a WSGI server has no WebSocket to probe: not a case at all
            gap = KNOWN_GAPS.get((name, each.name))
            marks = [pytest.mark.xfail(strict=True, reason=gap)] if gap else []
            yield pytest.param(name, each.name, marks=marks, id=f"{name}:{each.name}")


@pytest.mark.parametrize("server, probe_name", list(_cases()))
def test_must_probe_passes(tables, server, probe_name):
    row = [p.name for p in BATTERY].index(probe_name)
    mark = tables.mark(server, row)
    outcome = tables.outcome(server, probe_name)
    assert mark == PASS, f"{server} fails {probe_name}: got {outcome.summary()}"


def test_course_and_barelab_pass_every_should_and_may_too(tables):
    for name in ("course WSGI", "barelab WSGI", "barelab ASGI"):
        assert tables.columns[name].failures() == [], tables.failure_report(names=[name])


def test_known_gaps_are_the_only_must_failures(tables):
    failed = {(name, r.probe.name) for name, results in tables.columns.items()
              for r in results.failures(MUST)}
    assert failed == set(KNOWN_GAPS), tables.failure_report()


def test_battery_has_every_group_and_unique_names():
    names = [p.name for p in BATTERY]
    assert len(names) == len(set(names)) >= 30
    assert {p.level for p in BATTERY} == {"MUST", "SHOULD", "MAY"}
    assert sum(p.needs == "websocket" for p in BATTERY) >= 6
    assert all(p.rule.startswith(("RFC 9110 §", "RFC 9112 §", "RFC 6455 §", "RFC 6585 §"))
               for p in BATTERY)


# ---------------------------------------------------------------------------------------
# Verdicts on canned outcomes


def response(status, headers=(), body=b"", version="HTTP/1.1"):
    return Response(version, status, list(headers), body)


def test_refused_wants_the_status_and_the_close():
    assert refused()(Outcome([response(400)], closed=True))
    assert not refused()(Outcome([response(400)], open=True))
    assert not refused()(Outcome([response(200)], closed=True))
    assert not refused()(Outcome(stopped="timeout"))


def test_either_describes_both_alternatives():
    verdict = either(status_is(400), saw_probe("a b"))
    assert verdict.__doc__ == "status 400 or 200, app saw X-Probe=a b"
    assert verdict(Outcome([response(200, body=b"path=/ query= x-probe=a b\n")]))
    assert not verdict(Outcome([response(200, body=b"path=/ query= x-probe=a\r\n b\n")]))


def test_date_is_looked_for_in_the_final_response():
    interim = response(100)
    assert has_date(Outcome([interim, response(200, [("date", "x")])]))
    assert not has_date(Outcome([interim, response(400)]))
    assert not has_date(Outcome())


def test_pipelined_order_and_announced_close():
    one, two = response(200, body=b"path=/one q"), response(200, body=b"path=/two q")
    assert in_order(Outcome([one, two]))
    assert in_order(Outcome([one], closed=True))
    assert not in_order(Outcome([two, one]))
    assert announces_close(Outcome([response(200, [("connection", "close")])], closed=True))
    assert announces_close(Outcome([response(200, version="HTTP/1.0")], closed=True))
    assert not announces_close(Outcome([response(200)], closed=True))


def test_204_with_content_length_fails():
    after = response(200)
    assert bare_204(Outcome([response(204), after]))
    assert not bare_204(Outcome([response(204, [("content-length", "0")]), after]))


def test_failing_a_websocket_connection():
    verdict = fails_connection(1007)
    assert verdict(Outcome([response(101)], [Frame(8, (1007).to_bytes(2, "big"))], closed=True))
    assert verdict(Outcome([response(101)], closed=True))          # no close frame: allowed
    assert not verdict(Outcome([response(101)], [Frame(1, b"\xff")], closed=True))
    assert not verdict(Outcome([response(101)], [Frame(8, b"\x03\xe8")], closed=True))


def test_a_verdict_that_raises_is_a_failure():
    broken = Probe("broken", "RFC 9110 §1", MUST, (), lambda got: got.responses[5].status)
    results = run_battery(SimpleNamespace(host="127.0.0.1", port=1), [broken], budget=1.0)
    assert results.results[0].mark == FAIL


# ---------------------------------------------------------------------------------------
# Never hanging


def assert_nothing_served(results):
    """No response anywhere; only the "must not be served" probes pass, trivially."""
    assert all(r.outcome.responses == [] for r in results.results if r.outcome)
    passed = {r.probe.verdict for r in results.results if r.mark == PASS}
    assert passed <= {not_served}, [r.probe.name for r in results.results if r.mark == PASS]


def test_battery_ends_in_time_against_a_silent_server():
    with socket.create_server(("127.0.0.1", 0)) as silent:   # accepts (kernel), never answers
        target = SimpleNamespace(host="127.0.0.1", port=silent.getsockname()[1])
        started = time.monotonic()
        results = run_battery(target, BATTERY, timeout=0.2, budget=2.0)
        assert time.monotonic() - started < 3.5
    assert_nothing_served(results)


def test_one_probe_against_a_silent_server_stops_at_its_timeout():
    with socket.create_server(("127.0.0.1", 0)) as silent:
        probe = Probe("p", "RFC 9112 §3", MUST, (Send(b"GET / HTTP/1.1\r\n\r\n"), Read()), None)
        started = time.monotonic()
        outcome = run_probe("127.0.0.1", silent.getsockname()[1], probe, timeout=0.3)
        assert time.monotonic() - started < 1.0
    assert outcome.stopped == "timeout" and outcome.responses == []


def test_battery_ends_at_once_against_a_resetting_server():
    listener = socket.create_server(("127.0.0.1", 0))

    def reset_everyone():
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            connection.close()

    thread = threading.Thread(target=reset_everyone, daemon=True)
    thread.start()
    target = SimpleNamespace(host="127.0.0.1", port=listener.getsockname()[1])
    started = time.monotonic()
    results = run_battery(target, BATTERY, timeout=2.0)
    elapsed = time.monotonic() - started
    listener.close()
    thread.join(timeout=2)
    assert elapsed < 5
    # No response anywhere. (Probes whose verdict is "the server closes the connection"
    # may pass: a reset is a close, which is all they ask about.)
    assert all(r.outcome.responses == [] for r in results.results if r.outcome)


def test_nothing_listening_is_a_failure_not_an_exception():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    results = run_battery(SimpleNamespace(host="127.0.0.1", port=port), BATTERY[:3])
    assert [r.mark for r in results.results] == [FAIL] * 3
    assert results.results[0].outcome.stopped.startswith("no connection")


def test_wsgiref_engine_stops_and_keeps_tracebacks_in_the_log():
    server = barelab.serve(echo_wsgi, name="battery-wsgiref", server=WSGIRefServer)
    try:
        crash = Probe("2, 2", "RFC 9110 §8.6", MUST,
                      (Send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2, 2\r\n\r\nab"),
                       Read()), status_is(500))
        assert run_battery(server, [crash]).results[0].mark == PASS
        assert any("ValueError" in entry.message for entry in server.log.errors)
    finally:
        server.stop()
    with pytest.raises(OSError):
        socket.create_connection((server.host, server.port), timeout=0.5).close()
