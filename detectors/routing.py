"""Where an observation goes among the group stages, and what each stage does with it.

The one routing of the worker, of replay and of the tests. Group state is partitioned by group key (a
network, an ASN, a cluster), so one observation may concern several stages. It visits, in order:

1. the stage holding its network, which observes the network (and the ASN, when the same stage holds
   it; otherwise the ASN's stage gets its own copy, which goes nowhere further);
2. its cluster keys in order, a run of keys held by one stage at a time, handing on whether a campaign
   was found on an earlier key (the card, last, remembers it).

With one partition every key is held by one stage and the visit is one step, as replay runs it.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable

from detectors.clusters import cluster_keys
from detectors.config import ClusterConfig
from detectors.group_stage import GroupStage
from detectors.network import asn_key
from detectors.observation import Observation
from detectors.policy import Decision

# An observation on its way: the network keys the next stage holds (empty once they are observed), its
# cluster keys still to visit, in order, and what its visit found so far: -1 before its network is
# observed, then 1 once a conclusive rule fired on it, else 0.
GroupItem = tuple[Observation, list[str], list[str], int]


def partition_of(key: str, partitions: int) -> int:
    """The partition a key belongs to on ratehound's internal topics (stable across processes).

    >>> partition_of("acct_1", 4) == partition_of("acct_1", 4)
    True
    """
    return zlib.crc32(key.encode()) % partitions


class GroupRouter:
    """The visit of observations to the group stages of ``partitions`` partitions.

    ``partition`` maps a key to its partition (a memo of ``partition_of`` in the worker).

    >>> from detectors.config import DetectorConfig
    >>> o = Observation(1.0, "a", "198.51.100.0/24", 1, 64500, True, True, 0.0, 1, 1, 0.0, None, None, "p",
    ...                 3.0, 2)
    >>> [(p, item[1:]) for p, item in GroupRouter(DetectorConfig().cluster, 1).first_stops(o)]
    [(0, (['198.51.100.0/24', 'AS64500'], ['pay:p'], -1))]
    """

    def __init__(self, ccfg: ClusterConfig, partitions: int, partition: Callable[[str], int] | None = None):
        self.ccfg = ccfg
        self.partitions = partitions
        if partition is None:
            partition = (lambda key: 0) if partitions == 1 else (lambda key: partition_of(key, partitions))
        self.partition = partition

    def first_stops(self, o: Observation) -> list[tuple[int, GroupItem]]:
        """Where an observation goes first: its network's partition (with the cluster keys to visit next),
        and its ASN's, on its own, when another partition holds it."""
        clusters = cluster_keys(o.prompt_fp, o.payment_fp, o.user_agent, o.created, self.ccfg)
        part = self.partition
        net_p = part(o.net)
        if o.asn is None:
            return [(net_p, (o, [o.net], clusters, -1))]
        asn = asn_key(o.asn)
        asn_p = part(asn)
        if asn_p == net_p:
            return [(net_p, (o, [o.net, asn], clusters, -1))]
        return [(net_p, (o, [o.net], clusters, -1)), (asn_p, (o, [asn], [], -1))]

    def visit(self, stage: GroupStage, p: int, item: GroupItem,
              decisions: list[Decision]) -> tuple[int, GroupItem] | None:
        """What the stage of partition ``p`` holds of the item, observed; where it goes next, if anywhere."""
        o, nets, to_visit, found = item
        if found < 0:
            found = stage.observe_networks(o, nets, decisions)
        part = self.partition
        i, n = 0, len(to_visit)
        while i < n:
            if part(to_visit[i]) != p:
                return part(to_visit[i]), (o, [], to_visit[i:], found)
            j = i + 1
            while j < n and part(to_visit[j]) == p:
                j += 1
            found = stage.observe_clusters(o, to_visit[i:j], found, decisions)
            i = j
        return None

    def visit_all_here(self, stage: GroupStage, o: Observation, decisions: list[Decision]) -> None:
        """One observation's whole visit, every stop at ``stage``: with one partition (replay), one
        stage holds every key."""
        for p, item in self.first_stops(o):
            self.visit(stage, p, item, decisions)

    def visit_held(self, work: Iterable[tuple[int, GroupItem]], held: Callable[[int], GroupStage | None],
                   decisions: list[Decision],
                   on_error: Callable[[Exception], None] | None = None
                   ) -> tuple[dict[int, list[GroupItem]], int]:
        """Visit each item bound for a partition whose stage is held here (``held(p)`` is not None), in the
        order given (event order), following it from stage to stage while it stays here before taking the
        next: what one process decides, a worker holding every partition decides. Returns what goes to
        other partitions, and how many visits were made here."""
        away: dict[int, list[GroupItem]] = defaultdict(list)
        visit = self.visit
        visits = 0
        for p, item in work:
            while True:
                stage = held(p)
                if stage is None:
                    away[p].append(item)
                    break
                visits += 1
                try:
                    nxt = visit(stage, p, item, decisions)
                except Exception as exc:
                    if on_error is None:
                        raise
                    on_error(exc)  # the event was processed and counted upstream: only its groups fail
                    break
                if nxt is None:
                    break
                p, item = nxt
        return away, visits
