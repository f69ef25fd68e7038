// HTTP access to the expman-tornado API under the server's base URL.

import { connection } from "./connection";

/** The server's base URL ("/", "/expman/", …), which the server writes into index.html. */
export const BASE_URL: string = readBaseUrl();

function readBaseUrl(): string {
  const meta = document.querySelector('meta[name="expman-base-url"]');
  const value = meta?.getAttribute("content") ?? "/";
  // The marker is still there when index.html is opened without the server.
  if (value.startsWith("__EXPMAN_BASE")) return "/";
  return value.endsWith("/") ? value : value + "/";
}

/** An error reply of the API: `{"error": {"status", "message"}}`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

/** The request never reached the server, or its reply was cut off. */
export class NetworkError extends Error {
  constructor(readonly url: string) {
    super(`Cannot reach the server at ${new URL(BASE_URL, location.href).href}`);
    this.name = "NetworkError";
  }
}

/** Return the URL of an API route; each name is one percent-encoded path segment. */
export function apiUrl(...segments: string[]): string {
  return BASE_URL + "api/" + segments.map(encodeURIComponent).join("/");
}

export function runUrl(experiment: string, run: string, ...rest: string[]): string {
  return apiUrl("experiments", experiment, "runs", run, ...rest);
}

export function withQuery(url: string, query: Record<string, string | number | undefined | null>): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null) params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `${url}?${text}` : url;
}

/** Fetch a URL; network failures are reported to the connection monitor. */
export async function request(url: string, init: RequestInit = {}): Promise<Response> {
  let response: Response;
  try {
    response = await fetch(url, { credentials: "same-origin", ...init });
  } catch (error) {
    if ((error as Error).name === "AbortError") throw error;
    connection.reportDown();
    throw new NetworkError(url);
  }
  connection.reportUp();
  if (!response.ok) throw await errorOf(response);
  return response;
}

async function errorOf(response: Response): Promise<ApiError> {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body?.error?.message) message = body.error.message;
  } catch {
    // Not a JSON error body (a proxy's page, for example): keep the status line.
  }
  return new ApiError(response.status, message);
}

export async function getJson<T>(url: string, signal?: AbortSignal): Promise<T> {
  const response = await request(url, { signal, headers: { Accept: "application/json" } });
  return (await response.json()) as T;
}

export async function getBytes(url: string, signal?: AbortSignal, headers?: HeadersInit): Promise<ArrayBuffer> {
  const response = await request(url, { signal, headers });
  return await response.arrayBuffer();
}

/** Return the `_xsrf` cookie that the server sets with the page, for mutating requests. */
export function xsrfToken(): string {
  const match = document.cookie.match(/(?:^|;\s*)_xsrf=([^;]*)/);
  return match ? decodeURIComponent(match[1]) : "";
}

/** Send JSON with POST or PATCH; the XSRF token goes in `X-XSRFToken`. */
export async function sendJson<T>(method: "POST" | "PATCH", url: string, body: unknown): Promise<T> {
  const response = await request(url, {
    method,
    headers: { "Content-Type": "application/json", Accept: "application/json", "X-XSRFToken": xsrfToken() },
    body: JSON.stringify(body),
  });
  return (await response.json()) as T;
}

/** Describe an error for a person: what failed and, when known, why. */
export function describeError(error: unknown): string {
  if (error instanceof ApiError) return error.message;
  if (error instanceof NetworkError) return error.message;
  return error instanceof Error ? error.message : String(error);
}
