// wicket policy SDK for JavaScript: a typed view of the
// `wicket:policy@0.2.0` snapshot, the decision type, a snapshot builder for
// native tests (`node --test`), and the glue that exports a policy from a
// jco / componentize-js component.
//
// A policy module:
//
//   import { exportPolicy, ScaleDecision } from "./wicket-policy.js";
//   export function assign(snapshot) { return snapshot.fullestWithFreeSlot(); }
//   export function scale(snapshot) { return snapshot.defaultScale(); }
//   export const decide = exportPolicy({ assign, scale });
//
// jco exports the module's `decide` object as the contract's `decide`
// interface. Pods arrive as one Uint8Array of little-endian u32 words,
// `podWords` per pod, and are read in place (no copy) when asked for; the
// sums a decision usually needs are in `snapshot.totals`.

/** The contract this SDK speaks. */
export const CONTRACT = "wicket:policy@0.2.0";

/**
 * Words per pod this SDK knows (id, capacity, tickets, phase, autoscaled,
 * idle seconds, age seconds). Pods are read with the stride the host sends.
 */
export const POD_WORDS = 7;

/** Local weekdays as `Clock.weekday` numbers them (Monday = 0). */
export const WEEKDAYS = Object.freeze(["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]);

/** Pod phases as packed (word 3); unknown values read as DRAINING. */
export const Phase = Object.freeze({ STARTING: 0, READY: 1, DRAINING: 2 });

const ID = 0;
const CAPACITY = 1;
const TICKETS = 2;
const PHASE = 3;
const AUTOSCALED = 4;
const IDLE = 5;
const AGE = 6;

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** One pod, decoded from its packed words. */
export class Pod {
  constructor(id, capacity, tickets, phase, autoscaled, idleSeconds, ageSeconds) {
    /** Stable id that decisions name the pod by. */
    this.id = id;
    /** Tickets this pod can hold. */
    this.capacity = capacity;
    /** Tickets held on it now. */
    this.tickets = tickets;
    /** Phase.STARTING, READY or DRAINING. */
    this.phase = phase;
    /** Created by wicket (deletable), not a Deployment replica. */
    this.autoscaled = autoscaled;
    /** Whole seconds since it last held a ticket. */
    this.idleSeconds = idleSeconds;
    /** Whole seconds since the host first saw it. */
    this.ageSeconds = ageSeconds;
  }

  /** Tickets it can still take (0 unless ready). */
  get free() {
    return this.phase === Phase.READY ? Math.max(this.capacity - this.tickets, 0) : 0;
  }
}

/** The app's pods in name order, read in place from the packed bytes. */
export class Pods {
  constructor(bytes, podWords) {
    // Fewer words than this SDK knows would shift every field: show no pods
    // rather than misread them (the host never sends that).
    const stride = podWords >= POD_WORDS ? podWords : 0;
    const count = stride ? Math.floor(bytes.byteLength / (4 * stride)) : 0;
    this.stride = stride;
    this.length = count;
    if (LITTLE_ENDIAN && bytes.byteOffset % 4 === 0) {
      this.words = new Uint32Array(bytes.buffer, bytes.byteOffset, count * stride);
    } else {
      // Unaligned or big-endian: one copy, decoded word by word.
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      this.words = new Uint32Array(count * stride);
      for (let i = 0; i < this.words.length; i++) this.words[i] = view.getUint32(4 * i, true);
    }
  }

  /** Word `word` (0 = id … 6 = age) of pod `index`. */
  word(index, word) {
    return this.words[index * this.stride + word];
  }

  /** Pod `index` (negative counts from the end), or undefined. */
  at(index) {
    if (index < 0) index += this.length;
    if (!(index >= 0 && index < this.length)) return undefined;
    const w = this.words;
    const b = index * this.stride;
    const phase = w[b + PHASE];
    return new Pod(
      w[b + ID],
      w[b + CAPACITY],
      w[b + TICKETS],
      phase <= 2 ? phase : Phase.DRAINING,
      w[b + AUTOSCALED] !== 0,
      w[b + IDLE],
      w[b + AGE],
    );
  }

  /**
   * Positions of the autoscaled, ready, empty pods idle for at least
   * `minSeconds`, in name order (a plain loop: QuickJS has no JIT).
   */
  idleIndices(minSeconds) {
    const { words: w, stride, length } = this;
    const out = [];
    for (let b = 0, i = 0; i < length; i++, b += stride) {
      if (w[b + PHASE] === Phase.READY && w[b + AUTOSCALED] !== 0 && w[b + TICKETS] === 0 && w[b + IDLE] >= minSeconds) {
        out.push(i);
      }
    }
    return out;
  }

  /** The pods whose index passes `keep`, in name order. */
  *where(keep) {
    for (let i = 0; i < this.length; i++) if (keep(i)) yield this.at(i);
  }

  *[Symbol.iterator]() {
    for (let i = 0; i < this.length; i++) yield this.at(i);
  }

  /** Phase of pod `index` (unknown → DRAINING). */
  phaseOf(index) {
    const phase = this.words[index * this.stride + PHASE];
    return phase <= 2 ? phase : Phase.DRAINING;
  }
}

/** The time of the decision (simulated in tests and the simulator). */
export class Clock {
  constructor(raw) {
    /** Seconds since 1970-01-01T00:00:00Z. */
    this.unixSeconds = Number(raw.unixSeconds);
    /** The app's local offset from UTC, in seconds. */
    this.utcOffsetSeconds = raw.utcOffsetSeconds;
  }

  /** Seconds since 1970-01-01T00:00:00 local time. */
  get localSeconds() {
    return this.unixSeconds + this.utcOffsetSeconds;
  }

  /** Local day of the week, Monday = 0 … Sunday = 6. */
  get weekday() {
    // 1970-01-01 was a Thursday (3).
    return mod(Math.floor(this.localSeconds / 86400) + 3, 7);
  }

  /** Minutes since local midnight, 0 … 1439. */
  get minuteOfDay() {
    return Math.floor(mod(this.localSeconds, 86400) / 60);
  }

  /** Minutes since local Monday 00:00, 0 … 10079. */
  get minuteOfWeek() {
    return this.weekday * 1440 + this.minuteOfDay;
  }
}

function mod(a, n) {
  return ((a % n) + n) % n;
}

/**
 * Users who asked for a ticket, per minute and per hour, newest last. One
 * client (address) counts at most its `places_per_client` a minute, so one
 * that joins and leaves in a loop cannot inflate the rate.
 */
export class Arrivals {
  constructor(raw) {
    /** Counts of the last 60 minutes, the current (still filling) one last. */
    this.perMinute = raw.perMinute;
    /** Counts of the last 168 hours, the current one last. */
    this.perHour = raw.perHour;
  }

  /**
   * Mean arrivals per minute over the last `minutes` whole minutes (the
   * current, still filling minute left out); 0 without history.
   */
  perMinuteRate(minutes = 10) {
    return meanOfComplete(this.perMinute, minutes);
  }

  /** Mean arrivals per hour over the last `hours` whole hours; 0 without history. */
  perHourRate(hours = 1) {
    return meanOfComplete(this.perHour, hours);
  }

  /** Arrivals so far in the current minute. */
  thisMinute() {
    return this.perMinute.length ? this.perMinute[this.perMinute.length - 1] : 0;
  }

  /** Arrivals in the hour one week before the current one (0 if unknown). */
  sameHourLastWeek() {
    return this.perHour.length >= 168 ? this.perHour[0] : 0;
  }
}

function meanOfComplete(counts, n) {
  const end = counts.length - 1;
  const start = Math.max(end - Math.max(n, 0), 0);
  if (end <= start) return 0;
  let sum = 0;
  for (let i = start; i < end; i++) sum += counts[i];
  return sum / (end - start);
}

/** Everything a decision may use, as typed, lazily decoded views. */
export class Snapshot {
  constructor(raw) {
    this.raw = raw;
    this._pods = undefined;
    /** The app's settings: ticketsMax, ticketsSpare, podsMax, cooldownSeconds, config. */
    this.settings = raw.settings;
    /** When the decision is taken. */
    this.clock = new Clock(raw.clock);
    /** Sums over the pods (readyPods, …, startingTickets). */
    this.totals = raw.totals;
    /** Users waiting in the queue. */
    this.waiting = raw.waiting;
    /** Arrival history. */
    this.arrivals = new Arrivals(raw.arrivals);
    /**
     * Observed times: startupMedianMs, startupP90Ms, sessionMedianSeconds,
     * sessionP90Seconds (undefined until seen) and longestWaitMs.
     */
    this.observed = raw.observed;
  }

  /** All pods in name order (decoded on first use). */
  get pods() {
    if (this._pods === undefined) this._pods = new Pods(this.raw.pods, this.raw.podWords);
    return this._pods;
  }

  /** Free tickets on ready pods (`totals.freeTickets`). */
  get freeSlots() {
    return this.totals.freeTickets;
  }

  /** Ready pods, in name order. */
  ready() {
    const pods = this.pods;
    return pods.where((i) => pods.phaseOf(i) === Phase.READY);
  }

  /** Starting pods, in name order. */
  starting() {
    const pods = this.pods;
    return pods.where((i) => pods.phaseOf(i) === Phase.STARTING);
  }

  /** Draining pods, in name order. */
  draining() {
    const pods = this.pods;
    return pods.where((i) => pods.phaseOf(i) === Phase.DRAINING);
  }

  /** Ready pods that can take another ticket, in name order. */
  withFreeSlot() {
    const pods = this.pods;
    return pods.where(
      (i) => pods.phaseOf(i) === Phase.READY && pods.word(i, TICKETS) < pods.word(i, CAPACITY),
    );
  }

  /**
   * Autoscaled, ready pods with no tickets idle for at least `minSeconds`
   * (default: the cooldown): the pods a policy may delete.
   */
  idle(minSeconds = this.settings.cooldownSeconds) {
    const pods = this.pods;
    return (function* () {
      for (const i of pods.idleIndices(minSeconds)) yield pods.at(i);
    })();
  }

  /**
   * The id of the ready pod with the most tickets that still has a free one
   * (ties: the earlier pod), or undefined: the default `assign`.
   */
  fullestWithFreeSlot() {
    const { words: w, stride, length } = this.pods;
    let best;
    let bestTickets = -1;
    for (let b = 0, i = 0; i < length; i++, b += stride) {
      const tickets = w[b + TICKETS];
      if (w[b + PHASE] === Phase.READY && tickets < w[b + CAPACITY] && tickets > bestTickets) {
        best = w[b + ID];
        bestTickets = tickets;
      }
    }
    return best;
  }

  /**
   * wicket's default scaling keeping `spare` free tickets (default
   * `ticketsSpare`) plus one per waiting user.
   */
  defaultScale(spare = this.settings.ticketsSpare) {
    return this.scaleToCover(spare + this.waiting);
  }

  /**
   * Creates or deletes pods so that `needed` tickets are covered by the free
   * tickets on ready pods plus the capacity of autoscaled starting pods,
   * within podsMax; never deletes below `needed`. Deletes autoscaled, ready,
   * empty pods idle past the cooldown, most idle first.
   */
  scaleToCover(needed) {
    needed = Math.max(Math.ceil(needed), 0);
    const { words: w, stride, length } = this.pods;
    let free = this.totals.freeTickets;
    // Starting replicas of the Deployment are not counted, as in the
    // default policy: only pods wicket asked for are sure to come.
    let incoming = 0;
    if (this.totals.startingPods) {
      for (let b = 0, i = 0; i < length; i++, b += stride) {
        if (w[b + PHASE] === Phase.STARTING && w[b + AUTOSCALED]) incoming += w[b + CAPACITY];
      }
    }
    const available = free + incoming;
    const s = this.settings;
    if (needed > available) {
      if (s.ticketsMax === 0) return new ScaleDecision();
      const wanted = Math.ceil((needed - available) / s.ticketsMax);
      const room = Math.max(s.podsMax - this.totals.autoscaledPods, 0);
      return new ScaleDecision(Math.min(wanted, room));
    }
    if (needed === available) return new ScaleDecision();
    // Positions of the deletable pods, most idle first; read in place.
    const candidates = this.pods.idleIndices(s.cooldownSeconds);
    // Array.prototype.sort is stable: ties keep name order.
    candidates.sort((a, b) => w[b * stride + IDLE] - w[a * stride + IDLE]);
    const remove = [];
    for (const i of candidates) {
      const capacity = w[i * stride + CAPACITY];
      if (free - capacity >= needed) {
        free -= capacity;
        remove.push(w[i * stride + ID]);
      }
    }
    return new ScaleDecision(0, remove);
  }
}

/** Which pods to create and delete. */
export class ScaleDecision {
  constructor(create = 0, remove = []) {
    /** Pods to create from the app's template. */
    this.create = create;
    /** Ids of autoscaled, ready or draining pods with no tickets to delete. */
    this.delete = remove;
  }
}

// Until `setLog` gives the host's import: the console where there is one
// (node, tests). The QuickJS engine of a component has none, and a policy
// must not fail for a log line: there, a line nobody routed is dropped.
let logger = (level, message) => {
  if (typeof console === "undefined") return;
  if (level === "warn") console.error(`[${level}] ${message}`);
  else console.log(`[${level}] ${message}`);
};

/**
 * Writes a line to the host's log (`level`: "debug", "info" or "warn")
 * through `fn` once `setLog(fn)` gave one: a component's entry module
 * passes the contract's `log` import (see examples/policies/predictive/
 * component.js). Without it: the console if there is one (node), else
 * nothing.
 */
export function log(level, message) {
  logger(level, message);
}

/** Routes `log` through `fn(level, message)` (the component's host import). */
export function setLog(fn) {
  logger = fn;
}

/**
 * The object to export as `decide`: wraps the host's raw snapshots for the
 * author's `assign` and `scale`, and turns their answers into the contract's.
 */
export function exportPolicy({ assign, scale }) {
  return {
    assign(raw) {
      const id = assign(new Snapshot(raw));
      return id === null || id === undefined ? undefined : id >>> 0;
    },
    scale(raw) {
      const d = scale(new Snapshot(raw));
      return { create: d.create >>> 0, delete: Uint32Array.from(d.delete ?? []) };
    },
  };
}

// --- Snapshot builder (native tests) -----------------------------------------

const PHASES = { starting: Phase.STARTING, ready: Phase.READY, draining: Phase.DRAINING };

/**
 * Builds snapshots for native tests exactly as the host packs them:
 *
 *   const snap = new SnapshotBuilder({ ticketsMax: 2, ticketsSpare: 1, podsMax: 4 })
 *     .at("2026-12-07 09:00", 3600)
 *     .pod(1, "ready", { tickets: 1 })
 *     .build();
 *
 * Totals are computed from the pods as the host computes them.
 */
export class SnapshotBuilder {
  constructor(settings = {}) {
    this._settings = {
      ticketsMax: 1,
      ticketsSpare: 2,
      podsMax: 1,
      cooldownSeconds: 10,
      config: "",
    };
    this.settings(settings);
    this._clock = { unixSeconds: 0n, utcOffsetSeconds: 0 };
    this._pods = [];
    this._waiting = 0;
    this._perMinute = new Array(60).fill(0);
    this._perHour = new Array(168).fill(0);
    this._observed = {
      startupMedianMs: undefined,
      startupP90Ms: undefined,
      sessionMedianSeconds: undefined,
      sessionP90Seconds: undefined,
      longestWaitMs: 0,
    };
  }

  /** Sets settings fields (ticketsMax, …, config). */
  settings(fields) {
    for (const key of Object.keys(fields)) {
      if (!(key in this._settings)) throw new TypeError(`unknown setting ${key}`);
    }
    Object.assign(this._settings, fields);
    return this;
  }

  /** Sets the clock directly (unix seconds, offset in seconds). */
  clock(unixSeconds, utcOffsetSeconds = 0) {
    this._clock = { unixSeconds: BigInt(unixSeconds), utcOffsetSeconds };
    return this;
  }

  /** Sets the clock to local time `local` ("YYYY-MM-DD HH:MM[:SS]"). */
  at(local, utcOffsetSeconds = 0) {
    const match = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})(?::(\d{2}))?$/.exec(local);
    if (!match) throw new TypeError(`bad local time ${local}: want YYYY-MM-DD HH:MM[:SS]`);
    const [, y, mo, d, h, mi, s] = match.map(Number);
    const localMs = Date.UTC(y, mo - 1, d, h, mi, s || 0);
    return this.clock(localMs / 1000 - utcOffsetSeconds, utcOffsetSeconds);
  }

  /**
   * Adds a pod (in name order). Options: tickets, capacity (default
   * ticketsMax), autoscaled (default true), idleSeconds, ageSeconds.
   */
  pod(id, phase = "ready", options = {}) {
    if (!(phase in PHASES)) throw new TypeError(`unknown phase ${phase}: starting, ready or draining`);
    const {
      tickets = 0,
      capacity = this._settings.ticketsMax,
      autoscaled = true,
      idleSeconds = 0,
      ageSeconds = 0,
    } = options;
    this._pods.push([id, capacity, tickets, PHASES[phase], autoscaled ? 1 : 0, idleSeconds, ageSeconds]);
    return this;
  }

  /** Sets the number of users waiting in the queue. */
  waiting(users) {
    this._waiting = users;
    return this;
  }

  /**
   * Sets the arrival history, newest last; shorter lists are padded with
   * zeros in front to the host's 60 minutes and 168 hours.
   */
  arrivals({ perMinute, perHour } = {}) {
    if (perMinute) this._perMinute = pad(perMinute, 60);
    if (perHour) this._perHour = pad(perHour, 168);
    return this;
  }

  /** Sets observed fields (startupMedianMs, …, longestWaitMs). */
  observed(fields) {
    for (const key of Object.keys(fields)) {
      if (!(key in this._observed)) throw new TypeError(`unknown observed field ${key}`);
    }
    Object.assign(this._observed, fields);
    return this;
  }

  /** The snapshot as jco's bindings hand it to `decide`. */
  raw() {
    const pods = this._pods;
    const sum = (f) => pods.reduce((n, p) => n + f(p), 0);
    const totals = {
      readyPods: sum((p) => (p[PHASE] === Phase.READY ? 1 : 0)),
      startingPods: sum((p) => (p[PHASE] === Phase.STARTING ? 1 : 0)),
      drainingPods: sum((p) => (p[PHASE] >= Phase.DRAINING ? 1 : 0)),
      autoscaledPods: sum((p) => p[AUTOSCALED]),
      ticketsInUse: sum((p) => p[TICKETS]),
      freeTickets: sum((p) => (p[PHASE] === Phase.READY ? Math.max(p[CAPACITY] - p[TICKETS], 0) : 0)),
      startingTickets: sum((p) => (p[PHASE] === Phase.STARTING ? p[CAPACITY] : 0)),
    };
    const bytes = new Uint8Array(pods.length * POD_WORDS * 4);
    const view = new DataView(bytes.buffer);
    pods.flat().forEach((word, i) => view.setUint32(4 * i, word, true));
    return {
      settings: { ...this._settings },
      clock: { ...this._clock },
      podWords: POD_WORDS,
      pods: bytes,
      totals,
      waiting: this._waiting,
      arrivals: { perMinute: Uint32Array.from(this._perMinute), perHour: Uint32Array.from(this._perHour) },
      observed: { ...this._observed },
    };
  }

  /** The typed snapshot a policy function receives. */
  build() {
    return new Snapshot(this.raw());
  }
}

function pad(counts, length) {
  const tail = Array.from(counts).slice(-length);
  return new Array(length - tail.length).fill(0).concat(tail);
}
