"""`charrnn serve`: load every checkpoint once, check the port, serve with uvicorn, stop promptly.

A checkpoint that does not load, a name given twice, or a port in use is a one-line error before anything
is served. SIGTERM or Ctrl-C: uvicorn stops accepting, every running completion ends at once with the text
it has (finish "length"), and the process exits 0 within a few seconds.
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from charrnn.api import Model
from charrnn.checkpoint import load_checkpoint
from charrnn.errors import BadSetting, MissingResource, setting_ref


@dataclass
class ServeRequest:
    checkpoints: list[Path]
    names: list[str]
    host: str = "127.0.0.1"
    port: int = 8000
    device: str = "auto"
    quantize: str = "none"
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    max_batch: int = 64
    max_queue: int = 256
    max_tokens: int = 4096
    quiet: bool = False


def model_name(path: Path) -> str:
    """A checkpoint's default name: its run folder's (checkpoints/shakespeare/best.pt -> shakespeare)."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    return folder.resolve().name or path.stem


def load_models(request: ServeRequest) -> dict[str, Model]:
    if request.names and len(request.names) != len(request.checkpoints):
        raise BadSetting(
            f"give one {setting_ref('name')} per checkpoint ({len(request.checkpoints)}), or none", "name"
        )
    names = request.names or [model_name(p) for p in request.checkpoints]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise BadSetting(
            f"two models would be called {twice[0]!r}; name them with {setting_ref('name')}", "name"
        )
    return {
        name: Model(load_checkpoint(path), request.device, request.quantize)
        for name, path in zip(names, request.checkpoints, strict=True)
    }


def check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            raise MissingResource(
                f"cannot listen on {host}:{port} ({e.strerror or e}); choose another {setting_ref('port')}",
                "port",
            ) from None


def serve(request: ServeRequest, note=None) -> None:
    """Serve until SIGTERM or Ctrl-C. `note` prints a line on stderr."""
    try:
        import uvicorn

        from charrnn.serve.app import ServeOptions, create_app
        from charrnn.serve.protocol import Limits
    except ImportError as e:
        raise MissingResource(
            f"charrnn serve needs the serve extra ({e.name} is missing): pip install 'charrnn[serve]' "
            "or bash scripts/setup.sh"
        ) from None
    note = note or (lambda line: print(line, file=sys.stderr))
    check_port(request.host, request.port)
    early = threading.Event()  # a stop signal while the models load: stop, quietly, once they have
    handlers = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda *_: early.set()) for sig in handlers}
    try:
        models = load_models(request)
    except BaseException:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        raise
    if early.is_set():
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        return
    if request.host not in ("127.0.0.1", "localhost", "::1") and not request.api_key:
        note(
            f"warning: serving on {request.host} without an API key: anyone who can reach this machine can "
            "use it (set --api-key or CHARRNN_API_KEY)"
        )
    options = ServeOptions(
        api_key=request.api_key,
        cors_origins=list(request.cors_origins),
        max_batch=request.max_batch,
        max_queue=request.max_queue,
        limits=Limits(max_tokens=request.max_tokens),
    )
    app = create_app(models, options, drive=False)
    config = uvicorn.Config(
        app,
        host=request.host,
        port=request.port,
        log_level="warning" if request.quiet else "info",
        access_log=not request.quiet,
        timeout_graceful_shutdown=3,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    driver = app.state.driver
    stop = _stopper(server, driver)
    for sig in handlers:
        signal.signal(sig, stop)

    def serve_http() -> None:
        try:
            server.run()
        finally:
            stop()  # the HTTP server ended (or never started): so does the driver

    http = threading.Thread(target=serve_http, name="charrnn-http", daemon=True)
    http.start()
    try:
        if not request.quiet:
            where = f"http://{request.host}:{request.port}"
            note(f"serving {', '.join(models)} on {where} (OpenAI API at /v1, playground at /)")
        driver.run()  # on the main thread until a signal stops it (see worker.py for why)
    finally:
        stop()
        http.join(timeout=10)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if getattr(server, "startup_failed", False) or not server.started:
        raise MissingResource(f"the server did not start on {request.host}:{request.port}")


def _stopper(server, driver):
    """The handler of SIGINT/SIGTERM: every running completion ends now with the text it has, the HTTP
    server stops accepting and finishes its responses (at most its graceful-shutdown timeout)."""

    def stop(*_args) -> None:
        driver.stop(timeout=0)
        server.should_exit = True

    return stop
