"""A worker killed with SIGKILL mid-stream and restarted: every event counted in its account state once.

Counted from the state itself: the test replays the account-state changelog the way a
restarted worker does and compares each account's request count with what was produced.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter, defaultdict

import msgspec
import orjson
import pytest
from kafka import KafkaProducer

from lab.embedded import wait_until
from stream.state import parse_log_key, read_log, unpack_account
from tests.stream.test_state import GROUP_RULES, glacial, glacial_s

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EVENTS = 1_000_000
PER_MESSAGE = 1000
ACCOUNTS = 2000


def _messages(now: float) -> list[bytes]:
    """EVENTS events over the last 15 minutes, in time order, as JSON arrays of PER_MESSAGE."""
    start, span = now - 900.0, 840.0
    msgs = []
    for m in range(EVENTS // PER_MESSAGE):
        batch = []
        for j in range(PER_MESSAGE):
            i = m * PER_MESSAGE + j
            a = i % ACCOUNTS
            batch.append({"event_id": f"k{i}", "ts": round(start + span * i / EVENTS, 3), "account_id": f"acct{a}",
                          "ip": f"10.{a % 200}.{(a // 200) % 250}.9", "input_tokens": 300, "output_tokens": 900,
                          "account_created_ts": now - 9e7})
        msgs.append(orjson.dumps(batch))
    return msgs


def _logs(consume_all, bootstrap: str, app_id: str, table_name: str, timeout: float = 15) -> dict[int, tuple]:
    """Each partition's snapshot log of a table, read from its changelog as a restarted worker reads it."""
    table: dict[bytes, bytes] = {}
    for rec in consume_all(bootstrap, f"{app_id}-{table_name}-changelog", timeout=timeout):
        if rec.value is None:
            table.pop(rec.key, None)
        else:
            table[rec.key] = rec.value
    by_partition: dict[int, list[tuple[int, bytes]]] = defaultdict(list)
    for key, value in table.items():
        pk = parse_log_key(key)
        assert pk is not None, key
        by_partition[pk[0]].append((pk[1], value))
    return {p: read_log([raw for _, raw in sorted(chunks)]) for p, chunks in by_partition.items()}


def _state_counts(consume_all, bootstrap: str, app_id: str) -> dict[str, int]:
    """Each account's request count, from the changelog as a restarted worker would rebuild it."""
    counts: dict[str, int] = {}
    for state, _ in _logs(consume_all, bootstrap, app_id, "account_state").values():
        for k, v in state.items():
            counts[k] = unpack_account(v).n
    return counts


@pytest.mark.parametrize("survivor", [False, True], ids=["restarted", "other-worker-takes-over"])
def test_sigkill_mid_stream_loses_and_duplicates_nothing(start_worker, redis_url, broker, consume_all, survivor):
    """One worker killed and restarted; or one of two killed, its partitions moving to the other."""
    # Commits far apart, so the kill surely lands where a snapshot holds input not yet committed
    # (what the replay skip is for); with 2.8 s the kill now and then followed a commit at once.
    w = start_worker(redis_url, partitions=4, extra_env={"RATEHOUND_COMMIT_INTERVAL_S": "15"})
    other = start_worker(redis_url, partitions=4, reuse=w) if survivor else None
    workers = [w] if other is None else [w, other]
    # Settled before the stream starts (every group joined), so the kill lands in a steady stream.
    every = list(range(4))
    assert wait_until(lambda: all(sorted({p for x in workers for p in x.reading().get(t, [])}) == every
                                  for t in ("requests", "by_account", "by_group"))
                      and all(x.reading().get("by_account") for x in workers), timeout=60)
    now = time.time()
    msgs = _messages(now)
    expected = Counter(f"acct{i % ACCOUNTS}" for i in range(EVENTS))

    def produce() -> None:
        p = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0, max_request_size=8 << 20)
        for i, m in enumerate(msgs):
            p.send(w.topics["requests"], value=m, partition=i % 4)
            p.flush()  # one record per batch: tansu may skip the rest of a batch when a consumer resumes in it
            time.sleep(0.02)  # a steady stream, so the kill lands mid-stream
        p.close()

    producer = threading.Thread(target=produce)
    producer.start()

    def processed_all() -> float:
        return sum(x.metric("ratehound_events_total", outcome="processed") for x in workers)

    assert wait_until(lambda: processed_all() >= EVENTS * 0.3, timeout=300, every=0.2)
    killed_at = processed_all()
    assert other is None or w.metric("ratehound_events_total", outcome="processed") > 0  # it held partitions
    w.stop(sig=signal.SIGKILL)

    w2 = start_worker(redis_url, partitions=4, reuse=w) if other is None else other
    producer.join()

    # the dead worker's partitions have moved (restored from the changelog) before "done" means anything
    assert wait_until(lambda: w2.metric("ratehound_state_restored_total", kind="account") > 0, timeout=120)

    def counted() -> bool:
        # Done when the state itself holds as many requests as were produced (snapshots every second);
        # a pause in processing (a rebalance as the dead member's session expires) is not the end.
        return sum(_state_counts(consume_all, broker.bootstrap, w.app_id).values()) >= EVENTS

    wait_until(counted, timeout=300, every=5.0)
    reread = w2.metric("ratehound_input_reread_total")
    restored = w2.metric("ratehound_state_restored_total", kind="account")
    w2.stop()  # SIGTERM: a last snapshot, then commit

    counts = _state_counts(consume_all, broker.bootstrap, w.app_id)
    lost = sum(max(0, n - counts.get(a, 0)) for a, n in expected.items())
    duplicated = sum(max(0, counts.get(a, 0) - n) for a, n in expected.items())
    print(f"\n{'one of two workers' if survivor else 'the worker'}: SIGKILL after {killed_at:.0f} of {EVENTS} events: restored {restored:.0f} accounts, skipped "
          f"{reread:.0f} input messages read again; lost {lost}, duplicated {duplicated}")
    assert restored > 0  # the crash really left state to restore
    # ``reread`` (input read again and skipped) is printed, not asserted: on the embedded broker a consumer
    # resuming inside a record batch may be handed only the next batch, so the input the skip is for does
    # not always arrive (seen: 0 skipped once in four restarted runs, and in 3 of 4 take-overs, exact every
    # time). The skip itself is tested in-process (test_state.py); here the counts below are the test.
    assert set(counts) >= set(expected)
    assert lost == 0
    assert duplicated == 0


def test_sigkill_between_two_chunks_of_a_snapshot_loses_nothing(start_worker, redis_url, broker, consume_all):
    """The worker kills itself once the first chunk of a write of several is on the broker (a test hook):
    the torn write is left out, its input read again, and every account counts every request once."""
    accounts, rounds = 12_000, 2  # about 6,000 accounts a partition: a snapshot of them is three chunks
    w = start_worker(redis_url, partitions=2, extra_env={"RATEHOUND_COMMIT_INTERVAL_S": "15",
                                                         "RATEHOUND_TEST_KILL_MID_SNAPSHOT": "1"})
    now = time.time()
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0, max_request_size=8 << 20)

    def produce(r: int) -> None:
        for m in range(accounts // PER_MESSAGE):
            batch = [{"event_id": f"r{r}.{i}", "ts": round(now - 600 + r * 60 + i / 1000, 3), "account_id": f"acct{i}",
                      "ip": f"10.{i % 50}.0.9", "input_tokens": 300, "output_tokens": 900,
                      "account_created_ts": now - 9e7}  # few networks: the accounts' write is the one torn
                     for i in range(m * PER_MESSAGE, (m + 1) * PER_MESSAGE)]
            p.send(w.topics["requests"], value=orjson.dumps(batch), partition=m % 2)
            p.flush()  # one record per batch: tansu may skip the rest of a batch when a consumer resumes in it

    produce(0)
    assert wait_until(lambda: w.poll() is not None, timeout=120), "the hook never fired: no write of several chunks"
    assert "killed between two chunks" in w.log_text(tail=1 << 20)
    w2 = start_worker(redis_url, reuse=w, extra_env={"RATEHOUND_TEST_KILL_MID_SNAPSHOT": "0"})
    produce(1)
    p.close()
    expected = {f"acct{i}": rounds for i in range(accounts)}
    wait_until(lambda: sum(_state_counts(consume_all, broker.bootstrap, w.app_id).values()) >= accounts * rounds,
               timeout=180, every=3.0)
    w2.stop()
    counts = _state_counts(consume_all, broker.bootstrap, w.app_id)
    lost = sum(max(0, n - counts.get(a, 0)) for a, n in expected.items())
    duplicated = sum(max(0, counts.get(a, 0) - n) for a, n in expected.items())
    print(f"\nkilled between chunks: lost {lost}, duplicated {duplicated}")
    assert (lost, duplicated) == (0, 0)


def test_a_worker_killed_mid_campaign_decides_its_next_accounts_as_an_uninterrupted_one(
        start_worker, redis_url, broker, consume_all):
    """A slow campaign (an account joining every four minutes) through two workers: one uninterrupted,
    one SIGKILLed halfway once its snapshot holds the first half, and restarted. The accounts joining after
    the kill are decided alike: the clusters, networks and what was decided came back with the snapshot.
    One partition each, so both read the events in the same order."""
    accounts = 40
    events = [msgspec.to_builtins(e) for e in glacial(accounts, t0=time.time() - glacial_s(accounts) - 60.0)]
    cut = len(events) // 40 * 20  # halfway, between two messages of 20
    # One request message (20 events) a batch: a group decision carries the latest time its worker read,
    # so the two must cut their input into the same batches for their decisions to be compared.
    env = {"RATEHOUND_COMMIT_INTERVAL_S": "15", "RATEHOUND_BATCH": "1"}
    whole = start_worker(redis_url, partitions=1, extra_env=env)
    killed = start_worker(redis_url, partitions=1, extra_env=env)
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)

    def produce(w, part: list[dict]) -> None:
        for i in range(0, len(part), 20):
            p.send(w.topics["requests"], value=orjson.dumps(part[i:i + 20]), partition=0)
            p.flush()  # one record per batch: tansu may skip the rest of a batch when a consumer resumes in it

    produce(whole, events)
    produce(killed, events[:cut])
    last = max(e["ts"] for e in events[:cut])

    def snapshotted() -> bool:  # both logs hold the first half (their detector time reached its end)
        metas = [(_logs(consume_all, broker.bootstrap, killed.app_id, t, timeout=3).get(0) or ({}, []))[1]
                 for t in ("account_state", "group_state")]
        return all(meta and meta[i] >= last for meta, i in zip(metas, (1, 0), strict=True))  # each kind's detector time

    assert wait_until(snapshotted, timeout=120, every=2.0)
    killed.stop(sig=signal.SIGKILL)
    restarted = start_worker(redis_url, reuse=killed)
    produce(restarted, events[cut:])
    assert wait_until(lambda: restarted.metric("ratehound_state_restored_total", kind="group") > 0, timeout=60)
    p.close()
    joined = {e["account_id"] for e in events[:cut]}
    later = {e["account_id"] for e in events[cut:]} - joined

    def said(w) -> set[tuple]:  # when and for how long, too: the restored clusters' pace and composition
        return {(d["key"], d["reason"], d["action"], d["ts"], d["ttl_s"])
                for d in (orjson.loads(r.value) for r in consume_all(broker.bootstrap, w.topics["decisions"], timeout=5))
                if d["key"] in later and d["reason"] in GROUP_RULES}

    for w, n in ((whole, len(events)), (restarted, len(events) - cut)):
        assert wait_until(lambda w=w, n=n: w.metric("ratehound_events_total", outcome="processed") >= n, timeout=120)
    time.sleep(3.0)
    expected = said(whole)
    assert len({d[0] for d in expected}) >= 10  # the campaign's later accounts are found at all
    assert said(restarted) == expected
