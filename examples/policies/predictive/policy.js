// predictive: keeps enough free tickets for the users expected to arrive
// while a new pod boots.
//
//   expected = ceil(arrival rate × start-up time × factor)
//   spare    = max(min_spare, expected), plus one per waiting user
//
// The arrival rate is the mean of `arrivals.per-minute` over the last
// `window` whole minutes (the current, still filling minute left out). The
// start-up time is the host's observed p90 (else its median, else the
// config's `startup`). Pods are created and deleted exactly like wicket's
// default policy with that spare: creation stops at pods.max; autoscaled
// pods idle past the cooldown go, most idle first, while the spare stays
// covered. Tickets go to the fullest ready pod.
//
// Config (`wicket.dev/policy-config`), all optional, separated by spaces,
// commas or semicolons:
//   window=10      minutes of arrival history the rate is taken over (1-59)
//   startup=60     seconds a pod takes to start until one was observed
//   factor=1       multiplier on the expected arrivals (e.g. 1.5 for margin)
//   min_spare=N    floor on the spare (default: the app's tickets.spare)
// Unknown keys or bad values are logged and the default is used.

import { exportPolicy, log } from "../../../sdk/js/wicket-policy.js";

/** The config's defaults. */
export const DEFAULTS = Object.freeze({ window: 10, startup: 60, factor: 1, min_spare: undefined });

const LIMITS = { window: [1, 59], startup: [0, 86400], factor: [0, 100], min_spare: [0, 1e9] };

/**
 * The config string's settings; throws an Error naming the bad entry.
 * An empty string gives the defaults.
 */
export function parseConfig(config) {
  const settings = { ...DEFAULTS };
  for (const entry of config.split(/[\s,;]+/)) {
    if (!entry) continue;
    const [key, value, ...rest] = entry.split("=");
    if (!(key in LIMITS) || value === undefined || rest.length) {
      throw new Error(`bad entry "${entry}": want window=, startup=, factor= or min_spare=`);
    }
    const number = Number(value);
    const [low, high] = LIMITS[key];
    if (value === "" || !Number.isFinite(number) || number < low || number > high) {
      throw new Error(`bad value in "${entry}": a number from ${low} to ${high}`);
    }
    settings[key] = key === "factor" ? number : Math.floor(number);
  }
  return settings;
}

// The host sends the same config on every call: parse it once. The cache
// only saves work; each decision still depends on the snapshot alone.
const parsed = new Map();

function settingsOf(config) {
  let settings = parsed.get(config);
  if (settings === undefined) {
    try {
      settings = parseConfig(config);
    } catch (error) {
      log("warn", `predictive: config ignored: ${error.message}`);
      settings = { ...DEFAULTS };
    }
    parsed.set(config, settings);
  }
  return settings;
}

/** Seconds a new pod takes to become ready, as observed or configured. */
export function startupSeconds(snapshot, settings = settingsOf(snapshot.settings.config)) {
  const observed = snapshot.observed.startupP90Ms ?? snapshot.observed.startupMedianMs;
  return observed === undefined || observed === null ? settings.startup : observed / 1000;
}

/** The free tickets to keep: the users expected during one pod start. */
export function spareNow(snapshot) {
  const settings = settingsOf(snapshot.settings.config);
  const rate = snapshot.arrivals.perMinuteRate(settings.window);
  // The epsilon keeps 6 × 2 from rounding up to 13 through float error.
  const expected = Math.ceil((rate * startupSeconds(snapshot, settings) * settings.factor) / 60 - 1e-9);
  const floor = settings.min_spare ?? snapshot.settings.ticketsSpare;
  return Math.max(floor, expected);
}

/** The fullest ready pod with a free ticket (packs users, frees pods). */
export function assign(snapshot) {
  return snapshot.fullestWithFreeSlot();
}

/** The default scaling with the predicted spare. */
export function scale(snapshot) {
  return snapshot.defaultScale(spareNow(snapshot));
}

/** The contract's `decide` interface. */
export const decide = exportPolicy({ assign, scale });
