"""Honest people who look like attackers on one signal or another, each group labelled benign with
its own group name.

- ``rotating_newcomer``: new accounts reaching the API through a consumer VPN or a
  mobile carrier's NAT, so their address changes every session (or every request) and
  is shared with thousands; many start from quick-start prompts, some ask for long
  answers. Privacy-minded newcomers and people on phones look like a proxy campaign's
  fresh accounts.
- ``long_answers``: people who ask for essays, whole programs and reports: output
  several times the input, like a distillation harvest.
- ``signup_wave``: a launch day of one app (a Product Hunt or Hacker News launch):
  within an hour or two hundreds of its users open accounts, each from home with
  their own card, and run the app's onboarding prompts with long answers before
  going their own way. A cohort of fresh accounts with one client and shared
  prompts, like a sign-up campaign.
- ``org_seats``: organisations whose seats are billed to one card, a few seats added
  today, using the org's shared prompt library: many accounts, one card, shared
  prompts.
- ``agent_tool``: users of one coding agent: the same user agent, a system prompt
  that dominates every request's SimHash, and loops of requests seconds apart while
  the agent works; accounts of every age, each on its own network and card.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from .accounts import Account, make_event
from .addresses import BUSINESS_ASNS, RESIDENTIAL_ASNS
from .benign import Human, Tokens, customer, home_line, plan_sessions
from .clients import SDK_UAS, human_tokens, human_ua, long_answer_tokens
from .draws import geometric_count, log_uniform, lognormal, lognormal_int
from .fingerprints import Topics, payment_fp
from .providers import Exits, Providers
from .world import World

APP_NAMES = ("notewise", "draftly", "gitscribe", "slidecraft", "mailmind", "studybuddy")
AGENT_NAMES = ("codewright", "shipit-agent", "devloop", "patchpilot")


def _mixed_tokens(long_share: float) -> Tokens:
    """Tokens of someone who asks for a long answer in long_share of their requests."""

    def tokens(rng: random.Random) -> tuple[int, int]:
        return long_answer_tokens(rng) if rng.random() < long_share else human_tokens(rng)

    return tokens


def active_sessions(
    world: World, rng: random.Random, per_hour: tuple[float, float], *, office: bool = False
) -> list[float] | None:
    """Session starts of one person (per_hour drawn log-uniform, following people's or office
    hours), or None when they have none in the window, only a warm-up session before it."""
    r = world.rhythm
    curve, top = (r.workers, r.max_workers) if office else (r.people, r.max_people)
    sessions = plan_sessions(rng, world, log_uniform(rng, *per_hour), curve, top)
    return sessions if sessions and sessions[-1] >= world.t0 else None


def rotating_newcomers(world: World, providers: Providers, n: int) -> list[Human]:
    """New people behind a VPN or a phone: a new address each session (some VPNs: each request)."""
    out = []
    for i in range(n):
        tag = f"rotating_newcomer/{i}"
        rng = world.rng(tag, "plan")
        sessions = active_sessions(world, rng, (0.5, 3.0))
        if sessions is None:
            continue
        created = round(sessions[0] - log_uniform(rng, 300.0, 3 * 86400.0), 3)
        mobile = rng.random() < 0.4
        exits = providers.mobile if mobile else providers.vpn
        # a free trial has no card on file
        card = payment_fp(rng) if rng.random() < 0.7 else None
        acct = Account(world.ids.new(), created, group="rotating_newcomer", payment_fp=card)
        out.append(
            Human(
                world,
                tag,
                acct,
                sessions=sessions,
                place=exits.pick,
                sticky=mobile or rng.random() < 0.7,
                ua=human_ua(rng),
                session_len=rng.uniform(3.0, 15.0),
                gap_median=log_uniform(rng, 15.0, 70.0),
                prompt=world.catalog.habit(rng, shared=(0.2, 0.7)),
                tokens=_mixed_tokens(rng.uniform(0.5, 0.9) if rng.random() < 0.4 else 0.0),
            )
        )
    return out


def long_answers(world: World, providers: Providers, n: int) -> list[Human]:
    """People of any account age, at home, who mostly ask for long answers."""
    out = []
    for i in range(n):
        tag = f"long_answers/{i}"
        rng = world.rng(tag, "plan")
        sessions = active_sessions(world, rng, (0.3, 2.5))
        if sessions is None:
            continue
        net = world.internet.net(rng.choice(RESIDENTIAL_ASNS))
        acct = customer(world, rng, "long_answers", (0.2, 1500.0))
        out.append(
            Human(
                world,
                tag,
                acct,
                sessions=sessions,
                place=home_line(net, rng),
                ua=human_ua(rng),
                session_len=rng.uniform(3.0, 15.0),
                gap_median=log_uniform(rng, 30.0, 120.0),
                prompt=world.catalog.habit(rng),
                tokens=_mixed_tokens(rng.uniform(0.6, 1.0)),
            )
        )
    return out


def signup_wave(world: World, providers: Providers, n: int) -> list[Human]:
    """One app's launch: n of its users open accounts within an hour or two and start from its
    onboarding prompts (long answers), then use the API their own way."""
    rng = world.rng("signup_wave", "plan")
    launch = world.t0 + rng.uniform(-0.1, 0.3) * world.duration
    span = rng.uniform(1.0, 2.0) * 3600.0
    app = f"{rng.choice(APP_NAMES)}/{rng.randint(1, 3)}.{rng.randint(0, 9)}.{rng.randint(0, 20)}"
    app_ua = f"{app} {rng.choice(SDK_UAS)}"
    onboarding = Topics(rng, n=rng.randint(3, 8), max_flips=3)
    r = world.rhythm
    out = []
    for i in range(n):
        tag = f"signup_wave/{i}"
        prng = world.rng(tag, "plan")
        # launch traffic is front-loaded: most sign-ups come in its first half hour
        created = launch + span * prng.random() ** 2
        first = created + log_uniform(prng, 20.0, 1200.0)
        if first >= world.t1:
            continue
        later = plan_sessions(
            prng, world, log_uniform(prng, 0.5, 3.0), r.people, r.max_people, start=first + 300.0
        )
        mobile = prng.random() < 0.2
        place = (
            providers.mobile.pick
            if mobile
            else home_line(world.internet.net(prng.choice(RESIDENTIAL_ASNS)), prng)
        )
        acct = Account(world.ids.new(), round(created, 3), group="signup_wave", payment_fp=payment_fp(prng))
        out.append(
            Human(
                world,
                tag,
                acct,
                sessions=[first, *later],
                place=place,
                ua=app_ua if prng.random() < 0.8 else human_ua(prng),
                session_len=prng.uniform(4.0, 15.0),
                gap_median=log_uniform(prng, 15.0, 60.0),
                prompt=world.catalog.habit(prng),
                first=(prng.randint(3, 10), onboarding.sample, long_answer_tokens),
            )
        )
    return out


def org_seats(world: World, providers: Providers, n: int) -> list[Human]:
    """n organisations: every seat billed to the org's one card, most at the office NAT, some remote,
    some seats added today, a shared prompt library."""
    out = []
    for o in range(n):
        rng = world.rng("org", o, "plan")
        card = payment_fp(rng)
        founded = log_uniform(rng, 60.0, 1500.0)
        office = world.internet.net(rng.choice(BUSINESS_ASNS))
        office_ips, asn = office.hosts(rng, rng.randint(1, 4)), office.asn
        remote = rng.uniform(0.0, 0.8)
        library = Topics(rng, n=rng.randint(2, 10), max_flips=3)
        for s in range(round(log_uniform(rng, 5.0, 100.0))):
            tag = f"org/{o}/{s}"
            prng = world.rng(tag, "plan")
            sessions = active_sessions(world, prng, (0.3, 2.0), office=True)
            if sessions is None:
                continue
            if prng.random() < 0.1:  # a seat added today: the new hire's first session is today
                created = round(sessions[0] - log_uniform(prng, 300.0, 12 * 3600.0), 3)
            else:
                created = world.days_ago(log_uniform(prng, 1.0, founded))
            if prng.random() < remote:
                place = home_line(world.internet.net(prng.choice(RESIDENTIAL_ASNS)), prng)
            else:
                ip = prng.choice(office_ips)
                place = lambda _r, ip=ip, asn=asn: (ip, asn)  # noqa: E731
            habit = world.catalog.habit(prng)
            out.append(
                Human(
                    world,
                    tag,
                    Account(world.ids.new(), created, group="org_seats", payment_fp=card),
                    sessions=sessions,
                    place=place,
                    ua=human_ua(prng),
                    session_len=prng.uniform(3.0, 15.0),
                    gap_median=log_uniform(prng, 20.0, 80.0),
                    prompt=lambda r, h=habit, lib=library: lib.sample(r) if r.random() < 0.25 else h(r),
                )
            )
    return out


class AgentUser:
    """One person driving a coding agent: each task is a loop of requests a second or a few apart
    (the model answers, the tool runs, the agent asks again) on a growing context.

    The tool's long system prompt dominates every prompt, so the SimHashes of all
    its users sit near a few templates.
    """

    def __init__(
        self,
        world: World,
        tag: str,
        account: Account,
        *,
        tasks: list[float],
        place: Exits,
        ua: str,
        system: Topics,
        steps: float,
    ) -> None:
        self.world, self.tag, self.accounts = world, tag, [account]
        self.tasks, self.place, self.ua, self.system, self.steps = tasks, place, ua, system, steps

    def streams(self) -> list[Iterator[dict]]:
        return [self._events()]

    def _events(self) -> Iterator[dict]:
        w, acct, ua = self.world, self.accounts[0], self.ua
        rng = w.rng(self.tag, "events")
        model = rng.choice(("large", "large", "medium"))
        last = float("-inf")
        for start in self.tasks:
            ip, asn = self.place.pick(rng)
            context = lognormal_int(rng, 6000.0, 0.5, 1500, 40000)
            t = max(start, last + 1.0)
            for _ in range(geometric_count(rng, self.steps)):
                if t >= w.t1:
                    return
                out = lognormal_int(rng, 250.0, 1.0, 5, 8192)
                if t >= w.t0:
                    yield make_event(acct, t, ip, asn, ua, model, context, out, self.system.sample(rng))
                last = t
                # the tool's result joins the context; the next call follows generation plus tool time
                context = min(200_000, context + out + lognormal_int(rng, 700.0, 0.9, 10, 20000))
                t += out / 80.0 + lognormal(rng, 1.2, 0.8, 0.1, 60.0)


def agent_tool(world: World, providers: Providers, n: int) -> list[AgentUser]:
    """n users of one agent tool: its user agent and system prompts, their own networks and cards."""
    rng = world.rng("agent_tool", "plan")
    ua = f"{rng.choice(AGENT_NAMES)}/{rng.randint(0, 3)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}"
    system = Topics(rng, n=rng.randint(2, 4), max_flips=5)
    out = []
    for i in range(n):
        tag = f"agent_tool/{i}"
        prng = world.rng(tag, "plan")
        tasks = active_sessions(world, prng, (0.5, 4.0))
        if tasks is None:
            continue
        x = prng.random()
        if x < 0.6:
            net = world.internet.net(prng.choice(RESIDENTIAL_ASNS))
            place = Exits(fixed=[(ip, net.asn) for ip in net.hosts(prng, 1)])
        elif x < 0.85:
            net = world.internet.net(prng.choice(BUSINESS_ASNS))
            place = Exits(fixed=[(ip, net.asn) for ip in net.hosts(prng, 2)])
        else:  # a cloud dev box
            place = Exits(fixed=providers.cloud.lease(prng, 1))
        acct = customer(world, prng, "agent_tool", (0.02, 1500.0))
        out.append(
            AgentUser(
                world,
                tag,
                acct,
                tasks=tasks,
                place=place,
                ua=ua,
                system=system,
                steps=log_uniform(prng, 5.0, 60.0),
            )
        )
    return out
