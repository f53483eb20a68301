// The service worker: drains the tenant's Vinted queue through the member's own Vinted tab.
//
//   long poll GET /api/plugin/tasks ──▶ each task, one at a time: remembered in chrome.storage before its
//   first request, its requests run in order inside the Vinted page (page.js), paced by a jittered gap;
//   the result stored, then reported ──▶ a task handed out again is re-reported, never re-run.
//   A heartbeat keeps the leases of the tasks held; a 429 or a challenge pauses the account (15 / 30 min,
//   doubling to 6 h) and no task is claimed meanwhile; the user's pause switch stops claiming too.

import { sendFromPage } from "./page.js";
import {
  DEFAULT_SEND_WINDOW,
  ImageUnavailable,
  UnresolvedReference,
  backoffSeconds,
  interruptedResult,
  isObject,
  isSuccess,
  isWrite,
  judge,
  penaltyOf,
  pickGap,
  prepareRequest,
  responseBody,
  retryAfterSeconds,
  secondsUntilRoom,
  sendWindowFrom,
} from "./protocol.js";
import { loadSettings } from "./settings.js";
import { LoggedOut, call, logIn, logOut } from "./stoflow.js";

/** @typedef {import("./protocol.js").VintedResponse} VintedResponse */
/** @typedef {import("./protocol.js").TaskResult} TaskResult */
/** @typedef {import("./protocol.js").TaskError} TaskError */
/** @typedef {import("./settings.js").Settings} Settings */
/**
 * @typedef {object} Task  a claimed task, as GET /api/plugin/tasks hands it out
 * @property {string} id
 * @property {string} job_id
 * @property {number} vinted_account_id
 * @property {string} operation  `create_item`, `update_item`, `delete_item`, `list_items` (wardrobe pages)
 *   or `list_sold_orders` (a sale check: the sold orders, then the new orders' transactions); every kind
 *   is run the same way, request by request, and its answers reported as received
 * @property {import("./protocol.js").TaskRequest[]} requests
 * @property {string} lease_id
 */
/**
 * @typedef {object} TaskRecord  what chrome.storage remembers of a task this browser ran
 * @property {string} job_id
 * @property {string} operation
 * @property {number} vinted_account_id
 * @property {string} lease_id
 * @property {number} request_count
 * @property {VintedResponse[]} responses
 * @property {TaskResult | null} result
 * @property {boolean} reported
 * @property {number} at
 */
/** @typedef {{until: number, streak: number, penalty: string | null}} AccountBackoff */
/**
 * @typedef {object} Status  what the popup shows
 * @property {"logged_out"|"idle"|"working"|"paused"|"stopped"} state
 * @property {string} day
 * @property {number} doneToday
 * @property {{message: string, at: number} | null} lastError
 * @property {number | null} pausedUntil
 * @property {string | null} penalty
 */

/** Reported records are forgotten after this long; unreported ones never are. */
const KEEP_MS = 7 * 24 * 3600 * 1000;
const REPORT_ATTEMPTS = 4;

/** @type {Record<string, TaskRecord>} */
let tasks = {};
/** @type {Record<string, AccountBackoff>} */
let accounts = {};
/** @type {Record<string, number[]>} moments (epoch seconds) of each account's requests to Vinted */
let sends = {};
/** @type {Map<number, import("./protocol.js").SendWindow>} each account's window, as Stoflow gave it */
const windows = new Map();
/** @type {Map<string, {task: Task, leaseLost: boolean}>} */
const held = new Map();
/** @type {Promise<void> | null} */
let loop = null;
let lastRequestEnd = 0;

const sleep = (/** @type {number} */ ms) => new Promise((resolve) => setTimeout(resolve, ms));
const today = () => new Date().toISOString().slice(0, 10);

// --- memory in chrome.storage ----------------------------------------------------------------------------

async function loadMemory() {
  const stored = await chrome.storage.local.get(["tasks", "accounts", "sends"]);
  tasks = stored.tasks ?? {};
  accounts = stored.accounts ?? {};
  sends = stored.sends ?? {};
  const cutoff = Date.now() - KEEP_MS;
  for (const [id, record] of Object.entries(tasks)) {
    if (record.reported && record.at < cutoff) delete tasks[id];
  }
}

async function saveTasks() {
  await chrome.storage.local.set({ tasks });
}

async function saveAccounts() {
  await chrome.storage.local.set({ accounts });
}

/**
 * Merge a change into the status the popup reads.
 * @param {Partial<Status>} change
 */
async function setStatus(change) {
  const { status } = await chrome.storage.local.get("status");
  /** @type {Status} */
  const current = { state: "idle", day: today(), doneToday: 0, lastError: null, pausedUntil: null, penalty: null, ...(status ?? {}) };
  if (current.day !== today()) Object.assign(current, { day: today(), doneToday: 0 });
  await chrome.storage.local.set({ status: { ...current, ...change } });
}

/** @param {string} message */
async function noteError(message) {
  await setStatus({ lastError: { message, at: Date.now() } });
}

async function countDone() {
  const { status } = await chrome.storage.local.get("status");
  const done = status && status.day === today() ? status.doneToday : 0;
  await setStatus({ doneToday: done + 1 });
}

/** The longest pause any account is under, in ms (0 when none). */
function pauseLeft() {
  const now = Date.now();
  return Math.max(0, ...Object.values(accounts).map((entry) => entry.until - now));
}

/** @param {number} accountId */
function backingOff(accountId) {
  const entry = accounts[accountId];
  return entry !== undefined && entry.until > Date.now();
}

// --- the loop ----------------------------------------------------------------------------------------------

/** Start draining the queue unless it already runs; the loop ends when logged out or switched off. */
export function start() {
  loop ??= runLoop().finally(() => {
    loop = null;
  });
  return loop;
}

async function switchedOff() {
  const { switch: state } = await chrome.storage.local.get("switch");
  return Boolean(state?.paused);
}

async function runLoop() {
  await loadMemory();
  const first = await loadSettings();
  // Extension API calls keep the service worker alive while it waits on Stoflow or Vinted.
  const keepAlive = setInterval(() => chrome.runtime.getPlatformInfo(), 20_000);
  const beat = setInterval(() => void heartbeat(), first.heartbeatSeconds * 1000);
  let failures = 0;
  try {
    while (true) {
      const settings = await loadSettings();
      const { auth } = await chrome.storage.local.get("auth");
      if (!auth) {
        await setStatus({ state: "logged_out" });
        return;
      }
      if (await switchedOff()) {
        await setStatus({ state: "stopped" });
        return;
      }
      try {
        await reportLeftovers(settings);
        const pause = pauseLeft();
        if (pause > 0) {
          const entry = Object.values(accounts).reduce((a, b) => (a.until >= b.until ? a : b));
          await setStatus({ state: "paused", pausedUntil: entry.until, penalty: entry.penalty });
          await sleep(Math.min(pause, 2000));
          continue;
        }
        await setStatus({ state: "idle", pausedUntil: null, penalty: null });
        const claimed = await claim(settings);
        if (claimed === null) {
          failures += 1;
          await sleep(Math.min(1000 * 2 ** Math.min(failures, 6), 60_000));
          continue;
        }
        failures = 0;
        for (const task of claimed) held.set(task.id, { task, leaseLost: false });
        for (const task of claimed) {
          try {
            await handle(task, settings);
          } finally {
            held.delete(task.id);
          }
        }
        if (claimed.length > 0) await refreshBudget(settings);
      } catch (error) {
        if (error instanceof LoggedOut) {
          await noteError(error.message);
          await setStatus({ state: "logged_out" });
          return;
        }
        console.error("stoflow loop", error);
        await noteError(`Unexpected problem: ${String(error)}`);
        await sleep(2000);
      }
    }
  } finally {
    clearInterval(keepAlive);
    clearInterval(beat);
    held.clear();
  }
}

/**
 * Long-poll for tasks; null when Stoflow could not be reached.
 * @param {Settings} settings
 * @returns {Promise<Task[] | null>}
 */
async function claim(settings) {
  /** @type {Response} */
  let response;
  try {
    response = await call(settings.stoflowUrl, "GET", `/api/plugin/tasks?wait=${settings.pollWait}&limit=${settings.pollLimit}`);
  } catch (error) {
    if (error instanceof LoggedOut) throw error;
    await noteError(`Stoflow cannot be reached at ${settings.stoflowUrl}.`);
    return null;
  }
  if (response.status !== 200) {
    await noteError(`Stoflow answered ${response.status} to the task poll.`);
    return null;
  }
  const body = await response.json();
  return Array.isArray(body.tasks) ? body.tasks : [];
}

async function heartbeat() {
  const settings = await loadSettings();
  for (const [taskId, entry] of held) {
    if (entry.leaseLost) continue;
    try {
      const response = await call(settings.stoflowUrl, "POST", `/api/plugin/tasks/${taskId}/heartbeat`, {
        lease_id: entry.task.lease_id,
      });
      // Handed out again: an unstarted task is left to its new holder; a started one still reports.
      if (response.status === 404 || response.status === 409) entry.leaseLost = true;
    } catch (error) {
      console.warn("stoflow heartbeat", taskId, String(error));
    }
  }
}

/**
 * @param {Task} task
 * @param {Settings} settings
 */
async function handle(task, settings) {
  if (tasks[task.id] !== undefined) {
    // This browser ran it already (perhaps before a restart): report what it got, never run it again.
    await reReport(task, settings);
    return;
  }
  const entry = held.get(task.id);
  if (entry?.leaseLost || backingOff(task.vinted_account_id) || (await switchedOff())) return;
  // Start only once the account's window has room for the whole task (its leases are heartbeated meanwhile).
  await waitForRoom(task, settings);
  if (entry?.leaseLost || backingOff(task.vinted_account_id) || (await switchedOff())) return;
  await runTask(task, settings);
}

/**
 * The window an account's sends are paced by: Stoflow's answer, read once, else 40 per 2 hours.
 * @param {number} accountId
 * @param {Settings} settings
 */
async function sendWindow(accountId, settings) {
  const known = windows.get(accountId);
  if (known) return known;
  try {
    const response = await call(settings.stoflowUrl, "GET", `/api/integrations/vinted/accounts/${accountId}/rate-limit`);
    const window = response.status === 200 ? sendWindowFrom(await response.json()) : null;
    if (window) windows.set(accountId, window);
    return window ?? DEFAULT_SEND_WINDOW;
  } catch (error) {
    if (error instanceof LoggedOut) throw error;
    return DEFAULT_SEND_WINDOW;
  }
}

/**
 * Sleep until the task's requests fit in its account's window (or its lease is lost).
 * @param {Task} task
 * @param {Settings} settings
 */
async function waitForRoom(task, settings) {
  const window = await sendWindow(task.vinted_account_id, settings);
  while (!held.get(task.id)?.leaseLost) {
    const wait = secondsUntilRoom(window, sends[task.vinted_account_id] ?? [], Date.now() / 1000, task.requests.length);
    if (wait <= 0) return;
    await setStatus({ state: "paused", pausedUntil: Date.now() + wait * 1000, penalty: "window_full" });
    await sleep(Math.min(wait * 1000, 1000));
  }
}

/**
 * Note a request leaving for Vinted in the account's log (kept for one window).
 * @param {number} accountId
 */
async function noteSend(accountId) {
  const now = Date.now() / 1000;
  const window = windows.get(accountId) ?? DEFAULT_SEND_WINDOW;
  sends[accountId] = [...(sends[accountId] ?? []).filter((moment) => moment > now - window.seconds), now];
  await chrome.storage.local.set({ sends });
}

// --- running a task in the Vinted tab ----------------------------------------------------------------------

/**
 * The Vinted tab to run requests in: the first open tab of a configured Vinted host, else a new one.
 * @param {Settings} settings
 * @returns {Promise<number>}
 */
async function vintedTab(settings) {
  const hosts = new Set(settings.vintedHosts);
  for (const tab of await chrome.tabs.query({})) {
    if (tab.id === undefined || !tab.url) continue;
    let origin;
    try {
      origin = new URL(tab.url).origin;
    } catch {
      continue;
    }
    if (hosts.has(origin)) {
      await loaded(tab.id);
      return tab.id;
    }
  }
  const tab = await chrome.tabs.create({ url: `${settings.vintedHosts[0]}/`, active: false });
  if (tab.id === undefined) throw new Error("the Vinted tab could not be opened");
  await loaded(tab.id);
  return tab.id;
}

/** @param {number} tabId */
async function loaded(tabId) {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const tab = await chrome.tabs.get(tabId);
    if (tab.status === "complete") return;
    await sleep(100);
  }
  throw new Error("the Vinted page did not load within 30 s");
}

/**
 * Run one request inside the Vinted page (its session, CSRF token and anon id).
 * @param {number} tabId
 * @param {import("./page.js").PageRequest} request
 * @returns {Promise<import("./page.js").PageAnswer>}
 */
async function inPage(tabId, request) {
  try {
    const [injection] = await chrome.scripting.executeScript({
      target: { tabId },
      world: "MAIN",
      func: sendFromPage,
      args: [request],
    });
    if (injection?.result) return /** @type {import("./page.js").PageAnswer} */ (injection.result);
    return { http_status: 0, text: "", content_type: "", headers: {}, origin: "", error: "the Vinted page gave no answer" };
  } catch (error) {
    return { http_status: 0, text: "", content_type: "", headers: {}, origin: "", error: String(error).slice(0, 500) };
  }
}

/**
 * Download the image of an `$upload` (a signed Stoflow media URL: never logged) as base64.
 * @param {import("./protocol.js").UploadSpec} upload
 */
async function download(upload) {
  /** @type {Response} */
  let response;
  try {
    response = await fetch(upload.url);
  } catch (error) {
    throw new ImageUnavailable(`the image could not be downloaded (${String(error)})`);
  }
  const bytes = new Uint8Array(await response.arrayBuffer());
  if (response.status !== 200 || bytes.length === 0) {
    throw new ImageUnavailable(`the image could not be downloaded (HTTP ${response.status})`);
  }
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  const filename = decodeURIComponent(new URL(upload.url).pathname.split("/").pop() || "photo.jpg");
  const contentType = (response.headers.get("content-type") ?? "image/jpeg").split(";")[0].trim();
  return { fields: upload.fields, file_field: upload.file_field, filename, content_type: contentType, base64: btoa(binary) };
}

/**
 * Wait out the least gap since the previous request to Vinted.
 * @param {string} method
 * @param {Settings} settings
 */
async function pace(method, settings) {
  const gap = pickGap(isWrite(method) ? settings.writeGap : settings.readGap) * 1000;
  const wait = lastRequestEnd + gap - Date.now();
  if (wait > 0) await sleep(wait);
}

/**
 * Vinted refused the session before doing anything (a stale CSRF token): reloading the page renews it.
 * @param {import("./page.js").PageAnswer} answer
 */
function staleSession(answer) {
  if (answer.http_status !== 403) return false;
  const body = responseBody(answer.text, answer.content_type);
  return isObject(body) && (body.message_code === "invalid_csrf_token" || body.message_code === "invalid_anon_id");
}

/**
 * @param {Task} task
 * @param {Settings} settings
 */
async function runTask(task, settings) {
  /** @type {number} */
  let tabId;
  try {
    tabId = await vintedTab(settings);
  } catch (error) {
    // Nothing was sent: the task is left to lapse and comes back later.
    await noteError(`Vinted could not be opened: ${String(error)}`);
    return;
  }
  // In storage before anything leaves: from here on this task is never sent again.
  tasks[task.id] = {
    job_id: task.job_id,
    operation: task.operation,
    vinted_account_id: task.vinted_account_id,
    lease_id: task.lease_id,
    request_count: task.requests.length,
    responses: [],
    result: null,
    reported: false,
    at: Date.now(),
  };
  await saveTasks();
  await setStatus({ state: "working" });
  /** @type {VintedResponse[]} */
  const responses = [];
  /** @type {TaskError | null} */
  let localError = null;
  for (const request of task.requests) {
    let prepared;
    let file = null;
    try {
      prepared = prepareRequest(request, responses);
      if (prepared.upload !== null) file = await download(prepared.upload);
    } catch (error) {
      if (error instanceof UnresolvedReference) {
        localError = { code: "unresolved_reference", message: error.message };
      } else if (error instanceof ImageUnavailable) {
        await record(task, responses, { http_status: 0, body: { error: error.message } }, {}, settings);
        localError = { code: "image_unavailable", message: error.message };
      } else {
        throw error;
      }
      break;
    }
    await pace(prepared.method, settings);
    const pageRequest = { method: prepared.method, path: prepared.path, json: prepared.json, file };
    await noteSend(task.vinted_account_id);
    let answer = await inPage(tabId, pageRequest);
    if (staleSession(answer)) {
      await chrome.tabs.reload(tabId);
      await loaded(tabId);
      await noteSend(task.vinted_account_id);
      answer = await inPage(tabId, pageRequest);
    }
    lastRequestEnd = Date.now();
    if (answer.http_status === 401 && responses.length === 0) {
      // Not logged in to Vinted (sessions end after a couple of hours): Vinted did nothing, so the task is
      // forgotten and left to come back, and nothing is claimed until the member has logged in again.
      await sessionLost(task);
      return;
    }
    /** @type {VintedResponse} */
    const response =
      answer.http_status === 0
        ? { http_status: 0, body: { error: answer.error ?? "no answer" } }
        : { http_status: answer.http_status, body: responseBody(answer.text, answer.content_type) };
    await record(task, responses, response, answer.headers, settings);
    if (!isSuccess(response.http_status)) break;
  }
  const result = judge(responses, task.requests.length, localError);
  tasks[task.id].result = result;
  await saveTasks();
  await countDone();
  await report(task.id, task.lease_id, result, settings);
}

/** Seconds between two tries while the member is logged out of Vinted. */
const SESSION_RETRY_SECONDS = 30;

/**
 * The first request of a task met Vinted's login wall: forget the task (nothing ran) and wait for a login.
 * @param {Task} task
 */
async function sessionLost(task) {
  delete tasks[task.id];
  await saveTasks();
  const previous = accounts[task.vinted_account_id];
  accounts[task.vinted_account_id] = {
    until: Date.now() + SESSION_RETRY_SECONDS * 1000,
    streak: previous?.streak ?? 0,
    penalty: "logged_out_of_vinted",
  };
  await saveAccounts();
  await noteError("Log in to Vinted in this browser: Vinted ended the session. Stoflow resumes by itself once you have.");
}

/**
 * Keep an answer (storage first), and let it set or clear the account's pause.
 * @param {Task} task
 * @param {VintedResponse[]} responses
 * @param {VintedResponse} response
 * @param {Record<string, string>} headers
 * @param {Settings} settings
 */
async function record(task, responses, response, headers, settings) {
  responses.push(response);
  tasks[task.id].responses = [...responses];
  await saveTasks();
  const account = task.vinted_account_id;
  const penalty = penaltyOf(response.http_status, headers, response.body);
  if (penalty !== null) {
    const streak = accounts[account]?.streak ?? 0;
    const seconds = backoffSeconds(penalty, streak, retryAfterSeconds(headers["retry-after"]), settings.backoff);
    accounts[account] = { until: Date.now() + seconds * 1000, streak: streak + 1, penalty };
    await saveAccounts();
    await noteError(
      penalty === "challenge"
        ? "Vinted asked for a check: open Vinted and solve the check. Stoflow waits meanwhile."
        : "Vinted asked to slow down (429): Stoflow waits before sending anything else.",
    );
  } else if (isSuccess(response.http_status) && accounts[account]?.streak) {
    accounts[account] = { until: 0, streak: 0, penalty: null };
    await saveAccounts();
  }
}

// --- reporting ---------------------------------------------------------------------------------------------

/**
 * Deliver a result, retrying network failures and 5xx; a 409 or 404 ends it for this task.
 * @param {string} taskId
 * @param {string} leaseId
 * @param {TaskResult} result
 * @param {Settings} settings
 */
async function report(taskId, leaseId, result, settings) {
  for (let attempt = 0; attempt < REPORT_ATTEMPTS; attempt += 1) {
    if (attempt > 0) await sleep(1000 * 2 ** (attempt - 1));
    /** @type {Response} */
    let response;
    try {
      response = await call(settings.stoflowUrl, "POST", `/api/plugin/tasks/${taskId}/result`, { lease_id: leaseId, ...result });
    } catch (error) {
      if (error instanceof LoggedOut) throw error;
      continue;
    }
    if (response.status >= 500 || response.status === 429) continue;
    // 200, or already_reported / lease_lost / not_found: sending it again cannot help.
    if (response.status !== 200) console.warn("stoflow result refused", taskId, response.status);
    tasks[taskId].reported = true;
    await saveTasks();
    return true;
  }
  await noteError("Stoflow cannot be reached: results are kept and sent when it answers.");
  return false;
}

/**
 * A task that ran here before came back: send what it got then, with the new lease.
 * @param {Task} task
 * @param {Settings} settings
 */
async function reReport(task, settings) {
  const stored = tasks[task.id];
  const result = stored.result ?? interruptedResult(stored.responses, stored.request_count);
  stored.result = result;
  await saveTasks();
  await report(task.id, task.lease_id, result, settings);
}

/**
 * Send the results not delivered yet (an earlier lease is still accepted), e.g. after a browser restart.
 * @param {Settings} settings
 */
async function reportLeftovers(settings) {
  for (const [taskId, stored] of Object.entries(tasks)) {
    if (stored.reported) continue;
    const result = stored.result ?? interruptedResult(stored.responses, stored.request_count);
    stored.result = result;
    await saveTasks();
    await report(taskId, stored.lease_id, result, settings);
  }
}

/**
 * Read each Vinted account's budget for the popup.
 * @param {Settings} settings
 */
async function refreshBudget(settings) {
  try {
    const listed = await call(settings.stoflowUrl, "GET", "/api/integrations/vinted/accounts");
    if (listed.status !== 200) return;
    const budget = [];
    for (const account of (await listed.json()).items ?? []) {
      const usage = await call(settings.stoflowUrl, "GET", `/api/integrations/vinted/accounts/${account.id}/rate-limit`);
      if (usage.status !== 200) continue;
      const body = await usage.json();
      const window = sendWindowFrom(body);
      if (window) windows.set(account.id, window);
      budget.push({ account_id: account.id, username: account.username, ...body });
    }
    await chrome.storage.local.set({ budget });
  } catch (error) {
    if (error instanceof LoggedOut) throw error;
  }
}

// --- wiring ------------------------------------------------------------------------------------------------

chrome.runtime.onMessage.addListener((message, _sender, reply) => {
  void (async () => {
    const settings = await loadSettings();
    try {
      if (message?.type === "login") {
        await logIn(settings.stoflowUrl, String(message.email), String(message.password));
        await setStatus({ state: "idle", lastError: null });
        void start();
        void refreshBudget(settings);
      } else if (message?.type === "logout") {
        await logOut();
        await setStatus({ state: "logged_out" });
      } else if (message?.type === "refresh") {
        await refreshBudget(settings);
      }
      reply({ ok: true });
    } catch (error) {
      reply({ ok: false, error: error instanceof Error ? error.message : String(error) });
    }
  })();
  return true;
});

chrome.storage.onChanged.addListener((changes, area) => {
  if (area === "local" && (changes.switch || changes.auth || changes.settings)) void start();
});
chrome.alarms.onAlarm.addListener(() => void start());
chrome.runtime.onStartup.addListener(() => void start());
chrome.runtime.onInstalled.addListener(() => {
  void chrome.alarms.create("wake", { periodInMinutes: 1 });
  void start();
});
void start();
