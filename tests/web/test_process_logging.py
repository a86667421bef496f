"""A server process's whole stderr is JSON lines (R7.3), not only Strongroom's own loggers.

Faults injected in a real child process set up as `strongroom serve` sets up its
master and workers: a library logger's warning (psycopg's pool failing to connect),
a Python warning, an exception escaping a thread, and one escaping the main thread
with personal data in its message.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLANTED = "leaked@example.org"

CHILD = textwrap.dedent(f"""
    import logging, threading, warnings
    from infrastructure.logs import configure_process_logging
    configure_process_logging()
    logging.getLogger("psycopg.pool").warning("error connecting in 'pool-1'")
    logging.getLogger("psycopg.pool").info("below the root level: not written")
    warnings.warn("a library's deprecation", DeprecationWarning, stacklevel=1)
    worker = threading.Thread(target=lambda: 1 / 0, name="worker-thread")
    worker.start(); worker.join()
    raise ValueError("{PLANTED}")
""")


def test_library_lines_warnings_and_uncaught_exceptions_come_out_as_json() -> None:
    done = subprocess.run([sys.executable, "-W", "always", "-c", CHILD], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert done.stdout == ""
    entries = [json.loads(line) for line in done.stderr.splitlines()]  # fails on any non-JSON line
    assert PLANTED not in done.stderr  # the exception's message (and trace) may hold values
    by_logger = {(entry["logger"], entry.get("exc_type")): entry for entry in entries}
    assert ("psycopg.pool", None) in by_logger
    assert "a library's deprecation" in by_logger[("py.warnings", None)]["message"]
    assert by_logger[("strongroom.error", "ZeroDivisionError")]["thread"] == "worker-thread"
    assert ("strongroom.error", "ValueError") in by_logger
    assert len(entries) == 4
