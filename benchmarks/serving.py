"""Print serving figures for barelab's engines next to wsgiref and uvicorn.

Not a test: these machines are small and noisy, so read the ratios within one run.

    python benchmarks/serving.py [--seconds 3] [--connections 8]

1. serve/stop latency of barelab's WSGI and ASGI engines (median of 50, in this process);
2. requests per second for a tiny "hello" app, each server in its own process, the load
   from this process on keep-alive connections driven by asyncio.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import socket
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

APPS = textwrap.dedent('''
    def wsgi_app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"hello"]

    async def asgi_app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"hello"})
''')

SERVERS = {
    "barelab wsgi": APPS + textwrap.dedent('''
        import barelab, sys, threading
        server = barelab.serve(wsgi_app, port={port})
        print("ready", flush=True); sys.stdin.read()
    '''),
    "wsgiref (threading)": APPS + textwrap.dedent('''
        import sys, threading
        from socketserver import ThreadingMixIn
        from wsgiref.simple_server import WSGIServer, WSGIRequestHandler, make_server
        class Quiet(WSGIRequestHandler):
            def log_message(self, *args): pass
        class Threading(ThreadingMixIn, WSGIServer):
            daemon_threads = True
        httpd = make_server("127.0.0.1", {port}, wsgi_app, server_class=Threading,
                            handler_class=Quiet)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        print("ready", flush=True); sys.stdin.read()
    '''),
    "barelab asgi": APPS + textwrap.dedent('''
        import barelab, sys
        server = barelab.serve(asgi_app, port={port})
        print("ready", flush=True); sys.stdin.read()
    '''),
}
if importlib.util.find_spec("uvicorn"):
    SERVERS["uvicorn (h11)"] = APPS + textwrap.dedent('''
        import sys, threading, uvicorn
        config = uvicorn.Config(asgi_app, host="127.0.0.1", port={port}, http="h11",
                                log_level="error", lifespan="off")
        server = uvicorn.Server(config)
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started: pass
        print("ready", flush=True); sys.stdin.read()
    ''')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_stop_latency(app, repeats: int = 50) -> tuple[float, float]:
    import barelab
    starts, stops = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        server = barelab.serve(app, name="latency")
        t1 = time.perf_counter()
        server.stop()
        t2 = time.perf_counter()
        starts.append(t1 - t0)
        stops.append(t2 - t1)
    return statistics.median(starts), statistics.median(stops)


REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


async def one_connection(port: int, deadline: float, counts: list[int],
                         errors: list[str], request: bytes = REQUEST) -> None:
    done = 0
    while time.perf_counter() < deadline:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                done += 1
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            errors.append(type(exc).__name__)  # counted, then a new connection
        finally:
            writer.close()
    counts.append(done)


async def load(port: int, seconds: float, connections: int,
               request: bytes = REQUEST) -> tuple[float, int]:
    counts: list[int] = []
    errors: list[str] = []
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(one_connection(port, deadline, counts, errors, request)
                           for _ in range(connections)))
    return sum(counts) / (time.perf_counter() - started), len(errors)


def wait_until_listening(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Wait until a server started in ``proc`` accepts connections on ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the server did not start listening")


def requests_per_second(script: str, seconds: float, connections: int) -> tuple[float, int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", script.replace("{port}", str(port))],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT, text=True)
    try:
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("server did not start")
        return asyncio.run(load(port, seconds, connections))
    finally:
        proc.stdin.close()
        proc.terminate()
        proc.wait(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    namespace: dict = {}
    exec(APPS, namespace)

    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print("\nserve()/stop() latency, median of 50:")
    for label, app in (("wsgi", namespace["wsgi_app"]), ("asgi", namespace["asgi_app"])):
        start, stop = serve_stop_latency(app)
        print(f"  barelab {label}: serve {start * 1000:7.3f} ms   stop {stop * 1000:7.3f} ms")

    print(f"\nrequests/s, hello app, {args.connections} keep-alive connections, "
          f"{args.seconds:g} s each:")
    results = {}
    for label, script in SERVERS.items():
        results[label], errors = requests_per_second(script, args.seconds, args.connections)
        note = f"   (closed the connection {errors} times; the client reconnected)" if errors else ""
        print(f"  {label:22} {results[label]:9.0f}{note}")
    print("\nratios (same run):")
    for ours, theirs in (("barelab wsgi", "wsgiref (threading)"), ("barelab asgi", "uvicorn (h11)")):
        if ours in results and theirs in results:
            print(f"  {ours} / {theirs}: {results[ours] / results[theirs]:.2f}")


if __name__ == "__main__":
    main()
