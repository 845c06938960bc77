"""`clamp serve` keeps to loopback, keeps strangers out and stays up: keys, CORS, limits, timeouts, load.

Everything talks to 127.0.0.1 only: a uvicorn thread for the guard tests, a real `clamp serve` process for
the default bind address and the load test (2,000 requests at concurrency 32; 10,000 with -m slow), whose
resident memory is read from /proc before and after.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from serving import free_port, serving

import runtime.serve.guards
from runtime.search.index import Index
from runtime.search.keys import read_music
from runtime.serve.server import create_app

KEY = "correct horse battery staple"
CORPUS_FILES = ("oneills1850/0721-0730.abc", "essenFolksong/irl.abc")


@pytest.fixture(scope="module")
def client(index) -> Iterator[httpx.Client]:
    with serving(create_app(index, request_timeout=2.0)) as client:
        yield client


# --- who may ask ------------------------------------------------------------------------------------------


def test_the_api_key_is_required_and_compared_in_constant_time(index, monkeypatch):
    compared = []

    def spy(given, key):
        compared.append(given)
        return real(given, key)

    real = runtime.serve.guards.hmac.compare_digest
    monkeypatch.setattr(runtime.serve.guards.hmac, "compare_digest", spy)
    with serving(create_app(index, api_key=KEY)) as client:
        query = {"text": "a jig", "k": 2}
        refused = client.post("/search", json=query)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert "Authorization: Bearer" in refused.json()["detail"]
        for headers in ({"authorization": "Bearer wrong"}, {"x-api-key": KEY[:-1]}, {"authorization": KEY}):
            assert client.post("/search", json=query, headers=headers).status_code == 401
        assert (
            client.post("/search", json=query, headers={"authorization": f"Bearer {KEY}"}).status_code == 200
        )
        assert client.post("/search", json=query, headers={"x-api-key": KEY}).status_code == 200
        for path in ("/metrics", "/items/x", "/openapi.json", "/docs", "/label-sets"):
            assert client.get(path).status_code == 401, path
        for path in ("/health", "/", "/static/app.js"):  # liveness and the page's own files stay open
            assert client.get(path).status_code == 200, path
    assert b"wrong" in compared and KEY[:-1].encode() in compared


def test_cors_is_off_unless_an_origin_is_allowed(index, client):
    evil = {"origin": "https://evil.example"}
    response = client.post("/search", json={"text": "a jig"}, headers=evil)
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers
    preflight = {
        **evil,
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type",
    }
    assert "access-control-allow-origin" not in client.options("/search", headers=preflight).headers
    with serving(create_app(index, cors_origins=("https://ok.example",), api_key=KEY)) as allowing:
        ok = {**preflight, "origin": "https://ok.example"}
        answer = allowing.options("/search", headers=ok)  # preflights carry no key: answered before the check
        assert (
            answer.status_code == 200
            and answer.headers["access-control-allow-origin"] == "https://ok.example"
        )
        assert "access-control-allow-origin" not in allowing.options("/search", headers=preflight).headers


# --- what may be sent -------------------------------------------------------------------------------------


def test_oversize_and_odd_uploads_are_refused_and_the_server_stays_up(client, built):
    tune = (built.abc_dir / "oneills1850-0721-0730.abc").read_bytes()
    big = tune * (3_000_000 // len(tune))  # over the 2 MB default limit
    assert client.post("/similar", files={"file": ("big.abc", big)}).status_code == 413
    chunks = (big[i : i + 65536] for i in range(0, len(big), 65536))
    form = {"content-type": "multipart/form-data; boundary=x"}
    assert client.post("/similar", content=chunks, headers=form).status_code == 413  # no Content-Length
    two_files = client.post("/similar", files=[("file", ("a.abc", tune)), ("file", ("b.abc", tune))])
    assert two_files.status_code == 400 and "files" in two_files.json()["detail"].lower()
    many_fields = client.post(
        "/similar", files={"file": ("a.abc", tune)}, data={f"f{i}": "x" for i in range(40)}
    )
    assert many_fields.status_code == 400 and "fields" in many_fields.json()["detail"].lower()
    assert client.post("/similar", content=b"--x\r\nnot a form", headers=form).status_code in (400, 422)
    not_json = client.post("/search", content=b"\xff\xfe{", headers={"content-type": "application/json"})
    assert not_json.status_code in (400, 422)
    assert client.get("/health").status_code == 200


def test_ids_and_file_names_never_become_paths(client, built, tmp_path):
    for path in ("/items/../../etc/passwd", "/items/..%2F..%2Fetc%2Fpasswd", "/items/%2e%2e"):
        response = client.get(path)
        assert response.status_code == 404 and "root:" not in response.text, path
    for path in ("/static/../server.py", "/static/..%2f..%2fserver.py", "/static/%2e%2e/%2e%2e/index.py"):
        assert client.get(path).status_code == 404, path
    tune = (built.abc_dir / "oneills1850-0721-0730.abc").read_bytes()
    escape = "../" * 12 + str(tmp_path / "planted.abc")
    upload = client.post("/similar", files={"file": (escape, tune)}, data={"k": "1"})
    assert upload.status_code == 200 and not (tmp_path / "planted.abc").exists()
    canary = tmp_path / "canary.abc"  # an indexed tune: read as a file, it would find itself (score 1)
    canary.write_text(read_music(built.abc_dir / "oneills1850-0721-0730.abc", 0))
    for route, body in (
        ("/similar", {"abc": str(canary), "k": 1, "exclude_self": False}),
        ("/classify", {"abc": str(canary), "labels": ["a"]}),
    ):
        response = client.post(route, json=body)
        assert response.status_code in (200, 400, 422)  # 422: a path is not ABC music
        assert not any(hit["score"] > 0.999 for hit in response.json().get("results", [])), route


# --- how long and how many --------------------------------------------------------------------------------


def raw_request(port: int, head: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(head)
    return sock


def read_answer(sock: socket.socket) -> bytes:
    """A whole HTTP response from a raw socket (headers, then Content-Length bytes of body)."""
    sock.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(
        int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(4096)
    return head + b"\r\n\r\n" + body


def trickle(sock: socket.socket, body: bytes) -> None:
    """Send the body a byte a second, until the server answers (and closes the connection)."""
    for byte in body:
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return
        time.sleep(1.0)


def test_clients_trickling_their_bodies_hold_no_slot_and_get_408(index):
    port = free_port()
    app = create_app(index, max_concurrency=2, body_timeout=2.0, request_timeout=1.0)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        body = b'{"text": "a slow air, sent a byte a second"}'
        head = b"POST /search HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        head += b"content-length: %d\r\n\r\n" % len(body)
        started = time.monotonic()
        trickles = [raw_request(port, head) for _ in range(2)]  # as many as --max-concurrency
        for sock in trickles:
            threading.Thread(target=trickle, args=(sock, body), daemon=True).start()
        silent = socket.create_connection(("127.0.0.1", port))  # connects and says nothing at all
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            asked = time.monotonic()
            assert client.get("/health").status_code == 200 and time.monotonic() - asked < 0.5
            for text in ("a reel", "a jig", "a hornpipe"):  # the trickles hold no slot
                assert client.post("/search", json={"text": text}).status_code == 200
            for sock in trickles:
                answer = read_answer(sock)
                assert answer.startswith(b"HTTP/1.1 408") and b"not received within 2 s" in answer
                sock.close()
            assert 2 <= time.monotonic() - started < 4
        silent.close()
    finally:
        server.should_exit = True
        thread.join(10)


def test_a_stuck_query_gives_up_its_slot_after_the_timeout(index, client, monkeypatch):
    encoder = index.require_encoder()
    original = encoder.embed_texts

    def stuck(texts, *args, **kwargs):
        if texts == ["stuck"]:
            time.sleep(3)
        return original(texts, *args, **kwargs)

    monkeypatch.setattr(encoder, "embed_texts", stuck)
    started = time.monotonic()
    response = client.post("/search", json={"text": "stuck"})
    assert response.status_code == 503 and 2 <= time.monotonic() - started < 3
    assert client.get("/metrics").json()["in_flight"] == 0
    # The text tower's one worker finishes the stuck batch (3 s), then takes the next query.
    assert client.post("/search", json={"text": "a jig"}).status_code == 200


# --- the real command under load --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(built, tmp_path_factory) -> Iterator[tuple[str, int]]:
    """`clamp serve` as a process: default host, an API key from the environment, 32 queries at once."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    command = [
        sys.executable,
        "-c",
        "from runtime.cli import main; main()",
        "serve",
        "--index",
        str(built.index_dir),
    ]
    env = {**os.environ, "CLAMP_API_KEY": KEY}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--port", str(port), "--max-concurrency", "32"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "clamp serve did not start"
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(10)


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on this port (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.rsplit(":", 1)
            if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc/net/tcp")
def test_clamp_serve_listens_on_loopback_only_by_default(served):
    url, _ = served
    assert listening_addresses(int(url.rsplit(":", 1)[1])) == {"0100007F"}  # 127.0.0.1, and nothing else
    assert httpx.post(f"{url}/search", json={"text": "a jig"}).status_code == 401  # the key from the env


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def hammer(url: str, total: int, concurrency: int, ids: list[str]) -> Counter:
    """`total` mixed requests, `concurrency` at a time; counts of (route, status)."""
    headers = {"authorization": f"Bearer {KEY}"}
    requests = [
        ("POST", "/search", {"json": {"text": "a lively jig in G", "k": 5}}),
        ("POST", "/search", {"json": {"text": "a song", "k": 5, "filter": "origin = Irland"}}),
        ("POST", "/similar", {"json": {"id": ids[0], "k": 5}}),
        ("POST", "/v1/embeddings", {"json": {"input": ["a reel", "a hornpipe"]}}),
        ("GET", f"/items/{ids[1]}", {}),
        ("GET", "/health", {}),
    ]
    counts: Counter = Counter()
    gate = asyncio.Semaphore(concurrency)
    # A fresh connection a request: harder on the server, and no race with its 5 s keep-alive timer
    # (a client stalled that long, on a shared CPU, would find its idle connections closed).
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60, limits=limits) as client:

        async def one(i: int) -> None:
            method, path, options = requests[i % len(requests)]
            async with gate:
                response = await client.request(method, path, **options)
            counts[(path.split("/")[1], response.status_code)] += 1

        await asyncio.gather(*(one(i) for i in range(total)))
    return counts


def load_test(served, index: Index, total: int) -> dict:
    url, pid = served
    ids = [hit.id for hit in index.search_text("a tune", k=2)]
    asyncio.run(hammer(url, 300, 32, ids))  # warm-up: sessions, caches, thread pool
    before = rss_mb(pid)
    started = time.monotonic()
    counts = asyncio.run(hammer(url, total, 32, ids))
    seconds = time.monotonic() - started
    after = rss_mb(pid)
    errors = {key: n for key, n in counts.items() if key[1] != 200}
    assert sum(counts.values()) == total and not errors, errors
    assert after - before < 30, f"server RSS grew from {before:.0f} to {after:.0f} MB"
    metrics = httpx.get(f"{url}/metrics", headers={"authorization": f"Bearer {KEY}"}).json()
    assert sum(r["errors"] + r["rejected"] for r in metrics["routes"].values()) == 0
    return {"requests": total, "seconds": seconds, "rss_mb": (before, after)}


def test_2000_requests_at_concurrency_32_without_an_error_or_memory_growth(served, index):
    figures = load_test(served, index, 2000)
    print(f"\nload: {figures}")


@pytest.mark.slow
def test_10000_requests_at_concurrency_32_without_an_error_or_memory_growth(served, index):
    figures = load_test(served, index, 10_000)
    print(f"\nload: {figures}")
