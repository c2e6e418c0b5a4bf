// Native tests of __NAME__ (node --test, no Wasm): `npm test`.
import { test } from "node:test";
import assert from "node:assert/strict";

import { assign, scale } from "./policy.js";
import { ScaleDecision, SnapshotBuilder } from "./wicket-policy.js";

test("an empty app gets pods for its spare", () => {
  const snap = new SnapshotBuilder({ ticketsMax: 2, ticketsSpare: 3, podsMax: 5 }).build();
  assert.deepEqual(scale(snap), new ScaleDecision(2));
});

test("tickets go to the fullest ready pod", () => {
  const snap = new SnapshotBuilder({ ticketsMax: 4 }).pod(1, "ready", { tickets: 1 }).pod(2, "ready", { tickets: 3 }).build();
  assert.equal(assign(snap), 2);
});

test("idle pods past the cooldown are deleted", () => {
  const snap = new SnapshotBuilder({ ticketsMax: 2, ticketsSpare: 1, podsMax: 5, cooldownSeconds: 60 })
    .at("2026-12-07 09:00", 3600)
    .pod(1, "ready", { idleSeconds: 600 })
    .pod(2, "ready", { idleSeconds: 10 })
    .build();
  assert.deepEqual(scale(snap), new ScaleDecision(0, [1]));
});
