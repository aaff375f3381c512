"""A campaign of abuse carried out with any `Tactics`: the one attack actor that covers the threat model.

What it stands for, by its choices: distillation operations that harvest long answers
through thousands of fresh accounts on residential proxies, replacing each account as
it is banned; slow drips of one request an hour per account across a proxy pool for
days; farms of aged accounts and accounts bought with a history; stolen keys of quiet
accounts driven from a rented server; long-context extraction whose answers are no
longer than its questions; free-tier abuse without a card; campaigns that move to a
model the day it is released. Real operations of each kind are documented in
providers' abuse reports (thousands of accounts, tens of millions of exchanges over
weeks, each account under any per-account limit).

Labels: every account is an attack account of the campaign's group; its onset is its
own first abusive request. A farmed, bought or stolen account's earlier ordinary use
(the farmer's warm-up, the previous or still-present owner) comes before that onset,
from the owner's home network and client where there is an owner.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

from .accounts import Account, make_event
from .addresses import RESIDENTIAL_ASNS
from .clients import BROWSER_UAS, SDK_UAS, TOOL_UAS, human_tokens, human_ua, pick_model
from .draws import log_uniform, lognormal_int
from .fingerprints import Topics, payment_fp, random_fp, to_hex
from .providers import Providers
from .rhythm import DAY
from .tactics import AGES, Tactics
from .world import World

UA_POOL_MEMBERS = {
    "sdk": SDK_UAS,
    "browser": BROWSER_UAS,
    "tools": TOOL_UAS,
    "mixed": SDK_UAS + BROWSER_UAS + TOOL_UAS,
}
# requests of ordinary use an account shows before its onset, by age kind: (fewest, most)
HISTORY = {"fresh": (0, 0), "farmed": (1, 3), "bought": (0, 4), "stolen": (0, 2)}


@dataclass(slots=True)
class Member:
    """One account of a campaign: when it works, at what pace, and its earlier ordinary use."""

    account: Account
    index: int
    kind: str
    start: float
    end: float
    gap: float
    ratio: float
    history: list[float]


class Cards:
    """Payment fingerprints handed out in order of sign-up: a new card every accounts_per_card accounts
    on average (exactly one per account at 1; none at all at 0).

    >>> c = Cards(random.Random(1), 1.0)
    >>> len({c.next() for _ in range(50)})
    50
    >>> c = Cards(random.Random(1), 10.0)
    >>> 2 <= len({c.next() for _ in range(100)}) <= 20
    True
    >>> Cards(random.Random(1), 0.0).next() is None
    True
    """

    def __init__(self, rng: random.Random, accounts_per_card: float) -> None:
        self._rng, self._per = rng, accounts_per_card
        self._card: str | None = None
        self._left = 0

    def next(self) -> str | None:
        if self._per == 0:
            return None
        if self._left <= 0:
            self._card = payment_fp(self._rng)
            per = self._per
            self._left = 1 if per <= 1.0 else max(1, round(per * self._rng.uniform(0.5, 1.5)))
        self._left -= 1
        return self._card


class Campaign:
    """One campaign: accounts planned at build time from tactics (who, when, how fast, which card),
    requests drawn while streaming (exit, tokens, prompt, model).

    onset is when the campaign begins; group names its accounts in the labels. A
    campaign with model_switch needs the world to have a model release: all its
    accounts move to the new model at one moment, minutes after the release.
    """

    def __init__(
        self, world: World, tag: str, tactics: Tactics, providers: Providers, *, onset: float, group: str
    ) -> None:
        self.world, self.tag, self.tactics, self.onset, self.group = world, tag, tactics, onset, group
        # one rng per concern, so that variants differing in one choice share all the others
        self.exits = providers.rent(tactics.exit_kind, tactics.exits, world.rng(tag, "exits"))
        rng = world.rng(tag, "clients")
        self.topics = Topics(rng, n=tactics.templates, max_flips=tactics.template_flips)
        pool = UA_POOL_MEMBERS[tactics.user_agents]
        self.uas = rng.sample(pool, min(len(pool), rng.randint(1, 3)))
        self.switch_at = math.inf
        if tactics.model_switch:
            if world.release is None:
                raise ValueError(f"campaign {tag!r} switches to a new model, but the world has no release")
            self.release_model = world.release.model
            self.switch_at = world.release.ts + rng.uniform(60.0, 1800.0)
        self.slots = self._plan(world.rng(tag, "plan"))
        members = sorted((m for lives in self.slots for m in lives), key=lambda m: m.start)
        cards = Cards(world.rng(tag, "cards"), tactics.accounts_per_card)
        for m in members:  # cards in order of sign-up
            m.account.payment_fp = cards.next()
        self.accounts = [m.account for m in members]
        rng = world.rng(tag, "owners")
        self._owners = {
            m.index: world.internet.net(rng.choice(RESIDENTIAL_ASNS))
            for m in members
            if m.history and m.kind in ("bought", "stolen")
        }

    def _first_start(self, rng: random.Random) -> float:
        t, w = self.tactics, self.world
        if t.arrival == "onset":
            return self.onset + rng.uniform(0.0, 60.0)
        if t.arrival == "trickle":
            return self.onset + rng.uniform(0.0, w.t1 - self.onset)
        return self.onset + rng.uniform(0.0, t.ramp_s)

    def _plan(self, rng: random.Random) -> list[list[Member]]:
        t, w = self.tactics, self.world
        slots: list[list[Member]] = []
        index = 0
        for _ in range(t.accounts):
            start = self._first_start(rng)
            lives: list[Member] = []
            while start < w.t1:
                life = log_uniform(rng, *t.life_s) if t.life_s else math.inf
                kind = rng.choice(t.age)
                created = round(start - log_uniform(rng, *AGES[kind]) * DAY, 3)
                acct = Account(w.ids.new(), created, label="attack", group=self.group, onset=round(start, 3))
                lo, hi = HISTORY[kind]
                room = start - 1.0 - max(w.t0, created)
                n = rng.randint(lo, hi) if room > 0 else 0
                history = sorted(round(start - 1.0 - rng.random() * room, 3) for _ in range(n))
                lives.append(
                    Member(
                        acct,
                        index,
                        kind,
                        start,
                        min(start + life, w.t1),
                        t.gap_s * math.exp(rng.gauss(0.0, t.pace_spread)),
                        min(8.0, max(0.5, t.ratio * math.exp(rng.gauss(0.0, 0.1)))),
                        history,
                    )
                )
                index += 1
                if t.arrival != "replace":
                    break
                # the replacement needs a moment to be registered and configured
                start += life + rng.uniform(5.0, 120.0)
            if lives:
                slots.append(lives)
        return slots

    def streams(self) -> list[Iterator[dict]]:
        out = [self._work(i, lives) for i, lives in enumerate(self.slots)]
        out += [self._history(m) for lives in self.slots for m in lives if m.history]
        return out

    def _history(self, m: Member) -> Iterator[dict]:
        """The account's ordinary use before its onset: the farmer keeping it warm from the campaign's
        exits, or its owner at home."""
        w = self.world
        rng = w.rng(self.tag, "history", m.index)
        owner = self._owners.get(m.index)
        if owner is not None:
            ip, asn = owner.host(rng), owner.asn
            ua = human_ua(rng)
        else:
            ip, asn = self.exits.pick(rng)
            ua = rng.choice(self.uas)
        for t in m.history:
            inp, out = human_tokens(rng)
            yield make_event(m.account, t, ip, asn, ua, pick_model(rng), inp, out, w.catalog.draw(rng))

    def _work(self, i: int, lives: list[Member]) -> Iterator[dict]:
        """The abusive requests of one slot's accounts, one after the other."""
        t_, exits = self.tactics, self.exits
        rng = self.world.rng(self.tag, "events", i)
        rotation, templated = t_.rotation, t_.prompts == "templates"
        sample_topic, switch_at = self.topics.sample, self.switch_at
        out_median = t_.output_tokens
        for m in lives:
            acct, ua = m.account, rng.choice(self.uas)
            ip, asn = exits.at(m.index, rng)
            left = rng.randint(1, 10)
            t = m.start
            while t < m.end:
                if rotation == "request":
                    ip, asn = exits.pick(rng)
                elif rotation == "session":
                    if left <= 0:
                        ip, asn = exits.pick(rng)
                        left = rng.randint(1, 10)
                    left -= 1
                out = lognormal_int(rng, out_median, 0.3, 1, 8192)
                inp = max(1, round(out / (m.ratio * math.exp(rng.gauss(0.0, 0.1)))))
                model = self.release_model if t >= switch_at else t_.model
                fp = sample_topic(rng) if templated else to_hex(random_fp(rng))
                yield make_event(acct, t, ip, asn, ua, model, inp, out, fp)
                t += m.gap * rng.uniform(0.5, 1.5)
