// Native tests of the JavaScript SDK: packing and decoding, the clock and
// arrival helpers, and the default decisions (the Rust default policy's cases).
import { test } from "node:test";
import assert from "node:assert/strict";

import * as wp from "./wicket-policy.js";
import { Phase, ScaleDecision, SnapshotBuilder } from "./wicket-policy.js";

function packed(...pods) {
  const bytes = new Uint8Array(pods.flat().length * 4);
  const view = new DataView(bytes.buffer);
  pods.flat().forEach((w, i) => view.setUint32(4 * i, w, true));
  return bytes;
}

test("pods decode with the host stride from little-endian words", () => {
  const snap = new SnapshotBuilder({ ticketsMax: 2 })
    .pod(7, "ready", { tickets: 1, idleSeconds: 30, ageSeconds: 99 })
    .build();
  assert.deepEqual(snap.raw.pods, packed([7, 2, 1, 1, 1, 30, 99]));
  const [pod] = snap.pods;
  assert.deepEqual(pod, new wp.Pod(7, 2, 1, Phase.READY, true, 30, 99));
  assert.equal(pod.free, 1);
});

test("a longer stride is read, extra words ignored, unaligned bytes copied", () => {
  const raw = new SnapshotBuilder().raw();
  raw.podWords = 9;
  const body = packed([5, 1, 0, 1, 0, 3, 4, 111, 222], [6, 1, 1, 0, 1, 0, 1, 333, 444]);
  // Misaligned on purpose: the view must not assume a 4-byte offset.
  const shifted = new Uint8Array(body.length + 1);
  shifted.set(body, 1);
  raw.pods = shifted.subarray(1);
  const snap = new wp.Snapshot(raw);
  assert.deepEqual([...snap.pods].map((p) => p.id), [5, 6]);
  assert.equal(snap.pods.at(1).phase, Phase.STARTING);
  assert.equal(snap.pods.at(-1).ageSeconds, 1);
  assert.equal(snap.pods.at(2), undefined);
});

test("unknown phases read as draining; short strides and torn pods read as none", () => {
  const raw = new SnapshotBuilder().raw();
  raw.pods = packed([1, 1, 0, 9, 1, 50, 0]);
  assert.equal(new wp.Snapshot(raw).pods.at(0).phase, Phase.DRAINING);
  assert.deepEqual([...new wp.Snapshot(raw).draining()].map((p) => p.id), [1]);
  raw.podWords = 6;
  assert.equal(new wp.Snapshot(raw).pods.length, 0);
  raw.podWords = 7;
  raw.pods = raw.pods.subarray(0, 24);
  assert.equal(new wp.Snapshot(raw).pods.length, 0);
});

test("iterators select by phase, free slot and idleness", () => {
  const snap = new SnapshotBuilder({ ticketsMax: 2, cooldownSeconds: 10 })
    .pod(1, "ready", { tickets: 2 })
    .pod(2, "ready", { tickets: 1 })
    .pod(3, "ready", { idleSeconds: 5 })
    .pod(4, "ready", { idleSeconds: 50 })
    .pod(5, "ready", { idleSeconds: 50, autoscaled: false })
    .pod(6, "starting")
    .pod(7, "draining", { idleSeconds: 99 })
    .build();
  const ids = (it) => [...it].map((p) => p.id);
  assert.deepEqual(ids(snap.ready()), [1, 2, 3, 4, 5]);
  assert.deepEqual(ids(snap.starting()), [6]);
  assert.deepEqual(ids(snap.draining()), [7]);
  assert.deepEqual(ids(snap.withFreeSlot()), [2, 3, 4, 5]);
  assert.deepEqual(ids(snap.idle()), [4]);
  assert.deepEqual(ids(snap.idle(0)), [3, 4]);
  assert.equal(snap.freeSlots, 7);
  assert.equal(snap.totals.startingTickets, 2);
  assert.equal(snap.totals.autoscaledPods, 6);
});

test("the clock gives the local weekday and minute of day", () => {
  const snap = new SnapshotBuilder().at("2026-12-07 08:45", 3600).build();
  assert.equal(snap.clock.unixSeconds, 1796629500);
  assert.equal(snap.clock.weekday, 0);
  assert.equal(snap.clock.minuteOfDay, 525);
  assert.equal(snap.clock.minuteOfWeek, 525);
  const late = new SnapshotBuilder().at("2026-12-06 23:30", -7200).build();
  assert.deepEqual([late.clock.weekday, late.clock.minuteOfDay], [6, 1410]);
  assert.equal(wp.WEEKDAYS[late.clock.weekday], "Sun");
});

test("arrival rates leave out the current minute and hour", () => {
  const snap = new SnapshotBuilder()
    .arrivals({ perMinute: [6, 6, 3, 100], perHour: [10, 30, 7] })
    .build();
  assert.equal(snap.arrivals.perMinute.length, 60);
  assert.equal(snap.arrivals.perHour.length, 168);
  assert.equal(snap.arrivals.perMinuteRate(3), 5);
  assert.equal(snap.arrivals.perMinuteRate(2), 4.5);
  assert.equal(snap.arrivals.thisMinute(), 100);
  assert.equal(snap.arrivals.perHourRate(2), 20);
  assert.equal(new SnapshotBuilder().build().arrivals.perMinuteRate(), 0);
});

test("default assign takes the fullest ready pod with room, ties to the earlier", () => {
  const snap = new SnapshotBuilder({ ticketsMax: 3 })
    .pod(9, "ready", { tickets: 3 })
    .pod(4, "ready", { tickets: 1 })
    .pod(2, "ready", { tickets: 2 })
    .pod(8, "ready", { tickets: 2 })
    .pod(1, "starting")
    .build();
  assert.equal(snap.fullestWithFreeSlot(), 2);
  const full = new SnapshotBuilder().pod(1, "ready", { tickets: 1 }).pod(2, "starting").build();
  assert.equal(full.fullestWithFreeSlot(), undefined);
});

test("default scale creates up to pods.max counting starting autoscaled capacity", () => {
  const s = (settings) => new SnapshotBuilder(settings);
  assert.deepEqual(s({ ticketsMax: 4, ticketsSpare: 5, podsMax: 10 }).build().defaultScale(), new ScaleDecision(2));
  assert.deepEqual(
    s({ ticketsMax: 1, ticketsSpare: 5, podsMax: 3 }).pod(1, "draining").build().defaultScale(),
    new ScaleDecision(2),
  );
  assert.deepEqual(
    s({ ticketsMax: 1, ticketsSpare: 2, podsMax: 5 }).pod(1, "starting").pod(2, "starting").build().defaultScale(),
    new ScaleDecision(),
  );
  assert.deepEqual(
    s({ ticketsMax: 1, ticketsSpare: 1, podsMax: 5 }).pod(1, "starting", { autoscaled: false }).build().defaultScale(),
    new ScaleDecision(1),
  );
  assert.deepEqual(
    s({ ticketsMax: 2, ticketsSpare: 1, podsMax: 10 })
      .pod(1, "ready", { tickets: 2, autoscaled: false })
      .waiting(4)
      .build()
      .defaultScale(),
    new ScaleDecision(3),
  );
});

test("default scale deletes most idle first while the spare stays covered", () => {
  const snap = new SnapshotBuilder({ ticketsMax: 2, ticketsSpare: 1, podsMax: 4, cooldownSeconds: 10 })
    .pod(1, "ready", { capacity: 10, idleSeconds: 99 })
    .pod(2, "ready", { idleSeconds: 60 })
    .build();
  assert.deepEqual(snap.defaultScale(), new ScaleDecision(0, [1]));
  assert.deepEqual(snap.defaultScale(3), new ScaleDecision(0, [2]));
  const ties = new SnapshotBuilder({ ticketsMax: 1, ticketsSpare: 0, podsMax: 4 })
    .pod(5, "ready", { idleSeconds: 20 })
    .pod(3, "ready", { idleSeconds: 50 })
    .pod(4, "ready", { idleSeconds: 20 })
    .build();
  // Most idle first; equally idle pods in name order.
  assert.deepEqual(ties.defaultScale(), new ScaleDecision(0, [3, 5, 4]));
});

test("the export glue wraps raw snapshots and returns the contract's shapes", () => {
  const decide = wp.exportPolicy({
    assign: (snap) => {
      assert.ok(snap instanceof wp.Snapshot);
      return snap.fullestWithFreeSlot();
    },
    scale: () => new ScaleDecision(1, [3]),
  });
  const raw = new SnapshotBuilder().pod(3, "ready").raw();
  assert.equal(decide.assign(raw), 3);
  assert.deepEqual(decide.scale(raw), { create: 1, delete: Uint32Array.of(3) });
  const none = new SnapshotBuilder().raw();
  assert.equal(decide.assign(none), undefined);
});
