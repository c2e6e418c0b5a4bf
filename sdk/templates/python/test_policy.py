"""Native tests of __NAME__ (plain pytest, no Wasm): `./test.sh`."""

import policy
from wicket_policy import ScaleDecision, SnapshotBuilder


def test_an_empty_app_gets_pods_for_its_spare():
    snap = SnapshotBuilder(tickets_max=2, tickets_spare=3, pods_max=5).build()
    assert policy.scale(snap) == ScaleDecision(create=2)


def test_tickets_go_to_the_fullest_ready_pod():
    snap = SnapshotBuilder(tickets_max=4).pod(1, "ready", tickets=1).pod(2, "ready", tickets=3).build()
    assert policy.assign(snap) == 2


def test_idle_pods_past_the_cooldown_are_deleted():
    snap = (
        SnapshotBuilder(tickets_max=2, tickets_spare=1, pods_max=5, cooldown_seconds=60)
        .at("2026-12-07 09:00", utc_offset_seconds=3600)
        .pod(1, "ready", idle_seconds=600)
        .pod(2, "ready", idle_seconds=10)
        .build()
    )
    assert policy.scale(snap) == ScaleDecision(delete=[1])
