"""Child servers that die with the shopfloor process that started them.

A local MLflow UI or a temporary Prefect API runs as a child process. Each is started in its own
process group (so stopping it stops every worker it spawned) and, on Linux, with a parent-death
signal: if the shopfloor process is killed (even with SIGKILL, which runs no cleanup), the kernel
sends the child SIGTERM, so no server is left listening after its parent is gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """preexec_fn: ask the kernel for SIGTERM when the parent dies (Linux; a no-op elsewhere)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    """A free TCP port on loopback (the caller binds it next; tests and benchmarks never use fixed ports)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_child(args: list[str], env: dict[str, str] | None = None, **popen) -> subprocess.Popen:
    """Start `args` in a new process group that dies with this process."""
    return subprocess.Popen(args, env=env, start_new_session=True, preexec_fn=_die_with_parent, **popen)


def stop_child(child: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """SIGTERM to the child's whole group, SIGKILL after `timeout_s`; waits so nothing is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, sig)
        try:
            child.wait(timeout=timeout_s)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):  # workers of a group whose leader already exited
        os.killpg(child.pid, signal.SIGKILL)


@contextlib.contextmanager
def stop_on_signals(child: subprocess.Popen):
    """While the body runs, SIGTERM or SIGINT to this process ends the body (SystemExit) and the
    child's group is stopped on the way out. The handler itself only raises: waiting on the child
    inside it would wait on a lock the interrupted `wait()` still holds."""

    def handler(signum, _frame):
        raise SystemExit(128 + signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield child
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        stop_child(child)
