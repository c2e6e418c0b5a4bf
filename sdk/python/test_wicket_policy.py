"""Native tests of the Python SDK: packing and decoding, the clock and arrival
helpers, and the default decisions it offers (the same cases as the Rust
default policy's logic tests)."""

import struct

import pytest

import wicket_policy as wp
from wicket_policy import Phase, ScaleDecision, SnapshotBuilder


def test_pods_decode_with_the_host_stride_and_little_endian_words():
    snap = SnapshotBuilder(tickets_max=2).pod(7, "ready", tickets=1, idle_seconds=30, age_seconds=99).build()
    assert snap._raw.pods == struct.pack("<7I", 7, 2, 1, 1, 1, 30, 99)
    (pod,) = list(snap.pods)
    assert pod == wp.Pod(7, 2, 1, Phase.READY, True, 30, 99)
    assert pod.free == 1


def test_a_longer_stride_from_a_later_patch_is_read_and_extra_words_ignored():
    raw = SnapshotBuilder().raw()
    raw.pod_words = 9
    raw.pods = struct.pack("<9I", 5, 1, 0, 1, 0, 3, 4, 111, 222) + struct.pack(
        "<9I", 6, 1, 1, 0, 1, 0, 1, 333, 444
    )
    snap = wp.Snapshot(raw)
    assert [p.id for p in snap.pods] == [5, 6]
    assert snap.pods[1].phase == Phase.STARTING and snap.pods[1].age_seconds == 1
    assert snap.pods[-1].id == 6


def test_unknown_phases_read_as_draining_and_short_strides_as_no_pods():
    raw = SnapshotBuilder().raw()
    raw.pods = struct.pack("<7I", 1, 1, 0, 9, 1, 50, 0)
    assert wp.Snapshot(raw).pods[0].phase == Phase.DRAINING
    assert [p.id for p in wp.Snapshot(raw).draining()] == [1]
    raw.pod_words = 6
    assert len(wp.Snapshot(raw).pods) == 0
    raw.pod_words = 7
    raw.pods = raw.pods[:-3]  # a torn pod is ignored, not misread
    assert len(wp.Snapshot(raw).pods) == 0


def test_iterators_select_by_phase_free_slot_and_idleness():
    snap = (
        SnapshotBuilder(tickets_max=2, cooldown_seconds=10)
        .pod(1, "ready", tickets=2)
        .pod(2, "ready", tickets=1)
        .pod(3, "ready", idle_seconds=5)
        .pod(4, "ready", idle_seconds=50)
        .pod(5, "ready", idle_seconds=50, autoscaled=False)
        .pod(6, "starting")
        .pod(7, "draining", idle_seconds=99)
        .build()
    )
    assert [p.id for p in snap.ready()] == [1, 2, 3, 4, 5]
    assert [p.id for p in snap.starting()] == [6]
    assert [p.id for p in snap.draining()] == [7]
    assert [p.id for p in snap.with_free_slot()] == [2, 3, 4, 5]
    assert [p.id for p in snap.idle()] == [4]
    assert [p.id for p in snap.idle(0)] == [3, 4]
    assert snap.free_slots == 1 + 2 + 2 + 2
    assert snap.totals.starting_tickets == 2 and snap.totals.autoscaled_pods == 6


def test_clock_gives_local_weekday_and_minute_of_day():
    # 2026-12-07 is a Monday; 08:45 in UTC+1 is 07:45 UTC.
    snap = SnapshotBuilder().at("2026-12-07 08:45", utc_offset_seconds=3600).build()
    assert snap.clock.unix_seconds == 1796629500
    assert snap.clock.weekday == 0
    assert snap.clock.minute_of_day == 8 * 60 + 45
    assert snap.clock.minute_of_week == 525
    # Sunday 23:30 local is already Monday in UTC+0 terms only after the offset.
    late = SnapshotBuilder().at("2026-12-06 23:30", utc_offset_seconds=-7200).build()
    assert (late.clock.weekday, late.clock.minute_of_day) == (6, 23 * 60 + 30)
    assert wp.WEEKDAYS[late.clock.weekday] == "Sun"


def test_arrival_rates_leave_out_the_current_minute_and_hour():
    snap = SnapshotBuilder().arrivals(per_minute=[6, 6, 3, 100], per_hour=[10, 30, 7]).build()
    assert len(snap.arrivals.per_minute) == 60 and len(snap.arrivals.per_hour) == 168
    assert snap.arrivals.per_minute_rate(3) == pytest.approx(5.0)
    assert snap.arrivals.per_minute_rate(2) == pytest.approx(4.5)
    assert snap.arrivals.this_minute() == 100
    assert snap.arrivals.per_hour_rate(2) == pytest.approx(20.0)
    assert snap.arrivals.same_hour_last_week() == 0
    assert SnapshotBuilder().build().arrivals.per_minute_rate() == 0.0


def test_default_assign_takes_the_fullest_ready_pod_with_room_ties_to_the_earlier():
    snap = (
        SnapshotBuilder(tickets_max=3)
        .pod(9, "ready", tickets=3)
        .pod(4, "ready", tickets=1)
        .pod(2, "ready", tickets=2)
        .pod(8, "ready", tickets=2)
        .pod(1, "starting")
        .build()
    )
    assert snap.fullest_with_free_slot() == 2
    full = SnapshotBuilder(tickets_max=1).pod(1, "ready", tickets=1).pod(2, "starting").build()
    assert full.fullest_with_free_slot() is None


def test_default_scale_creates_up_to_pods_max_counting_starting_autoscaled_capacity():
    empty = SnapshotBuilder(tickets_max=4, tickets_spare=5, pods_max=10).build()
    assert empty.default_scale() == ScaleDecision(create=2)
    capped = SnapshotBuilder(tickets_max=1, tickets_spare=5, pods_max=3).pod(1, "draining").build()
    assert capped.default_scale() == ScaleDecision(create=2)
    covered = SnapshotBuilder(tickets_max=1, tickets_spare=2, pods_max=5).pod(1, "starting").pod(2, "starting").build()
    assert covered.default_scale() == ScaleDecision()
    # A starting replica of the Deployment is not counted as coming capacity.
    replica = SnapshotBuilder(tickets_max=1, tickets_spare=1, pods_max=5).pod(1, "starting", autoscaled=False).build()
    assert replica.default_scale() == ScaleDecision(create=1)
    waiting = SnapshotBuilder(tickets_max=2, tickets_spare=1, pods_max=10).pod(1, "ready", tickets=2, autoscaled=False).waiting(4).build()
    assert waiting.default_scale() == ScaleDecision(create=3)


def test_default_scale_deletes_most_idle_first_while_the_spare_stays_covered():
    snap = (
        SnapshotBuilder(tickets_max=2, tickets_spare=1, pods_max=4, cooldown_seconds=10)
        .pod(1, "ready", capacity=10, idle_seconds=99)
        .pod(2, "ready", idle_seconds=60)
        .build()
    )
    assert snap.default_scale() == ScaleDecision(delete=[1])
    assert snap.default_scale(spare=3) == ScaleDecision(delete=[2])
    ties = (
        SnapshotBuilder(tickets_max=1, tickets_spare=0, pods_max=4)
        .pod(5, "ready", idle_seconds=20)
        .pod(3, "ready", idle_seconds=50)
        .pod(4, "ready", idle_seconds=20)
        .build()
    )
    # Most idle first; equally idle pods in name order.
    assert ties.default_scale() == ScaleDecision(delete=[3, 5, 4])
    young = SnapshotBuilder(tickets_spare=0, pods_max=4).pod(1, "ready", idle_seconds=9).build()
    assert young.default_scale() == ScaleDecision()


def test_export_glue_converts_raw_snapshots_and_decisions():
    seen = []

    def assign(snap):
        seen.append(snap)
        return snap.fullest_with_free_slot()

    def scale(snap):
        return ScaleDecision(create=1, delete=(3,))

    decide = wp.export(assign=assign, scale=scale)()
    raw = SnapshotBuilder().pod(3, "ready").raw()
    assert decide.assign(raw) == 3
    assert isinstance(seen[0], wp.Snapshot)
    assert decide.scale(raw) == ScaleDecision(create=1, delete=[3])
