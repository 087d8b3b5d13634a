"""The device agent: `python -m hardware.agent` on the target device (a Jetson, a phone board, any Linux box)
measures ONNX models sent over HTTP with one local backend and answers with the statistics and provenance.

    python -m hardware.agent --backend tensorrt-fp16 --token-file ~/.squeezenas-token [--host 0.0.0.0]

Endpoints (every request needs `Authorization: Bearer <token>`; answers are JSON):

- `GET /info` -> `{"device", "backend", "backend_version", "precision", "provenance", "limits", "query", "busy"}`.
- `POST /measure?warmup=W&repeats=R&batch=B&threads=T&height=H&width=W` with the ONNX model as the raw body
  (`Content-Type: application/octet-stream`, `Content-Length` required) -> `Measurement.as_dict()`: median_ms,
  mean_ms, p90_ms, min_ms, cv, samples and provenance (hardware/provenance.py, with the protocol, the model's
  size and SHA-256). All six query parameters are required integers, nothing else is accepted. The model's one
  input must be batch x 3 x height x width (dimensions left symbolic are allowed).

Errors are `{"error": "one line"}` with status 400 (bad query, or a model hardware/onnx_guard.py refuses: not an
ONNX model, not checked valid by `onnx.checker`, external data, control flow, input shape that disagrees with the
query, a tensor without a static shape or larger than `--max-tensor-mib` at the query's input, in any graph, subgraph
or model-local function of the model; graphs nested too deep or too many nodes), 401 (no or wrong
token), 404 (unknown path), 405 (wrong method; 501 for a method HTTP servers do not know), 408 (body not sent in
time), 411 (no Content-Length), 413 (Content-Length over `--max-bytes`, refused before the body is read), 415
(another Content-Type), 500 (the backend failed on a valid model, or a fault of the agent); the agent keeps serving
after any of them. The body is parsed as an ONNX protobuf only: nothing is unpickled or evaluated.

The token comes from `--token-file` or `$SQUEEZENAS_AGENT_TOKEN` (`read_token` in hardware/client.py: one line of 16
to 1024 printable ASCII characters without spaces, at most 4096 bytes of the file read, refused without showing what
the file holds) and is compared in constant time. The agent listens on 127.0.0.1 unless `--host` says otherwise;
on another address the token and models cross the network in clear text, so use it on a trusted network or
forward the port over SSH. Only backends that take ONNX bytes can serve (onnxruntime-cpu, tensorrt-fp16).

One measurement at a time: checking and timing a model hold a lock, so timings never overlap; requests are
otherwise served on threads. Limits (`Limits`, each a command-line option): body size, warm-up runs, repeats,
batch, threads, input side and the largest tensor of the model. One log line per request.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import socketserver
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from hardware.backends import (
    BACKENDS,
    Backend,
    BackendUnavailable,
    OnnxRuntimeCPU,
    backend,
)
from hardware.client import DEFAULT_PORT, ONNX_CONTENT_TYPE, TokenError, check_token, read_token
from hardware.onnx_guard import ModelRefused, check_model
from hardware.protocol import MeasurementProtocol, measure
from hardware.provenance import device_name, provenance

ONNX_BACKENDS = tuple(name for name, kind in BACKENDS.items() if kind.takes_onnx)
QUERY = ("warmup", "repeats", "batch", "threads", "height", "width")
ROUTES = {"/info": "GET", "/measure": "POST"}
MIB = 1 << 20
DISCARD_LIMIT = MIB
MAX_MESSAGE = 400
logger = logging.getLogger("hardware.agent")


def _memory_mib() -> int:
    """The machine's physical memory in MiB."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // MIB


def _cpu_count() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True)
class Limits:
    """The largest request the agent accepts; the query parameter each setting bounds is in `bounds`."""

    max_bytes: int = field(default=256 * MIB, metadata={"help": "largest ONNX model (request body) in bytes"})
    max_warmup: int = field(default=1000, metadata={"help": "most warm-up runs a request may ask for"})
    max_repeats: int = field(default=10000, metadata={"help": "most timed runs a request may ask for"})
    max_batch: int = field(default=64, metadata={"help": "largest batch a request may ask for"})
    max_threads: int = field(default_factory=_cpu_count, metadata={"help": "most CPU threads (default: the cores)"})
    max_side: int = field(default=4096, metadata={"help": "largest input height or width in pixels"})
    max_tensor_mib: int = field(default=1024, metadata={"help": "largest tensor of the model at the query's input, "
                                                                "in MiB (shape inference, before running it)"})
    max_memory_mib: int = field(default_factory=lambda: _memory_mib() // 2,
                                metadata={"help": "all of a model's tensors together at the query's input, in MiB "
                                                  "(default: half the machine's memory)"})

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < 1:
                raise ValueError(f"--{f.name.replace('_', '-')} must be at least 1, got {getattr(self, f.name)}")

    def bounds(self) -> dict[str, tuple[str, int]]:
        """Query parameter -> (limit name, value)."""
        sides = ("max_side", self.max_side)
        return {"warmup": ("max_warmup", self.max_warmup), "repeats": ("max_repeats", self.max_repeats),
                "batch": ("max_batch", self.max_batch), "threads": ("max_threads", self.max_threads),
                "height": sides, "width": sides}


class RequestError(Exception):
    """A request the agent answers with `status` and a one-line `message`."""

    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status, self.message = status, one_line(message)


def one_line(text: object) -> str:
    """`text` with its whitespace runs (newlines included) collapsed, cut to MAX_MESSAGE characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 3] + "..."


def onnx_backend(name: str) -> Backend:
    """The backend `name` if it takes ONNX bytes; ValueError or BackendUnavailable saying what to use instead."""
    choices = " or ".join(ONNX_BACKENDS)
    if name in BACKENDS and name not in ONNX_BACKENDS:
        raise ValueError(f"backend {name!r} runs PyTorch modules, but the agent receives ONNX models; "
                         f"use --backend {choices}")
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; the agent measures with --backend {choices}")
    return backend(name)


class Agent:
    """What the server serves: one backend, the token, the limits, and the lock that keeps timings apart."""

    def __init__(self, runner: Backend, token: str, limits: Limits | None = None):
        self.backend, self.limits = runner, limits or Limits()
        self._token = check_token(token, "token given to the agent").encode()
        self.lock = threading.Lock()
        self.device = device_name(runner.gpu)

    def authorised(self, header: str | None) -> bool:
        """Whether an Authorization header carries the token (`Bearer <token>`), compared in constant time."""
        scheme, _, given = (header or "").strip().partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self._token)

    def info(self) -> dict[str, object]:
        name = self.backend.name
        return {"device": self.device, "backend": name, "backend_version": self.backend.version,
                "precision": self.backend.precision,
                "provenance": provenance(name, self.backend.precision, None, self.backend.version),
                "limits": asdict(self.limits), "query": list(QUERY), "busy": self.lock.locked()}

    def protocol(self, query: str) -> MeasurementProtocol:
        """The protocol in a `/measure` query string; RequestError 400 naming the parameter that is wrong."""
        values = parse_qs(query, keep_blank_values=True)
        unknown = sorted(set(values) - set(QUERY))
        if unknown:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"unknown query parameter {', '.join(unknown)}; "
                                                       f"the agent takes {', '.join(QUERY)}")
        settings = {name: _integer(values, name) for name in QUERY}
        for name, (limit, value) in self.limits.bounds().items():
            if settings[name] > value:
                raise RequestError(HTTPStatus.BAD_REQUEST, f"{name}={settings[name]} is over the agent's limit "
                                                           f"of {value} (--{limit.replace('_', '-')})")
        try:
            return MeasurementProtocol(settings["warmup"], settings["repeats"], settings["batch"],
                                       (settings["height"], settings["width"]), settings["threads"])
        except ValueError as error:
            raise RequestError(HTTPStatus.BAD_REQUEST, str(error)) from None

    def measure(self, body: bytes, protocol: MeasurementProtocol) -> dict[str, object]:
        """`Measurement.as_dict()` of the ONNX model in `body`, checked and timed while holding the lock."""
        with self.lock:
            try:
                check_model(body, protocol.shape, self.limits.max_tensor_mib * MIB, self.limits.max_memory_mib * MIB)
            except ModelRefused as error:
                raise RequestError(HTTPStatus.BAD_REQUEST, str(error)) from None
            try:
                measurement = measure(body, self.backend, protocol)
            except Exception as error:  # whatever the runtime raises on a valid model is the client's answer
                raise RequestError(HTTPStatus.INTERNAL_SERVER_ERROR,
                                   f"backend {self.backend.name} failed on the model: "
                                   f"{type(error).__name__}: {error}") from error
        answer = measurement.as_dict()
        answer["provenance"].update(onnx_bytes=len(body), onnx_sha256=hashlib.sha256(body).hexdigest())
        return answer


def _integer(values: dict[str, list[str]], name: str) -> int:
    given = values.get(name)
    if not given:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"missing query parameter {name}; the agent needs all of "
                                                   f"{', '.join(QUERY)}")
    if len(given) > 1:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"query parameter {name} is given {len(given)} times")
    try:
        return int(given[0])
    except ValueError:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"query parameter {name}={given[0]!r} is not an integer") from None


class AgentHandler(BaseHTTPRequestHandler):
    """One request: route, authorise, check, measure; every answer (errors included) is JSON and logged once."""

    server: AgentServer
    server_version = "squeezenas-agent/1"
    timeout = 60

    def setup(self) -> None:
        super().setup()
        self._started, self._body_read = time.perf_counter(), False

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def _handle(self) -> None:
        try:
            status, answer, note = HTTPStatus.OK, self._route(), ""
        except RequestError as error:
            status, answer, note = error.status, {"error": error.message}, error.message
        except Exception as error:  # a fault of the agent: answer it and log the traceback, keep serving
            logger.exception("fault while answering %r", self.requestline)
            message = one_line(f"the agent failed: {type(error).__name__}: {error}")
            status, answer, note = HTTPStatus.INTERNAL_SERVER_ERROR, {"error": message}, message
        if status != HTTPStatus.OK:
            self._discard_body()
        elif "median_ms" in answer:
            note = f"median {answer['median_ms']:.3f} ms, cv {answer['cv']:.3f}, {answer['samples']} runs"
        self._reply(status, answer, note)

    def _route(self) -> dict[str, object]:
        path = urlsplit(self.path).path
        if path not in ROUTES:
            raise RequestError(HTTPStatus.NOT_FOUND, f"no path {path}; the agent serves "
                                                     f"{', '.join(f'{m} {p}' for p, m in ROUTES.items())}")
        if self.command != ROUTES[path]:
            raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED, f"{path} takes {ROUTES[path]}, not {self.command}")
        if not self.server.agent.authorised(self.headers.get("Authorization")):
            raise RequestError(HTTPStatus.UNAUTHORIZED, "missing or wrong token: send 'Authorization: Bearer "
                                                        "<token>' with the agent's token")
        if path == "/info":
            return self.server.agent.info()
        body = self._read_body()
        content_type = self.headers.get_content_type()
        if content_type != ONNX_CONTENT_TYPE:
            raise RequestError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"Content-Type is {content_type}; send the raw "
                                                                  f"ONNX model as {ONNX_CONTENT_TYPE}")
        protocol = self.server.agent.protocol(urlsplit(self.path).query)
        return self.server.agent.measure(body, protocol)

    def _declared_length(self) -> int:
        """The Content-Length, refused (411, 400, 413) before anything of the body is read."""
        header = self.headers.get("Content-Length")
        if header is None:
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required (the body is the raw "
                                                           "ONNX model)")
        if not header.strip().isdigit():
            raise RequestError(HTTPStatus.BAD_REQUEST, f"Content-Length {header!r} is not a byte count")
        length, limit = int(header), self.server.agent.limits.max_bytes
        if length > limit:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body has {length} bytes, over the "
                                                                    f"agent's limit of {limit} (--max-bytes)")
        return length

    def _read_body(self) -> bytes:
        length = self._declared_length()
        self._body_read = True
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            raise RequestError(HTTPStatus.REQUEST_TIMEOUT, f"the body did not arrive within {self.timeout} s "
                                                           "of silence") from None
        if len(body) < length:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"the body ended after {len(body)} of {length} bytes")
        return body

    def _discard_body(self) -> None:
        """Read away a small unread body, so closing the connection does not reset it before the answer arrives."""
        header = self.headers.get("Content-Length", "")
        if self._body_read or not header.strip().isdigit() or int(header) > DISCARD_LIMIT:
            return
        try:
            self.rfile.read(int(header))
        except OSError:
            pass

    def _reply(self, status: int, answer: dict[str, object], note: str = "") -> None:
        """Send `answer` as JSON; the log line is written before the body, so it exists once the client has it."""
        body = (json.dumps(answer) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if status == HTTPStatus.UNAUTHORIZED:
            self.send_header("WWW-Authenticate", 'Bearer realm="squeezenas-agent"')
        if status == HTTPStatus.METHOD_NOT_ALLOWED:
            self.send_header("Allow", ROUTES[urlsplit(self.path).path])
        elapsed = time.perf_counter() - self._started
        logger.info("%s %r %d %.2f s %s", self.client_address[0], self.requestline, status, elapsed, note)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors the HTTP parser finds (bad request line, unknown method) as JSON like the agent's own."""
        self.close_connection = True
        text = one_line(message or HTTPStatus(code).phrase)
        self._reply(code, {"error": text}, text)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Nothing: `_reply` logs each request once, with its outcome."""

    def log_message(self, format: str, *args: object) -> None:
        logger.warning("%s %s", self.client_address[0], format % args)


class AgentServer(ThreadingHTTPServer):
    """A threaded HTTP server of one `Agent`; `server_address` holds the port it got (port 0 picks a free one)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], agent: Agent):
        self.agent = agent
        super().__init__(address, AgentHandler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup of the host (slow or hanging on offline devices)."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
        error = sys.exc_info()[1]
        logger.warning("%s connection failed: %s", client_address[0], one_line(f"{type(error).__name__}: {error}"))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = Limits()
    parser = argparse.ArgumentParser(prog="python -m hardware.agent", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--backend", default=OnnxRuntimeCPU.name, help=f"one of {', '.join(ONNX_BACKENDS)}")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on (0: any free one)")
    parser.add_argument("--token-file", help="file holding the token (else $SQUEEZENAS_AGENT_TOKEN)")
    for f in fields(Limits):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=int, default=getattr(defaults, f.name),
                            help=f.metadata["help"])
    return parser.parse_args(argv)


def _serving_line(server: AgentServer, host: str) -> str:
    agent = server.agent
    line = (f"device agent on {agent.device}: {agent.backend.name} {agent.backend.version}, serving "
            f"http://{host}:{server.server_port} (GET /info, POST /measure)")
    if not ipaddress.ip_address(server.server_address[0]).is_loopback:
        line += "; not loopback: token and models travel in clear text, use a trusted network or an SSH tunnel"
    return line


def main(argv: Sequence[str] | None = None) -> int:
    """Start the agent from command-line arguments and serve until interrupted; 2 with one line when it cannot."""
    args = parse_args(argv)
    try:
        token = read_token(args.token_file)
        limits = Limits(**{f.name: getattr(args, f.name) for f in fields(Limits)})
        agent = Agent(onnx_backend(args.backend), token, limits)
    except (TokenError, ValueError, BackendUnavailable) as error:
        print(f"hardware.agent: {one_line(error)}", file=sys.stderr)
        return 2
    try:
        server = AgentServer((args.host, args.port), agent)
    except OSError as error:
        print(f"hardware.agent: cannot listen on {args.host}:{args.port}: {error.strerror or error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%Y-%m-%d %H:%M:%S")
    logger.info("%s", _serving_line(server, args.host))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        logger.info("stopped")
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
