// __NAME__: a wicket scaling policy (wicket:policy@0.2.0).
//
// It starts as wicket's default policy: tickets go to the fullest ready pod;
// `ticketsSpare` free tickets (plus one per waiting user) are kept on ready
// and starting pods, up to `podsMax`; autoscaled pods idle past the cooldown
// are deleted while the spare stays covered. Change `assign` and `scale`.
//
// The snapshot (see wicket-policy.js) has: settings (ticketsMax,
// ticketsSpare, podsMax, cooldownSeconds, config), clock (unixSeconds,
// utcOffsetSeconds, weekday, minuteOfDay), pods (read in place; ready(),
// starting(), draining(), idle(), withFreeSlot()), totals, waiting, arrivals
// (perMinute, perHour, perMinuteRate()) and observed (start-up and session
// times).

import { exportPolicy } from "./wicket-policy.js";

/** The id of the ready pod that gets the next ticket, or undefined (wait). */
export function assign(snapshot) {
  return snapshot.fullestWithFreeSlot();
}

/** Pods to create and ids of pods to delete (a ScaleDecision). */
export function scale(snapshot) {
  return snapshot.defaultScale();
}

/** jco exports this object as the contract's `decide` interface. */
export const decide = exportPolicy({ assign, scale });
