"""Start, stop and check one service: its own session (so one signal stops every process it spawned),
a pidfile, a log file, and a health check that says when it answers.

Services outlive `shopfloor stack up` (it starts them and exits), so they are not tied to it the way
flows.processes ties a temporary server to its parent; `stack down` stops each whole process group
(an `mlflow server` runs workers and job consumers, a Prefect worker runs flow processes).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import ShopfloorError
from stack.layout import StackPaths


class StackError(ShopfloorError):
    """A service would not start or answer; the message names it and its log."""


@dataclass(frozen=True)
class Service:
    name: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    healthy: Callable[[], bool] = lambda: True
    stop_signal: int = signal.SIGTERM  # PostgreSQL: SIGINT is its fast shutdown
    user: str | None = None  # run as this user (PostgreSQL refuses root)
    cwd: Path | None = None


def http_answers(
    url: str, headers: dict[str, str] | None = None, ok: tuple[int, ...] = (200,)
) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, headers=headers or {}), timeout=3
            ) as reply:
                return reply.status in ok
        except urllib.error.HTTPError as err:
            return err.code in ok
        except (OSError, ValueError):
            return False

    return check


def as_user(user: str | None) -> dict:
    """Popen arguments that drop to `user` entirely: its uid, its group, none of root's groups."""
    return {"user": user, "group": user, "extra_groups": []} if user else {}


def proc_stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state, parent pid, process group, ...);
    None when the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return None


def live(pid: int | str) -> bool:
    """Running (or sleeping, or stopped): a zombie, dead but not yet reaped, is not live."""
    fields = proc_stat(pid)
    return fields is not None and fields[0] != "Z"


def running_pid(paths: StackPaths, name: str) -> int | None:
    """The service's pid when its pidfile names a live process (a zombie child is reaped, not live)."""
    pidfile = paths.pidfile(name)
    if not pidfile.exists():
        return None
    pid = int(pidfile.read_text().split()[0])
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our own child that has exited
            return None
    return pid if live(pid) else None


def start(paths: StackPaths, service: Service, timeout_s: float = 300) -> float:
    """Start `service` unless it runs; wait until healthy. Returns the seconds it took."""
    started = time.monotonic()
    if running_pid(paths, service.name) is None:
        paths.log(service.name).parent.mkdir(parents=True, exist_ok=True)
        paths.pidfile(service.name).parent.mkdir(parents=True, exist_ok=True)
        with paths.log(service.name).open("ab") as log:
            child = subprocess.Popen(service.args, env=os.environ | service.env, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True, cwd=service.cwd, **as_user(service.user))  # fmt: skip
        paths.pidfile(service.name).write_text(f"{child.pid} {service.stop_signal}\n")
    while not service.healthy():
        if running_pid(paths, service.name) is None:
            raise StackError(f"{service.name} stopped while starting; see {paths.log(service.name)}")
        if time.monotonic() - started > timeout_s:
            raise StackError(
                f"{service.name} did not answer within {timeout_s:.0f} s; see {paths.log(service.name)}"
            )
        time.sleep(0.3)
    return time.monotonic() - started


def descendants(*pids: int) -> list[int]:
    """Every live process below `pids`, in any session: a Prefect worker starts each flow run in a
    session of its own, which a signal to the worker's group does not reach."""
    children: dict[int, list[int]] = {}
    for folder in Path("/proc").glob("[0-9]*"):
        fields = proc_stat(folder.name)
        if fields is not None and fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(folder.name))
    found, todo = [], list(pids)
    while todo:
        below = [p for p in children.get(todo.pop(), []) if p not in found]
        found += below
        todo += below
    return found


def kill_tree(pid: int, sig: int, known: list[int] = ()) -> None:
    """`sig` to `pid`, to `known` (processes seen below it earlier: orphans once it exits) and to every
    process now below any of them, each with its process group. Before SIGKILL they are frozen (SIGSTOP,
    scanning again until no new process appears), so none forks a child past the kill."""
    members = list(dict.fromkeys([pid, *known, *descendants(pid, *known)]))
    while sig == signal.SIGKILL:
        for member in members:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(member, signal.SIGSTOP)
        more = [p for p in descendants(*members) if p not in members]
        if not more:
            break
        members += more
    for member in members:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(os.getpgid(member), sig)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(member, sig)


def stop(paths: StackPaths, name: str, timeout_s: float = 30) -> bool:
    """Stop the service's whole process tree (its signal, then SIGKILL); True when one was running."""
    pid = running_pid(paths, name)
    pidfile = paths.pidfile(name)
    if pid is None:
        pidfile.unlink(missing_ok=True)
        return False
    recorded = pidfile.read_text().split()  # "<pid> <stop signal>"
    sig = int(recorded[1]) if len(recorded) > 1 else signal.SIGTERM
    tree = descendants(pid)
    kill_tree(pid, sig, tree)
    deadline = time.monotonic() + timeout_s
    while running_pid(paths, name) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    kill_tree(pid, signal.SIGKILL, tree)  # what is left, leader gone or not
    while running_pid(paths, name) is not None:
        time.sleep(0.1)
    pidfile.unlink(missing_ok=True)
    return True
