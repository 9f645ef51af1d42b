"""`lsllm serve`: any run folder as an HTTP prediction service (TEI's /predict, vLLM's /classify, a /tag route
with the transformers pipeline's entities), with dynamic batching, an API key, limits, Prometheus metrics and
a page to try the model by hand. The library does the work: routes call the same evaluation as
`lsllm predict`."""
from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path

from lsllm.serve.app import ServeLimits, create_app


def serve(run: str | Path, host: str = "127.0.0.1", port: int = 8080, api_key: str | None = None,
          limits: ServeLimits | None = None, device: str | None = None, precision: str = "auto",
          on_ready=None) -> int:
    """Serve `run` until SIGTERM/SIGINT (requests in flight are answered first). Returns 0, or 2 when the
    model failed to load (the server answered 503 until then)."""
    import uvicorn

    from lsllm.serve.model import check_servable, load_served_model

    check_servable(run)  # a wrong path fails before anything listens
    check_port(host, port)
    limits = limits or ServeLimits()
    failure: list[str] = []

    def load():
        model = load_served_model(run, device=device, precision=precision, batch_size=limits.max_batch_size)
        if on_ready is not None:
            on_ready(model)
        return model

    def stop(message: str) -> None:
        failure.append(message)
        server.should_exit = True

    app = create_app(load, limits, api_key, on_load_error=stop)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=60, limit_concurrency=limits.max_concurrent_requests * 2)
    server = _server_class()(config)
    try:
        server.run()
    except SystemExit:  # uvicorn exits when it can't bind (a race with check_port)
        raise OSError(f"could not listen on {host}:{port}") from None
    if failure:
        from lsllm.errors import ModelSourceError

        raise ModelSourceError(f"{run}: the model failed to load: {failure[0]}")
    return 0


def _server_class():
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            """SIGTERM/SIGINT: stop accepting, answer what is in flight, exit 0. (uvicorn re-raises the signal
            after its graceful shutdown, so the process would die by it: a drained stop is a clean exit.)"""
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server


def check_port(host: str, port: int) -> None:
    """A clear error for a port in use or a host that isn't this machine's, before the model loads."""
    import socket

    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as err:
        raise OSError(f"can't listen on {host}:{port}: {err.strerror or err}; pick another --port or --host") from None


__all__ = ["serve", "create_app", "ServeLimits"]
