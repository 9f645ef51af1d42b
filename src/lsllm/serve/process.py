"""`lsllm serve` as a child process on a free loopback port: for tests, benchmarks and notebooks that need a real
server and must stop it cleanly.

    with ServerProcess("runs/sst2", "--api-key", "k") as server:
        requests.post(server.url + "/predict", json={"inputs": "great"})
"""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class ServerProcess:
    """Starts `lsllm serve RUN FLAGS --port P` on entry and waits until /health answers 200 (RuntimeError with
    the server's output if it exits or isn't ready in `timeout` s); SIGTERM on exit (the server drains)."""

    def __init__(self, run: str | Path, *flags: str, timeout: float = 300, env: dict | None = None):
        self.run, self.flags, self.timeout, self.env = Path(run), [str(f) for f in flags], timeout, env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self._log = tempfile.TemporaryFile()

    def __enter__(self) -> "ServerProcess":
        self.proc = subprocess.Popen([sys.executable, "-m", "lsllm.cli", "serve", str(self.run), "--port",
                                      str(self.port), *self.flags], stdout=self._log, stderr=subprocess.STDOUT,
                                     env=self.env)
        deadline = time.monotonic() + self.timeout
        while not self._healthy():
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"lsllm serve {self.run} exited with {self.proc.returncode}: {self.output()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"lsllm serve {self.run}: /health not ready after {self.timeout:.0f} s: "
                                   f"{self.output()}")
            time.sleep(0.2)
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout: float = 60) -> int | None:
        """SIGTERM, then wait (SIGKILL after `timeout` s); the exit code."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return None if self.proc is None else self.proc.returncode

    def output(self) -> str:
        """What the server printed so far (stdout and stderr)."""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def rss_mib(self) -> float:
        """The server's resident memory (Linux)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

