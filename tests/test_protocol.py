"""The frame parser rejects malformed headers (fuzzed) and the handshake refuses strangers."""

from __future__ import annotations

import random
import socket
import struct
import time

import numpy as np
import pytest
from gradwire import _C
from world import run_world

COMM, SRC = 0xC0FFEE, 3


def _valid(**kw):
    args = dict(seq=7, tag=2, kind=1, dtype=0, count=100, offset=0, length=400, msg_bytes=400)
    args.update(kw)
    return _C._make_data_header(COMM, SRC, *args.values())


def test_valid_headers_pass():
    assert _C.FRAME_HEADER_BYTES == 72
    assert _C._validate_header(_valid(), COMM, SRC) == ""
    assert _C._validate_header(_valid(offset=100, length=300), COMM, SRC) == ""
    assert _C._validate_header(_valid(length=0, msg_bytes=0), COMM, SRC) == ""


@pytest.mark.parametrize(
    "mutate, expect",
    [
        (lambda b: b"XXXX" + b[4:], "magic"),
        (lambda b: b[:4] + struct.pack("<H", 99) + b[6:], "protocol version"),
        (lambda b: b[:6] + bytes([66]) + b[7:], "frame type"),
        (lambda b: b[:6] + bytes([7]) + b[7:], "malformed CMA offer"),  # 400-byte payload
        (lambda b: b[:6] + bytes([8]) + b[7:], "CMA replies carry no payload"),
        (lambda b: b[:8] + struct.pack("<I", 1) + b[12:], "communicator id"),
        (lambda b: b[:12] + struct.pack("<i", 0) + b[16:], "source rank"),
    ],
)
def test_corrupted_fields_are_named(mutate, expect):
    assert expect in _C._validate_header(mutate(_valid()), COMM, SRC)


def test_payload_outside_message_rejected():
    assert "outside" in _C._validate_header(_valid(offset=300, length=200), COMM, SRC)
    assert "outside" in _C._validate_header(_valid(offset=2**64 - 1, length=2), COMM, SRC)
    assert "too large" in _C._validate_header(_valid(msg_bytes=2**62, length=0), COMM, SRC)


def test_fuzz_random_headers_never_crash_and_flipped_headers_mostly_fail():
    rng = random.Random(1234)
    accepted_random = 0
    for _ in range(20000):
        raw = bytes(rng.getrandbits(8) for _ in range(72))
        accepted_random += _C._validate_header(raw, COMM, SRC) == ""
    assert accepted_random == 0  # random bytes never pass the magic/version/id checks
    base = bytearray(_valid())
    for _ in range(5000):
        b = bytearray(base)
        pos = rng.randrange(72)
        b[pos] ^= 1 << rng.randrange(8)
        result = _C._validate_header(bytes(b), COMM, SRC)
        if pos < 16 and pos != 7:  # magic, version, type, comm id, source: any flip is caught
            assert result != "", pos


def _stranger_then_join(rank, size, port):
    """Rank 1 first knocks on rank 0's listener with junk, then joins properly."""
    from datetime import timedelta

    import torch.distributed as dist

    store = dist.TCPStore("127.0.0.1", port, size, rank == 0, timeout=timedelta(seconds=30))
    if rank == 1:
        nonce = store.get("gradwire/rendezvous").decode()  # this set-up's keys (rendezvous.h)
        host, _, p = store.get(f"gradwire/{nonce}/addr/0").decode().rpartition(":")
        junk = socket.create_connection((host, int(p)))
        junk.sendall(b"GET / HTTP/1.0\r\n\r\n" + bytes(200))
        time.sleep(0.3)
    comm = _C.Communicator(store, rank, size, "stranger", 20.0, "127.0.0.1", "")
    a = np.full(10, rank + 1.0, dtype=np.float32)
    comm.allreduce(a.ctypes.data, a.size, 0, 0, None, False).wait()
    comm.shutdown()
    return a.tolist()


def test_unauthenticated_connection_is_refused_and_the_job_continues():
    from world import free_port

    results = run_world(_stranger_then_join, 2, free_port(), timeout=60)
    assert results[0] == results[1] == [3.0] * 10


def _idle_connections_then_join(rank, size, port):
    """Before joining, ranks 1 and 2 leave connections open on the listeners of the ranks they
    will dial that never speak (or stop halfway through AUTH), as port scanners and health
    checks do. The set-up must not wait for them."""
    from datetime import timedelta

    import torch.distributed as dist

    store = dist.TCPStore("127.0.0.1", port, size, rank == 0, timeout=timedelta(seconds=30))
    idle = []
    if rank > 0:
        nonce = store.get("gradwire/rendezvous").decode()
        host, _, p = store.get(f"gradwire/{nonce}/addr/{rank - 1}").decode().rpartition(":")
        for i in range(20):
            s = socket.create_connection((host, int(p)))
            if i % 5 == 0:
                s.recv(32)  # HELLO
                s.sendall(b"GWHS" + bytes(20))  # the start of an AUTH, never finished
            idle.append(s)
    start = time.monotonic()
    comm = _C.Communicator(store, rank, size, "idle-knockers", 30.0, "127.0.0.1", "")
    setup = time.monotonic() - start
    a = np.full(10, rank + 1.0, dtype=np.float32)
    comm.allreduce(a.ctypes.data, a.size, 0, 0, None, False).wait()
    comm.shutdown()
    for s in idle:
        s.close()
    return a.tolist(), setup


def test_idle_connections_do_not_hold_up_the_set_up():
    from world import free_port

    results = run_world(_idle_connections_then_join, 3, free_port(), timeout=90)
    for values, setup in results:
        assert values == [6.0] * 10
        # before: the listener gave the first idle connection the whole 30 s set-up deadline
        assert setup < 8.0, setup


def _wrong_token(rank, size):
    import os

    os.environ["GRADWIRE_AUTH_TOKEN"] = f"secret-of-rank-{rank}"
    from world import init

    start = time.monotonic()
    try:
        init(rank, size, timeout_s=8)
        return "joined", time.monotonic() - start
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}", time.monotonic() - start


def test_peers_with_different_tokens_refuse_each_other():
    results = run_world(_wrong_token, 2, timeout=60)
    for text, elapsed in results:
        assert text != "joined"
        assert elapsed < 20
    # rank 0 answers the refusal, so rank 1 knows why
    assert "our secrets differ" in results[1][0] and "GRADWIRE_AUTH_TOKEN" in results[1][0]
