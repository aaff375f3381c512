"""The ``ratehound`` command.

Every bad input, whether a setting, a thresholds file, a path, a URL or a broker, ends the
command with one line on stderr that names it (``ratehound <command>: ...``), exit status 1,
or 2 for flags that do not go together. An output file is written to a temporary file beside
it and moved into place only when it is complete: a failed or interrupted run leaves none.

``broker``, ``demo`` and ``simulate --kafka`` run the development harness (lab/), imported by
those commands only: the worker, gateway and decision paths load nothing from it.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import get_args

from detectors.config import ConfigError, DetectorConfig, load_config
from detectors.rules.base import Scope
from stream.files import READ_ERRORS, OutputError, file_problem, written_whole
from stream.settings import Settings, SettingsError

# Flags that give a setting, by argparse dest: they feed Settings as its fields, and an error names the flag.
SETTING_FLAGS = {"broker": "kafka_broker", "redis": "redis_url", "config": "config_path", "web_port": "web_port",
                 "partitions": "partitions", "prefix": "redis_prefix"}


class CommandError(Exception):
    """What stops a command, in one line for a person (printed after ``ratehound <command>: ``)."""


def _settings(a: argparse.Namespace) -> Settings:
    """Settings from the environment and this command's flags (a flag wins)."""
    given = {field: getattr(a, dest) for dest, field in SETTING_FLAGS.items() if getattr(a, dest, None) is not None}
    return Settings(**given)


def _config(path: str | None, load: Callable[[str | None], DetectorConfig] = load_config) -> DetectorConfig:
    """The thresholds file at ``path`` (the defaults when None), or one line saying what is wrong with it."""
    try:
        if path is not None:
            Path(path).open("rb").close()  # a missing or unreadable file, said as for any other file
        return load(path)
    except ConfigError as exc:
        raise CommandError(f"bad config: {exc}") from None
    except OSError as exc:
        raise CommandError(f"bad config: {file_problem(path or '', exc)}") from None


# --------------------------------------------------------------------------- commands


def cmd_worker(a: argparse.Namespace) -> None:
    """Run a worker until SIGTERM or Ctrl-C: requests in, decisions to Redis, the decisions topic and /metrics."""
    from stream.reload import load_versioned
    from stream.security import KafkaLoginError, check_kafka_login
    from stream.sinks.redis import redis_refusal
    from stream.topics import ensure_topics

    settings = _settings(a)  # a bad setting stops here, before any connection
    cfg = _config(settings.config_path, load_versioned)
    if settings.kafka_security.protocol != "PLAINTEXT":
        try:
            check_kafka_login(settings.bootstrap, settings.kafka_security)
        except KafkaLoginError as exc:
            raise CommandError(str(exc)) from None
    refusal = redis_refusal(settings.redis_url)
    if refusal is not None:
        raise CommandError(f"redis at {settings.redis_address} refuses the worker: {refusal} (REDIS_URL)")
    _wait_for_broker(settings)
    ensure_topics(settings)

    from stream.launch import run_worker

    run_worker(settings, cfg, a.loglevel)


def cmd_simulate(a: argparse.Namespace) -> None:
    """Write a labelled scenario to files, or produce it to Kafka in real time."""
    import traffic
    from traffic.files import write_events, write_labels

    if a.list:
        for name, desc in traffic.SCENARIOS.items():
            print(f"{name:26} {desc}")
        return
    if a.scenario not in traffic.SCENARIOS:
        raise CommandError(f"unknown scenario {a.scenario!r}: one of {', '.join(traffic.SCENARIOS)}")
    settings = _settings(a) if a.kafka else None
    if settings is not None:  # before the files: a run that cannot produce writes nothing either
        _wait_for_broker(settings)
    timing: dict[str, float] = {"t0": a.t0} if a.t0 is not None else {"t0": time.time()} if a.kafka else {}
    sim = traffic.generate(a.scenario, seed=a.seed, duration_s=a.duration, scale=a.scale, **timing)
    with ExitStack() as files:
        labels = files.enter_context(written_whole(a.labels)) if a.labels else None
        out = files.enter_context(written_whole(a.out)) if a.out else None
        try:
            if labels is not None:
                write_labels(sim.labels(), labels)
            n = write_events(sim.events(), out) if out is not None else 0
        except OSError as exc:
            raise CommandError(f"cannot write {a.out or a.labels}: {exc.strerror or exc}") from None
    if a.out:
        print(f"wrote {n} events to {a.out}" + (f", labels to {a.labels}" if a.labels else ""), file=sys.stderr)
    if settings is not None:
        from kafka.errors import KafkaError

        from lab.producer import produce_live
        from stream.topics import quiet_kafka_python

        try:
            with quiet_kafka_python():
                n = produce_live(sim.events(), settings, speed=a.speed, batch=a.batch, max_events=a.max_events)
        except KafkaError as exc:
            raise CommandError(f"kafka at {settings.bootstrap}: {exc!r}") from None
        except KeyboardInterrupt:
            raise CommandError("interrupted") from None
        print(f"produced {n} events", file=sys.stderr)


def _check_simulate(a: argparse.Namespace) -> str | None:
    """What is impossible in these flags, if anything. The Kafka-only flags default to None, to tell a
    flag given from one left alone; left alone, they get their defaults here."""
    if a.list:
        return None
    if not (a.out or a.kafka or a.labels):
        return "give --out (and --labels) to write files, or --kafka to produce to the requests topic"
    if not a.kafka:
        given = [flag for flag, value in (("--broker", a.broker), ("--speed", a.speed), ("--batch", a.batch),
                                          ("--max-events", a.max_events)) if value is not None]
        if given:
            return f"{', '.join(given)}: only with --kafka"
    a.speed = 1.0 if a.speed is None else a.speed
    a.batch = 100 if a.batch is None else a.batch
    return None


def _wait_for_broker(settings: Settings) -> None:
    from stream.topics import BrokerUnreachable, wait_for_broker

    try:
        wait_for_broker(settings)
    except BrokerUnreachable as exc:
        raise CommandError(str(exc)) from None


def cmd_replay(a: argparse.Namespace) -> None:
    """Run the detector over a recorded file; decisions as JSON Lines."""
    from backtest.replay import ReplayStats, replay_to_file

    cfg = _config(a.config)
    gc.set_threshold(50_000, 50, 100)  # as a worker (stream/launch.py): millions of small long-lived states
    stats = ReplayStats()
    t = time.perf_counter()
    try:
        if a.out == "-":
            replay_to_file(a.events, cfg, sys.stdout.buffer, stats, processes=a.processes)
        else:
            with written_whole(a.out) as tmp, open(tmp, "wb") as out:
                replay_to_file(a.events, cfg, out, stats, processes=a.processes)
    except KeyboardInterrupt:
        raise CommandError(f"interrupted after reading {stats.events:,} events"
                           + ("" if a.out == "-" else f"; {a.out} not written")) from None
    except BrokenPipeError:  # `--out - | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        sys.exit(1)
    except READ_ERRORS as exc:
        raise CommandError(file_problem(a.events, exc) + ("" if a.out == "-" else f"; {a.out} not written")) \
            from None
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
        if a.decisions:
            from backtest.compare import compare_decisions

            report = compare_decisions(a.decisions[0], a.decisions[1], labels=a.labels, events=a.events)
        else:
            report = compare(a.events, a.config, a.against, a.labels)
    except InputError as exc:
        raise CommandError(str(exc)) from None
    except READ_ERRORS as exc:
        raise CommandError(file_problem(a.events, exc)) from None
    print(json.dumps(report, indent=1))


def _check_compare(a: argparse.Namespace) -> str | None:
    if a.decisions is not None:
        return "--against and --config: not with --decisions" if a.against or a.config else None
    return None if a.events and a.against else "give EVENTS --against CONFIG, or --decisions A B"


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
    from stream.sinks.redis import redis_refusal

    settings = _settings(a)
    net = _config(settings.config_path).network
    refusal = redis_refusal(settings.redis_url)
    if refusal is not None:
        raise CommandError(f"redis at {settings.redis_address} refuses the gateway: {refusal} (REDIS_URL)")
    logging.getLogger().setLevel(a.loglevel.upper())
    serve(settings.redis_url, host=a.host, port=a.port, prefix=settings.redis_prefix, ipv4_prefix=net.ipv4_prefix,
          ipv6_prefix=net.ipv6_prefix, timeout_s=a.timeout_ms / 1000.0, deny_status=a.deny_status)


def cmd_decision(a: argparse.Namespace) -> None:
    """Impose or lift a decision by hand: in force in Redis at once, and on the decisions topic for the audit."""
    from detectors.policy import encode_decision
    from stream.overrides import ApplyError, OverrideError, apply, build_override

    settings = _settings(a)
    net = _config(settings.config_path).network
    try:
        d = build_override(a.action, a.scope, a.key, a.ttl, a.reason, limit_rps=a.limit_rps, by=a.by, note=a.note,
                           ipv4_prefix=net.ipv4_prefix, ipv6_prefix=net.ipv6_prefix)
    except OverrideError as exc:
        print(f"ratehound decision: error: {exc}", file=sys.stderr)
        sys.exit(2)
    # The sink's retry warnings are for a worker's log; here the outcome is said once, below.
    logging.getLogger("stream.sinks").setLevel(logging.CRITICAL)
    try:
        apply(d, settings)
    except ApplyError as exc:
        raise CommandError(f"failed: {exc}") from None
    print(encode_decision(d).decode())


# --------------------------------------------------------------------------- the parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ratehound", description="ratehound: real-time detector of abusive API "
                                "traffic. Commands below; `ratehound COMMAND --help` for each.")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def command(name: str, func: Callable[[argparse.Namespace], None], summary: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=summary, description=func.__doc__)
        c.set_defaults(func=func, check=None)
        return c

    w = command("worker", cmd_worker, "run a worker: requests -> decisions in Redis, Kafka, /metrics "
                "(needs a broker and Redis)")
    w.add_argument("--broker", help=Settings.describe("kafka_broker"))
    w.add_argument("--redis", help=Settings.describe("redis_url"))
    w.add_argument("--config", help=Settings.describe("config_path"))
    w.add_argument("--web-port", type=int, help=Settings.describe("web_port"))
    w.add_argument("--partitions", type=int, help=Settings.describe("partitions"))
    w.add_argument("--loglevel", default="warning")

    s = command("simulate", cmd_simulate, "labelled simulated traffic to files, or to Kafka (--kafka needs a broker)")
    s.add_argument("--scenario", default="mixed", help="see --list")
    s.add_argument("--list", action="store_true", help="list the scenarios")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--duration", type=float, help="seconds of traffic (default: the scenario's own, mostly 3600)")
    s.add_argument("--scale", type=float, help="size of the honest population (default: the scenario's own)")
    s.add_argument("--t0", type=float, help="start time (default: now with --kafka, else a fixed date)")
    s.add_argument("--out", help="events file (.jsonl or .jsonl.gz)")
    s.add_argument("--labels", help="labels file (.json or .json.gz), the scorer's format")
    s.add_argument("--kafka", action="store_true", help="produce to the requests topic in real time")
    s.add_argument("--broker", help=Settings.describe("kafka_broker"))
    s.add_argument("--speed", type=float, help="with --kafka: x real time (default 1 = event time)")
    s.add_argument("--batch", type=int, help="with --kafka: events per message, a JSON array (default 100); "
                                             "1 = objects")
    s.add_argument("--max-events", type=int, help="with --kafka: stop after this many events")
    s.set_defaults(check=_check_simulate)

    r = command("replay", cmd_replay, "run the detector over a recorded file (no broker, no Redis)")
    r.add_argument("events", help="JSON Lines of request events (.jsonl or .jsonl.gz)")
    r.add_argument("--out", required=True, help="decisions file (JSON Lines), - for stdout")
    r.add_argument("--config", help="thresholds YAML to backtest")
    r.add_argument("--processes", type=int, choices=(1, 2), default=2 if (os.cpu_count() or 1) >= 2 else 1,
                   help="2: the account stage in a second process, the same decisions on two cores "
                        "(default: 2 where there are two cores)")

    c = command("compare", cmd_compare, "what changes between two threshold files on one traffic file, or between "
                "two decisions files (no broker, no Redis)")
    c.add_argument("events", nargs="?", help="JSON Lines of request events (.jsonl or .jsonl.gz)")
    c.add_argument("--config", help="config A (default: the shipped defaults)")
    c.add_argument("--against", help="config B, the candidate")
    c.add_argument("--decisions", nargs=2, metavar=("A", "B"),
                   help="compare two decisions files (a shadow run's, replay's) instead of replaying EVENTS")
    c.set_defaults(check=_check_compare)
    c.add_argument("--labels", help="labels (the scorer's format): count attack and honest accounts, score both")

    from backtest.score import add_arguments as add_score_arguments

    sc = command("score", cmd_score, "score decisions against labelled events: leakage, honest accounts hit "
                 "(no broker, no Redis)")
    add_score_arguments(sc)

    b = command("broker", cmd_broker, "run the embedded Kafka-compatible broker, for development")
    b.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one)")

    d = command("demo", cmd_demo, "broker, Redis, a worker and live attacks on embedded defaults; "
                "decisions in the terminal")
    d.add_argument("--scenario", default="mixed", help="see `ratehound simulate --list`")
    d.add_argument("--scale", type=float, default=0.3, help="size of the honest population")
    d.add_argument("--duration", type=float, default=600.0, help="seconds of simulated traffic")
    d.add_argument("--exit-after", type=float, help="stop by itself after this many seconds")
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--web-port", type=int, help=Settings.describe("web_port"))

    g = command("gateway", cmd_gateway, "HTTP service answering nginx auth_request from the decisions in Redis "
                "(needs Redis)")
    g.add_argument("--host", default="127.0.0.1")
    g.add_argument("--port", type=int, default=8081)
    g.add_argument("--redis", help=Settings.describe("redis_url"))
    g.add_argument("--prefix", help=Settings.describe("redis_prefix"))
    g.add_argument("--config", help="thresholds YAML, for the network prefixes (env RATEHOUND_CONFIG)")
    g.add_argument("--timeout-ms", type=float, default=20.0, help="Redis deadline before failing open")
    g.add_argument("--deny-status", type=int, choices=(401, 403, 429), default=429,
                   help="status of a refusal unless the request asks (header X-Ratehound-Deny-Status)")
    g.add_argument("--loglevel", default="warning")

    o = command("decision", cmd_decision, "impose or lift a decision by hand: Redis at once, then the decisions "
                "topic (needs Redis and a broker)")
    o.add_argument("action", choices=("allow", "block", "throttle", "review"))
    o.add_argument("scope", choices=get_args(Scope),
                   help="payment: the card (payment_fp) and every account billed to it, also ones opened later")
    o.add_argument("key", help="account id, canonical CIDR (203.0.113.0/24, 2001:db8:42::/48), ASN or payment_fp")
    o.add_argument("--ttl", default="1h", help="how long it holds: 30s, 15m, 1h, 2d (default 1h)")
    o.add_argument("--reason", required=True, help="short code, recorded as manual:CODE")
    o.add_argument("--limit-rps", type=float, help="with throttle: requests per second let through")
    o.add_argument("--by", help="who decides (default $USER)")
    o.add_argument("--note", help="free text for the audit trail")
    o.add_argument("--redis", help=Settings.describe("redis_url"))
    o.add_argument("--broker", help=Settings.describe("kafka_broker"))
    o.add_argument("--config", help="thresholds YAML, for the network prefixes (env RATEHOUND_CONFIG)")
    return p


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.check is not None and (problem := a.check(a)) is not None:
        parser.exit(2, f"ratehound {a.cmd}: error: {problem}\n")
    from stream.security import KafkaSecurityError

    # Every command reads Settings: a bad one is the same clear message whichever command met it.
    try:
        a.func(a)
    except KafkaSecurityError as exc:
        sys.exit(f"ratehound: bad Kafka security settings: {exc}")
    except SettingsError as exc:
        flag = next((f"--{dest.replace('_', '-')}" for dest, field in SETTING_FLAGS.items()
                     if field == exc.field and getattr(a, dest, None) is not None), None)
        sys.exit(f"ratehound: bad setting: {flag}: {exc.detail}" if flag else f"ratehound: bad setting: {exc}")
    except (CommandError, OutputError) as exc:
        sys.exit(f"ratehound {a.cmd}: {exc}")


if __name__ == "__main__":
    main()
