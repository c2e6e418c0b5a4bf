// Native tests of the predictive policy (node --test, no Wasm).
import { test } from "node:test";
import assert from "node:assert/strict";

import { assign, decide, parseConfig, scale, spareNow, startupSeconds } from "./policy.js";
import { ScaleDecision, SnapshotBuilder } from "../../../sdk/js/wicket-policy.js";

// Monday 2026-12-07 09:00:30 UTC: half of the current minute has passed.
const NOW = 1796634030;

function app(settings = {}) {
  return new SnapshotBuilder({ ticketsMax: 2, ticketsSpare: 1, podsMax: 20, cooldownSeconds: 60, ...settings }).clock(NOW);
}

/** `perMinute` for `minutes` whole minutes at `rate`, then the current minute. */
function history(rate, minutes, current = 0) {
  return [...new Array(minutes).fill(rate), current];
}

test("the config parses and names bad entries", () => {
  assert.deepEqual(parseConfig(""), { window: 10, startup: 60, factor: 1, min_spare: undefined });
  assert.deepEqual(parseConfig("window=5, startup=90; factor=1.5 min_spare=3"), {
    window: 5,
    startup: 90,
    factor: 1.5,
    min_spare: 3,
  });
  assert.throws(() => parseConfig("windw=5"), /bad entry "windw=5"/);
  assert.throws(() => parseConfig("window=0"), /bad value in "window=0": a number from 1 to 59/);
  assert.throws(() => parseConfig("factor=lots"), /bad value in "factor=lots"/);
  assert.throws(() => parseConfig("startup="), /bad value/);
});

test("expected arrivals during an observed start-up decide the spare", () => {
  // 6 users a minute over 10 minutes; pods take 120 s (p90): 12 users.
  const snap = app().arrivals({ perMinute: history(6, 10) }).observed({ startupP90Ms: 120000, startupMedianMs: 30000 }).build();
  assert.equal(startupSeconds(snap), 120);
  assert.equal(spareNow(snap), 12);
  assert.deepEqual(scale(snap), new ScaleDecision(6));
});

test("the median start-up is used without a p90, the config default without either", () => {
  const median = app().arrivals({ perMinute: history(6, 10) }).observed({ startupMedianMs: 30000 }).build();
  assert.equal(spareNow(median), 3);
  const none = app().arrivals({ perMinute: history(6, 10) }).build();
  assert.equal(startupSeconds(none), 60);
  assert.deepEqual(scale(none), new ScaleDecision(3));
  const configured = app({ config: "startup=180" }).arrivals({ perMinute: history(6, 10) }).build();
  assert.deepEqual(scale(configured), new ScaleDecision(9));
});

test("only the last `window` whole minutes count, not the current one", () => {
  // A burst 20 minutes ago and a busy current minute are both ignored.
  const perMinute = [50, ...new Array(19).fill(2), 40];
  const snap = app().arrivals({ perMinute }).observed({ startupP90Ms: 60000 }).build();
  assert.equal(snap.arrivals.perMinuteRate(10), 2);
  assert.equal(spareNow(snap), 2);
  const wide = app({ config: "window=20" }).arrivals({ perMinute }).observed({ startupP90Ms: 60000 }).build();
  // (50 + 19 × 2) / 20 = 4.4 a minute → 5 users.
  assert.equal(spareNow(wide), 5);
});

test("the factor adds margin and tickets.spare (or min_spare) is the floor", () => {
  const base = { perMinute: history(4, 10) };
  const startup = { startupP90Ms: 30000 };
  assert.equal(spareNow(app().arrivals(base).observed(startup).build()), 2);
  assert.equal(spareNow(app({ config: "factor=2" }).arrivals(base).observed(startup).build()), 4);
  assert.equal(spareNow(app({ ticketsSpare: 5 }).arrivals(base).observed(startup).build()), 5);
  assert.equal(spareNow(app({ ticketsSpare: 5, config: "min_spare=0" }).build()), 0);
  assert.deepEqual(scale(app({ ticketsSpare: 0, config: "min_spare=0" }).build()), new ScaleDecision());
});

test("creation stops at pods.max, counting starting and draining autoscaled pods", () => {
  const snap = app({ podsMax: 4 })
    .pod(1, "starting")
    .pod(2, "draining")
    .arrivals({ perMinute: history(30, 60) })
    .observed({ startupP90Ms: 120000 })
    .build();
  assert.deepEqual(scale(snap), new ScaleDecision(2));
});

test("waiting users add to the predicted spare", () => {
  const snap = app().pod(1, "ready", { tickets: 2 }).waiting(3).arrivals({ perMinute: history(2, 10) }).build();
  // Spare 2 + 3 waiting = 5 tickets, none free: 3 pods.
  assert.deepEqual(scale(snap), new ScaleDecision(3));
});

test("when arrivals stop, idle pods past the cooldown go, most idle first", () => {
  const builder = () =>
    app()
      .pod(1, "ready", { idleSeconds: 600 })
      .pod(2, "ready", { idleSeconds: 900 })
      .pod(3, "ready", { tickets: 1 })
      .pod(4, "ready", { idleSeconds: 30 });
  assert.deepEqual(scale(builder().build()), new ScaleDecision(0, [2, 1]));
  // While users keep arriving (3 a minute, 60 s start-up) the same pods stay.
  assert.deepEqual(scale(builder().arrivals({ perMinute: history(6, 10) }).build()), new ScaleDecision(0, []));
});

test("assign packs users on the fullest ready pod; the export wraps raw snapshots", () => {
  const raw = app().pod(1, "ready", { tickets: 1 }).pod(2, "ready").pod(3, "ready", { tickets: 2 }).raw();
  assert.equal(decide.assign(raw), 1);
  assert.equal(assign(new SnapshotBuilder().build()), undefined);
  assert.deepEqual(decide.scale(raw), { create: 0, delete: Uint32Array.of() });
});
