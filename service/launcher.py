"""`serve --workers N`: one command that uses a machine's cores (docs/scale.md).

It starts, as child processes, a Redis server (unless LRR_STORE_URL names one), N workers
(`serve` on ports port+1 .. port+N, each with the store and its own advertised URL) and HAProxy on
host:port in front of them, routing each stream key to one worker by a consistent hash. A worker
or HAProxy that dies is started again; SIGTERM or SIGINT stops the workers first (each checkpoints and
releases its keys), then HAProxy, then Redis. The distribution's `haproxy` and `redis-server`
are used; when one is missing, the command says which package provides it.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from lrr_service.service.config import ServiceSettings

ROUTED_HEADER = "X-LRR-Routed"
PACKAGES = {"haproxy": "haproxy", "redis-server": "redis-server"}
RESTART_DELAY_SECONDS = 1.0
STOP_TIMEOUT_SECONDS = 20.0
PR_SET_PDEATHSIG = 1


class LaunchError(RuntimeError):
    """The cluster could not be started; the message says why and what to do."""


def haproxy_config(settings: ServiceSettings, worker_ports: list[int]) -> str:
    """HAProxy's configuration: key-affine routing, /ready checks every 250 ms, websocket tunnels kept."""
    token = settings.token()
    auth = f' hdr Authorization "Bearer {token}"' if token else ""
    address = worker_address(settings.host)
    servers = "\n".join(f"    server w{i} {address}:{port} check" for i, port in enumerate(worker_ports, 1))
    return f"""global
    maxconn 4096
    nbthread 1
    tune.bufsize 65536

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h
    timeout client-fin 5s
    option splice-auto
    option http-no-delay
    retries 2
    retry-on conn-failure empty-response
    option redispatch 1

frontend lrr
    bind {settings.host}:{settings.port}
    http-request set-header {ROUTED_HEADER} 1
    http-request set-var(txn.key) path,field(3,/)
    default_backend workers

backend workers
    balance hash var(txn.key)
    hash-type consistent
    option httpchk
    http-check send meth GET uri /ready ver HTTP/1.1 hdr Host {address}{auth}
    http-check expect status 200
    default-server inter 250ms fastinter 250ms downinter 500ms fall 2 rise 2 on-marked-down shutdown-sessions
{servers}
"""


def worker_address(host: str) -> str:
    """Where this machine reaches a worker listening on `host`: the host itself, or loopback for a wildcard."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host.strip("[]")


def redis_command(port: int, data_dir: Path) -> list[str]:
    """A loopback Redis that fsyncs every write to its append-only file before answering it."""
    return [
        _binary("redis-server"),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(data_dir),
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--save",
        "",
        "--protected-mode",
        "yes",
    ]


def _binary(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if path is None:
        raise LaunchError(
            f"`{name}` was not found: install it (Debian/Ubuntu: apt install {PACKAGES[name]}) "
            "or run one worker per process yourself (docs/scale.md)"
        )
    return path


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host if host not in ("0.0.0.0", "") else "0.0.0.0", port))
        except OSError:
            return False
    return True


@dataclass
class Worker:
    """One worker process and how to start it again."""

    port: int
    command: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    died_at: float | None = None

    def start(self) -> None:
        self.process = _child(self.command, env=self.env)
        self.died_at = None


class ClusterLauncher:
    """Redis, N workers and HAProxy as children of this process; `run` until a signal stops them."""

    def __init__(self, settings: ServiceSettings, worker_args: list[str]) -> None:
        self.settings = settings
        self.worker_ports = [settings.port + i for i in range(1, (settings.workers or 1) + 1)]
        self.state_dir = Path(settings.state_dir)
        self.worker_args = worker_args
        self.redis: subprocess.Popen[bytes] | None = None
        self.haproxy: subprocess.Popen[bytes] | None = None
        self.workers: list[Worker] = []
        self._stopping = False
        self._proxy_died_at: float | None = None
        self.haproxy_command: list[str] = []
        self.store_url = settings.store_url

    def _worker_url(self, port: int) -> str:
        host = self.settings.host
        if host in ("0.0.0.0", "::", ""):
            host = socket.getfqdn()
        return f"http://{host}:{port}"

    def start(self) -> None:
        """Start everything, or raise LaunchError (what was started is stopped again)."""
        haproxy = _binary("haproxy")
        store_url = self.settings.store_url
        redis_port = self.settings.port + len(self.worker_ports) + 1
        taken = [p for p in [self.settings.port, *self.worker_ports] if not _port_free(self.settings.host, p)]
        if store_url is None and not _port_free("127.0.0.1", redis_port):
            taken.append(redis_port)
        if taken:
            raise LaunchError(f"port(s) {taken} are in use; choose another --port (workers use port+1 .. port+N)")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            if store_url is None:
                data_dir = self.state_dir / "redis"
                data_dir.mkdir(exist_ok=True)
                self.redis = _child(redis_command(redis_port, data_dir), stdout=subprocess.DEVNULL)
                store_url = f"redis://127.0.0.1:{redis_port}/0"
                _wait_for_port(redis_port, self.redis, "redis-server")
            self.store_url = store_url
            for port in self.worker_ports:
                env = {name: value for name, value in os.environ.items() if name != "LRR_WORKERS"}
                env.update(LRR_STORE_URL=store_url, LRR_PORT=str(port), LRR_ADVERTISE_URL=self._worker_url(port))
                command = [sys.executable, "-m", "lrr_service.service", "serve", *self.worker_args]
                worker = Worker(port, command, env)
                worker.start()
                self.workers.append(worker)
            for worker in self.workers:
                assert worker.process is not None
                name = f"the worker on port {worker.port}"
                _wait_for_port(worker.port, worker.process, name, worker_address(self.settings.host), timeout=30.0)
            config = self.state_dir / "haproxy.cfg"
            config.write_text(haproxy_config(self.settings, self.worker_ports))
            config.chmod(0o600)  # it holds the token when one is set
            self.haproxy_command = [haproxy, "-db", "-f", str(config)]
            self.haproxy = _child(self.haproxy_command)
            _wait_for_port(self.settings.port, self.haproxy, "haproxy", worker_address(self.settings.host))
            self._write_topology()
        except BaseException:
            self.stop()
            raise

    def _write_topology(self) -> None:
        """`cluster.json` in the state dir: the proxy's and each worker's port, URL and process id."""
        topology = {
            "proxy_port": self.settings.port,
            "store_url": self.store_url if self.store_url and "@" not in self.store_url else "(set)",
            "redis_pid": self.redis.pid if self.redis else None,
            "haproxy_pid": self.haproxy.pid if self.haproxy else None,
            "workers": [
                {"port": w.port, "url": self._worker_url(w.port), "pid": w.process.pid if w.process else None}
                for w in self.workers
            ],
        }
        temp = self.state_dir / "cluster.json.tmp"
        temp.write_text(json.dumps(topology, indent=2))
        os.replace(temp, self.state_dir / "cluster.json")

    def run(self) -> int:
        """Start, then keep the workers running until SIGTERM or SIGINT; returns the exit status."""

        def stop_on_signal(signum: int, frame: FrameType | None) -> None:
            self._stopping = True

        signal.signal(signal.SIGTERM, stop_on_signal)
        signal.signal(signal.SIGINT, stop_on_signal)
        self.start()
        print(
            f"lrr-service cluster: {len(self.workers)} workers on ports "
            f"{self.worker_ports[0]}-{self.worker_ports[-1]}, proxy on {self.settings.host}:{self.settings.port}",
            file=sys.stderr,
            flush=True,
        )
        while not self._stopping:
            time.sleep(0.2)
            self._restart_dead_workers()
            self._restart_dead_proxy()
        self.stop()
        return 0

    def _restart_dead_proxy(self) -> None:
        """Start HAProxy again once it has been gone for a second (clients reconnect with their backoff)."""
        if self.haproxy is None or self.haproxy.poll() is None:
            return
        now = time.monotonic()
        if self._proxy_died_at is None:
            self._proxy_died_at = now
            print(
                f"lrr-service cluster: haproxy exited ({self.haproxy.returncode}); restarting it",
                file=sys.stderr,
                flush=True,
            )
        elif now - self._proxy_died_at >= RESTART_DELAY_SECONDS:
            self.haproxy = _child(self.haproxy_command)
            self._proxy_died_at = None
            self._write_topology()

    def _restart_dead_workers(self) -> None:
        now = time.monotonic()
        for worker in self.workers:
            if worker.process is None or worker.process.poll() is None:
                continue
            if worker.died_at is None:
                worker.died_at = now
                print(
                    f"lrr-service cluster: worker on port {worker.port} exited ({worker.process.returncode}); "
                    "restarting it",
                    file=sys.stderr,
                    flush=True,
                )
            elif now - worker.died_at >= RESTART_DELAY_SECONDS:
                worker.start()
                self._write_topology()

    def stop(self) -> None:
        """SIGTERM the workers and wait (they checkpoint and release their keys), then HAProxy, then Redis."""
        for worker in self.workers:
            if worker.process is not None and worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        for worker in self.workers:
            if worker.process is not None:
                _wait_or_kill(worker.process)
        for process in (self.haproxy, self.redis):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                _wait_or_kill(process)


def _child(command: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start a part of the cluster in its own process group, so that a Ctrl-C in the terminal reaches
    only the launcher, which stops the parts in order (Redis must outlive the workers' last
    checkpoints); on Linux the part also gets SIGTERM if the launcher dies without stopping it."""
    return subprocess.Popen(command, process_group=0, preexec_fn=_terminate_with_parent, **kwargs)  # noqa: PLW1509 (no threads here)


def _terminate_with_parent() -> None:
    """In the child, before exec: ask Linux for SIGTERM when the parent dies (prctl PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _wait_or_kill(process: subprocess.Popen[bytes]) -> None:
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_for_port(
    port: int, process: subprocess.Popen[bytes], name: str, address: str = "127.0.0.1", timeout: float = 10.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LaunchError(f"{name} exited at start-up with status {process.returncode} (see its output above)")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            if sock.connect_ex((address, port)) == 0:
                return
        time.sleep(0.05)
    raise LaunchError(f"{name} did not listen on port {port} within {timeout:.0f} s")
