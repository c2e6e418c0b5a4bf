//! The SDK's view of a snapshot, checked against values worked out by hand
//! (and, for dates, against a calendar).

use wicket_policy_sdk::{
    Clock, Observed, Phase, Pod, ScaleDecision, Settings, Snapshot, Totals, Weekday,
};

#[test]
fn the_clock_gives_local_weekday_and_minutes() {
    // 2025-12-04T00:00:00Z, a Thursday.
    let utc = Clock {
        unix_seconds: 1_764_806_400,
        utc_offset_seconds: 0,
    };
    assert_eq!(utc.local_weekday(), Weekday::Thursday);
    assert_eq!(utc.local_minute_of_day(), 0);
    assert_eq!(utc.local_minute_of_week(), 3 * 1440);

    // 2025-12-01T02:00Z (Monday) at UTC-5 is Sunday 21:00 local.
    let new_york = Clock {
        unix_seconds: 1_764_554_400,
        utc_offset_seconds: -5 * 3600,
    };
    assert_eq!(new_york.local_weekday(), Weekday::Sunday);
    assert_eq!(new_york.local_hour(), 21);
    assert_eq!(new_york.local_minute_of_week(), 6 * 1440 + 21 * 60);

    // 2026-06-01T22:30Z (Monday) in Berlin's summer time is Tuesday 00:30.
    let berlin = Clock {
        unix_seconds: 1_780_353_000,
        utc_offset_seconds: 7200,
    };
    assert_eq!(berlin.local_weekday(), Weekday::Tuesday);
    assert_eq!(berlin.local_minute_of_day(), 30);
    assert_eq!(berlin.local_minute_of_week(), 1440 + 30);

    // Before 1970 in local time (the epoch at UTC-1): Wednesday 23:00.
    let before = Clock {
        unix_seconds: 0,
        utc_offset_seconds: -3600,
    };
    assert_eq!(before.local_weekday(), Weekday::Wednesday);
    assert_eq!(before.local_minute_of_day(), 23 * 60);
}

#[test]
fn the_builder_sets_the_clock_from_a_local_date_and_time() {
    // The same instants as above, given as local times (`date -d` checked).
    for (date, offset, unix) in [
        ((2025, 12, 4, 0, 0), 0, 1_764_806_400),
        ((2025, 11, 30, 21, 0), -5 * 3600, 1_764_554_400),
        ((2026, 6, 2, 0, 30), 7200, 1_780_353_000),
        ((2024, 2, 29, 12, 0), 0, 1_709_208_000), // a leap day
        ((1970, 1, 1, 0, 0), 0, 0),
    ] {
        let (y, mo, d, h, mi) = date;
        let clock = Snapshot::builder()
            .at_local(y, mo, d, h, mi, offset)
            .build()
            .clock();
        assert_eq!(
            (clock.unix_seconds, clock.utc_offset_seconds),
            (unix, offset),
            "{date:?}"
        );
    }
    // Before the epoch in UTC: the clock stops at 1970.
    let early = Snapshot::builder()
        .at_local(1970, 1, 1, 0, 30, 3600)
        .build()
        .clock();
    assert_eq!(early.unix_seconds, 0);
}

#[test]
fn extreme_clocks_do_not_panic() {
    for (unix_seconds, utc_offset_seconds) in [(u64::MAX, i32::MAX), (0, i32::MIN), (u64::MAX, 0)] {
        let clock = Clock {
            unix_seconds,
            utc_offset_seconds,
        };
        assert!(clock.local_minute_of_week() < 7 * 1440);
    }
}

#[test]
fn weekdays_read_from_names() {
    assert_eq!(Weekday::from_name("mon"), Some(Weekday::Monday));
    assert_eq!(Weekday::from_name("Friday"), Some(Weekday::Friday));
    assert_eq!(Weekday::from_name("SUN"), Some(Weekday::Sunday));
    assert_eq!(Weekday::from_name("fr"), None);
    assert_eq!(Weekday::from_name("mond"), None);
    assert_eq!(Weekday::from_index(8), Weekday::Tuesday);
}

#[test]
fn the_builder_fits_arrivals_to_the_hosts_lengths() {
    let s = Snapshot::builder()
        .arrivals_per_minute(&[4, 0, 2, 7])
        .arrivals_per_hour(&(0..200).collect::<Vec<u32>>())
        .build();
    let arrivals = s.arrivals();
    assert_eq!(arrivals.per_minute().len(), 60);
    assert_eq!(arrivals.per_minute()[56..], [4, 0, 2, 7]);
    assert_eq!(arrivals.per_minute()[..56], [0; 56]);
    assert_eq!(arrivals.per_hour().len(), 168);
    assert_eq!(arrivals.per_hour().first(), Some(&32), "the oldest are cut");
    assert_eq!(arrivals.per_hour().last(), Some(&199));
}

#[test]
fn arrival_rates_leave_out_the_current_bucket() {
    let s = Snapshot::builder()
        .arrivals_per_minute(&[4, 0, 2, 7])
        .arrivals_per_hour(&[30, 10, 99])
        .build();
    let arrivals = s.arrivals();
    assert_eq!(arrivals.minutes_ago(0), Some(7));
    assert_eq!(arrivals.this_minute(), 7);
    assert_eq!(arrivals.minutes_ago(3), Some(4));
    assert_eq!(arrivals.minutes_ago(60), None);
    assert_eq!(arrivals.hours_ago(2), Some(30));
    // Complete minutes: 4, 0, 2 (the current 7 is left out).
    assert_eq!(arrivals.per_minute_rate(3), 2.0);
    assert_eq!(arrivals.per_minute_rate(1), 2.0);
    assert_eq!(arrivals.per_minute_rate(2), 1.0);
    // More minutes than kept: the 59 complete ones.
    assert_eq!(arrivals.per_minute_rate(1000), 6.0 / 59.0);
    assert_eq!(arrivals.per_minute_rate(0), 0.0);
    assert_eq!(arrivals.per_hour_rate(2), 20.0);
    // With the current minute.
    assert_eq!(arrivals.recent_minutes(1), 7);
    assert_eq!(arrivals.recent_minutes(2), 9);
    assert_eq!(arrivals.recent_minutes(999), 13);
    // A host that sent nothing.
    let empty = wicket_policy_sdk::Arrivals::default();
    assert_eq!(empty.per_minute_rate(5), 0.0);
    assert_eq!(empty.recent_minutes(5), 0);
    assert_eq!(empty.minutes_ago(0), None);
    assert_eq!(empty.this_minute(), 0);
}

fn mixed() -> Snapshot {
    Snapshot::builder()
        .tickets_max(2)
        .pods_max(6)
        .pod(Pod::starting(10).capacity(2))
        .pod(Pod::ready(11).capacity(2).tickets(1))
        .pod(Pod::ready(12).capacity(2).idle(40))
        .pod(Pod::ready(13).capacity(2).tickets(3)) // over capacity: full
        .pod(Pod::draining(14).capacity(2).tickets(1))
        .pod(Pod::ready(15).capacity(2).idle(90).replica())
        .pod(Pod::ready(16).capacity(2).idle(40))
        .pod(Pod::ready(17).capacity(2).tickets(1))
        .waiting(2)
        .build()
}

#[test]
fn totals_are_summed_as_the_contract_defines_them() {
    assert_eq!(
        mixed().totals(),
        Totals {
            ready_pods: 6,
            starting_pods: 1,
            draining_pods: 1,
            autoscaled_pods: 7,
            tickets_in_use: 6,
            // Pods 11, 12, 15, 16, 17 (13 is over capacity: none).
            free_tickets: 1 + 2 + 2 + 2 + 1,
            starting_tickets: 2,
        }
    );
    assert_eq!(mixed().free_slots(), 8);
}

#[test]
fn filters_pick_pods_by_phase_and_idleness() {
    let s = mixed();
    let ids = |pods: &mut dyn Iterator<Item = Pod>| pods.map(|p| p.id).collect::<Vec<_>>();
    assert_eq!(s.pods().len(), 8);
    assert_eq!(ids(&mut s.ready()), [11, 12, 13, 15, 16, 17]);
    assert_eq!(ids(&mut s.starting()), [10]);
    assert_eq!(ids(&mut s.draining()), [14]);
    assert_eq!(ids(&mut s.idle(40)), [12, 15, 16]);
    assert_eq!(ids(&mut s.idle(41)), [15]);
    assert_eq!(s.pods().get(4).map(|p| p.phase), Some(Phase::Draining));
}

#[test]
fn the_fullest_ready_pod_wins_and_ties_go_to_the_earlier_pod() {
    assert_eq!(mixed().fullest_ready_pod().map(|p| p.id), Some(11));
    let none_free = Snapshot::builder()
        .pod(Pod::ready(1).tickets(1))
        .pod(Pod::starting(2))
        .pod(Pod::draining(3))
        .build();
    assert_eq!(none_free.fullest_ready_pod(), None);
}

#[test]
fn deletable_idle_pods_are_autoscaled_and_most_idle_first() {
    let s = Snapshot::builder()
        .pod(Pod::ready(1).idle(10))
        .pod(Pod::ready(2).idle(30))
        .pod(Pod::ready(3).idle(10))
        .pod(Pod::ready(4).idle(99).replica())
        .pod(Pod::draining(5).idle(99))
        .pod(Pod::ready(6).idle(5))
        .build();
    let ids: Vec<u32> = s.deletable_idle_pods(10).iter().map(|p| p.id).collect();
    assert_eq!(ids, [2, 1, 3]);
    assert!(s.deletable_idle_pods(10).iter().all(Pod::is_deletable));
}

#[test]
fn pods_to_cover_rounds_up_within_pods_max() {
    // T = 2, M = 6, 7 autoscaled pods already: no room.
    assert_eq!(mixed().pods_to_cover(3), 0);
    let s = Snapshot::builder()
        .tickets_max(2)
        .pods_max(4)
        .pod(Pod::ready(1))
        .build();
    assert_eq!(s.pods_to_cover(0), 0);
    assert_eq!(s.pods_to_cover(3), 2);
    assert_eq!(s.pods_to_cover(100), 3, "4 at most, 1 exists");
    let empty_pods = Snapshot::builder().tickets_max(0).pods_max(4).build();
    assert_eq!(
        empty_pods.pods_to_cover(3),
        0,
        "a pod of 0 tickets cannot help"
    );
    let huge = Snapshot::builder()
        .tickets_max(1)
        .pods_max(u32::MAX)
        .build();
    assert_eq!(huge.pods_to_cover(u64::MAX), u32::MAX);
}

#[test]
fn pods_follow_the_hosts_stride() {
    let later = Snapshot::builder()
        .pods([Pod::ready(1).tickets(1), Pod::starting(2).age(9)])
        .extra_pod_words(5)
        .build();
    assert_eq!(later.pod_words(), 12);
    assert_eq!(later.pod_bytes().len(), 2 * 12 * 4);
    assert_eq!(
        later.pods().collect::<Vec<_>>(),
        [Pod::ready(1).tickets(1), Pod::starting(2).age(9)]
    );
}

#[test]
fn settings_observed_and_config_values_come_through() {
    let s = Snapshot::builder()
        .config("idle_seconds=300, spare=4;mode=fast idle_seconds=600")
        .startup_ms(4_000, 9_000)
        .session_seconds(1_800, 3_600)
        .longest_wait_ms(2_500)
        .waiting(3)
        .build();
    let settings = s.settings();
    assert_eq!(
        settings.config_value("idle_seconds"),
        Some("600"),
        "the last wins"
    );
    assert_eq!(settings.config_value("spare"), Some("4"));
    assert_eq!(settings.config_value("mode"), Some("fast"));
    assert_eq!(settings.config_value("Mode"), None);
    assert_eq!(
        s.observed(),
        Observed {
            startup_median_ms: Some(4_000),
            startup_p90_ms: Some(9_000),
            session_median_seconds: Some(1_800),
            session_p90_seconds: Some(3_600),
            longest_wait_ms: 2_500,
        }
    );
    assert_eq!(s.waiting(), 3);
    assert_eq!(Snapshot::builder().build().settings(), &Settings::default());
}

#[test]
fn scale_decisions_say_what_they_change() {
    assert!(ScaleDecision::none().is_none());
    assert_eq!(ScaleDecision::create(2).create, 2);
    assert_eq!(ScaleDecision::delete([3, 1]).delete, [3, 1]);
    assert!(!ScaleDecision::delete([3]).is_none());
}

#[test]
fn a_0_1_snapshot_reads_as_a_0_2_one() {
    let settings = Settings {
        tickets_max: 2,
        config: "x=1".into(),
        ..Settings::default()
    };
    // Two pods of six words, then a partial third.
    let words = [7, 2, 1, 1, 1, 0, 9, 2, 0, 0, 0, 0, 4, 4];
    let s = Snapshot::from_0_1(settings.clone(), &words, 5);
    assert_eq!(
        s.pods().collect::<Vec<_>>(),
        [
            Pod::ready(7).capacity(2).tickets(1),
            Pod::starting(9).capacity(2).replica(),
        ]
    );
    assert_eq!(s.pod_words(), 7);
    assert_eq!(s.totals(), Totals::of(s.pods()));
    assert_eq!((s.settings(), s.waiting()), (&settings, 5));
    assert_eq!(s.clock(), Clock::default());
    assert!(s.arrivals().per_minute().is_empty());
    assert_eq!(s.arrivals().per_minute_rate(10), 0.0);
    assert_eq!(s.observed(), Observed::default());
}
