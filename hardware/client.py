"""The client of the device agent (hardware/agent.py): send an ONNX model, get back a `Measurement`.

`AgentClient(url, token)` talks to `python -m hardware.agent` running on the target device:

- `GET /info` -> the agent's device name, backend and version, provenance and limits (`info()`).
- `POST /measure?warmup=W&repeats=R&batch=B&threads=T&height=H&width=W` with the ONNX model as the raw body
  (`Content-Type: application/octet-stream`) -> the statistics and provenance in the shape of
  `Measurement.as_dict()` (`measure(onnx, protocol)`; `measure_module(client, model, protocol)` exports a module
  first, as the engine measures genotypes).

Every request carries `Authorization: Bearer <token>`. Both sides read the token with `read_token`: from a file
when a path is given, else from the environment variable `SQUEEZENAS_AGENT_TOKEN`. A token is one line of
`MIN_TOKEN_LENGTH` to `MAX_TOKEN_LENGTH` printable ASCII characters without whitespace (`check_token`; whitespace
around it is dropped); of a file, at most `MAX_TOKEN_FILE_BYTES` bytes are read, and a longer one is refused as not
a token file. Anything else is refused with a TokenError that names the file (or the variable) and says what a token
must look like, and never shows what the file holds: a wrong path (`/etc/shadow`) must not print a secret, neither
here nor later in an HTTP header error. A token given to `AgentClient` or the agent directly is held to the same
rule. Errors from the agent are JSON `{"error": "one line"}` with a 4xx or 5xx status.

`measure` asks `GET /info` once for the agent's limits and refuses a model over its `max_bytes` itself: the agent
answers 413 without reading the body, and a client still sending a large one would only see the connection reset.
`timeout` bounds a measurement (a TensorRT engine build on a Jetson takes minutes); `GET /info` never waits more
than 30 s, as it does not wait for measurements, so an agent that cannot be reached is found out quickly.
Connection errors, timeouts and 5xx answers are retried `retries` times, waiting `backoff` seconds, then twice
that, and so on; a 4xx answer is not retried (the same request would be refused again). The client raises
`AgentError` when the agent answered with an error (status and the agent's line in the message) and
`AgentUnreachable` when it could not get an answer at all (the message says how to start the agent).
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import fields
from http.client import HTTPException
from pathlib import Path

from torch import nn

from hardware.backends import to_onnx
from hardware.protocol import LatencyStats, Measurement, MeasurementProtocol

TOKEN_ENV = "SQUEEZENAS_AGENT_TOKEN"
MIN_TOKEN_LENGTH = 16
MAX_TOKEN_LENGTH = 1024
"""The longest token: an HTTP header line stays short."""
MAX_TOKEN_FILE_BYTES = 4096
"""The most `read_token` reads of a token file; a longer file is refused unread beyond it."""
TOKEN_RULE = f"one line of {MIN_TOKEN_LENGTH} to {MAX_TOKEN_LENGTH} printable ASCII characters without spaces"
_TOKEN = re.compile(r"[\x21-\x7e]*")  # printable ASCII, no whitespace
DEFAULT_PORT = 8765
INFO_TIMEOUT = 30.0
ONNX_CONTENT_TYPE = "application/octet-stream"
START_HINT = ("start it on the device with `python -m hardware.agent --backend tensorrt-fp16 "
              "--token-file ~/.squeezenas-token --host 0.0.0.0` (or keep its default 127.0.0.1 and forward the "
              f"port: `ssh -N -L {DEFAULT_PORT}:127.0.0.1:{DEFAULT_PORT} DEVICE`)")
NEW_TOKEN_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(32))' > ~/.squeezenas-token"
_STATS = tuple(f.name for f in fields(LatencyStats))


class TokenError(ValueError):
    """No usable agent token; the message says where it was looked for and how to make one."""


class AgentError(RuntimeError):
    """The device agent answered with an error; `status` is the HTTP status (None when there was no answer)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class AgentUnreachable(AgentError):
    """No answer from the device agent (refused, timed out, cut off); the message says how to start it."""


def read_token(path: str | os.PathLike[str] | None = None) -> str:
    """The agent token: the content of `path` when given, else `$SQUEEZENAS_AGENT_TOKEN`, without the whitespace
    around it; TokenError when there is none or it is not a token (`check_token`). Reads at most
    MAX_TOKEN_FILE_BYTES (+1, to tell a longer file) of the file; no message shows any of its content."""
    if path is not None:
        source = f"token file {path}"
        try:
            with open(Path(path).expanduser(), "rb") as file:
                data = file.read(MAX_TOKEN_FILE_BYTES + 1)
        except (OSError, ValueError) as error:  # ValueError: a path with a NUL character
            reason = error.strerror if isinstance(error, OSError) and error.strerror else "not a readable file"
            raise TokenError(f"cannot read the {source}: {reason}") from None
        if len(data) > MAX_TOKEN_FILE_BYTES:
            raise TokenError(f"the {source} is longer than {MAX_TOKEN_FILE_BYTES} bytes, so it holds no agent token "
                             f"(a token is {TOKEN_RULE}; make one with `{NEW_TOKEN_HINT}`)")
        try:
            token = data.decode("ascii")
        except UnicodeDecodeError:
            raise _not_a_token(source) from None
    elif os.environ.get(TOKEN_ENV):
        source, token = f"${TOKEN_ENV}", os.environ[TOKEN_ENV]
    else:
        raise TokenError(f"no agent token: pass --token-file PATH or set {TOKEN_ENV} "
                         f"(make one with `{NEW_TOKEN_HINT}`)")
    return check_token(token.strip(), source)


def check_token(token: str, source: str = "token given") -> str:
    """`token` when it is one (TOKEN_RULE), else TokenError naming `source` (e.g. 'token file PATH') and saying what
    a token must look like, never what `token` holds."""
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        raise _not_a_token(source)
    if len(token) < MIN_TOKEN_LENGTH:
        raise TokenError(f"the agent token from the {source} has {len(token)} characters, needs at least "
                         f"{MIN_TOKEN_LENGTH} (make one with `{NEW_TOKEN_HINT}`)")
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenError(f"the agent token from the {source} has {len(token)} characters, at most "
                         f"{MAX_TOKEN_LENGTH} (make one with `{NEW_TOKEN_HINT}`)")
    return token


def _not_a_token(source: str) -> TokenError:
    return TokenError(f"the {source} holds no agent token: a token is {TOKEN_RULE} (make one with "
                      f"`{NEW_TOKEN_HINT}`)")


def protocol_query(protocol: MeasurementProtocol) -> dict[str, int]:
    """The query parameters of `POST /measure` that carry `protocol`."""
    height, width = protocol.size
    return {"warmup": protocol.warmup, "repeats": protocol.repeats, "batch": protocol.batch,
            "threads": protocol.threads, "height": height, "width": width}


def measurement_from_dict(data: dict[str, object]) -> Measurement:
    """A `Measurement` rebuilt from its `as_dict()` form (as the agent answers); ValueError or TypeError when it
    is not one (statistics that are not finite and >= 0, fewer than one sample: the store would refuse them)."""
    try:
        stats = LatencyStats(**{name: (int if name == "samples" else float)(data[name]) for name in _STATS})
        record = data["provenance"]
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"not a measurement: {error!r} in {sorted(data)}") from None
    if not isinstance(record, dict):
        raise TypeError(f"not a measurement: provenance is a {type(record).__name__}, not an object")
    for name in _STATS:
        value = getattr(stats, name)
        if not math.isfinite(value) or value < (1 if name == "samples" else 0):
            raise ValueError(f"not a measurement: {name} is {value}")
    return Measurement(stats, record)


class AgentClient:
    """Measures ONNX models through the device agent at `url` (e.g. 'http://jetson:8765')."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 600.0, retries: int = 3,
                 backoff: float = 2.0):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"device agent url {url!r} must look like http://HOST:{DEFAULT_PORT}")
        if retries < 0 or backoff < 0 or timeout <= 0:
            raise ValueError(f"agent client needs timeout > 0, retries >= 0, backoff >= 0; got {timeout}, "
                             f"{retries}, {backoff}")
        self.url = url.rstrip("/")
        self.token = read_token() if token is None else check_token(token, "token given to the agent client")
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self._info: dict[str, object] | None = None

    def info(self) -> dict[str, object]:
        """The agent's device, backend and version, provenance and limits (`GET /info`)."""
        return self._fetch_info(self.retries)

    def reachable(self) -> bool:
        """Whether the agent answers `GET /info` and accepts the token, tried once without retries."""
        try:
            self._fetch_info(retries=0)
        except AgentError:
            return False
        return True

    def measure(self, onnx: bytes, protocol: MeasurementProtocol) -> Measurement:
        """The latency of the ONNX model on the agent's device under `protocol`; the provenance also names the
        agent. A model over the agent's size limit is refused here, before it is sent."""
        self._check_size(len(onnx))
        query = urllib.parse.urlencode(protocol_query(protocol))
        answer = self._request("POST", f"/measure?{query}", onnx, self.timeout, self.retries)
        try:
            measurement = measurement_from_dict(answer)
        except (ValueError, TypeError) as error:
            raise AgentError(f"the device agent at {self.url} answered {error}") from None
        measurement.provenance["agent"] = self.url
        return measurement

    def _check_size(self, size: int) -> None:
        limits = (self._info or self.info()).get("limits", {})
        limit = limits.get("max_bytes") if isinstance(limits, dict) else None
        if isinstance(limit, int) and size > limit:
            raise AgentError(f"the ONNX model has {size} bytes, over the limit of the device agent at {self.url} "
                             f"({limit} bytes; start it with a larger --max-bytes)", status=413)

    def _fetch_info(self, retries: int) -> dict[str, object]:
        self._info = self._request("GET", "/info", None, min(self.timeout, INFO_TIMEOUT), retries)
        return self._info

    def _request(self, method: str, path: str, body: bytes | None, timeout: float,
                 retries: int) -> dict[str, object]:
        """The JSON answer to one request, retried on connection errors, timeouts and 5xx (module docstring)."""
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = ONNX_CONTENT_TYPE
        request = urllib.request.Request(self.url + path, data=body, headers=headers, method=method)
        attempt = 0
        while True:
            try:
                return self._send(request, timeout)
            except AgentError as error:
                if attempt >= retries or not _retryable(error):
                    raise
            time.sleep(self.backoff * 2**attempt)
            attempt += 1

    def _send(self, request: urllib.request.Request, timeout: float) -> dict[str, object]:
        where = f"{request.get_method()} {request.full_url.partition('?')[0]}"
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return _json_object(response.read(), where)
        except urllib.error.HTTPError as error:
            with error:
                message = _error_line(error.read())
            raise AgentError(f"the device agent answered {where} with {error.code}: {message}",
                             status=error.code) from None
        except (urllib.error.URLError, OSError, HTTPException) as error:
            raise AgentUnreachable(f"cannot reach the device agent at {self.url}: {_reason(error, timeout)}; "
                                   f"{START_HINT}") from None


def measure_module(client: AgentClient, model: nn.Module, protocol: MeasurementProtocol) -> Measurement:
    """The latency of `model`, exported to ONNX at `protocol.shape`, measured through the device agent."""
    return client.measure(to_onnx(model, protocol.shape), protocol)


def _retryable(error: AgentError) -> bool:
    return isinstance(error, AgentUnreachable) or (error.status or 0) >= 500


def _json_object(body: bytes, where: str) -> dict[str, object]:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise AgentError(f"{where} answered something that is not a JSON object: {body[:80]!r}")
    return data


def _error_line(body: bytes) -> str:
    """The agent's one-line error from an error body (or the body's first line when it is not the agent's)."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return data["error"]
    text = body.decode(errors="replace").strip()
    return text.splitlines()[0][:200] if text else "(no message)"


def _reason(error: BaseException, timeout: float) -> str:
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return f"no answer within {timeout:g} s (a slow device may need a larger timeout)"
    return str(reason) or type(reason).__name__
