"""wicket policy SDK for Python: a typed view of the `wicket:policy@0.2.0`
snapshot, the decision types, a snapshot builder for native tests, and the
glue that exports a policy from a componentize-py component.

A policy is two plain functions::

    import wicket_policy as wp

    def assign(snapshot: wp.Snapshot) -> int | None: ...
    def scale(snapshot: wp.Snapshot) -> wp.ScaleDecision: ...

    Decide = wp.export(assign=assign, scale=scale)

componentize-py looks for the class `Decide` in the app module (the name of
the contract's `decide` interface); `export` makes it. Natively (pytest) the
generated bindings do not exist, and the same functions are called with
snapshots from `SnapshotBuilder`, which packs its pods exactly as the host
does, so a test goes through the same decoding as the component.

Cost: pods arrive as one `bytes` object (little-endian u32 words,
`pod_words` per pod) and are decoded only when asked for. The sums a
decision usually needs are in `snapshot.totals` without walking the pods; the
iterators below read whole columns with C-level slicing and build a `Pod`
object only for the pods they yield.
"""

from __future__ import annotations

import array
import sys
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Callable, Iterator, Optional, Sequence

__all__ = [
    "CONTRACT",
    "POD_WORDS",
    "Phase",
    "Pod",
    "Pods",
    "Settings",
    "Clock",
    "Arrivals",
    "Observed",
    "Totals",
    "Snapshot",
    "ScaleDecision",
    "SnapshotBuilder",
    "export",
    "log",
    "WEEKDAYS",
]

#: The contract this SDK speaks.
CONTRACT = "wicket:policy@0.2.0"

#: Words per pod this SDK knows (id, capacity, tickets, phase, autoscaled,
#: idle seconds, age seconds). Pods are read with the stride the host sends
#: (`snapshot.pod_words`), which may be larger in a later patch version.
POD_WORDS = 7

#: Local weekdays as `Clock.weekday` numbers them (Monday = 0).
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

# Word positions inside one packed pod.
_ID, _CAPACITY, _TICKETS, _PHASE, _AUTOSCALED, _IDLE, _AGE = range(7)


class Phase(IntEnum):
    """Where a pod is in its life; unknown values read as `DRAINING`."""

    STARTING = 0
    READY = 1
    DRAINING = 2

    @classmethod
    def of(cls, word: int) -> "Phase":
        """The phase a packed word means (anything unknown allows nothing)."""
        return cls(word) if 0 <= word <= 2 else cls.DRAINING


class Pod:
    """One pod of the app, decoded from its packed words."""

    __slots__ = (
        "id",
        "capacity",
        "tickets",
        "phase",
        "autoscaled",
        "idle_seconds",
        "age_seconds",
    )

    def __init__(
        self,
        id: int,
        capacity: int,
        tickets: int,
        phase: Phase,
        autoscaled: bool,
        idle_seconds: int,
        age_seconds: int,
    ) -> None:
        #: Stable id that decisions name the pod by.
        self.id = id
        #: Tickets this pod can hold.
        self.capacity = capacity
        #: Tickets held on it now.
        self.tickets = tickets
        #: Starting, ready or draining.
        self.phase = phase
        #: Created by wicket (deletable), not a Deployment replica.
        self.autoscaled = autoscaled
        #: Whole seconds since it last held a ticket.
        self.idle_seconds = idle_seconds
        #: Whole seconds since the host first saw it.
        self.age_seconds = age_seconds

    @property
    def free(self) -> int:
        """Tickets it can still take (0 unless ready)."""
        if self.phase != Phase.READY:
            return 0
        return max(self.capacity - self.tickets, 0)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pod) and all(
            getattr(self, name) == getattr(other, name) for name in Pod.__slots__
        )

    def __repr__(self) -> str:
        return (
            f"Pod(id={self.id}, capacity={self.capacity}, tickets={self.tickets}, "
            f"phase={self.phase.name.lower()}, autoscaled={self.autoscaled}, "
            f"idle_seconds={self.idle_seconds}, age_seconds={self.age_seconds})"
        )


class Pods(Sequence[Pod]):
    """The app's pods in name order, decoded lazily from the packed bytes."""

    __slots__ = ("_words", "_stride", "_len")

    def __init__(self, packed: bytes, pod_words: int) -> None:
        # Fewer words than this SDK knows would shift every field: refuse to
        # guess and show an empty app (the host never sends that).
        stride = pod_words if pod_words >= POD_WORDS else 0
        words = array.array("I")
        if stride:
            usable = len(packed) - len(packed) % (4 * stride)
            words.frombytes(packed[:usable])
            if sys.byteorder != "little":
                words.byteswap()
        self._words = words
        self._stride = stride
        self._len = len(words) // stride if stride else 0

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._len))]
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError("pod index out of range")
        base = index * self._stride
        w = self._words
        return Pod(
            w[base + _ID],
            w[base + _CAPACITY],
            w[base + _TICKETS],
            Phase.of(w[base + _PHASE]),
            w[base + _AUTOSCALED] != 0,
            w[base + _IDLE],
            w[base + _AGE],
        )

    def __iter__(self) -> Iterator[Pod]:
        return self._at(range(self._len))

    def column(self, word: int) -> array.array:
        """Word `word` (0 = id … 6 = age) of every pod, as one array."""
        if not self._stride:
            return array.array("I")
        return self._words[word :: self._stride]

    def _at(self, indices) -> Iterator[Pod]:
        """The pods at `indices`, decoded one by one as they are asked for."""
        for index in indices:
            yield self[index]

    def in_phase(self, phase: Phase) -> Iterator[Pod]:
        """The pods in `phase`, in name order."""
        phases = self.column(_PHASE)
        if phase == Phase.DRAINING:
            return self._at([i for i, p in enumerate(phases) if p >= 2])
        return self._at([i for i, p in enumerate(phases) if p == phase])

    def idle_indices(self, min_seconds: int) -> list:
        """Positions of the autoscaled, ready, empty pods idle for at least
        `min_seconds`, in name order."""
        return [
            i
            for i, (phase, auto, tickets, idle) in enumerate(
                zip(self.column(_PHASE), self.column(_AUTOSCALED), self.column(_TICKETS), self.column(_IDLE))
            )
            if phase == 1 and auto and not tickets and idle >= min_seconds
        ]


class Settings:
    """The app's settings (Deployment annotations or demo configuration)."""

    __slots__ = ("tickets_max", "tickets_spare", "pods_max", "cooldown_seconds", "config")

    def __init__(self, raw) -> None:
        #: Tickets (users) per pod.
        self.tickets_max: int = raw.tickets_max
        #: Free tickets to keep available in advance.
        self.tickets_spare: int = raw.tickets_spare
        #: Most autoscaled pods at once, in any phase.
        self.pods_max: int = raw.pods_max
        #: Seconds an autoscaled pod must be idle before it may be deleted.
        self.cooldown_seconds: int = raw.cooldown_seconds
        #: The policy's own parameters (`wicket.dev/policy-config`); may be empty.
        self.config: str = raw.config


class Clock:
    """The time of the decision (simulated in tests and the simulator)."""

    __slots__ = ("unix_seconds", "utc_offset_seconds")

    def __init__(self, raw) -> None:
        #: Seconds since 1970-01-01T00:00:00Z.
        self.unix_seconds: int = raw.unix_seconds
        #: The app's local offset from UTC, in seconds.
        self.utc_offset_seconds: int = raw.utc_offset_seconds

    @property
    def local_seconds(self) -> int:
        """Seconds since 1970-01-01T00:00:00 local time."""
        return self.unix_seconds + self.utc_offset_seconds

    @property
    def weekday(self) -> int:
        """The local day of the week, Monday = 0 … Sunday = 6."""
        # 1970-01-01 was a Thursday (3).
        return (self.local_seconds // 86400 + 3) % 7

    @property
    def minute_of_day(self) -> int:
        """Minutes since local midnight, 0 … 1439."""
        return self.local_seconds % 86400 // 60

    @property
    def minute_of_week(self) -> int:
        """Minutes since local Monday 00:00, 0 … 10079."""
        return self.weekday * 1440 + self.minute_of_day


class Arrivals:
    """Users who asked for a ticket, per minute and per hour, newest last.

    One client (address) counts at most its `places_per_client` a minute,
    so one that joins and leaves in a loop cannot inflate the rate.
    """

    __slots__ = ("per_minute", "per_hour")

    def __init__(self, raw) -> None:
        #: Counts of the last 60 minutes, the current (still filling) one last.
        self.per_minute: Sequence[int] = raw.per_minute
        #: Counts of the last 168 hours, the current one last.
        self.per_hour: Sequence[int] = raw.per_hour

    def per_minute_rate(self, minutes: int = 10) -> float:
        """Mean arrivals per minute over the last `minutes` whole minutes
        (the current, still filling minute left out); 0.0 without history."""
        return _mean_of_complete(self.per_minute, minutes)

    def per_hour_rate(self, hours: int = 1) -> float:
        """Mean arrivals per hour over the last `hours` whole hours (the
        current hour left out); 0.0 without history."""
        return _mean_of_complete(self.per_hour, hours)

    def this_minute(self) -> int:
        """Arrivals so far in the current minute."""
        return self.per_minute[-1] if self.per_minute else 0

    def same_hour_last_week(self) -> int:
        """Arrivals in the hour one week before the current one (the oldest
        of the 168 hourly counts); 0 when the history is shorter."""
        return self.per_hour[0] if len(self.per_hour) >= 168 else 0


def _mean_of_complete(counts: Sequence[int], n: int) -> float:
    complete = counts[:-1]
    window = complete[-n:] if n > 0 else complete[:0]
    return sum(window) / len(window) if window else 0.0


class Observed:
    """Start-up and session times the host observed; None until seen."""

    __slots__ = (
        "startup_median_ms",
        "startup_p90_ms",
        "session_median_seconds",
        "session_p90_seconds",
        "longest_wait_ms",
    )

    def __init__(self, raw) -> None:
        #: Median pod start-up, milliseconds.
        self.startup_median_ms: Optional[int] = raw.startup_median_ms
        #: 90th percentile pod start-up, milliseconds.
        self.startup_p90_ms: Optional[int] = raw.startup_p90_ms
        #: Median session length, seconds.
        self.session_median_seconds: Optional[int] = raw.session_median_seconds
        #: 90th percentile session length, seconds.
        self.session_p90_seconds: Optional[int] = raw.session_p90_seconds
        #: How long the first user in the queue has waited (0 if nobody).
        self.longest_wait_ms: int = raw.longest_wait_ms


class Totals:
    """Sums over the pods, computed by the host."""

    __slots__ = (
        "ready_pods",
        "starting_pods",
        "draining_pods",
        "autoscaled_pods",
        "tickets_in_use",
        "free_tickets",
        "starting_tickets",
    )

    def __init__(self, raw) -> None:
        #: Pods in phase ready.
        self.ready_pods: int = raw.ready_pods
        #: Pods in phase starting (including pods being created).
        self.starting_pods: int = raw.starting_pods
        #: Pods in phase draining.
        self.draining_pods: int = raw.draining_pods
        #: Autoscaled pods in any phase (what pods_max limits).
        self.autoscaled_pods: int = raw.autoscaled_pods
        #: Tickets held by users on all pods.
        self.tickets_in_use: int = raw.tickets_in_use
        #: Free tickets on ready pods.
        self.free_tickets: int = raw.free_tickets
        #: Capacity of the pods still starting.
        self.starting_tickets: int = raw.starting_tickets


class Snapshot:
    """Everything a decision may use, as typed, lazily decoded views."""

    __slots__ = ("_raw", "_pods", "settings", "clock", "totals", "waiting", "arrivals", "observed")

    def __init__(self, raw) -> None:
        self._raw = raw
        self._pods: Optional[Pods] = None
        #: The app's settings.
        self.settings = Settings(raw.settings)
        #: When the decision is taken.
        self.clock = Clock(raw.clock)
        #: Sums over the pods.
        self.totals = Totals(raw.totals)
        #: Users waiting in the queue.
        self.waiting: int = raw.waiting
        #: Arrival history.
        self.arrivals = Arrivals(raw.arrivals)
        #: Observed start-up and session times.
        self.observed = Observed(raw.observed)

    @property
    def pods(self) -> Pods:
        """All pods in name order (decoded on first use)."""
        if self._pods is None:
            self._pods = Pods(self._raw.pods, self._raw.pod_words)
        return self._pods

    @property
    def free_slots(self) -> int:
        """Free tickets on ready pods (`totals.free_tickets`)."""
        return self.totals.free_tickets

    def ready(self) -> Iterator[Pod]:
        """Ready pods, in name order."""
        return self.pods.in_phase(Phase.READY)

    def starting(self) -> Iterator[Pod]:
        """Starting pods, in name order."""
        return self.pods.in_phase(Phase.STARTING)

    def draining(self) -> Iterator[Pod]:
        """Draining pods, in name order."""
        return self.pods.in_phase(Phase.DRAINING)

    def with_free_slot(self) -> Iterator[Pod]:
        """Ready pods that can take another ticket, in name order."""
        pods = self.pods
        return pods._at(
            [
                i
                for i, (phase, cap, tickets) in enumerate(
                    zip(pods.column(_PHASE), pods.column(_CAPACITY), pods.column(_TICKETS))
                )
                if phase == 1 and tickets < cap
            ]
        )

    def idle(self, min_seconds: Optional[int] = None) -> Iterator[Pod]:
        """Autoscaled, ready pods with no tickets, idle for at least
        `min_seconds` (default: the cooldown): the pods a policy may delete."""
        limit = self.settings.cooldown_seconds if min_seconds is None else min_seconds
        return self.pods._at(self.pods.idle_indices(limit))

    def fullest_with_free_slot(self) -> Optional[int]:
        """The id of the ready pod with the most tickets that still has a
        free one (ties: the earlier pod), or None: the default `assign`."""
        pods = self.pods
        # One comprehension and two C-level scans: several times faster in
        # CPython than a loop that keeps the best so far.
        keys = [
            tickets if phase == 1 and tickets < cap else -1
            for phase, cap, tickets in zip(
                pods.column(_PHASE), pods.column(_CAPACITY), pods.column(_TICKETS)
            )
        ]
        if not keys:
            return None
        best = max(keys)
        if best < 0:
            return None
        # `index` finds the first of equal keys: ties go to the earlier pod.
        return pods.column(_ID)[keys.index(best)]

    def default_scale(self, spare: Optional[int] = None) -> "ScaleDecision":
        """wicket's default scaling with `spare` free tickets to keep (default
        `tickets_spare`): create pods (up to pods_max) while spare + waiting
        exceeds free + starting capacity; otherwise delete idle autoscaled
        pods past the cooldown, most idle first, while it stays covered."""
        return self.scale_to_cover(
            (self.settings.tickets_spare if spare is None else spare) + self.waiting
        )

    def scale_to_cover(self, needed: int) -> "ScaleDecision":
        """Create or delete pods so that `needed` tickets are covered by the
        free tickets on ready pods plus the capacity of autoscaled starting
        pods, within pods_max; never deletes below `needed`."""
        needed = max(int(needed), 0)
        pods = self.pods
        free = self.totals.free_tickets
        # Starting replicas of the Deployment are not counted, as in the
        # default policy: only pods wicket asked for are sure to come.
        incoming = 0
        if self.totals.starting_pods:
            incoming = sum(
                cap
                for phase, auto, cap in zip(
                    pods.column(_PHASE), pods.column(_AUTOSCALED), pods.column(_CAPACITY)
                )
                if phase == 0 and auto
            )
        available = free + incoming
        settings = self.settings
        if needed > available:
            if settings.tickets_max == 0:
                return ScaleDecision()
            wanted = -(-(needed - available) // settings.tickets_max)
            room = max(settings.pods_max - self.totals.autoscaled_pods, 0)
            return ScaleDecision(create=min(wanted, room))
        if needed == available:
            return ScaleDecision()
        # Positions of the deletable pods, most idle first (sorted() is
        # stable: ties keep name order); read by column, no Pod objects.
        idle, ids, caps = pods.column(_IDLE), pods.column(_ID), pods.column(_CAPACITY)
        # reverse=True keeps equal keys in their order; the key is C-level.
        candidates = sorted(
            pods.idle_indices(settings.cooldown_seconds), key=idle.__getitem__, reverse=True
        )
        delete = []
        for i in candidates:
            if free - caps[i] >= needed:
                free -= caps[i]
                delete.append(ids[i])
        return ScaleDecision(delete=delete)


@dataclass
class ScaleDecision:
    """Which pods to create and delete."""

    #: Pods to create from the app's template.
    create: int = 0
    #: Ids of autoscaled, ready or draining pods with no tickets to delete.
    delete: list = field(default_factory=list)


# --- Logging ------------------------------------------------------------------

# Imported now, not on first use: componentize-py bundles only the modules
# imported while it pre-initialises the app, and its generated bindings are
# not importable later. Natively there are none.
try:
    from wit_world.imports import host as _host  # type: ignore[import-not-found]
    from wit_world.imports import types as _types  # type: ignore[import-not-found]
except ImportError:
    _host = _types = None


def log(level: str, message: str) -> None:
    """Writes a line to the host's log (`level`: debug, info or warn).
    Natively it goes to stderr."""
    if _host is None or _types is None:
        print(f"[{level}] {message}", file=sys.stderr)
        return
    kind = {
        "debug": _types.LogLevel.DEBUG,
        "warn": _types.LogLevel.WARN,
    }.get(level, _types.LogLevel.INFO)
    _host.log(kind, message)


# --- Export -------------------------------------------------------------------


def export(
    assign: Callable[[Snapshot], Optional[int]],
    scale: Callable[[Snapshot], ScaleDecision],
):
    """The class componentize-py exports as the `decide` interface: bind it
    to the name `Decide` in the app module. Natively it is a plain class with
    the same two methods, taking raw snapshots (e.g. `SnapshotBuilder.raw()`)."""
    try:
        from wit_world import exports  # type: ignore[import-not-found]
        from wit_world.imports import types  # type: ignore[import-not-found]

        base = exports.Decide
        make_decision = types.ScaleDecision
    except ImportError:
        base = object
        make_decision = ScaleDecision

    class Decide(base):  # type: ignore[misc, valid-type]
        """The contract's `decide` interface over the author's functions."""

        def assign(self, snapshot) -> Optional[int]:
            return assign(Snapshot(snapshot))

        def scale(self, snapshot):
            decision = scale(Snapshot(snapshot))
            return make_decision(int(decision.create), [int(i) for i in decision.delete])

    return Decide


# --- Snapshot builder (native tests) -----------------------------------------


class _Record:
    """Stands in for a generated binding record (attribute access only)."""

    def __init__(self, **fields) -> None:
        self.__dict__.update(fields)


_PHASES = {"starting": Phase.STARTING, "ready": Phase.READY, "draining": Phase.DRAINING}


class SnapshotBuilder:
    """Builds snapshots for native tests exactly as the host packs them.

    ::

        snap = (SnapshotBuilder(tickets_max=2, tickets_spare=1, pods_max=4)
                .at("2026-12-07 09:00", utc_offset_seconds=3600)
                .pod(1, "ready", tickets=1)
                .pod(2, "ready", idle_seconds=60)
                .waiting(0)
                .build())

    Totals are computed from the pods as the host computes them. Times given
    to `at` are local wall-clock times in the given offset.
    """

    def __init__(
        self,
        tickets_max: int = 1,
        tickets_spare: int = 2,
        pods_max: int = 1,
        cooldown_seconds: int = 10,
        config: str = "",
    ) -> None:
        self._settings = dict(
            tickets_max=tickets_max,
            tickets_spare=tickets_spare,
            pods_max=pods_max,
            cooldown_seconds=cooldown_seconds,
            config=config,
        )
        self._clock = dict(unix_seconds=0, utc_offset_seconds=0)
        self._pods: list = []
        self._waiting = 0
        self._per_minute = [0] * 60
        self._per_hour = [0] * 168
        self._observed = dict(
            startup_median_ms=None,
            startup_p90_ms=None,
            session_median_seconds=None,
            session_p90_seconds=None,
            longest_wait_ms=0,
        )

    def settings(self, **fields) -> "SnapshotBuilder":
        """Sets settings fields (tickets_max, …, config)."""
        unknown = set(fields) - set(self._settings)
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")
        self._settings.update(fields)
        return self

    def clock(self, unix_seconds: int, utc_offset_seconds: int = 0) -> "SnapshotBuilder":
        """Sets the clock directly."""
        self._clock = dict(unix_seconds=unix_seconds, utc_offset_seconds=utc_offset_seconds)
        return self

    def at(self, local: str, utc_offset_seconds: int = 0) -> "SnapshotBuilder":
        """Sets the clock to local time `local` ("YYYY-MM-DD HH:MM[:SS]")."""
        from datetime import datetime, timedelta, timezone

        text = local.replace("T", " ")
        moment = datetime.fromisoformat(text).replace(
            tzinfo=timezone(timedelta(seconds=utc_offset_seconds))
        )
        return self.clock(int(moment.timestamp()), utc_offset_seconds)

    def pod(
        self,
        id: int,
        phase: str = "ready",
        tickets: int = 0,
        capacity: Optional[int] = None,
        autoscaled: bool = True,
        idle_seconds: int = 0,
        age_seconds: int = 0,
    ) -> "SnapshotBuilder":
        """Adds a pod (in name order: add them in the order the host would
        list them). `capacity` defaults to tickets_max."""
        if phase not in _PHASES:
            raise ValueError(f"unknown phase {phase!r}: starting, ready or draining")
        cap = self._settings["tickets_max"] if capacity is None else capacity
        self._pods.append(
            (id, cap, tickets, int(_PHASES[phase]), int(bool(autoscaled)), idle_seconds, age_seconds)
        )
        return self

    def waiting(self, users: int) -> "SnapshotBuilder":
        """Sets the number of users waiting in the queue."""
        self._waiting = users
        return self

    def arrivals(
        self,
        per_minute: Optional[Sequence[int]] = None,
        per_hour: Optional[Sequence[int]] = None,
    ) -> "SnapshotBuilder":
        """Sets the arrival history, newest last; shorter lists are padded
        with zeros in front to the host's 60 minutes and 168 hours."""
        if per_minute is not None:
            self._per_minute = _pad(per_minute, 60)
        if per_hour is not None:
            self._per_hour = _pad(per_hour, 168)
        return self

    def observed(self, **fields) -> "SnapshotBuilder":
        """Sets observed fields (startup_median_ms, …, longest_wait_ms)."""
        unknown = set(fields) - set(self._observed)
        if unknown:
            raise TypeError(f"unknown observed fields: {sorted(unknown)}")
        self._observed.update(fields)
        return self

    def raw(self):
        """The snapshot as the generated bindings would hand it over."""
        pods = self._pods
        totals = dict(
            ready_pods=sum(1 for p in pods if p[_PHASE] == Phase.READY),
            starting_pods=sum(1 for p in pods if p[_PHASE] == Phase.STARTING),
            draining_pods=sum(1 for p in pods if p[_PHASE] >= Phase.DRAINING),
            autoscaled_pods=sum(1 for p in pods if p[_AUTOSCALED]),
            tickets_in_use=sum(p[_TICKETS] for p in pods),
            free_tickets=sum(
                max(p[_CAPACITY] - p[_TICKETS], 0) for p in pods if p[_PHASE] == Phase.READY
            ),
            starting_tickets=sum(p[_CAPACITY] for p in pods if p[_PHASE] == Phase.STARTING),
        )
        words = array.array("I", [w for p in pods for w in p])
        if sys.byteorder != "little":
            words.byteswap()
        return _Record(
            settings=_Record(**self._settings),
            clock=_Record(**self._clock),
            pod_words=POD_WORDS,
            pods=words.tobytes(),
            totals=_Record(**totals),
            waiting=self._waiting,
            arrivals=_Record(per_minute=list(self._per_minute), per_hour=list(self._per_hour)),
            observed=_Record(**self._observed),
        )

    def build(self) -> Snapshot:
        """The typed snapshot a policy function receives."""
        return Snapshot(self.raw())


def _pad(counts: Sequence[int], length: int) -> list:
    counts = list(counts)[-length:]
    return [0] * (length - len(counts)) + counts
