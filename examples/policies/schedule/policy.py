"""schedule: keeps more free tickets in weekly windows of local time.

Config (`wicket.dev/policy-config`): windows separated by `;` or newlines,
each `DAYS HH:MM-HH:MM spare=N`, for example::

    Mon-Fri 08:45-10:30 spare=20; Sat 10:00-12:00 spare=5

DAYS is a day (`Mon`), a range (`Mon-Fri`, `Fri-Mon` wraps), a list
(`Mon,Wed,Fri`) or `daily`. A window whose end is before its start runs past
midnight into the next day. Times are the app's local time (the snapshot's
clock offset, from `wicket.dev/timezone`). Where windows overlap the largest
spare counts.

Inside a window the policy keeps `spare` free tickets (plus one per waiting
user), outside them `tickets.spare`: in both cases exactly like wicket's
default policy (create up to pods.max; delete autoscaled pods idle past the
cooldown while the spare stays covered). Tickets go to the fullest ready pod.

An empty config means no windows (the default policy). A config that does
not parse is logged and ignored, so a typo never stops the app from scaling.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import wicket_policy as wp

_MINUTES_PER_DAY = 1440
_MINUTES_PER_WEEK = 7 * _MINUTES_PER_DAY


class Window(NamedTuple):
    """One weekly window: start minute of the week (Monday 00:00 = 0),
    length in minutes and the spare tickets to keep in it."""

    start: int
    minutes: int
    spare: int

    def covers(self, minute_of_week: int) -> bool:
        """Whether this window is open at `minute_of_week` (wrapping Sunday→Monday)."""
        return (minute_of_week - self.start) % _MINUTES_PER_WEEK < self.minutes


_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _day(name: str, entry: str) -> int:
    """Monday = 0 … Sunday = 6, from `Mon` or `Monday` (any case)."""
    key = name.strip().lower()
    for number, full in enumerate(_DAY_NAMES):
        if key in (full, full[:3]):
            return number
    raise ValueError(f"unknown day {name.strip()!r} in {entry!r} (Mon … Sun)")


def _days(text: str, entry: str) -> list:
    if text.lower() in ("daily", "*"):
        return list(range(7))
    days = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        start = _day(first, entry)
        end = _day(last, entry) if last else start
        days.extend((start + k) % 7 for k in range((end - start) % 7 + 1))
    return days


def _minute(text: str, entry: str) -> int:
    hours, sep, minutes = text.partition(":")
    if not (sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise ValueError(f"bad time {text!r} in {entry!r} (HH:MM)")
    value = int(hours) * 60 + int(minutes)
    if int(hours) > 24 or int(minutes) > 59 or value > _MINUTES_PER_DAY:
        raise ValueError(f"bad time {text!r} in {entry!r} (00:00 … 24:00)")
    return value


def parse_config(config: str) -> list:
    """The windows of a config string; ValueError naming the bad entry."""
    windows = []
    for entry in config.replace("\n", ";").split(";"):
        entry = entry.strip()
        if not entry or entry.startswith("#"):
            continue
        fields = entry.split()
        if len(fields) != 3 or not fields[2].startswith("spare="):
            raise ValueError(f"bad window {entry!r}: want 'DAYS HH:MM-HH:MM spare=N'")
        times = fields[1].split("-")
        if len(times) != 2:
            raise ValueError(f"bad times {fields[1]!r} in {entry!r} (HH:MM-HH:MM)")
        start, end = _minute(times[0], entry), _minute(times[1], entry)
        spare = fields[2][len("spare="):]
        if not spare.isdigit():
            raise ValueError(f"bad spare {spare!r} in {entry!r} (a whole number)")
        length = (end - start) % _MINUTES_PER_DAY or _MINUTES_PER_DAY
        if start == end:
            raise ValueError(f"empty window {fields[1]!r} in {entry!r}")
        for day in _days(fields[0], entry):
            windows.append(Window(day * _MINUTES_PER_DAY + start, length, int(spare)))
    return windows


# The host sends the same config string on every call: parse it once. This
# cache only saves work; decisions still depend on the snapshot alone.
_parsed: dict = {}


def windows_of(config: str) -> list:
    """The windows of `config`, parsed once; [] (logged) if it does not parse."""
    if config not in _parsed:
        try:
            _parsed[config] = parse_config(config)
        except ValueError as error:
            wp.log("warn", f"schedule: config ignored: {error}")
            _parsed[config] = []
    return _parsed[config]


def spare_now(snapshot: wp.Snapshot) -> int:
    """The free tickets to keep at the snapshot's local time."""
    minute = snapshot.clock.minute_of_week
    spares = [w.spare for w in windows_of(snapshot.settings.config) if w.covers(minute)]
    return max(spares) if spares else snapshot.settings.tickets_spare


def assign(snapshot: wp.Snapshot) -> Optional[int]:
    """The fullest ready pod with a free ticket (packs users, frees pods)."""
    return snapshot.fullest_with_free_slot()


def scale(snapshot: wp.Snapshot) -> wp.ScaleDecision:
    """The default scaling with the spare of the current window."""
    return snapshot.default_scale(spare=spare_now(snapshot))


Decide = wp.export(assign=assign, scale=scale)
