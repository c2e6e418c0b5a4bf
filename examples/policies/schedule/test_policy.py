"""Native tests of the schedule policy (plain pytest, no Wasm)."""

import pytest

import policy
from wicket_policy import ScaleDecision, SnapshotBuilder

CONFIG = "Mon-Fri 08:45-10:30 spare=20; Sat 22:00-02:00 spare=3"
BERLIN_WINTER = 3600


def app(**settings):
    base = dict(tickets_max=5, tickets_spare=2, pods_max=10, cooldown_seconds=60, config=CONFIG)
    base.update(settings)
    return SnapshotBuilder(**base)


def test_config_parses_days_ranges_lists_and_midnight_wrap():
    windows = policy.parse_config(CONFIG)
    assert len(windows) == 6
    assert windows[0] == policy.Window(start=8 * 60 + 45, minutes=105, spare=20)
    assert windows[5] == policy.Window(start=5 * 1440 + 22 * 60, minutes=240, spare=3)
    assert len(policy.parse_config("Fri-Mon 10:00-11:00 spare=1\nMon,Wed 10:00-11:00 spare=1")) == 6
    assert len(policy.parse_config("daily 00:00-24:00 spare=1")) == 7
    assert policy.parse_config("") == []


@pytest.mark.parametrize(
    "config, message",
    [
        ("Mon 08:45-10:30", "want 'DAYS HH:MM-HH:MM spare=N'"),
        ("Mun 08:45-10:30 spare=2", "unknown day 'Mun'"),
        ("Mon 8:4-10:30 spare=2", "bad time '8:4'"),
        ("Mon 08:45-25:00 spare=2", "bad time '25:00'"),
        ("Mon 08:45-10:30 spare=x", "bad spare 'x'"),
        ("Mon 08:45-08:45 spare=1", "empty window"),
    ],
)
def test_bad_config_names_the_entry(config, message):
    with pytest.raises(ValueError, match=message):
        policy.parse_config(config)


def test_inside_a_weekday_window_local_time_keeps_the_window_spare():
    # Monday 2026-12-07 09:00 in Berlin (08:00 UTC): 20 spare, 4 pods of 5.
    snap = app().at("2026-12-07 09:00", BERLIN_WINTER).build()
    assert snap.clock.minute_of_day == 540
    assert policy.scale(snap) == ScaleDecision(create=4)


def test_the_utc_offset_decides_whether_the_window_is_open():
    # 08:30 UTC is 09:30 in Berlin (open) but 08:30 in London (not yet).
    unix = SnapshotBuilder().at("2026-12-07 08:30", 0).build().clock.unix_seconds
    berlin = app().clock(unix, BERLIN_WINTER).build()
    london = app().clock(unix, 0).build()
    assert policy.scale(berlin) == ScaleDecision(create=4)
    assert policy.scale(london) == ScaleDecision(create=1)


def test_window_edges_start_inclusive_end_exclusive():
    assert policy.scale(app().at("2026-12-07 08:44", BERLIN_WINTER).build()) == ScaleDecision(create=1)
    assert policy.scale(app().at("2026-12-07 08:45", BERLIN_WINTER).build()) == ScaleDecision(create=4)
    assert policy.scale(app().at("2026-12-07 10:29", BERLIN_WINTER).build()) == ScaleDecision(create=4)
    assert policy.scale(app().at("2026-12-07 10:30", BERLIN_WINTER).build()) == ScaleDecision(create=1)


def test_weekend_and_a_window_past_midnight():
    # Saturday 09:00: no weekday window.
    assert policy.scale(app().at("2026-12-12 09:00").build()) == ScaleDecision(create=1)
    # Sunday 01:00 is inside Saturday's 22:00-02:00: spare 3 → 1 pod of 5.
    sunday = app(tickets_spare=0).at("2026-12-13 01:00").build()
    assert policy.scale(sunday) == ScaleDecision(create=1)
    # Sunday 02:00 it has closed: spare 0, nothing to do.
    assert policy.scale(app(tickets_spare=0).at("2026-12-13 02:00").build()) == ScaleDecision()


def test_waiting_users_add_to_the_window_spare_within_pods_max():
    snap = app(pods_max=3).at("2026-12-08 10:00", BERLIN_WINTER).pod(1, "ready", tickets=5).waiting(7).build()
    # Needed 27 with nothing free: 6 pods wanted, pods.max leaves 2.
    assert policy.scale(snap) == ScaleDecision(create=2)


def test_after_the_window_idle_pods_go_most_idle_first():
    builder = app().at("2026-12-07 11:00", BERLIN_WINTER)
    for pod_id, idle in ((1, 30), (2, 300), (3, 120), (4, 200)):
        builder.pod(pod_id, "ready", idle_seconds=idle)
    # Free 20, spare 2: pods 2, 4 and 3 (idle past 60 s) go, 1 is too fresh.
    assert policy.scale(builder.build()) == ScaleDecision(delete=[2, 4, 3])
    # Inside the window the same pods are kept: 20 free is the spare.
    inside = app().at("2026-12-07 10:00", BERLIN_WINTER)
    for pod_id, idle in ((1, 30), (2, 300), (3, 120), (4, 200)):
        inside.pod(pod_id, "ready", idle_seconds=idle)
    assert policy.scale(inside.build()) == ScaleDecision()


def test_a_bad_config_falls_back_to_tickets_spare():
    snap = app(config="Mon 08:45 spare=20").at("2026-12-07 09:00", BERLIN_WINTER).build()
    assert policy.scale(snap) == ScaleDecision(create=1)


def test_assign_packs_users_on_the_fullest_ready_pod():
    snap = app().pod(1, "ready", tickets=1).pod(2, "ready", tickets=4).pod(3, "ready", tickets=5).build()
    assert policy.assign(snap) == 2
    assert policy.assign(app().pod(1, "starting").build()) is None


def test_the_exported_class_decides_from_raw_snapshots():
    raw = app().at("2026-12-07 09:00", BERLIN_WINTER).raw()
    decide = policy.Decide()
    assert decide.scale(raw) == ScaleDecision(create=4)
    assert decide.assign(raw) is None
