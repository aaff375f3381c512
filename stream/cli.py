"""The ``ratehound`` command: worker, simulate, replay, compare, broker, demo."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import time

from detectors.config import ConfigError, load_config


def _config(path: str | None):
    try:
        return load_config(path)
    except ConfigError as exc:
        sys.exit(f"ratehound: bad config: {exc}")


def cmd_worker(a: argparse.Namespace) -> None:
    """Run a Faust worker until interrupted."""
    import faust

    from stream.app import Worker
    from stream.settings import Settings
    from stream.topics import ensure_topics

    overrides = {k: v for k, v in (("KAFKA_BROKER", a.broker), ("REDIS_URL", a.redis),
                                   ("RATEHOUND_WEB_PORT", a.web_port and str(a.web_port)),
                                   ("RATEHOUND_PARTITIONS", a.partitions and str(a.partitions)),
                                   ("RATEHOUND_CONFIG", a.config)) if v}
    os.environ.update(overrides)
    from stream.reload import load_versioned
    from stream.security import KafkaLoginError, check_kafka_login

    settings = Settings()  # a bad setting stops here, before any connection (see main)
    try:
        cfg = load_versioned(settings.config_path)
    except (ConfigError, OSError) as exc:
        sys.exit(f"ratehound: bad config: {exc}")
    if settings.kafka_security.protocol != "PLAINTEXT":
        try:
            check_kafka_login(settings.bootstrap, settings.kafka_security)
        except KafkaLoginError as exc:
            sys.exit(f"ratehound: {exc}")
    ensure_topics(settings)
    # Millions of small long-lived objects (account states) make Python's default collection
    # thresholds scan them again and again; collect young objects less often.
    gc.set_threshold(50_000, 50, 100)
    worker = Worker(settings, cfg)
    faust.Worker(worker.app, loglevel=a.loglevel, quiet=True).execute_from_commandline()


def cmd_simulate(a: argparse.Namespace) -> None:
    """Write a labelled scenario to files, or produce it to Kafka in real time."""
    import traffic
    from traffic.files import write_events, write_labels

    if a.list:
        for name, desc in traffic.SCENARIOS.items():
            print(f"{name:26} {desc}")
        return
    t0 = a.t0 if a.t0 is not None else (time.time() if a.kafka else 1790000000.0)
    sim = traffic.generate(a.scenario, seed=a.seed, t0=t0, duration_s=a.duration, scale=a.scale)
    if a.labels:
        write_labels(sim.labels(), a.labels)
    if a.out:
        n = write_events(sim.events(), a.out)
        print(f"wrote {n} events to {a.out}" + (f", labels to {a.labels}" if a.labels else ""), file=sys.stderr)
    if a.kafka:
        from lab.producer import produce_live
        from stream.settings import Settings

        settings = Settings(kafka_broker=a.broker or os.environ.get("KAFKA_BROKER", "127.0.0.1:9092"))
        n = produce_live(sim.events(), settings, speed=a.speed, batch=a.batch, max_events=a.max_events)
        print(f"produced {n} events", file=sys.stderr)


def cmd_replay(a: argparse.Namespace) -> None:
    """Run the detector over a recorded file; decisions as JSON Lines."""
    from backtest.replay import ReplayStats, replay_to_file

    cfg = _config(a.config)
    stats = ReplayStats()
    t = time.perf_counter()
    out = sys.stdout.buffer if a.out == "-" else open(a.out, "wb")  # noqa: SIM115
    try:
        replay_to_file(a.events, cfg, out, stats, processes=a.processes)
    except KeyboardInterrupt:
        sys.exit(f"ratehound replay: interrupted after reading {stats.events:,} events "
                 "(the decisions written so far are kept)")
    except BrokenPipeError:  # `--out - | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        sys.exit(1)
    finally:
        if out is not sys.stdout.buffer:
            out.close()
    dt = time.perf_counter() - t
    print(f"replayed {stats.events} events in {dt:.1f}s ({stats.events / max(dt, 1e-9):,.0f}/s): "
          f"{stats.decisions} decisions, rejected {stats.rejects or 0}", file=sys.stderr)


def cmd_compare(a: argparse.Namespace) -> None:
    """Replay one traffic file under two threshold files; report what changes."""
    import json

    from backtest.compare import compare
    from backtest.files import InputError

    for path in (a.config, a.against):
        if path:
            _config(path)  # a clear error before any replay
    try:
        report = compare(a.events, a.config, a.against, a.labels)
    except InputError as exc:
        sys.exit(f"ratehound compare: {exc}")
    print(json.dumps(report, indent=1))


def cmd_score(a: argparse.Namespace) -> None:
    """Score decisions against labelled events: attack leakage, accounts hit, time to first enforcement."""
    from backtest.score import run

    run(a, prog="ratehound score")


def cmd_broker(a: argparse.Namespace) -> None:
    """Run the embedded Kafka-compatible broker (tansu) in the foreground."""
    from lab.embedded import EmbeddedBroker

    with EmbeddedBroker(port=a.port) as b:
        print(f"embedded broker at {b.bootstrap} (memory only: a restart loses its log)")
        print(f"export KAFKA_BROKER={b.url}", flush=True)
        try:
            while b.running:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


def cmd_demo(a: argparse.Namespace) -> None:
    """Broker, Redis, a worker and simulated traffic with attacks; decisions printed as they happen."""
    from lab.demo import run_demo

    run_demo(scenario=a.scenario, scale=a.scale, duration=a.duration, web_port=a.web_port, seed=a.seed,
             exit_after=a.exit_after)


def cmd_gateway(a: argparse.Namespace) -> None:
    """Answer nginx auth_request subrequests (GET /check) from the decisions in Redis; fails open."""
    from stream.gateway import serve
    from stream.settings import Settings

    settings = Settings(**{k: v for k, v in (("redis_url", a.redis), ("redis_prefix", a.prefix)) if v})
    net = _config(a.config or settings.config_path).network
    logging.getLogger().setLevel(a.loglevel.upper())
    serve(settings.redis_url, host=a.host, port=a.port, prefix=settings.redis_prefix, ipv4_prefix=net.ipv4_prefix,
          ipv6_prefix=net.ipv6_prefix, timeout_s=a.timeout_ms / 1000.0, deny_status=a.deny_status)


def cmd_decision(a: argparse.Namespace) -> None:
    """Impose or lift a decision by hand: in force in Redis at once, and on the decisions topic for the audit."""
    from detectors.policy import encode_decision
    from stream.overrides import ApplyError, OverrideError, apply, build_override
    from stream.settings import Settings

    settings = Settings(**{k: v for k, v in (("redis_url", a.redis), ("kafka_broker", a.broker)) if v})
    net = _config(a.config or settings.config_path).network
    try:
        d = build_override(a.action, a.scope, a.key, a.ttl, a.reason, limit_rps=a.limit_rps, by=a.by, note=a.note,
                           ipv4_prefix=net.ipv4_prefix, ipv6_prefix=net.ipv6_prefix)
    except OverrideError as exc:
        print(f"ratehound decision: error: {exc}", file=sys.stderr)
        sys.exit(2)
    try:
        apply(d, settings.redis_url, settings.redis_prefix, settings.bootstrap, settings.topics.decisions)
    except ApplyError as exc:
        print(f"ratehound decision: failed: {exc}", file=sys.stderr)
        sys.exit(1)
    print(encode_decision(d).decode())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ratehound", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    w = sub.add_parser("worker", help="run a Faust worker (requests -> decisions in Redis, Kafka, /metrics)",
                       description=cmd_worker.__doc__)
    w.add_argument("--broker", help="Kafka bootstrap, e.g. kafka://host:9092 (env KAFKA_BROKER)")
    w.add_argument("--redis", help="Redis URL (env REDIS_URL, default redis://127.0.0.1:6379/0)")
    w.add_argument("--config", help="thresholds YAML (env RATEHOUND_CONFIG)")
    w.add_argument("--web-port", type=int, help="port of /metrics (env RATEHOUND_WEB_PORT, default 6066)")
    w.add_argument("--partitions", type=int, help="partitions of ratehound's topics (env RATEHOUND_PARTITIONS)")
    w.add_argument("--loglevel", default="warning")
    w.set_defaults(func=cmd_worker)

    s = sub.add_parser("simulate", help="labelled simulated traffic to files or to Kafka",
                       description=cmd_simulate.__doc__)
    s.add_argument("--scenario", default="mixed")
    s.add_argument("--list", action="store_true", help="list the scenarios")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--duration", type=float, help="seconds of traffic (default: the scenario's own, mostly 3600)")
    s.add_argument("--scale", type=float, help="size of the honest population (default: the scenario's own)")
    s.add_argument("--t0", type=float, help="start time (default: now with --kafka, else a fixed date)")
    s.add_argument("--out", help="events file (.jsonl or .jsonl.gz)")
    s.add_argument("--labels", help="labels file (.json or .json.gz), the scorer's format")
    s.add_argument("--kafka", action="store_true", help="produce to the requests topic in real time")
    s.add_argument("--broker", help="Kafka bootstrap (env KAFKA_BROKER)")
    s.add_argument("--speed", type=float, default=1.0, help="x real time when producing (1 = event time)")
    s.add_argument("--batch", type=int, default=100, help="events per Kafka message (JSON array); 1 = objects")
    s.add_argument("--max-events", type=int, help="stop after this many events")
    s.set_defaults(func=cmd_simulate)

    r = sub.add_parser("replay", help="run the detector over a recorded file, no broker, no Redis",
                       description=cmd_replay.__doc__)
    r.add_argument("events", help="JSON Lines of request events (.jsonl or .jsonl.gz)")
    r.add_argument("--out", required=True, help="decisions file (JSON Lines), - for stdout")
    r.add_argument("--config", help="thresholds YAML to backtest")
    r.add_argument("--processes", type=int, choices=(1, 2), default=2 if (os.cpu_count() or 1) >= 2 else 1,
                   help="2: the account stage in a second process, the same decisions on two cores "
                        "(default: 2 where there are two cores)")
    r.set_defaults(func=cmd_replay)

    c = sub.add_parser("compare", help="what changes between two threshold files on one traffic file",
                       description=cmd_compare.__doc__)
    c.add_argument("events", help="JSON Lines of request events (.jsonl or .jsonl.gz)")
    c.add_argument("--config", help="config A (default: the shipped defaults)")
    c.add_argument("--against", required=True, help="config B, the candidate")
    c.add_argument("--labels", help="labels (the scorer's format): count attack and honest accounts, score both")
    c.set_defaults(func=cmd_compare)

    from backtest.score import add_arguments as add_score_arguments

    sc = sub.add_parser("score", help="score decisions against labelled events (leakage, honest accounts hit)",
                        description=cmd_score.__doc__)
    add_score_arguments(sc)
    sc.set_defaults(func=cmd_score)

    b = sub.add_parser("broker", help="run the embedded Kafka-compatible broker", description=cmd_broker.__doc__)
    b.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one)")
    b.set_defaults(func=cmd_broker)

    d = sub.add_parser("demo", help="everything on embedded defaults, decisions live in the terminal",
                       description=cmd_demo.__doc__)
    d.add_argument("--scenario", default="mixed", help="see `ratehound simulate --list`")
    d.add_argument("--scale", type=float, default=0.3, help="size of the honest population")
    d.add_argument("--duration", type=float, default=600.0, help="seconds of simulated traffic")
    d.add_argument("--exit-after", type=float, help="stop by itself after this many seconds")
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--web-port", type=int, default=6066)
    d.set_defaults(func=cmd_demo)

    g = sub.add_parser("gateway", help="HTTP service answering nginx auth_request from the decisions in Redis",
                       description=cmd_gateway.__doc__)
    g.add_argument("--host", default="127.0.0.1")
    g.add_argument("--port", type=int, default=8081)
    g.add_argument("--redis", help="Redis URL (env REDIS_URL, default redis://127.0.0.1:6379/0)")
    g.add_argument("--prefix", help="Redis key prefix (env RATEHOUND_REDIS_PREFIX, default rh)")
    g.add_argument("--config", help="thresholds YAML, for the network prefixes (env RATEHOUND_CONFIG)")
    g.add_argument("--timeout-ms", type=float, default=20.0, help="Redis deadline before failing open")
    g.add_argument("--deny-status", type=int, choices=(401, 403, 429), default=429,
                   help="status of a refusal unless the request asks (header X-Ratehound-Deny-Status)")
    g.add_argument("--loglevel", default="warning")
    g.set_defaults(func=cmd_gateway)

    o = sub.add_parser("decision", help="impose or lift a decision by hand (Redis at once, decisions topic)",
                       description=cmd_decision.__doc__)
    o.add_argument("action", choices=("allow", "block", "throttle", "review"))
    o.add_argument("scope", choices=("account", "network", "asn"))
    o.add_argument("key", help="account id, canonical CIDR (203.0.113.0/24, 2001:db8:42::/48) or ASN")
    o.add_argument("--ttl", default="1h", help="how long it holds: 30s, 15m, 1h, 2d (default 1h)")
    o.add_argument("--reason", required=True, help="short code, recorded as manual:CODE")
    o.add_argument("--limit-rps", type=float, help="with throttle: requests per second let through")
    o.add_argument("--by", help="who decides (default $USER)")
    o.add_argument("--note", help="free text for the audit trail")
    o.add_argument("--redis", help="Redis URL (env REDIS_URL)")
    o.add_argument("--broker", help="Kafka bootstrap (env KAFKA_BROKER)")
    o.add_argument("--config", help="thresholds YAML, for the network prefixes (env RATEHOUND_CONFIG)")
    o.set_defaults(func=cmd_decision)
    return p


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    a = build_parser().parse_args(argv)
    from stream.security import KafkaSecurityError
    from stream.settings import SettingsError

    # Every command reads Settings: a bad one is the same clear message whichever command met it.
    try:
        a.func(a)
    except KafkaSecurityError as exc:
        sys.exit(f"ratehound: bad Kafka security settings: {exc}")
    except SettingsError as exc:
        sys.exit(f"ratehound: bad setting: {exc}")


if __name__ == "__main__":
    main()
