// The task protocol's pure rules, the same as the reference client's (ops/tools/plugin_client/rules.py):
// `$ref` placeholders, `$upload` forms, how an answer is judged, and the pauses after a 429 or a
// challenge. No I/O here; plugin/test/protocol-cases.json holds the cases both plugins must pass.

/** @typedef {{http_status: number, body: unknown}} VintedResponse */
/** @typedef {{code: string, message: string}} TaskError */
/** @typedef {{status: "success"|"error", responses: VintedResponse[], error?: TaskError}} TaskResult */
/** @typedef {{method?: string, path: string, body?: unknown}} TaskRequest */
/** @typedef {{fields: [string, string][], file_field: string, url: string}} UploadSpec */
/** @typedef {{method: string, path: string, json: unknown, upload: UploadSpec | null}} PreparedRequest */
/** @typedef {"rate_limited"|"challenge"} Penalty */
/** @typedef {{rateLimited: number, challenge: number, ceiling: number}} BackoffPolicy */

/** The status a request gets when no HTTP answer arrived. */
export const NETWORK_FAILURE = 0;
/** Longest text body kept from a non-JSON answer (an anti-bot page, a CDN error page). */
export const TEXT_BODY_MAX = 4000;
const WRITE_METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"]);
const CHALLENGE_MARKERS = ["captcha", "datadome", "challenge", "cf-chl", "cloudflare"];

/** @type {BackoffPolicy} */
export const DEFAULT_BACKOFF = { rateLimited: 15 * 60, challenge: 30 * 60, ceiling: 6 * 3600 };

/** A `$ref` that the answers received so far cannot fill. */
export class UnresolvedReference extends Error {
  /** @param {string} reference @param {string} reason */
  constructor(reference, reason) {
    super(`cannot resolve ${JSON.stringify(reference)}: ${reason}`);
    this.name = "UnresolvedReference";
    this.reference = reference;
  }
}

/** An `$upload` that cannot be sent (no field or url, or the image could not be downloaded). */
export class ImageUnavailable extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "ImageUnavailable";
  }
}

/**
 * Split `responses[0].item.photos[1].id` into `["responses", 0, "item", "photos", 1, "id"]`.
 * @param {string} reference
 * @returns {(string|number)[]}
 */
function referenceSteps(reference) {
  /** @type {(string|number)[]} */
  const steps = [];
  const step = /([^.[\]]+)|\[(\d+)\]/y;
  let position = 0;
  while (position < reference.length) {
    if (reference[position] === "." && steps.length > 0) position += 1;
    step.lastIndex = position;
    const match = step.exec(reference);
    if (match === null) throw new UnresolvedReference(reference, "it is not a path like responses[i].field");
    steps.push(match[2] !== undefined ? Number(match[2]) : match[1]);
    position = step.lastIndex;
  }
  if (steps.length < 2 || steps[0] !== "responses" || typeof steps[1] !== "number") {
    throw new UnresolvedReference(reference, "it does not start with responses[i]");
  }
  return steps;
}

/**
 * Read `responses[i].path.to.field` from the bodies of the answers received so far.
 * @param {string} reference
 * @param {VintedResponse[]} responses
 * @returns {unknown}
 */
export function lookupReference(reference, responses) {
  const steps = referenceSteps(reference);
  const index = /** @type {number} */ (steps[1]);
  if (index >= responses.length) {
    throw new UnresolvedReference(reference, `only ${responses.length} responses were received`);
  }
  /** @type {unknown} */
  let value = responses[index].body;
  for (const step of steps.slice(2)) {
    if (typeof step === "number" && Array.isArray(value) && step < value.length) {
      value = value[step];
    } else if (typeof step === "string" && isObject(value) && Object.hasOwn(value, step)) {
      value = value[step];
    } else {
      throw new UnresolvedReference(reference, `the response has no ${JSON.stringify(step)} there`);
    }
  }
  return value;
}

/**
 * @param {unknown} value
 * @returns {value is Record<string, unknown>}
 */
export function isObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Replace every `{"$ref": "responses[i]..."}` in a request body by the value it names.
 * @param {unknown} value
 * @param {VintedResponse[]} responses
 * @returns {unknown}
 */
export function resolveReferences(value, responses) {
  if (Array.isArray(value)) return value.map((item) => resolveReferences(item, responses));
  if (!isObject(value)) return value;
  const keys = Object.keys(value);
  if (keys.length === 1 && keys[0] === "$ref" && typeof value.$ref === "string") {
    return lookupReference(value.$ref, responses);
  }
  return Object.fromEntries(keys.map((key) => [key, resolveReferences(value[key], responses)]));
}

/** @param {unknown} value */
function formValue(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "boolean") return value ? "true" : "false";
  return String(value);
}

/**
 * Turn `{"photo": {"type": "item"}}` into `[["photo[type]", "item"]]`, as a browser form sends it.
 * @param {Record<string, unknown>} body
 * @param {string} [prefix]
 * @returns {[string, string][]}
 */
export function flattenForm(body, prefix = "") {
  /** @type {[string, string][]} */
  const fields = [];
  for (const [key, value] of Object.entries(body)) {
    const name = prefix ? `${prefix}[${key}]` : key;
    if (isObject(value)) {
      fields.push(...flattenForm(value, name));
    } else if (Array.isArray(value)) {
      for (const item of value) {
        if (isObject(item)) fields.push(...flattenForm(item, `${name}[]`));
        else fields.push([`${name}[]`, formValue(item)]);
      }
    } else {
      fields.push([name, formValue(value)]);
    }
  }
  return fields;
}

/**
 * Fill a task request's `$ref` placeholders and read its `$upload`, if any.
 * @param {TaskRequest} request
 * @param {VintedResponse[]} responses
 * @returns {PreparedRequest}
 */
export function prepareRequest(request, responses) {
  const method = String(request.method ?? "GET").toUpperCase();
  const path = String(request.path);
  const body = resolveReferences(request.body ?? null, responses);
  if (!isObject(body) || !Object.hasOwn(body, "$upload")) {
    return { method, path, json: method === "GET" || method === "HEAD" ? null : body, upload: null };
  }
  const { $upload: spec, ...rest } = body;
  if (!isObject(spec) || !spec.field || !spec.url) {
    throw new ImageUnavailable("the $upload names no field or url");
  }
  return {
    method,
    path,
    json: null,
    upload: { fields: flattenForm(rest), file_field: String(spec.field), url: String(spec.url) },
  };
}

/** @param {string} method */
export function isWrite(method) {
  return WRITE_METHODS.has(method.toUpperCase());
}

/** @param {number} status */
export function isSuccess(status) {
  return status >= 200 && status < 300;
}

/**
 * Lower-case a header map so lookups do not depend on how the server spelled the names.
 * @param {Record<string, string>} headers
 */
function lowered(headers) {
  return Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), String(v).toLowerCase()]));
}

/**
 * Tell an anti-bot 403 from an ordinary refusal (bad CSRF token, not your item).
 * @param {number} status
 * @param {Record<string, string>} headers
 * @param {unknown} body
 */
export function isChallenge(status, headers, body) {
  if (status !== 403) return false;
  const names = lowered(headers);
  if (names["cf-mitigated"] === "challenge" || "x-datadome" in names) return true;
  const text = (typeof body === "string" ? body : JSON.stringify(body) ?? "").toLowerCase();
  return CHALLENGE_MARKERS.some((marker) => text.includes(marker));
}

/**
 * Name the penalty an answer carries, if any.
 * @param {number} status
 * @param {Record<string, string>} headers
 * @param {unknown} body
 * @returns {Penalty | null}
 */
export function penaltyOf(status, headers, body) {
  if (status === 429) return "rate_limited";
  if (isChallenge(status, headers, body)) return "challenge";
  return null;
}

/**
 * Read a `Retry-After` given in seconds (HTTP dates are ignored).
 * @param {string | null | undefined} value
 * @returns {number | null}
 */
export function retryAfterSeconds(value) {
  if (value === null || value === undefined || value.trim() === "") return null;
  const seconds = Number(value);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds : null;
}

/**
 * The pause after a penalty that follows `streak` earlier ones without a success in between.
 * @param {Penalty} penalty
 * @param {number} streak
 * @param {number | null} retryAfter
 * @param {BackoffPolicy} [policy]
 */
export function backoffSeconds(penalty, streak, retryAfter, policy = DEFAULT_BACKOFF) {
  const base = penalty === "rate_limited" ? policy.rateLimited : policy.challenge;
  const pause = Math.min(base * 2 ** Math.min(streak, 32), policy.ceiling);
  return Math.max(pause, Math.min(retryAfter ?? 0, policy.ceiling));
}

/**
 * Keep JSON as JSON, other text cut to TEXT_BODY_MAX characters, nothing as null.
 * @param {string} text
 * @param {string} contentType
 * @returns {unknown}
 */
export function responseBody(text, contentType) {
  if (!text) return null;
  if (contentType.toLowerCase().includes("json")) {
    try {
      return JSON.parse(text);
    } catch {
      // not JSON after all: kept as text below
    }
  }
  return text.slice(0, TEXT_BODY_MAX);
}

/**
 * @param {VintedResponse} last
 * @returns {TaskError}
 */
function errorFor(last) {
  const status = Number(last.http_status || 0);
  const body = last.body;
  if (status === NETWORK_FAILURE) {
    const detail = isObject(body) ? body.error : null;
    return { code: "network_error", message: String(detail || "No answer from Vinted.") };
  }
  if (status === 429) return { code: "rate_limited", message: "Vinted answered 429 Too Many Requests." };
  if (isChallenge(status, {}, body)) {
    return { code: "antibot_challenge", message: "Vinted answered with an anti-bot challenge." };
  }
  const message = isObject(body) ? String(body.message || body.message_code || "") : "";
  return { code: "vinted_error", message: `Vinted answered ${status}` + (message ? `: ${message}` : ".") };
}

/**
 * Build the result to report: success only when every request ran and got a 2xx answer.
 * @param {VintedResponse[]} responses
 * @param {number} requestCount
 * @param {TaskError | null} [localError]
 * @returns {TaskResult}
 */
export function judge(responses, requestCount, localError = null) {
  const ranAll = responses.length === requestCount;
  if (localError === null && ranAll && responses.every((r) => isSuccess(Number(r.http_status)))) {
    return { status: "success", responses: [...responses] };
  }
  /** @type {TaskError} */
  let error;
  if (localError !== null) error = { ...localError };
  else if (responses.length > 0) error = errorFor(responses[responses.length - 1]);
  else error = { code: "not_run", message: "No request of the task was sent." };
  return { status: "error", responses: [...responses], error };
}

/**
 * Judge a task whose run was cut short (browser closed, crash) from the answers saved before it stopped.
 * The request in flight may or may not have reached Vinted: it is reported as a network failure, never
 * sent again.
 * @param {VintedResponse[]} responses
 * @param {number} requestCount
 * @returns {TaskResult}
 */
export function interruptedResult(responses, requestCount) {
  const completed = [...responses];
  if (completed.length < requestCount && completed.every((r) => isSuccess(Number(r.http_status)))) {
    completed.push({ http_status: NETWORK_FAILURE, body: { error: "The plugin stopped while this request ran." } });
    return judge(completed, requestCount, { code: "interrupted", message: "The plugin stopped mid-task." });
  }
  return judge(completed, requestCount);
}

/**
 * The least pause before a request, drawn uniformly between two bounds (seconds).
 * @param {[number, number]} range
 * @param {() => number} [random]
 */
export function pickGap([low, high], random = Math.random) {
  return high <= low ? low : low + (high - low) * random();
}

/**
 * @typedef {object} SendWindow  at most `limit` requests to one Vinted account within any `seconds`, counted
 *   as the plugin sends: Stoflow takes slots when it releases a task, but a plugin that sends late could still
 *   burst past the limit in Vinted's own log, so the plugin keeps its own sliding log of sends and paces by it.
 * @property {number} limit
 * @property {number} seconds
 */

/** @type {SendWindow} */
export const DEFAULT_SEND_WINDOW = { limit: 40, seconds: 7200 };

/**
 * How long to wait until `needed` more sends fit (at least one, at most `limit`); 0 when they do.
 * @param {SendWindow} window
 * @param {number[]} sends  moments of earlier sends (seconds)
 * @param {number} now
 * @param {number} [needed]
 */
export function secondsUntilRoom(window, sends, now, needed = 1) {
  const recent = sends.filter((moment) => moment > now - window.seconds).sort((a, b) => a - b);
  const excess = recent.length + Math.min(Math.max(needed, 1), window.limit) - window.limit;
  if (excess <= 0) return 0;
  return Math.max(recent[excess - 1] + window.seconds - now, 0);
}

/**
 * Read `{"limit", "window_seconds"}` from Stoflow's rate-limit endpoint; null when it is not that.
 * @param {unknown} body
 * @returns {SendWindow | null}
 */
export function sendWindowFrom(body) {
  if (!isObject(body)) return null;
  const { limit, window_seconds: seconds } = body;
  if (typeof limit !== "number" || !Number.isInteger(limit) || typeof seconds !== "number") return null;
  if (limit < 1 || !(seconds > 0)) return null;
  return { limit, seconds };
}
