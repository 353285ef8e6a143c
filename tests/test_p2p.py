"""Point-to-point with torch's semantics: batches in any order, receives from any source,
messages matched per (peer, tag) independently of other pairs and of collectives."""

from __future__ import annotations

import pytest
import torch
from world import init, run_world

TRANSPORTS = ["shm", "tcp"]


def _fill(src: int, dst: int, tag: int, n: int) -> torch.Tensor:
    return torch.arange(n, dtype=torch.float32) + 1000 * src + 100 * dst + tag


def _all_pairs_batch(rank, size, big):
    """Every rank sends to and receives from every other rank in one batch, without and with
    tags; sizes differ per pair (with `big`, larger than a shared-memory ring); odd ranks list
    their ops backwards, rank 0 lists its receives first."""
    dist = init(rank, size, timeout_s=20)
    ok = [_one_batch(dist, rank, size, tagged, big) for tagged in (False, True)]
    dist.destroy_process_group()
    return ok


def _one_batch(dist, rank, size, tagged, big):
    ops, recvs = [], {}
    size_of = lambda s, d: (s * 7 + d * 3 + 1) * (300_000 if big else 1)  # noqa: E731
    for p in range(size):
        if p == rank:
            continue
        send_tag = p if tagged else 0
        recv_tag = rank if tagged else 0
        ops.append(
            dist.P2POp(dist.isend, _fill(rank, p, send_tag, size_of(rank, p)), p, tag=send_tag)
        )
        recvs[p] = torch.zeros(size_of(p, rank))
        ops.append(dist.P2POp(dist.irecv, recvs[p], p, tag=recv_tag))
    if rank % 2:
        ops.reverse()
    elif rank == 0:
        ops.sort(key=lambda op: op.op is dist.isend)
    for w in dist.batch_isend_irecv(ops):
        w.wait()
    return all(
        torch.equal(t, _fill(p, rank, rank if tagged else 0, t.numel())) for p, t in recvs.items()
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("size", [3, 4])
def test_batch_isend_irecv_between_every_pair(size, transport):
    env = {"GRADWIRE_TRANSPORT": transport}
    res = run_world(_all_pairs_batch, size, False, timeout=90, env=env)
    assert res == [[True, True]] * size


def test_batch_isend_irecv_large_messages_in_opposite_orders():
    res = run_world(_all_pairs_batch, 3, True, timeout=120)
    assert res == [[True, True]] * 3


def _p2p_around_collectives(rank, size):
    """Rank 0 sends before an allreduce that rank 1 runs before receiving; tags reorder
    messages of one pair; the collective in between is unaffected."""
    dist = init(rank, size, timeout_s=20)
    out = {}
    if rank == 0:
        works = [dist.isend(torch.full((5,), float(t)), 1, tag=t) for t in (7, 3, 7)]
    t = torch.ones(4)
    dist.all_reduce(t)
    out["allreduce"] = t.tolist()
    if rank == 1:
        a, b, c = torch.zeros(5), torch.zeros(5), torch.zeros(5)
        dist.recv(b, 0, tag=3)  # the tag-3 message overtakes the first tag-7 one
        dist.recv(a, 0, tag=7)
        dist.recv(c, 0, tag=7)
        out["recv"] = [a[0].item(), b[0].item(), c[0].item()]
    if rank == 0:
        for w in works:
            w.wait()
    dist.barrier()
    dist.destroy_process_group()
    return out


def test_p2p_matches_per_tag_independently_of_collectives():
    res = run_world(_p2p_around_collectives, 3, timeout=60)
    assert all(r["allreduce"] == [3.0] * 4 for r in res)
    assert res[1]["recv"] == [7.0, 3.0, 7.0]


def _any_source(rank, size):
    dist = init(rank, size, timeout_s=20)
    if rank == 0:
        got = []
        for _ in range(2 * (size - 1)):
            t = torch.zeros(3)
            src = dist.recv(t)  # no src: any rank
            got.append((src, t[0].item()))
        # irecv without a source: the work names the sender.
        t = torch.zeros(3)
        w = dist.irecv(t, tag=5)
        w.wait()
        got.append((w._source_rank(), t[0].item()))
        dist.barrier()
        dist.destroy_process_group()
        return got
    for k in range(2):
        dist.send(torch.full((3,), float(10 * rank + k)), 0)
    if rank == size - 1:
        dist.send(torch.full((3,), 99.0), 0, tag=5)
    dist.barrier()
    dist.destroy_process_group()
    return None


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_recv_from_any_source_reports_the_sender(transport):
    size = 4
    got = run_world(_any_source, size, timeout=60, env={"GRADWIRE_TRANSPORT": transport})[0]
    assert got[-1] == (size - 1, 99.0)
    pairs = got[:-1]
    assert sorted(pairs) == sorted((r, float(10 * r + k)) for r in range(1, size) for k in range(2))
    for r in range(1, size):  # each sender's messages arrive in its order
        assert [v for s, v in pairs if s == r] == [10.0 * r, 10.0 * r + 1]


def _any_source_keeps_order(rank, size):
    """A specific receive issued after a receive from any source with the same tag must not
    take the message the any-source receive is entitled to."""
    dist = init(rank, size, timeout_s=20)
    out = None
    if rank == 0:
        a, b = torch.zeros(2), torch.zeros(2)
        wa = dist.irecv(a)  # any source
        wb = dist.irecv(b, src=1)
        dist.barrier()  # only now does rank 1 send
        wa.wait()
        wb.wait()
        out = (wa._source_rank(), a[0].item(), b[0].item())
    else:
        dist.barrier()
        if rank == 1:
            dist.send(torch.full((2,), 1.0), 0)
            dist.send(torch.full((2,), 2.0), 0)
    dist.barrier()
    dist.destroy_process_group()
    return out


def test_any_source_receive_keeps_issue_order():
    assert run_world(_any_source_keeps_order, 3, timeout=60)[0] == (1, 1.0, 2.0)


def _recv_times_out(rank, size):
    import time

    dist = init(rank, size, timeout_s=2)
    if rank == 1:
        t0 = time.monotonic()
        try:
            dist.recv(torch.zeros(3), src=0, tag=4)
        except Exception as e:  # noqa: BLE001 - the error is the result
            return (type(e).__name__, str(e), time.monotonic() - t0)
        return "no error"
    time.sleep(4)  # rank 0 never sends
    return None


def test_a_receive_nobody_sends_times_out_naming_the_peer():
    name, msg, waited = run_world(_recv_times_out, 2, timeout=60, allow_errors=True)[1]
    assert name == "TimeoutError"
    assert "recv(float32 x 3) from rank 0, tag 4" in msg and "rank 1" in msg, msg
    assert waited < 10


def _coalesced_allgather(rank, size):
    dist = init(rank, size)
    # Three inputs on a world of two (a layout with as many inputs as ranks hides a transpose).
    inputs = [torch.full((2, 2), rank + 1.0), torch.tensor([10.0 * rank]), torch.arange(3.0) + rank]
    outputs = [[torch.empty_like(t) for t in inputs] for _ in range(size)]
    dist.all_gather_coalesced(outputs, inputs)
    dist.destroy_process_group()
    return [[t.tolist() for t in per_rank] for per_rank in outputs]


def test_all_gather_coalesced_uses_torchs_layout():
    res = run_world(_coalesced_allgather, 2, timeout=60)
    expected = [
        [[[r + 1.0] * 2] * 2, [10.0 * r], [float(i + r) for i in range(3)]] for r in range(2)
    ]
    assert res[0] == res[1] == expected


def _shutdown_with_pending_receive(rank, size):
    import time

    dist = init(rank, size, timeout_s=60)
    out = None
    if rank == 1:
        t = torch.zeros(4)
        w = dist.irecv(t, src=0, tag=9)  # never sent
        dist.isend(torch.ones(4), 0, tag=1).wait()
        t0 = time.monotonic()
        dist.destroy_process_group()
        try:
            w.wait()
            out = ("no error", time.monotonic() - t0)
        except Exception as e:  # noqa: BLE001 - the error is the result
            out = (str(e), time.monotonic() - t0)
        return out
    r = torch.zeros(4)
    dist.recv(r, 1, tag=1)
    time.sleep(5)  # alive while rank 1 shuts down: its receive fails for that, not for our exit
    dist.destroy_process_group()
    return r.tolist()


def test_shutdown_fails_receives_nobody_sends_to_at_once():
    res = run_world(_shutdown_with_pending_receive, 2, timeout=60)
    assert res[0] == [1.0] * 4
    msg, waited = res[1]
    assert "shut down with 1 receive(s) still waiting" in msg, msg
    assert waited < 10  # not the 60 s deadline
