"""Chapter 19's battery on several servers at once, for the conformance tests."""

from __future__ import annotations

from contextlib import contextmanager

import barelab
from barelab.built.conformance import run_batteries


@contextmanager
def battery_table(servers: dict, probes, *, prefix: str = ""):
    """Serve each ``{name: (app, engine class or None for barelab's own)}``, run ``probes``
    on all of them at once, and yield the Table; every server is stopped afterwards."""
    running = {name: barelab.serve(app, name=prefix + name, server=engine)
               for name, (app, engine) in servers.items()}
    try:
        yield run_batteries(running, probes)
    finally:
        for server in running.values():
            server.stop()
