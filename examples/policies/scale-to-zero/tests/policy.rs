//! The scale-to-zero story, step by step, on snapshots built with the SDK:
//! no pods → a user waits → a pod starts → the user is admitted → the user
//! leaves → the pod goes after the idle time → no pods.

use wicket_policy_scale_to_zero::ScaleToZero;
use wicket_policy_sdk::{Pod, Policy, ScaleDecision, Snapshot, SnapshotBuilder};

/// An app as the README describes it: one user per pod, up to 3 pods, a
/// 60 s cooldown, and `tickets.spare` left at its default of 2 (this policy
/// does not use it).
fn app() -> SnapshotBuilder {
    Snapshot::builder()
        .tickets_max(1)
        .tickets_spare(2)
        .pods_max(3)
        .cooldown_seconds(60)
}

#[test]
fn an_unused_app_has_no_pods_and_creates_none() {
    let s = app().build();
    assert_eq!(ScaleToZero::assign(&s), None);
    assert_eq!(ScaleToZero::scale(&s), ScaleDecision::none());
}

#[test]
fn the_first_user_waits_and_a_pod_is_created_for_them() {
    let s = app().waiting(1).build();
    assert_eq!(ScaleToZero::assign(&s), None, "no pod yet: the user waits");
    assert_eq!(ScaleToZero::scale(&s), ScaleDecision::create(1));
}

#[test]
fn a_starting_pod_covers_the_waiting_user() {
    let s = app().waiting(1).pod(Pod::starting(1)).build();
    assert_eq!(ScaleToZero::assign(&s), None);
    assert_eq!(ScaleToZero::scale(&s), ScaleDecision::none());
}

#[test]
fn the_user_is_admitted_when_the_pod_is_ready() {
    let s = app().waiting(1).pod(Pod::ready(1)).build();
    assert_eq!(ScaleToZero::assign(&s), Some(1));
}

#[test]
fn a_pod_in_use_stays() {
    let s = app().pod(Pod::ready(1).tickets(1)).build();
    assert_eq!(ScaleToZero::scale(&s), ScaleDecision::none());
}

#[test]
fn after_the_cooldown_the_app_returns_to_zero_pods() {
    let recent = app().pod(Pod::ready(1).idle(59)).build();
    assert_eq!(ScaleToZero::scale(&recent), ScaleDecision::none());
    let idle = app().pod(Pod::ready(1).idle(60)).build();
    assert_eq!(ScaleToZero::scale(&idle), ScaleDecision::delete([1]));
}

#[test]
fn idle_seconds_in_the_config_replaces_the_cooldown() {
    let s = |idle| {
        app()
            .config("idle_seconds=300")
            .pod(Pod::ready(1).idle(idle))
            .build()
    };
    assert_eq!(ScaleToZero::scale(&s(299)), ScaleDecision::none());
    assert_eq!(ScaleToZero::scale(&s(300)), ScaleDecision::delete([1]));
}

#[test]
fn an_unreadable_config_falls_back_to_the_defaults() {
    for config in [
        "idle_seconds=soon",
        "idle_seconds=-5",
        "nonsense",
        "spare=lots",
    ] {
        let s = app().config(config).pod(Pod::ready(1).idle(60)).build();
        assert_eq!(
            ScaleToZero::scale(&s),
            ScaleDecision::delete([1]),
            "{config}"
        );
    }
}

#[test]
fn several_waiting_users_get_enough_pods_within_pods_max() {
    let two_per_pod = app().tickets_max(2).pods_max(10).waiting(5).build();
    assert_eq!(ScaleToZero::scale(&two_per_pod), ScaleDecision::create(3));
    let capped = app().waiting(5).pod(Pod::starting(1)).build();
    assert_eq!(ScaleToZero::scale(&capped), ScaleDecision::create(2));
}

#[test]
fn while_a_waiting_user_is_covered_only_surplus_idle_pods_go() {
    // Two idle pods, one user waiting: one pod stays for them.
    let s = app()
        .waiting(1)
        .pod(Pod::ready(1).idle(100))
        .pod(Pod::ready(2).idle(200))
        .build();
    assert_eq!(ScaleToZero::scale(&s), ScaleDecision::delete([2]));
}

#[test]
fn spare_applies_only_while_the_app_is_in_use() {
    let busy = app()
        .config("spare=1")
        .pod(Pod::ready(1).tickets(1))
        .build();
    assert_eq!(ScaleToZero::scale(&busy), ScaleDecision::create(1));
    let warm = app()
        .config("spare=1")
        .pod(Pod::ready(1).tickets(1))
        .pod(Pod::ready(2).idle(600))
        .build();
    assert_eq!(ScaleToZero::scale(&warm), ScaleDecision::none());
    let unused = app().config("spare=1").pod(Pod::ready(2).idle(600)).build();
    assert_eq!(ScaleToZero::scale(&unused), ScaleDecision::delete([2]));
}

#[test]
fn replicas_and_draining_pods_are_never_deleted() {
    let s = app()
        .pod(Pod::ready(1).replica().idle(9_999))
        .pod(Pod::draining(2).idle(9_999))
        .pod(Pod::ready(3).idle(9_999))
        .build();
    assert_eq!(ScaleToZero::scale(&s), ScaleDecision::delete([3]));
}

#[test]
fn the_most_idle_pods_go_first() {
    let s = app()
        .waiting(1)
        .pod(Pod::ready(1).idle(100))
        .pod(Pod::ready(2).idle(300))
        .pod(Pod::ready(3).idle(200))
        .build();
    assert_eq!(ScaleToZero::scale(&s), ScaleDecision::delete([2, 3]));
}
