"""Per-account online statistics and the account-level signals built on them.

One small record per account (``__slots__``, a few floats), updated in event
time: request rates over 2 s, 10 s, 60 s and 30 min half-lives, a lagged peak
of the account's own 60 s rate, output/input tokens, how often its requests
change network, and how regular its timing is. Idle accounts expire, and the
table is capped, so memory is bounded under any number of keys.
"""

from __future__ import annotations

import math
from array import array
from typing import TYPE_CHECKING

from detectors.config import AccountConfig
from detectors.rates import LN2

EPISODE_GAP_S = 30.0
H_SHORT, H_10, H_MID, H_LONG, H_TOKENS, H_PEAK = 2.0, 10.0, 60.0, 1800.0, 900.0, 6 * 3600.0
_K_SHORT, _K_10, _K_MID, _K_LONG, _K_TOK, _K_PEAK = (LN2 / h for h in (H_SHORT, H_10, H_MID, H_LONG, H_TOKENS, H_PEAK))


# The floats of an account live in one array of doubles: 8 bytes each, where a Python float
# attribute costs a 24-byte object plus its slot. Indices into that array:
FLOAT_FIELDS = ("last_ts", "created", "c_short", "c_10", "c_mid", "c_long", "peak_mid", "out_tok", "in_tok",
                "ia_mean", "ia_var", "flagged_until", "scored_ts", "ep_start", "mid_lag", "mid_lag_ts")
(_LAST, _CREATED, _SHORT, _C10, _MID, _LONG, _PEAK, _OUT, _IN, _IAM, _IAV, _FLAG, _SCORED, _EPS, _LAG,
 _LAGTS) = range(len(FLOAT_FIELDS))
_ZERO = array("d", bytes(8 * len(FLOAT_FIELDS)))


class AccountState:
    """Compact online state of one account: 16 doubles in one array and 5 small integers.

    Each float is also readable and writable by name (``s.c_short``), for tests and cold paths.

    >>> s = AccountState(first_ts=0.0, created=-86400.0 * 400)
    >>> for i in range(40):                     # 10 requests/s for 4 s
    ...     s.update(i / 10, net=1, out_tok=100, in_tok=50, learn=True)
    >>> round(s.rate_short(), 1) > 5, round(s.harvest_ratio(), 1)
    (True, 2.0)
    """

    __slots__ = ("v", "n", "last_net", "switches", "nets", "nets_hi", "ep_n", "ep_new_net")

    if TYPE_CHECKING:  # the named views of ``v``, added below
        last_ts: float
        c_short: float
        c_10: float
        c_mid: float
        c_long: float
        peak_mid: float
        out_tok: float
        in_tok: float
        ia_mean: float
        ia_var: float
        ep_start: float
        mid_lag: float
        mid_lag_ts: float

    def __init__(self, first_ts: float, created: float | None):
        v = self.v = array("d", _ZERO)
        v[_LAST] = v[_EPS] = v[_LAGTS] = first_ts
        v[_CREATED] = math.nan if created is None else created
        self.n = 0
        self.last_net = 0
        self.switches = 0
        self.nets = 0  # distinct networks seen, counted up to a few (a tiny bitmap of net hashes)
        # The same networks by other bits of their hash: a network is known when both bitmaps have it
        # (one bitmap alone mistakes a new network for a known one once in 64).
        self.nets_hi = 0
        # The current episode (ep_start, ep_n): requests since the last silence of EPISODE_GAP_S.
        # mid_lag is the 60 s rate as it was at mid_lag_ts: the peak learns only rates a minute old.
        self.ep_n = 0
        self.ep_new_net = True  # the episode began on, or moved to, a network the account had not used before

    # Written from outside (the stage flags and scores accounts), so declared here for the type checker.
    @property
    def created(self) -> float:
        return self.v[_CREATED]

    @created.setter
    def created(self, x: float) -> None:
        self.v[_CREATED] = x

    @property
    def flagged_until(self) -> float:
        return self.v[_FLAG]

    @flagged_until.setter
    def flagged_until(self, x: float) -> None:
        self.v[_FLAG] = x

    @property
    def scored_ts(self) -> float:
        return self.v[_SCORED]

    @scored_ts.setter
    def scored_ts(self, x: float) -> None:
        self.v[_SCORED] = x

    def update(self, ts: float, net: int, out_tok: int, in_tok: int, learn: bool) -> None:
        """Count one request; ``learn`` False freezes the baseline while the account is enforced."""
        v = self.v
        dt = ts - v[_LAST]
        if dt > EPISODE_GAP_S or self.n == 0:
            v[_EPS] = ts
            self.ep_n = 0
            self.ep_new_net = not self._knows(net)
        elif net != self.last_net and not self._knows(net):
            self.ep_new_net = True  # a key taken over seconds after its owner used it: the episode moved
        if ts >= v[_EPS]:  # a late request from before the current episode is not part of it
            self.ep_n += 1
        if dt > 0.0:
            exp = math.exp
            v[_SHORT] = v[_SHORT] * exp(-dt * _K_SHORT) + 1.0
            v[_C10] = v[_C10] * exp(-dt * _K_10) + 1.0
            c_mid = v[_MID] = v[_MID] * exp(-dt * _K_MID) + 1.0
            f_tok = exp(-dt * _K_TOK)
            v[_OUT] = v[_OUT] * f_tok + out_tok
            v[_IN] = v[_IN] * f_tok + in_tok
            if learn:
                v[_LONG] = v[_LONG] * exp(-dt * _K_LONG) + 1.0
                peak = v[_PEAK] * exp(-dt * _K_PEAK)
                # The peak takes the 60 s rate of a minute ago: a burst cannot raise its own baseline in time.
                if ts - v[_LAGTS] >= H_MID:
                    lag = v[_LAG]
                    if lag > peak:
                        peak = lag
                    v[_LAG] = c_mid * _K_MID
                    v[_LAGTS] = ts
                v[_PEAK] = peak
            if self.n == 1:  # its first gap: the mean starts there, not at 0 (which would fake a spread)
                v[_IAM] = math.log(dt + 0.05)
            else:
                d = math.log(dt + 0.05) - v[_IAM]
                v[_IAM] += 0.2 * d
                v[_IAV] = 0.8 * (v[_IAV] + 0.2 * d * d)
            v[_LAST] = ts
        else:
            # The same instant, or late: input partitions are read side by side but not in step, so
            # an account's requests can arrive out of order. A late request adds what it would weigh
            # now, had it come in time (exp(dt * k), dt <= 0), never a whole 1: the counts then do
            # not depend on arrival order, where adding 1 let a catch-up read of one partition after
            # another pile minutes of requests into the 2 s rate and fake a burst.
            exp = math.exp
            v[_SHORT] += exp(dt * _K_SHORT)
            v[_C10] += exp(dt * _K_10)
            v[_MID] += exp(dt * _K_MID)
            f_tok = exp(dt * _K_TOK)
            v[_OUT] += out_tok * f_tok
            v[_IN] += in_tok * f_tok
            if learn:
                v[_LONG] += exp(dt * _K_LONG)
        if self.n and net != self.last_net:
            self.switches += 1
        self.nets |= 1 << (net & 63)
        self.nets_hi |= 1 << ((net >> 6) & 63)
        self.last_net = net
        self.n += 1

    def _knows(self, net: int) -> bool:
        """Whether the account used this network before (both bitmaps have it)."""
        return bool((self.nets >> (net & 63)) & 1 and (self.nets_hi >> ((net >> 6) & 63)) & 1)

    def signals(self, ts: float) -> tuple[float, float, float, float, float]:
        """(age, harvest ratio, 2 s rate, 10 s rate, episode rate) at ``ts``: what the account rules
        read after every request, in one call.

        >>> s = AccountState(first_ts=0.0, created=-100.0)
        >>> s.update(0.0, net=1, out_tok=300, in_tok=50, learn=True)
        >>> s.signals(0.0) == (s.age(0.0), s.harvest_ratio(), s.rate_short(), s.rate_10(), s.episode_rate())
        True
        """
        v = self.v
        created = v[_CREATED]
        last = v[_LAST] - v[_EPS]
        return (ts - created if created == created else math.inf, v[_OUT] / (v[_IN] + 50.0), v[_SHORT] * _K_SHORT,
                v[_C10] * _K_10, self.ep_n / (last if last > 0.5 else 0.5))

    def rate_short(self) -> float:
        return self.v[_SHORT] * _K_SHORT

    def episode_rate(self) -> float:
        """Requests per second since the account last woke up: exact from the first second of a burst."""
        v = self.v
        return self.ep_n / max(v[_LAST] - v[_EPS], 0.5)

    def rate_10(self) -> float:
        return self.v[_C10] * _K_10

    def rate_mid(self) -> float:
        return self.v[_MID] * _K_MID

    def long_rate(self, observed_s: float) -> float:
        """The account's long-run rate, bias-corrected for how long it has been watched."""
        r = self.v[_LONG] * _K_LONG
        if observed_s > 0.0:
            seen = 1.0 - math.exp(-observed_s * _K_LONG)
            r = r / seen if seen > 1e-9 else self.rate_mid()
        return r

    def baseline(self, observed_s: float) -> float:
        """The account's own normal rate: its long-run rate or its earlier peak, whichever is higher."""
        return max(self.long_rate(observed_s), self.v[_PEAK])

    def harvest_ratio(self) -> float:
        """Output over input tokens: distillation harvests long answers to short prompts."""
        v = self.v
        return v[_OUT] / (v[_IN] + 50.0)

    def switch_share(self) -> float:
        return self.switches / (self.n - 1) if self.n > 1 else 0.0

    def distinct_networks(self) -> int:
        return self.nets.bit_count()

    def typical_gap(self) -> float:
        """Its typical time between two requests, in seconds: the geometric mean, recent ones weighing most.

        >>> s = AccountState(first_ts=0.0, created=None)
        >>> for t in (0.0, 600.0, 1200.0):
        ...     s.update(t, net=1, out_tok=0, in_tok=0, learn=True)
        >>> round(s.typical_gap())
        600
        """
        return math.exp(self.v[_IAM]) if self.n > 1 else 0.0

    def timing_cv(self) -> float:
        """Spread of log inter-arrival times: scripts are regular, people are not."""
        return math.sqrt(max(self.v[_IAV], 0.0))

    def age(self, ts: float) -> float:
        created = self.v[_CREATED]
        return ts - created if created == created else math.inf


def _named(i: int) -> property:
    def get(self: AccountState) -> float:
        return self.v[i]

    def put(self: AccountState, x: float) -> None:
        self.v[i] = x

    return property(get, put)


for _i, _name in enumerate(FLOAT_FIELDS):
    if not hasattr(AccountState, _name):
        setattr(AccountState, _name, _named(_i))


class AccountTracker:
    """All account states, with idle expiry and a hard cap (evicting the stalest).

    >>> from detectors.config import AccountConfig
    >>> t = AccountTracker(AccountConfig(max_accounts=1000, idle_expiry_s=60))
    >>> t.get_or_create("a", ts=0.0, created=None).n
    0
    >>> t.expire(now=100.0), len(t)
    (1, 0)
    """

    def __init__(self, cfg: AccountConfig):
        self.cfg = cfg
        self.states: dict[str, AccountState] = {}
        self.evicted = 0
        self.expired = 0
        self.track_dirty = False
        self.dirty: set[str] = set()
        self.removed: list[str] = []

    def __len__(self) -> int:
        return len(self.states)

    def get_or_create(self, account: str, ts: float, created: float | None) -> AccountState:
        s = self.states.get(account)
        if s is None:
            if len(self.states) >= self.cfg.max_accounts:
                self._evict()
            s = self.states[account] = AccountState(ts, created)
        elif created is not None:
            v = s.v
            if v[_CREATED] != v[_CREATED]:  # NaN: not known until now
                v[_CREATED] = created
        if self.track_dirty:
            self.dirty.add(account)
        return s

    def expire(self, now: float) -> int:
        """Drop accounts idle longer than the configured expiry; returns how many."""
        horizon = now - self.cfg.idle_expiry_s
        stale = [k for k, s in self.states.items() if s.last_ts < horizon and s.flagged_until < now]
        for k in stale:
            del self.states[k]
        if self.track_dirty:
            self.removed.extend(stale)
        self.expired += len(stale)
        return len(stale)

    def _evict(self) -> None:
        # Dicts keep insertion order: the first tenth holds the accounts created earliest;
        # of those, drop the stalest half. Cheap, and never touches active ones first.
        n = max(1, len(self.states) // 10)
        head = []
        for i, (k, s) in enumerate(self.states.items()):
            if i >= n:
                break
            head.append((s.last_ts, k))
        head.sort()
        gone = [k for _, k in head[: max(1, n // 2)]]
        for k in gone:
            del self.states[k]
        if self.track_dirty:
            self.removed.extend(gone)
        self.evicted += len(gone)
