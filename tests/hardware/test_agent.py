"""The device agent and its client: an agent on 127.0.0.1 (port 0, a background thread, onnxruntime-cpu) measures
a tiny ONNX network as a local `measure` does, refuses bad requests with the right status and keeps serving; the
client retries only what may succeed on a second try and says how to start an agent it cannot reach.

Timings run one CPU thread: on a shared 2-core machine two OpenMP threads stall behind any other busy process.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import resource
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from hardware.agent import Agent, AgentServer, Limits, main, onnx_backend
from hardware.backends import backend, to_onnx
from hardware.client import (
    MAX_TOKEN_FILE_BYTES,
    MAX_TOKEN_LENGTH,
    MIN_TOKEN_LENGTH,
    TOKEN_ENV,
    AgentClient,
    AgentError,
    AgentUnreachable,
    TokenError,
    measure_module,
    measurement_from_dict,
    read_token,
)
from hardware.protocol import MeasurementProtocol, measure
from spaces import build, sample

TOKEN = "agent-test-token-0123456789"
LIMIT = 4 << 20
PROTOCOL = MeasurementProtocol(warmup=5, repeats=40, size=(128, 256), threads=1)
QUERY = "/measure?warmup=2&repeats=3&batch=1&threads=1&height=128&width=256"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ONNX = {"Content-Type": "application/octet-stream"}


@pytest.fixture(scope="module")
def onnx_model() -> bytes:
    return to_onnx(build(sample("small", 0), width=0.25).eval(), PROTOCOL.shape)


@pytest.fixture(scope="module")
def server() -> Iterator[AgentServer]:
    agent = Agent(onnx_backend("onnxruntime-cpu"), TOKEN, Limits(max_bytes=LIMIT, max_threads=4))
    server = AgentServer(("127.0.0.1", 0), agent)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def url(server: AgentServer) -> str:
    return f"http://127.0.0.1:{server.server_port}"


def client(server: AgentServer, token: str = TOKEN, retries: int = 0) -> AgentClient:
    return AgentClient(url(server), token, timeout=30, retries=retries, backoff=0.01)


def send(server: AgentServer, method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b"",
         length: int | None = -1) -> tuple[int, dict[str, object]]:
    """One raw request; `length` -1 sends the body's Content-Length, None sends none, else that number."""
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=30)
    try:
        connection.putrequest(method, target)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        if length is not None:
            connection.putheader("Content-Length", str(len(body) if length == -1 else length))
        connection.endheaders(body or None)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def unknown_op_model() -> bytes:
    """A valid ONNX model (onnx.checker accepts it) whose custom operator no runtime implements."""
    value = [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(PROTOCOL.shape)) for n in ("input", "output")]
    graph = helper.make_graph([helper.make_node("Foo", ["input"], ["output"], domain="com.example")], "foo",
                              value[:1], value[1:])
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


class MadeUpTimings:
    """The real onnxruntime-cpu backend (the model is really loaded and run) on a made-up clock: the k-th call of a
    prepared runner takes k ms (k = 1, 2, ...), whatever the host's load; records each prepare's shape and threads."""

    def __init__(self, runner) -> None:
        self.runner, self.now, self.prepared = runner, 0.0, []
        self.name, self.precision, self.gpu, self.takes_onnx = runner.name, runner.precision, runner.gpu, True

    @property
    def version(self) -> str:
        return self.runner.version

    def clock(self) -> float:
        return self.now

    def answer(self, model, shape) -> None:  # a timed backend, not a replay
        return None

    def prepare(self, model, shape, threads):
        self.prepared.append((tuple(shape), threads))
        self.now = 0.0  # each measurement on the same clock readings: the same floating-point differences
        run, calls = self.runner.prepare(model, shape, threads), []

        def timed() -> None:
            run()
            calls.append(1)
            self.now += len(calls) / 1000.0

        return timed


def test_agent_measures_as_a_local_measurement_does(server: AgentServer, onnx_model: bytes,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent's statistics are those a local `measure` of the same bytes on the same backend gives, exactly: the
    same warm-up and timed runs, shape and thread count, and nothing else timed (HTTP, parsing). Made-up durations
    (the k-th run of a prepared model takes k ms) stand in for the host's clock, so the comparison does not
    depend on the host's load; the model is still really run, through the agent and here."""
    import hardware.protocol

    timings = MadeUpTimings(backend("onnxruntime-cpu"))
    real_time_runs = hardware.protocol.time_runs
    monkeypatch.setattr(hardware.protocol, "time_runs",
                        lambda run, warmup, repeats: real_time_runs(run, warmup, repeats, clock=timings.clock))
    monkeypatch.setattr(server.agent, "backend", timings)
    local = measure(onnx_model, timings, PROTOCOL).stats
    through_agent = client(server).measure(onnx_model, PROTOCOL)
    stats = through_agent.stats
    timed = np.arange(PROTOCOL.warmup + 1, PROTOCOL.warmup + PROTOCOL.repeats + 1, dtype=float)  # after the warm-up
    assert local.median_ms == pytest.approx(np.median(timed)) and local.min_ms == pytest.approx(timed[0])
    assert stats == local  # the same numbers, not numbers within a tolerance
    assert timings.prepared == [(PROTOCOL.shape, PROTOCOL.threads)] * 2
    record = through_agent.provenance
    assert stats.samples == PROTOCOL.repeats
    assert record["backend"] == "onnxruntime-cpu" and record["threads"] == 1 and record["agent"] == url(server)
    assert record["protocol"]["shape"] == list(PROTOCOL.shape)
    assert record["onnx_sha256"] == hashlib.sha256(onnx_model).hexdigest()


def test_info_and_measure_module(server: AgentServer) -> None:
    remote = client(server)
    info = remote.info()
    assert info["backend"] == "onnxruntime-cpu" and info["limits"]["max_bytes"] == LIMIT and not info["busy"]
    assert info["provenance"]["backend_version"] == info["backend_version"] and remote.reachable()
    tiny = MeasurementProtocol(warmup=1, repeats=3, size=(32, 64), threads=1)
    measurement = measure_module(remote, nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()), tiny)
    assert measurement.stats.samples == 3 and measurement.provenance["protocol"]["shape"] == [1, 3, 32, 64]


def test_bad_requests_are_refused_and_the_agent_keeps_serving(server: AgentServer, onnx_model: bytes) -> None:
    q = QUERY.replace
    cases = {
        "no token": (401, "POST", QUERY, ONNX, onnx_model, -1),
        "wrong token": (401, "POST", QUERY, {**ONNX, "Authorization": "Bearer " + "x" * 27}, onnx_model, -1),
        "token without Bearer": (401, "POST", QUERY, {**ONNX, "Authorization": TOKEN}, onnx_model, -1),
        "oversize": (413, "POST", QUERY, {**AUTH, **ONNX}, b"", LIMIT + 1),
        "no Content-Length": (411, "POST", QUERY, {**AUTH, **ONNX}, b"", None),
        "not ONNX": (400, "POST", QUERY, {**AUTH, **ONNX}, b"print('hello')\n" * 10, -1),
        "empty body": (400, "POST", QUERY, {**AUTH, **ONNX}, b"", -1),
        "not octet-stream": (415, "POST", QUERY, {**AUTH, "Content-Type": "text/plain"}, onnx_model, -1),
        "shape disagrees": (400, "POST", q("height=128", "height=64"), {**AUTH, **ONNX}, onnx_model, -1),
        "repeats 0": (400, "POST", q("repeats=3", "repeats=0"), {**AUTH, **ONNX}, onnx_model, -1),
        "repeats over limit": (400, "POST", q("repeats=3", "repeats=10001"), {**AUTH, **ONNX}, onnx_model, -1),
        "threads not a number": (400, "POST", q("threads=1", "threads=one"), {**AUTH, **ONNX}, onnx_model, -1),
        "width missing": (400, "POST", q("&width=256", ""), {**AUTH, **ONNX}, onnx_model, -1),
        "unknown parameter": (400, "POST", QUERY + "&repeat=5", {**AUTH, **ONNX}, onnx_model, -1),
        "unknown path": (404, "GET", "/measurements", AUTH, b"", None),
        "GET /measure": (405, "GET", "/measure", AUTH, b"", None),
        "POST /info": (405, "POST", "/info", AUTH, b"", -1),
    }
    wrong = {}
    for name, (expected, method, target, headers, body, length) in cases.items():
        status, answer = send(server, method, target, headers, body, length)
        one_line_error = set(answer) == {"error"} and "\n" not in str(answer["error"])
        if status != expected or not one_line_error:
            wrong[name] = (status, answer)
    assert wrong == {}
    status, answer = send(server, "POST", QUERY, {**AUTH, **ONNX}, onnx_model)
    assert status == 200 and answer["samples"] == 3


def test_a_backend_failure_on_a_valid_model_is_500(server: AgentServer) -> None:
    with pytest.raises(AgentError, match="500: backend onnxruntime-cpu failed on the model: .*Foo") as raised:
        client(server).measure(unknown_op_model(), PROTOCOL)
    assert raised.value.status == 500 and not isinstance(raised.value, AgentUnreachable)
    assert "\n" not in str(raised.value) and client(server).reachable()


def test_retries_follow_the_status(server: AgentServer, onnx_model: bytes, caplog: pytest.LogCaptureFixture) -> None:
    """5xx is tried 1 + retries times; 401 and 400 once (the same request would be refused again)."""
    caplog.set_level(logging.INFO, logger="hardware.agent")
    with pytest.raises(AgentError):
        client(server, retries=2).measure(unknown_op_model(), PROTOCOL)
    with pytest.raises(AgentError, match="401: missing or wrong token") as unauthorised:
        client(server, token="y" * 20, retries=3).measure(onnx_model, PROTOCOL)
    small = MeasurementProtocol(warmup=1, repeats=3, size=(64, 128), threads=1)
    with pytest.raises(AgentError, match="400: the model's input 'input' is 1x3x128x256") as refused:
        client(server, retries=3).measure(onnx_model, small)
    lines = [r.getMessage() for r in caplog.records if r.name == "hardware.agent"]
    assert sum("POST /measure" in line and " 500 " in line for line in lines) == 3
    assert sum(" 401 " in line for line in lines) == 1 and unauthorised.value.status == 401
    assert sum("POST /measure" in line and " 400 " in line for line in lines) == 1 and refused.value.status == 400


def test_an_answer_with_impossible_statistics_is_not_a_measurement() -> None:
    """What the measurement store would refuse (NaN, infinite or negative latencies, no samples) is refused here,
    as an answer that is not a measurement."""
    good = {"median_ms": 2.0, "mean_ms": 2.1, "p90_ms": 2.5, "min_ms": 1.9, "cv": 0.1, "samples": 3,
            "provenance": {}}
    assert measurement_from_dict(good).stats.samples == 3
    for name, value in (("median_ms", float("nan")), ("min_ms", -1.0), ("p90_ms", float("inf")), ("samples", 0)):
        with pytest.raises(ValueError, match=f"not a measurement: {name} is"):
            measurement_from_dict({**good, name: value})


def test_client_refuses_a_model_over_the_agent_limit_before_sending(server: AgentServer) -> None:
    with pytest.raises(AgentError, match="--max-bytes") as raised:
        client(server).measure(b"\0" * (LIMIT + 1), PROTOCOL)
    assert raised.value.status == 413


def test_measurements_never_overlap(server: AgentServer, onnx_model: bytes) -> None:
    """While a measurement holds the lock another waits; /info still answers and says the agent is busy."""
    remote, done = client(server), threading.Event()
    tiny = MeasurementProtocol(warmup=1, repeats=3, size=(128, 256), threads=1)

    def measure_then_signal() -> None:
        remote.measure(onnx_model, tiny)
        done.set()

    remote.info()
    with server.agent.lock:
        waiting = threading.Thread(target=measure_then_signal)
        waiting.start()
        assert not done.wait(0.3) and remote.info()["busy"]
    waiting.join(timeout=30)
    assert done.is_set()


def test_unreachable_agent_says_how_to_start_it() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    remote = AgentClient(f"http://127.0.0.1:{port}", TOKEN, timeout=1, retries=1, backoff=0.01)
    start = time.perf_counter()
    with pytest.raises(AgentUnreachable, match=r"cannot reach the device agent at .*python -m hardware\.agent"):
        remote.measure(b"onnx", PROTOCOL)
    assert time.perf_counter() - start < 3 and not remote.reachable()


def test_silent_agent_times_out_as_unreachable() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        remote = AgentClient(f"http://127.0.0.1:{silent.getsockname()[1]}", TOKEN, timeout=0.2, retries=1,
                             backoff=0.01)
        with pytest.raises(AgentUnreachable, match="no answer within 0.2 s"):
            remote.info()


def test_read_token(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "from-the-environment-123")
    (tmp_path / "token").write_text(f"  {TOKEN}\n")
    assert read_token(tmp_path / "token") == TOKEN and read_token() == "from-the-environment-123"
    with pytest.raises(TokenError, match="cannot read the token file"):
        read_token(tmp_path / "absent")
    monkeypatch.delenv(TOKEN_ENV)
    with pytest.raises(TokenError, match=f"--token-file PATH or set {TOKEN_ENV}"):
        read_token()


SECRET = "s3cret-shadow-hash-7f3a9c0e"  # what a wrong token file holds; no message may show it
SHADOW = f"root:$6$salt${SECRET}:19700:0:99999:7:::\ndaemon:*:19700:0:99999:7:::\n"


def not_token_files(directory) -> dict[str, object]:
    """Files that hold no token, each with SECRET inside: name -> path."""
    contents = {
        "inner newline": f"{TOKEN}\n{SECRET}\n".encode(),
        "shadow": SHADOW.encode(),
        "space inside": f"{TOKEN} {SECRET}\n".encode(),
        "binary": bytes(range(256)) + SECRET.encode(),
        "not ASCII": f"tökén-{SECRET}\n".encode(),
        "over 1024 characters": (SECRET * 40).encode(),
    }
    paths = {}
    for name, content in contents.items():
        paths[name] = directory / name.replace(" ", "-")
        paths[name].write_bytes(content)
    paths["huge"] = directory / "huge"  # the secret, then zeros up to 64 MiB (a sparse file): never read whole
    with open(paths["huge"], "wb") as huge:
        huge.write(SECRET.encode())
        huge.truncate(64 << 20)
    return paths


def test_a_file_that_holds_no_token_is_refused_without_showing_it(tmp_path) -> None:
    """A newline inside, a shadow file, spaces, binary or non-ASCII bytes, too long, a huge file: each refused with
    one line naming the file and what a token must look like, never its content; the huge one read only in part."""
    for name, path in not_token_files(tmp_path).items():
        tracemalloc.start()
        try:
            with pytest.raises(TokenError) as refused:
                read_token(path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        message = str(refused.value)
        assert str(path) in message and "\n" not in message and SECRET not in message, (name, message)
        assert "printable ASCII characters without spaces" in message or "at most 1024" in message, (name, message)
        assert peak < MAX_TOKEN_FILE_BYTES * 8, (name, peak)
    assert MIN_TOKEN_LENGTH == 16 and MAX_TOKEN_LENGTH == 1024
    (tmp_path / "longest").write_text(f"\n {'t' * MAX_TOKEN_LENGTH} \r\n")
    assert read_token(tmp_path / "longest") == "t" * MAX_TOKEN_LENGTH


def test_no_token_error_shows_the_secret_on_its_way_to_an_http_header(
        server: AgentServer, tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The environment variable, a token given to the client or the agent, and the agent started on a shadow file:
    refused in one line without the secret, before any header is built (http.client's 'Invalid header value' error
    would print it whole)."""
    bad = f"{TOKEN}\n{SECRET}"
    monkeypatch.setenv(TOKEN_ENV, bad)
    messages = []
    for attempt in (read_token, lambda: client(server, token=bad).info(),
                    lambda: Agent(onnx_backend("onnxruntime-cpu"), bad)):
        with pytest.raises(TokenError) as refused:
            attempt()
        messages.append(str(refused.value))
    shadow = tmp_path / "shadow"
    shadow.write_text(SHADOW)
    assert main(["--token-file", str(shadow), "--port", "0"]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and f"token file {shadow} holds no agent token" in captured.err
    assert all(SECRET not in text and "\n" not in text for text in messages)
    assert SECRET not in captured.out + captured.err
    assert TOKEN_ENV in messages[0] and "client" in messages[1] and "agent" in messages[2]


@pytest.mark.parametrize(("argv", "token", "says"), [
    ([], None, f"no agent token: pass --token-file PATH or set {TOKEN_ENV}"),
    (["--token-file", "{short}"], None, "has 5 characters, needs at least 16"),
    (["--backend", "torch-cpu"], TOKEN, "runs PyTorch modules, but the agent receives ONNX models; use --backend "
                                        "onnxruntime-cpu or tensorrt-fp16"),
    (["--backend", "tflite"], TOKEN, "unknown backend 'tflite'"),
    (["--max-bytes", "0"], TOKEN, "--max-bytes must be at least 1"),
])
def test_agent_refuses_to_start_with_one_line(argv: list[str], token: str | None, says: str, tmp_path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "short").write_text("short\n")
    if token is None:
        monkeypatch.delenv(TOKEN_ENV, raising=False)
    else:
        monkeypatch.setenv(TOKEN_ENV, token)
    argv = [arg.format(short=tmp_path / "short") for arg in argv]
    assert main([*argv, "--port", "0"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("hardware.agent: ") and says in error


def bombs() -> dict[str, tuple[str, bytes]]:
    """Small models that would take gigabytes, or read the agent's disk, if a runtime loaded them: name -> (query,
    body)."""
    big = QUERY.replace("batch=1", "batch=64").replace("height=128", "height=4096").replace("width=256", "width=4096")
    image = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, "h", "w"])
    output = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["a", "b", "c", "d"])
    opsets = [helper.make_opsetid("", 17)]

    def model(nodes, initializers) -> bytes:
        graph = helper.make_graph(nodes, "bomb", [image], [output], initializers)
        return helper.make_model(graph, opset_imports=opsets).SerializeToString()

    expand = numpy_helper.from_array(np.array([1, 3, 40000, 40000], dtype=np.int64), "shape")
    external = helper.make_tensor("w", TensorProto.FLOAT, [1], [0.0])
    external.ClearField("float_data")
    external.data_location = TensorProto.EXTERNAL
    external.external_data.add(key="location", value="token")
    local = [*opsets, helper.make_opsetid("local", 1)]
    side = numpy_helper.from_array(np.array([1, 1, 20000, 20000], dtype=np.int64))  # 1,526 MiB of floats
    through_peak = [helper.make_node("ReduceMax", ["big"], ["peak"], keepdims=0),
                    helper.make_node("Add", ["x", "peak"], ["y"])]
    loop_body = helper.make_graph(
        [helper.make_node("Identity", ["c"], ["c_out"]), helper.make_node("Identity", ["v"], ["v_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("c", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, ["n", 3, "h", "w"])])

    def in_function(nodes) -> bytes:
        """`nodes` (x -> y) as a model-local function that the main graph calls."""
        function = helper.make_function("local", "f", ["x"], ["y"], nodes, opset_imports=local)
        graph = helper.make_graph([helper.make_node("f", ["input"], ["output"], domain="local")], "bomb", [image],
                                  [output])
        return helper.make_model(graph, opset_imports=local, functions=[function]).SerializeToString()

    values = helper.make_tensor("big", TensorProto.FLOAT, [1], [1.0])
    densified = helper.make_sparse_tensor(values, helper.make_tensor("at", TensorProto.INT64, [1], [0]),
                                          [1, 1, 20000, 20000])
    sparse_graph = helper.make_graph([helper.make_node("ReduceMax", ["big"], ["peak"], keepdims=0),
                                      helper.make_node("Add", ["input", "peak"], ["output"])], "bomb", [image],
                                     [output], sparse_initializer=[densified])
    return {
        "expand to 40000x40000": (QUERY, model([helper.make_node("Expand", ["input", "shape"], ["output"])],
                                               [expand])),
        "symbolic at 64x3x4096x4096": (big, model([helper.make_node("Relu", ["input"], ["output"])], [])),
        "external data": (QUERY, model([helper.make_node("Add", ["input", "w"], ["output"])], [external])),
        "ConstantOfShape in a function": (QUERY, in_function([
            helper.make_node("Constant", [], ["side"], value=side),
            helper.make_node("ConstantOfShape", ["side"], ["big"]), *through_peak])),
        "Loop in a function": (QUERY, in_function([
            helper.make_node("Constant", [], ["trips"], value=numpy_helper.from_array(np.array(1, np.int64))),
            helper.make_node("Constant", [], ["go"], value=numpy_helper.from_array(np.array(True))),
            helper.make_node("Loop", ["trips", "go", "x"], ["y"], body=loop_body)])),
        "sparse initializer densified to 20000x20000": (QUERY, helper.make_model(
            sparse_graph, opset_imports=opsets).SerializeToString()),
    }


def test_bombs_are_refused_without_the_agents_memory_growing(server: AgentServer, onnx_model: bytes) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB; the agent serves from this process
    for name, (query, body) in bombs().items():
        status, answer = send(server, "POST", query, {**AUTH, **ONNX}, body)
        assert status == 400 and "\n" not in answer["error"], (name, answer)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 256, grown_mib
    status, answer = send(server, "POST", QUERY, {**AUTH, **ONNX}, onnx_model)
    assert status == 200 and answer["samples"] == 3
