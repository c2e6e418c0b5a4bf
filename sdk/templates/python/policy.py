"""__NAME__: a wicket scaling policy (wicket:policy@0.2.0).

It starts as wicket's default policy: tickets go to the fullest ready pod;
`tickets.spare` free tickets (plus one per waiting user) are kept on ready
and starting pods, up to `pods.max`; autoscaled pods idle past the cooldown
are deleted while the spare stays covered. Change `assign` and `scale`.

The snapshot (see wicket_policy.py) has: settings (tickets_max,
tickets_spare, pods_max, cooldown_seconds, config), clock (unix_seconds,
utc_offset_seconds, weekday, minute_of_day), pods (lazily decoded; ready(),
starting(), draining(), idle(), with_free_slot()), totals, waiting, arrivals
(per_minute, per_hour, per_minute_rate()) and observed (start-up and
session times).
"""

from typing import Optional

import wicket_policy as wp


def assign(snapshot: wp.Snapshot) -> Optional[int]:
    """The id of the ready pod that gets the next ticket, or None (wait)."""
    return snapshot.fullest_with_free_slot()


def scale(snapshot: wp.Snapshot) -> wp.ScaleDecision:
    """Pods to create and ids of pods to delete."""
    return snapshot.default_scale()


# componentize-py exports the class named `Decide` as the `decide` interface.
Decide = wp.export(assign=assign, scale=scale)
