"""barelab.built.bare_tasks (chapter 23): background tasks for bare.

The collector and the registry are tested on a private event loop (asyncio.run inside a
test is fine: pytest runs no loop of its own). The app-level behaviour is tested in-process
with chapter 17's TestClient session (whose end runs the lifespan shutdown, hence the
drain), and over real sockets on barelab's ASGI engine and the course's own ASGI server.
"""

import asyncio
import functools
import logging
import threading
import time

import pytest

import barelab
from barelab.built.asgi_server import ASGIServer
from barelab.built.bare import Bare, Response
from barelab.built.bare_tasks import (BackgroundMiddleware, BackgroundTasks, TaskRegistry,
                                      background, task_name, with_background)
from barelab.built.testing import TestClient


class KeepRecords(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)

    @property
    def messages(self):
        return [record.getMessage() for record in self.records]


@pytest.fixture
def task_log():
    handler, log = KeepRecords(), logging.getLogger("bare.tasks.test")
    log.addHandler(handler)
    log.propagate = False
    yield log, handler
    log.removeHandler(handler)


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return predicate()


# --- the collector ---------------------------------------------------------------------

def test_add_task_records_without_running():
    ran, tasks = [], BackgroundTasks()
    tasks.add_task(ran.append, 1)
    assert len(tasks) == 1 and ran == []
    assert repr(tasks) == "<BackgroundTasks [list.append]>"


def test_add_task_refuses_a_non_callable():
    with pytest.raises(TypeError, match="function to call later"):
        BackgroundTasks().add_task(None)


def test_task_name_sees_through_partials():
    def job(a, b):
        pass
    assert task_name(functools.partial(functools.partial(job, 1), 2)) == \
        "test_task_name_sees_through_partials.<locals>.job"


def test_run_order_threads_and_kwargs():
    seen, loop_thread = [], []

    def plain(x, *, y):
        seen.append(("plain", x, y, threading.current_thread() is not loop_thread[0]))

    async def coroutine(x):
        seen.append(("async", x, threading.current_thread() is loop_thread[0]))

    async def main():
        loop_thread.append(threading.current_thread())
        tasks = BackgroundTasks()
        tasks.add_task(plain, 1, y=2)
        tasks.add_task(coroutine, 3)
        tasks.add_task(functools.partial(coroutine, 4))
        await tasks.run()

    asyncio.run(main())
    assert seen == [("plain", 1, 2, True), ("async", 3, True), ("async", 4, True)]


def test_an_error_is_logged_and_the_next_call_runs(task_log):
    log, handler = task_log
    ran = []

    def broken():
        raise ValueError("boom")

    async def main():
        tasks = BackgroundTasks()
        tasks.add_task(broken)
        tasks.add_task(ran.append, "after")
        await tasks.run(log)

    asyncio.run(main())
    assert ran == ["after"]
    assert handler.messages == ["background task test_an_error_is_logged_and_the_next_call_runs"
                                ".<locals>.broken failed"]
    assert isinstance(handler.records[0].exc_info[1], ValueError)


# --- the registry ----------------------------------------------------------------------

def test_registry_keeps_a_reference_until_the_end(task_log):
    log, handler = task_log

    async def main():
        registry = TaskRegistry(log=log)
        task = registry.spawn(asyncio.sleep(0.01), name="short")
        assert registry.tasks == {task}
        await task
        await asyncio.sleep(0)
        return registry

    assert asyncio.run(main()).tasks == set()
    assert handler.messages == []


def test_registry_logs_an_unretrieved_error(task_log):
    log, handler = task_log

    async def fails():
        raise RuntimeError("lost?")

    async def main():
        registry = TaskRegistry(log=log)
        registry.spawn(fails(), name="fails")
        await asyncio.sleep(0.01)

    asyncio.run(main())
    assert handler.messages == ["background task fails failed"]
    assert str(handler.records[0].exc_info[1]) == "lost?"


def test_drain_waits_then_cancels_and_logs(task_log):
    log, handler = task_log
    cancelled = []

    async def slow():
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def main():
        registry = TaskRegistry(timeout=0.1, log=log)
        registry.spawn(asyncio.sleep(0.01), name="quick")
        registry.spawn(slow(), name="slow")
        started = time.monotonic()
        counts = await registry.drain()
        return counts, time.monotonic() - started, registry.tasks

    counts, took, left = asyncio.run(main())
    assert counts == (1, 1) and cancelled == [True] and left == set()
    assert took < 1.0
    assert handler.messages == [
        "shutdown: 1 background task(s) still running after 0.1s, cancelling: slow",
        "background task slow was cancelled"]


def test_drain_with_nothing_running():
    assert asyncio.run(TaskRegistry().drain()) == (0, 0)


# --- the middleware and the app --------------------------------------------------------

def make_app(log, timeout=1.0, delay=0.3):
    app, done = Bare(name="tasks_test"), []
    registry = with_background(app, timeout=timeout, log=log)

    async def slow_job(label):
        await asyncio.sleep(delay)
        done.append((label, time.monotonic()))

    def blocking_job(label):
        time.sleep(0.05)
        done.append((label, time.monotonic()))

    def broken_job():
        raise ValueError("the task broke")

    @app.post("/job")
    async def job(request):
        later = background(request)
        later.add_task(slow_job, "slow")
        later.add_task(blocking_job, "blocking")
        return {"accepted": True}

    @app.get("/fail")
    async def fail(request):
        background(request).add_task(broken_job)
        return "accepted"

    @app.get("/bug")
    async def bug(request):
        background(request).add_task(done.append, ("should not run", 0))
        raise KeyError("bug")

    @app.get("/nothing")
    async def nothing(request):
        return "no tasks"

    @app.get("/forever")
    async def forever(request):
        background(request).add_task(asyncio.sleep, 30)
        return Response(status=202)

    return app, registry, done


def test_session_end_waits_for_tasks(task_log):
    log, _ = task_log
    app, registry, done = make_app(log)
    with TestClient(app) as client:
        answer = client.post("/job")
        answered = time.monotonic()
        assert answer.json() == {"accepted": True}
        assert done == []                     # the response came before the tasks ended
    assert [label for label, _ in done] == ["slow", "blocking"]
    assert done[0][1] > answered
    assert registry.tasks == set()


def test_task_error_is_logged_not_sent(task_log):
    log, handler = task_log
    app, _, _ = make_app(log)
    with TestClient(app) as client:
        answer = client.get("/fail")
    assert (answer.status_code, answer.text) == (200, "accepted")
    assert any("broken_job failed" in message for message in handler.messages)
    assert b"Traceback" not in answer.content


def test_no_tasks_after_a_failed_response(task_log):
    log, _ = task_log
    app, registry, done = make_app(log)
    with TestClient(app, raise_app_exceptions=False) as client:
        assert client.get("/bug").status_code == 500
    assert done == []


def test_head_runs_the_tasks_too(task_log):
    log, handler = task_log
    app, _, _ = make_app(log)
    with TestClient(app) as client:
        answer = client.request("HEAD", "/fail")
    assert answer.status_code == 200 and answer.content == b""
    assert any("broken_job failed" in message for message in handler.messages)


def test_no_task_spawned_when_none_asked(task_log):
    log, _ = task_log
    app, registry, _ = make_app(log)
    spawned = []
    registry.spawn = lambda *a, **k: spawned.append(a)
    with TestClient(app) as client:
        assert client.get("/nothing").text == "no tasks"
    assert spawned == []


def test_shutdown_cancels_what_outlives_the_timeout(task_log):
    log, handler = task_log
    app, registry, _ = make_app(log, timeout=0.1)
    started = time.monotonic()
    with TestClient(app) as client:
        assert client.get("/forever").status_code == 202
    assert time.monotonic() - started < 2.0
    assert handler.messages == [
        "shutdown: 1 background task(s) still running after 0.1s, cancelling: GET /forever",
        "background task GET /forever was cancelled"]


def test_background_without_the_middleware_is_a_clear_error():
    app = Bare(name="plain")

    @app.get("/")
    async def home(request):
        background(request).add_task(print)
        return "x"

    with pytest.raises(RuntimeError, match="with_background"):
        with TestClient(app) as client:
            client.get("/")
    with TestClient(app, raise_app_exceptions=False) as client:
        answer = client.get("/")
    assert answer.status_code == 500 and "with_background" not in answer.text


def test_with_background_after_the_first_request_is_refused():
    app = Bare(name="late")

    @app.get("/")
    async def home(request):
        return "x"

    with TestClient(app) as client:
        client.get("/")
    with pytest.raises(RuntimeError, match="first request"):
        with_background(app)


def test_with_background_goes_through_add_middleware(task_log):
    log, _ = task_log
    seen = []

    class Outer:                               # added before: it wraps the background layer
        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            seen.append(("outer", "background" in scope))
            await self.app(scope, receive, send)

    app, ran = Bare(name="layers", middleware=[Outer]), []
    with_background(app, log=log)
    assert app.middleware[-1].func is BackgroundMiddleware

    @app.get("/")
    async def home(request):
        background(request).add_task(ran.append, "task")
        return "ok"

    with TestClient(app) as client:
        assert client.get("/").text == "ok"
    assert ran == ["task"] and ("outer", False) in seen
    assert app.stack_built


def test_an_error_bare_answers_still_runs_the_tasks(task_log):
    from barelab.built.bare import NotFound
    log, _ = task_log
    app, ran = Bare(name="answered"), []
    with_background(app, log=log)

    @app.exception_handler(LookupError)
    async def lookup_is_404(request, error):
        return Response("gone\n", status=404)

    @app.get("/missing")
    async def missing(request):
        background(request).add_task(ran.append, "after NotFound")
        raise NotFound()

    @app.get("/lookup")
    async def lookup(request):
        background(request).add_task(ran.append, "after KeyError")
        raise KeyError("x")

    with TestClient(app) as client:
        assert client.get("/missing").status_code == 404
        assert client.get("/lookup").text == "gone\n"
    assert ran == ["after NotFound", "after KeyError"]


def test_middleware_passes_other_scopes_through():
    seen = []

    async def inner(scope, receive, send):
        seen.append(dict(scope))

    middleware = BackgroundMiddleware(inner, TaskRegistry())
    asyncio.run(middleware({"type": "websocket", "path": "/"}, None, None))
    assert "background" not in seen[0]


def test_the_client_has_the_response_before_the_task_ends_over_a_socket(task_log):
    log, _ = task_log
    for engine in (None, ASGIServer):
        app, _, done = make_app(log, delay=0.4)
        options = {"server": engine} if engine else {}
        server = barelab.serve(app, name=f"tasks_socket_{bool(engine)}", **options)
        try:
            result = barelab.http_request(server, "POST", "/job")
            answered = time.monotonic()
            assert result.status == 200 and result.json() == {"accepted": True}
            assert done == []
            assert wait_for(lambda: len(done) == 2)
            assert done[0][1] - answered > 0.2
        finally:
            server.stop()


def test_server_stop_drains_over_a_socket(task_log):
    log, handler = task_log
    app, _, done = make_app(log, timeout=1.0, delay=0.2)
    server = barelab.serve(app, name="tasks_drain")
    barelab.http_request(server, "POST", "/job")
    barelab.http_request(server, "GET", "/forever")
    server.stop()
    assert [label for label, _ in done] == ["slow", "blocking"]
    assert "cancelling: GET /forever" in handler.messages[0]
