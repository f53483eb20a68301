// What the user (or a test) can configure, with the defaults a reseller gets.

/**
 * @typedef {object} Settings
 * @property {string} stoflowUrl      Stoflow's base URL (the API that hands out tasks)
 * @property {string[]} vintedHosts   origins of the Vinted site(s) the member is logged in to; tasks run in a tab of the first one open
 * @property {number} pollWait        seconds a long poll waits for a task (0..30)
 * @property {number} pollLimit       most tasks claimed at once (1..50)
 * @property {number} heartbeatSeconds  seconds between two heartbeats of the tasks held
 * @property {[number, number]} writeGap  least pause before a write, drawn between these bounds (seconds)
 * @property {[number, number]} readGap   the same for reads
 * @property {import("./protocol.js").BackoffPolicy} backoff  pauses after a 429 or a challenge (seconds)
 */

/** @type {Settings} */
export const DEFAULT_SETTINGS = {
  stoflowUrl: "http://127.0.0.1:8000",
  vintedHosts: ["https://www.vinted.fr"],
  pollWait: 25,
  pollLimit: 10,
  heartbeatSeconds: 20,
  writeGap: [5, 12],
  readGap: [3, 8],
  backoff: { rateLimited: 15 * 60, challenge: 30 * 60, ceiling: 6 * 3600 },
};

/**
 * The settings stored, over the defaults.
 * @returns {Promise<Settings>}
 */
export async function loadSettings() {
  const { settings } = await chrome.storage.local.get("settings");
  return { ...DEFAULT_SETTINGS, ...(settings ?? {}) };
}

/**
 * Normalise an origin typed by the user (`www.vinted.fr/` → `https://www.vinted.fr`); null when it is not one.
 * @param {string} text
 * @returns {string | null}
 */
export function originOf(text) {
  const trimmed = text.trim();
  if (!trimmed) return null;
  try {
    const url = new URL(/^[a-z]+:\/\//i.test(trimmed) ? trimmed : `https://${trimmed}`);
    return url.protocol === "https:" || url.protocol === "http:" ? url.origin : null;
  } catch {
    return null;
  }
}
