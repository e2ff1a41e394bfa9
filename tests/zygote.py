"""The command in a real child process, without importing dlt and the connector again each time.

A test that kills or signals the command, or runs a second process on a locked file, needs the
process boundary: its own PID, its own file locks, the kernel's kill -9. What it does not need is a
fresh interpreter importing the same modules again. So each test session (all its xdist workers) has one *zygote*
(`python -m tests.zygote`) that imports what it can once, before any thread, DuckDB connection or
socket to a sandbox exists, and then forks a child per command (measured: ~1.5 CPU-s per child
instead of ~2.9 for a fresh `python`). The child is a new process like any other: it changes to
the requested folder, takes exactly the requested environment and stdio, and runs
`pipelines/nps_to_gainsight.py` as `__main__` (`runpy`), as `python pipelines/nps_to_gainsight.py`
would, with the interpreter's exit (atexit handlers, non-daemon threads joined, streams flushed).
The zygote reports the child's PID and, when it ends, its exit status; `ForkedCommand` offers the
part of `subprocess.Popen` the tests use (`pid`, `send_signal`, `kill`, `poll`, `wait`,
`communicate`, `returncode`), so a signal goes to the child itself and a kill -9 kills it.

Why fork is safe here: the zygote holds nothing that a fork would copy half-done. It imports only
modules that start no thread (not DuckDB nor pyarrow, see PRELOADED), checks that it runs a single
thread after its imports and refuses to serve otherwise. Another Python script runs the same way
(`script=`: the benchmarks' contenders, dlt's `dlt` command, README's attach recipe). The first run
of the shipped config (tests/test_defaults.py) still starts a fresh `python pipelines/nps_to_gainsight.py`,
exactly as README tells a new operator.
"""

from __future__ import annotations

import fcntl
import gc
import io
import json
import os
import runpy
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
COMMAND = str(REPO / "pipelines" / "nps_to_gainsight.py")
# What a run imports on its way that starts no thread: dlt and the connector's modules that need
# neither DuckDB nor pyarrow (importing DuckDB starts its default database's worker thread, pyarrow
# jemalloc's background thread). A child then imports the rest in ~0.5 CPU-s instead of all in ~2.
PRELOADED = (
    "dlt", "dlt.pipeline", "dlt.destinations", "dlt.extract", "dlt.sources", "dlt.load", "dlt.normalize", "pydantic",
    "requests", "pipelines.nps_to_gainsight", "pipelines.serve", "pipelines.summary", "connector_common.http",
    "connector_common.first_contact", "connector_common.tokens",
)  # fmt: skip


# --- the test side ------------------------------------------------------------------------------


class ForkedCommand:
    """A command the zygote forked: the `subprocess.Popen` surface the tests use, for a child of the zygote."""

    def __init__(self, zygote: Zygote, args: list[str], cwd: Path, env: dict[str, str], script: str = COMMAND) -> None:
        self.args = [sys.executable, script, *args]
        self.returncode: int | None = None
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        with open(os.devnull, "rb") as devnull:
            self._channel = zygote.fork(
                {"script": script, "argv": args, "cwd": str(cwd), "env": env}, [devnull.fileno(), out_write, err_write]
            )
        os.close(out_write)
        os.close(err_write)
        self.stdout = open(out_read, encoding="utf-8", errors="replace")  # noqa: SIM115  (closed by communicate)
        self.stderr = open(err_read, encoding="utf-8", errors="replace")  # noqa: SIM115
        self.pid = int(self._channel.readline())

    def send_signal(self, number: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, number)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def poll(self) -> int | None:
        if self.returncode is None and select.select([self._channel], [], [], 0)[0]:
            self._read_status()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if not select.select([self._channel], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
            self._read_status()
        assert self.returncode is not None
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """Both streams to their end, then the exit status (a reader per stream, as Popen does)."""
        texts: dict[str, str] = {}

        def drain(name: str, stream: io.TextIOWrapper) -> None:
            with stream:
                texts[name] = stream.read()

        readers = [
            threading.Thread(target=drain, args=item, daemon=True)
            for item in (("out", self.stdout), ("err", self.stderr))
        ]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join(timeout)
            if reader.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
        self.wait(timeout)
        return texts["out"], texts["err"]

    def _read_status(self) -> None:
        line = self._channel.readline()
        if not line:
            raise RuntimeError("the zygote ended before reporting the command's exit status")
        self.returncode = int(line)
        self._channel.close()


class Zygote:
    """One per test session, shared by its xdist workers: the first test process that needs it
    starts it, the others find its socket (each zygote costs ~1.7 CPU-s of imports). It ends when
    the session's own process does (xdist's controller, or pytest itself without workers)."""

    _started: Zygote | None = None

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.address = str(folder / "socket")

    @classmethod
    def get(cls) -> Zygote:
        if cls._started is None or not cls._started.alive():
            # xdist's workers are children of the controller, which outlives them all
            session = os.getppid() if os.environ.get("PYTEST_XDIST_WORKER") else os.getpid()
            folder = Path(tempfile.gettempdir()) / f"zygote-{session}"
            folder.mkdir(exist_ok=True)
            zygote = cls(folder)
            with (folder / "lock").open("w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # one worker starts it, the others wait for it
                if not zygote.alive():
                    zygote.start(session)
            cls._started = zygote
        return cls._started

    def alive(self) -> bool:
        try:
            os.kill(int((self.folder / "pid").read_text()), 0)
        except (OSError, ValueError):
            return False
        return True

    def start(self, session: int) -> None:
        env = {**os.environ, "RUNTIME__DLTHUB_TELEMETRY": "false"}
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.zygote", self.address, str(session)],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        )  # fmt: skip
        assert process.stdout is not None
        ready = process.stdout.readline()
        if ready.strip() != b"ready":
            process.kill()
            raise RuntimeError(f"the zygote did not start: {ready!r}")
        (self.folder / "pid").write_text(str(process.pid))

    def fork(self, request: dict[str, Any], fds: list[int]) -> io.TextIOWrapper:
        """Send one command; the answer is a line channel: the child's PID, later its exit status."""
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.connect(self.address)
        socket.send_fds(connection, [json.dumps(request).encode() + b"\n"], fds)
        return connection.makefile("r", encoding="ascii")


def start_forked(*args: str, cwd: Path, env: dict[str, str], script: str = COMMAND) -> ForkedCommand:
    """`python <script> <args>` (the command by default) as a child of the zygote."""
    return ForkedCommand(Zygote.get(), list(args), cwd, env, script)


# --- the zygote side ----------------------------------------------------------------------------


def serve(address: str, session: int) -> None:
    """Import, check for a lone thread, then fork one child per request until the session ends."""
    import importlib

    for module in PRELOADED:
        importlib.import_module(module)
    # What the imports built lives as long as each child: out of every child's full garbage
    # collections (`gc.freeze`, as tests/conftest.py does in the test processes).
    gc.collect()
    gc.freeze()
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:
        raise SystemExit(f"zygote: {threads} threads after the imports; forking would copy them half-done")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(16)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    children: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> (pid, the requester's connection)
    # The session's process ending (however it ends) ends the zygote and what it still runs, so
    # no process outlives the tests that started it.
    test_process = os.pidfd_open(session)
    while True:
        readable = select.select([test_process, listener, *children], [], [])[0]
        if test_process in readable:
            for pid, _ in children.values():
                os.kill(pid, signal.SIGKILL)
            shutil.rmtree(Path(address).parent, ignore_errors=True)
            return
        for pidfd in [fd for fd in readable if isinstance(fd, int) and fd in children]:
            pid, connection = children.pop(pidfd)
            status = os.waitpid(pid, 0)[1]
            os.close(pidfd)
            connection.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
            connection.close()
        if listener in readable:
            connection, _ = listener.accept()
            pid = fork_child(connection, listener, children, test_process)
            children[os.pidfd_open(pid)] = (pid, connection)
            connection.sendall(f"{pid}\n".encode())


def fork_child(
    connection: socket.socket, listener: socket.socket, children: dict[int, tuple[int, socket.socket]], test_process: int
) -> int:
    message, fds, _, _ = socket.recv_fds(connection, 1 << 20, 3)
    while not message.endswith(b"\n"):
        message += connection.recv(1 << 20)
    request = json.loads(message)
    sys.stdout.flush()
    pid = os.fork()
    if pid:
        for fd in fds:
            os.close(fd)
        return pid
    # The child: none of the zygote's bookkeeping; the requested stdio (the interpreter's streams
    # now write to it), folder and environment; SIGINT raising KeyboardInterrupt as in any interpreter.
    listener.close()
    connection.close()
    os.close(test_process)
    for pidfd, (_, other) in children.items():
        os.close(pidfd)
        other.close()
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    script = request["script"]
    sys.argv = [script, *request["argv"]]
    sys.path[0] = str(Path(script).parent)
    # PYTHONPATH next, as a fresh interpreter would put it (a dlt tool run with this checkout first)
    sys.path[1:1] = [entry for entry in request["env"].get("PYTHONPATH", "").split(os.pathsep) if entry]
    # The script as `__main__`; its sys.exit, an uncaught exception or KeyboardInterrupt leaves
    # through the interpreter's own exit (non-daemon threads joined, atexit run, streams flushed).
    runpy.run_path(script, run_name="__main__")
    raise SystemExit(0)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C of the test run is for the tests, not the zygote
    serve(sys.argv[1], int(sys.argv[2]))
