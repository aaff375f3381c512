"""Prometheus metrics of a worker. Labels are bounded sets (outcome, reason, scope, action), never ids."""

from __future__ import annotations

from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from detectors.rules.base import Scope

disable_created_metrics()  # halves the series; nothing here needs creation timestamps

REGISTRY = CollectorRegistry(auto_describe=True)
SINKS = ("redis", "decisions", "dlq")  # the ``sink`` label: stream/sinks/
SCOPES: tuple[str, ...] = get_args(Scope)  # the ``scope`` label: the contract's account, network, asn, payment

EVENTS = Counter("ratehound_events_total", "Request events by outcome", ["outcome"], registry=REGISTRY)
DLQ = Counter("ratehound_dlq_total", "Events sent to the dead-letter topic, by reason", ["reason"], registry=REGISTRY)
DECISIONS = Counter("ratehound_decisions_total", "Decisions published", ["scope", "action", "reason"],
                    registry=REGISTRY)
ACTIVE = Gauge("ratehound_active_enforcements", "The detector's throttles and blocks in force (not those a person "
               "lifted or imposed)", ["scope"], registry=REGISTRY)
LATENCY = Histogram(
    "ratehound_event_to_decision_seconds", "Gateway receive time of the triggering event to decision written",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0), registry=REGISTRY,
)
LAG = Gauge("ratehound_consumer_lag_messages", "Messages behind the partition end", ["topic"], registry=REGISTRY)
LAG_SECONDS = Gauge("ratehound_event_time_lag_seconds", "Wall clock minus the newest event time processed",
                    registry=REGISTRY)
SINK_WRITES = Counter("ratehound_sink_writes_total", "Writes by sink (redis, decisions, dlq) and result",
                      ["sink", "result"], registry=REGISTRY)
SINK_QUEUED = Gauge("ratehound_sink_queued", "Writes queued for a sink to come back", ["sink"], registry=REGISTRY)
TRACKED = Gauge("ratehound_tracked_keys", "Keys with detector state", ["kind"], registry=REGISTRY)
EVICTED = Counter("ratehound_evicted_keys_total", "Keys dropped because a cap was reached", ["kind"],
                  registry=REGISTRY)
RESTORED = Counter("ratehound_state_restored_total", "Keys whose state was reloaded from a table snapshot",
                   ["kind"], registry=REGISTRY)
REREAD = Counter("ratehound_input_reread_total",
                 "Input messages read again after a restart or rebalance and skipped: the restored snapshot held "
                 "their effects", registry=REGISTRY)
CONFIG = Gauge("ratehound_config_info", "Config version in force (value 1)", ["version"], registry=REGISTRY)
BATCH = Histogram("ratehound_batch_events", "Events per processed batch",
                  buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000), registry=REGISTRY)
HEARTBEAT = Gauge("ratehound_last_batch_timestamp_seconds", "Wall time of the last processed batch",
                  registry=REGISTRY)

SINK_UP = Gauge("ratehound_sink_up", "1 while the sink's last write, heartbeat or re-assertion succeeded", ["sink"],
                registry=REGISTRY)
GROUP_OBSERVATIONS = Counter("ratehound_group_observations_total",
                             "Observations the group stages processed (an event counts once per owning partition)",
                             registry=REGISTRY)
GROUP_ERRORS = Counter("ratehound_group_stage_errors_total",
                       "Observations a group stage failed on (their events were counted as processed)",
                       registry=REGISTRY)
SNAPSHOT_ERRORS = Counter("ratehound_snapshot_errors_total", "State snapshots that failed (their input stays "
                          "unacknowledged, to be read again after a restart)", registry=REGISTRY)
CONFIG_RELOADS = Counter("ratehound_config_reloads_total", "Thresholds file reloads by result", ["result"],
                         registry=REGISTRY)

for _outcome in ("processed", "duplicate", "rejected"):
    EVENTS.labels(_outcome)
for _sink in SINKS:
    for _result in ("ok", "error"):
        SINK_WRITES.labels(_sink, _result)
    SINK_QUEUED.labels(_sink)
    SINK_UP.labels(_sink).set(1)
for _kind in ("account", "network", "cluster"):
    EVICTED.labels(_kind)
    TRACKED.labels(_kind)
RESTORED.labels("account")
for _result in ("ok", "error"):
    CONFIG_RELOADS.labels(_result)
for _scope in SCOPES:
    ACTIVE.labels(_scope)
