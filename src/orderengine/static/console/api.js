// Calls to the engine's API, with the key the user gave when keys are in force.
//
// The page says whether keys are in force (`data-keys` on its root), so a console on an engine
// with keys asks for one before its first call; a 401 (a key revoked meanwhile, say) forgets
// the key and asks again. The key is kept in sessionStorage: this tab only, gone when it closes.

const KEY_ITEM = "orderengine.key";

export class ApiError extends Error {
  constructor(status, body) {
    const error = body && body.error ? body.error : { code: "error", message: `HTTP ${status}` };
    super(error.message);
    this.status = status;
    this.code = error.code;
    this.details = error.details;
  }
}

/** An error in a sentence: an error answer's message, with each bad field a 422 names. */
export function describe(error) {
  if (!(error instanceof ApiError)) return String(error.message || error);
  const fields = Array.isArray(error.details) ? error.details.map((reason) => `${reason.field}: ${reason.message}`) : [];
  return [error.message, ...fields].join(" — ");
}

export const keysRequired = () => document.documentElement.dataset.keys === "required";

export function storedKey() {
  return sessionStorage.getItem(KEY_ITEM);
}

export function keepKey(key) {
  sessionStorage.setItem(KEY_ITEM, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_ITEM);
}

const unauthorizedListeners = [];

/** Call `listener` whenever the API refuses the key (or its absence) with a 401. */
export function onUnauthorized(listener) {
  unauthorizedListeners.push(listener);
}

/** The JSON answer of `method path`; an error answer is thrown as an `ApiError`. */
export async function call(method, path, body) {
  if (keysRequired() && !storedKey()) {
    throw new ApiError(401, { error: { code: "unauthorized", message: "an API key is needed" } });
  }
  const headers = { Accept: "application/json" };
  const key = storedKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = await response.json().catch(() => null);
  if (response.status === 401) {
    forgetKey();
    unauthorizedListeners.forEach((listener) => listener());
  }
  if (!response.ok) throw new ApiError(response.status, answer);
  return answer;
}

/** The feed socket's URL, resumed after `after` when given, with a stream token under keys. */
export async function feedUrl(after) {
  const url = new URL("/api/events", window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  if (after !== null) url.searchParams.set("after", String(after));
  if (storedKey()) {
    const minted = await call("POST", "/api/stream-tokens");
    url.searchParams.set("token", minted.token);
  }
  return url.toString();
}
