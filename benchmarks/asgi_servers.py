"""Requests per second of chapter 13's ASGIServer next to barelab's ASGIEngine, uvicorn and
hypercorn, all in one run. Not a test: the machine is small and shared, so read the ratios
within one run, not the numbers.

    python benchmarks/asgi_servers.py [--seconds 3] [--connections 8]

Each server runs the same app in its own process; the load comes from this process over N
keep-alive connections, driven by asyncio with the load generator of benchmarks/serving.py.
Two cases: a 5-byte "hello" GET, and a 64 KiB POST whose body the app reads to the end.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serving  # noqa: E402  (benchmarks/serving.py: free_port and the load generator)

ROOT = Path(__file__).resolve().parent.parent

APP = textwrap.dedent('''
    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("no lifespan here")
        size = 0
        while True:                      # read the whole body, as a real app would
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"hello" if size == 0 else b"%d" % size
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"),
                                (b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})
''')

IN_PROCESS = {   # a small script per server; {port} is filled in; stdin closing ends it
    "course ASGIServer": '''
        import barelab
        from barelab.built.asgi_server import ASGIServer
        barelab.serve(app, port={port}, server=ASGIServer, lifespan="off")
    ''',
    "barelab ASGIEngine": '''
        import barelab
        barelab.serve(app, port={port}, lifespan="off")
    ''',
    "uvicorn (h11)": '''
        import threading, uvicorn
        config = uvicorn.Config(app, host="127.0.0.1", port={port}, http="h11",
                                loop="asyncio", log_level="error", lifespan="off")
        threading.Thread(target=uvicorn.Server(config).run, daemon=True).start()
    ''',
}
if importlib.util.find_spec("httptools"):
    IN_PROCESS["uvicorn (httptools)"] = IN_PROCESS["uvicorn (h11)"].replace(
        'http="h11"', 'http="httptools"')
if importlib.util.find_spec("hypercorn"):
    IN_PROCESS["hypercorn"] = '''
        import asyncio, threading
        from hypercorn.asyncio import serve
        from hypercorn.config import Config
        config = Config()
        config.bind = ["127.0.0.1:{port}"]
        config.loglevel = "ERROR"
        async def never():              # a shutdown trigger: no signal handlers in a thread
            await asyncio.Future()
        threading.Thread(target=asyncio.run, args=(serve(app, config, shutdown_trigger=never),),
                         daemon=True).start()
    '''


def server_command(label: str, port: int) -> list[str]:
    script = (APP + textwrap.dedent(IN_PROCESS[label]).replace("{port}", str(port))
              + "import sys\nsys.stdin.read()\n")
    return [sys.executable, "-c", script]


def run_load(port: int, request: bytes, seconds: float, connections: int) -> tuple[float, int]:
    return asyncio.run(serving.load(port, seconds, connections, request))


def measure(label: str, cases: dict, seconds: float, connections: int) -> dict:
    port = serving.free_port()
    proc = subprocess.Popen(server_command(label, port), stdin=subprocess.PIPE, cwd=ROOT)
    try:
        serving.wait_until_listening(port, proc)
        run_load(port, cases["hello GET"], 0.3, connections)       # warm up
        return {case: run_load(port, request, seconds, connections)
                for case, request in cases.items()}
    finally:
        proc.stdin.close()
        proc.terminate()
        proc.wait(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    body = b"x" * 65536
    cases = {
        "hello GET": b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n",
        "64 KiB POST": (b"POST /upload HTTP/1.1\r\nHost: bench\r\nContent-Type: "
                        b"application/octet-stream\r\nContent-Length: %d\r\n\r\n" % len(body)) + body,
    }
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
          f"{args.connections} keep-alive connections, {args.seconds:g} s per case\n")
    results = {}
    for label in IN_PROCESS:
        results[label] = measure(label, cases, args.seconds, args.connections)
        for case, (rate, errors) in results[label].items():
            note = f"   ({errors} connections closed under load)" if errors else ""
            print(f"  {label:22} {case:12} {rate:8.0f} req/s{note}", flush=True)
    print("\nratios, course ASGIServer / other (same run; above 1 means the course server "
          "is faster):")
    others = [label for label in IN_PROCESS if label != "course ASGIServer"]
    for case in cases:
        ours = results["course ASGIServer"][case][0]
        print(f"  {case:12} " + "   ".join(f"{label}: {ours / results[label][case][0]:.2f}"
                                          for label in others))


if __name__ == "__main__":
    main()
