"""barelab.serving: the Server handle and its registry, as a notebook uses them."""

from __future__ import annotations

import os
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

import barelab
from barelab import serving
from barelab.engines.base import Engine
from barelab.errors import LifespanStartupFailed, ServerStartError


def hello_wsgi(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello from wsgi"]


async def hello_asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await receive()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello from asgi"})


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture(autouse=True)
def clean_registry():
    yield
    barelab.stop_all()


def test_detect_kind_tells_wsgi_from_asgi():
    class AsgiObject:
        async def __call__(self, scope, receive, send): ...

    assert serving.detect_kind(hello_wsgi) == "wsgi"
    assert serving.detect_kind(hello_asgi) == "asgi"
    assert serving.detect_kind(AsgiObject()) == "asgi"
    with pytest.raises(TypeError):
        serving.detect_kind("not an app")


@pytest.mark.parametrize("app, body", [(hello_wsgi, b"hello from wsgi"),
                                       (hello_asgi, b"hello from asgi")])
def test_serve_answers_and_stop_frees_the_port(app, body):
    server = barelab.serve(app)
    assert server.host == "127.0.0.1" and server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}/"
    assert fetch(server.url) == body
    assert server.log.requests, "the request should be in the server's own log"
    server.stop()
    assert not server.running
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", server.port)) != 0, "port still accepting"
    server.stop()  # a second stop is harmless


def test_serving_a_name_again_replaces_it_on_the_same_port():
    first = barelab.serve(hello_wsgi)
    second = barelab.serve(hello_wsgi)
    assert not first.running and second.running
    assert second.port == first.port
    assert barelab.running() == [second]
    assert fetch(second.url) == b"hello from wsgi"


def test_a_hundred_reruns_leak_no_thread_and_no_fd():
    barelab.serve(hello_wsgi).stop()  # warm up imports and lazy allocations
    barelab.serve(hello_asgi).stop()
    threads, fds = threading.active_count(), open_fds()
    for _ in range(50):
        barelab.serve(hello_wsgi)
        barelab.serve(hello_asgi)
    assert len(barelab.running()) == 2
    barelab.stop_all()
    assert threading.active_count() == threads
    assert open_fds() <= fds


def test_rerun_after_requests_on_kept_alive_connections():
    server = barelab.serve(hello_wsgi)
    with socket.create_connection(("127.0.0.1", server.port)) as idle:
        idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle.recv(1024).startswith(b"HTTP/1.1 200")
        again = barelab.serve(hello_wsgi)  # the old one has a client still connected
        assert again.port == server.port
        assert fetch(again.url) == b"hello from wsgi"


@pytest.mark.parametrize("app", [hello_wsgi, hello_asgi])
def test_stop_is_prompt(app):
    server = barelab.serve(app)
    fetch(server.url)
    started = time.perf_counter()
    server.stop()
    assert time.perf_counter() - started < 0.25  # a wake-up, not a poll interval


def test_restart_keeps_the_port_and_can_swap_the_app():
    server = barelab.serve(hello_wsgi, name="demo")

    def other(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"other"]

    again = server.restart(other)
    assert again.port == server.port and again.name == "demo"
    assert fetch(again.url) == b"other"


def test_context_manager_stops_the_server():
    with barelab.serve(hello_wsgi, name="ctx") as server:
        assert fetch(server.url) == b"hello from wsgi"
    assert not server.running and barelab.running() == []


def test_explicit_port_in_use_is_a_clear_error():
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(ServerStartError, match=str(port)):
            barelab.serve(hello_wsgi, port=port)


def test_kind_can_be_forced_and_is_validated():
    with pytest.raises(ValueError):
        barelab.serve(hello_wsgi, kind="cgi")
    with pytest.raises(TypeError):
        barelab.serve(hello_wsgi, server=object)


def test_link_goes_through_the_proxy_under_a_hub(monkeypatch):
    server = barelab.serve(hello_wsgi)
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)
    assert server.link == server.url
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/ada/")
    assert server.link == f"/user/ada/proxy/{server.port}/"
    assert f'href="/user/ada/proxy/{server.port}/"' in server._repr_html_()
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/ada")
    assert server.link == f"/user/ada/proxy/{server.port}/"


def test_html_repr_is_a_clickable_link_and_says_when_stopped():
    server = barelab.serve(hello_wsgi)
    assert f'<a href="{server.url}"' in server._repr_html_()
    assert "running" in repr(server)
    server.stop()
    assert "stopped" in server._repr_html_() and "stopped" in repr(server)


def test_app_errors_land_in_the_log_with_a_traceback():
    def broken(environ, start_response):
        raise RuntimeError("kaboom")

    server = barelab.serve(broken)
    with pytest.raises(urllib.error.HTTPError) as caught:
        fetch(server.url)
    assert caught.value.code == 500
    assert b"kaboom" not in caught.value.read()  # no traceback text to the client
    errors = server.log.errors
    assert errors and "kaboom" in errors[-1].details
    assert "kaboom" in server.log._repr_html_()


def test_lifespan_startup_failure_raises_in_the_cell_and_frees_the_port():
    async def refuses(scope, receive, send):
        assert scope["type"] == "lifespan"
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    threads = threading.active_count()
    with pytest.raises(LifespanStartupFailed, match="no database"):
        barelab.serve(refuses)
    assert barelab.running() == []
    assert threading.active_count() == threads


def test_asgi_server_never_needs_the_callers_event_loop():
    import asyncio

    async def cell_with_a_running_loop():
        # As in Jupyter: the calling thread runs a loop and makes a blocking request.
        server = barelab.serve(hello_asgi)
        return fetch(server.url)

    assert asyncio.run(cell_with_a_running_loop()) == b"hello from asgi"


class RecordingEngine(Engine):
    """A stand-in for a chapter's own server: answers every connection with one reply."""

    kind = "wsgi"

    def start(self):
        self._stop = threading.Event()
        self.sock.settimeout(0.05)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            with conn:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nmine")

    def stop(self, timeout=2.0):
        self._stop.set()
        self._thread.join(timeout)
        self.sock.close()


def test_a_chapter_server_plugs_in_with_server_equals():
    server = barelab.serve(hello_wsgi, server=RecordingEngine)
    assert server.engine_cls is RecordingEngine
    assert fetch(server.url) == b"mine"
    again = barelab.serve(hello_wsgi, server=RecordingEngine)
    assert again.port == server.port


def test_a_chapter_server_may_label_its_own_kind():
    class SocketEngine(RecordingEngine):
        kind = "socket"

    server = barelab.serve(lambda conn: None, name="raw", server=SocketEngine)
    assert server.kind == "socket" and "socket" in repr(server)
    assert fetch(server.url) == b"mine"


def test_bind_listening_socket_gives_a_listening_socket_on_a_free_port():
    sock = serving.bind_listening_socket("127.0.0.1", 0)
    try:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        with socket.create_connection(sock.getsockname(), timeout=2):
            pass
    finally:
        sock.close()
