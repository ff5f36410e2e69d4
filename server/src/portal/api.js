// The admin API client: same origin, bearer token from the session, JSON in and out.

const TOKEN_KEY = "paird.token";
const ROLE_KEY = "paird.role";
const ORG_KEY = "paird.organization";

/**
 * The session, kept for this tab only: the token, whether it is the operator's ("operator") or an
 * organization key's ("key"), and a key's own organization.
 */
export const session = {
  token: () => sessionStorage.getItem(TOKEN_KEY),
  role: () => sessionStorage.getItem(ROLE_KEY),
  organization: () => sessionStorage.getItem(ORG_KEY),
  save(token, role, organization = null) {
    sessionStorage.setItem(TOKEN_KEY, token);
    sessionStorage.setItem(ROLE_KEY, role);
    if (organization) sessionStorage.setItem(ORG_KEY, organization);
    else sessionStorage.removeItem(ORG_KEY);
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(ROLE_KEY);
    sessionStorage.removeItem(ORG_KEY);
  },
};

/**
 * An error answer of the API: `status` and the `{error: {code, message}}` body. `problems` is the
 * list of a refused configuration body (`422 invalid_configuration`), `null` otherwise.
 */
export class ApiError extends Error {
  constructor(status, code, message, problems = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.problems = problems;
  }
}

/** GET `path` with `token` (the session's by default); resolves to the JSON body. */
export async function get(path, token = session.token()) {
  return request("GET", path, undefined, token);
}

/**
 * POST `body` (JSON) to `path` with the session's token; resolves to the JSON answer. `headers`
 * adds request headers (an `Idempotency-Key`).
 */
export async function post(path, body = {}, headers = {}) {
  return request("POST", path, body, session.token(), headers);
}

/** PUT `body` (JSON) to `path` with the session's token; resolves to the JSON answer. */
export async function put(path, body = {}) {
  return request("PUT", path, body, session.token());
}

/** PATCH `body` (JSON) to `path` with the session's token; resolves to the JSON answer. */
export async function patch(path, body = {}) {
  return request("PATCH", path, body, session.token());
}

/** DELETE `path` with the session's token; resolves to `null` (the API answers 204, no body). */
export async function del(path) {
  return request("DELETE", path, undefined, session.token());
}

/** GET a `text/plain` answer (the configuration template) as a string. */
export async function getText(path) {
  let response;
  try {
    response = await fetch(path, {
      headers: { Authorization: `Bearer ${session.token() ?? ""}`, Accept: "text/plain" },
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "network", "The server cannot be reached.");
  }
  if (!response.ok) {
    let error = {};
    try {
      error = (await response.json())?.error ?? {};
    } catch {
      error = {};
    }
    throw new ApiError(response.status, error.code ?? "error", error.message ?? response.statusText);
  }
  return response.text();
}

async function request(method, path, body, token, extraHeaders = {}) {
  let response;
  const headers = { ...extraHeaders, Authorization: `Bearer ${token ?? ""}`, Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "network", "The server cannot be reached.");
  }
  let answer = null;
  try {
    answer = await response.json();
  } catch {
    answer = null;
  }
  if (!response.ok) {
    const error = answer?.error ?? {};
    throw new ApiError(
      response.status,
      error.code ?? "error",
      error.message ?? response.statusText,
      Array.isArray(error.problems) ? error.problems : null,
    );
  }
  return answer;
}

/** Every item of a paginated list, following `next_cursor` until it is null. */
export async function getAll(path, token = session.token()) {
  const items = [];
  let cursor = null;
  do {
    const separator = path.includes("?") ? "&" : "?";
    const page = await get(
      `${path}${separator}limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`,
      token,
    );
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return items;
}

/**
 * A fresh `Idempotency-Key` for one intended change: a form keeps it while the user retries the
 * same request (an answer lost on the way does not make the change twice) and takes a new one
 * after a success or when the values change.
 */
export function newIdempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return `portal-${Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("")}`;
}

/** Path segment escaping for ids that came from the API. */
export function segment(id) {
  return encodeURIComponent(id);
}
