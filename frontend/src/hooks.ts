// Preact hooks shared by the views.

import { createContext } from "preact";
import { useCallback, useContext, useEffect, useRef, useState } from "preact/hooks";

import { connection } from "./connection";
import { storeStream, type StoreEvent } from "./live";
import type { ServerInfo } from "./types";

export interface Resource<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  reload(): void;
}

/**
 * Load data with `load`, again whenever `deps` change, on `reload()`, and
 * when the server comes back after being unreachable. The previous data stays
 * shown while a reload runs.
 */
export function useResource<T>(load: (signal: AbortSignal) => Promise<T>, deps: unknown[]): Resource<T> {
  const [state, setState] = useState<{ data?: T; error?: unknown; loading: boolean }>({ loading: true });
  const [counter, setCounter] = useState(0);
  const generation = useConnectionGeneration();

  useEffect(() => {
    const controller = new AbortController();
    setState((previous) => ({ ...previous, loading: true }));
    load(controller.signal).then(
      (data) => {
        if (!controller.signal.aborted) setState({ data, loading: false });
      },
      (error) => {
        if (!controller.signal.aborted) setState((previous) => ({ data: previous.data, error, loading: false }));
      },
    );
    return () => controller.abort();
  }, [...deps, counter, generation]);

  const reload = useCallback(() => setCounter((value) => value + 1), []);
  return { data: state.data, error: state.error, loading: state.loading, reload };
}

/** Return `Date.now()`, refreshed every `intervalMs` while `active`. */
export function useNow(intervalMs: number, active = true): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    if (!active) return;
    const timer = window.setInterval(() => setNow(Date.now()), intervalMs);
    return () => window.clearInterval(timer);
  }, [intervalMs, active]);
  return now;
}

/** Call `callback` every `intervalMs` while mounted and `active`. */
export function useInterval(callback: () => void, intervalMs: number, active = true): void {
  const saved = useRef(callback);
  saved.current = callback;
  useEffect(() => {
    if (!active) return;
    const timer = window.setInterval(() => saved.current(), intervalMs);
    return () => window.clearInterval(timer);
  }, [intervalMs, active]);
}

/** Run `callback` at most every `waitMs`, after the last of a burst of calls. */
export function useDebounced(callback: () => void, waitMs: number): () => void {
  const saved = useRef(callback);
  saved.current = callback;
  const timer = useRef<number | undefined>(undefined);
  useEffect(() => () => window.clearTimeout(timer.current), []);
  return useCallback(() => {
    window.clearTimeout(timer.current);
    timer.current = window.setTimeout(() => saved.current(), waitMs);
  }, [waitMs]);
}

/** Return `value` once it has stayed the same for `waitMs` (for requests made while typing). */
export function useDebouncedValue<T>(value: T, waitMs: number): T {
  const [settled, setSettled] = useState(value);
  useEffect(() => {
    const timer = window.setTimeout(() => setSettled(value), waitMs);
    return () => window.clearTimeout(timer);
  }, [value, waitMs]);
  return settled;
}

/**
 * Call `listener` for each store-wide event (experiments and runs created,
 * deleted, status), and `onResync` when the stream opens again after the page
 * was hidden, since the events sent meanwhile are lost.
 */
export function useStoreEvents(listener: (event: StoreEvent) => void, onResync?: () => void): void {
  const saved = useRef({ listener, onResync });
  saved.current = { listener, onResync };
  useEffect(
    () =>
      storeStream.subscribe(
        (event) => saved.current.listener(event),
        () => saved.current.onResync?.(),
      ),
    [],
  );
}

/** Return a number that increases each time the server comes back after being unreachable. */
export function useConnectionGeneration(): number {
  const [generation, setGeneration] = useState(connection.generation);
  useEffect(() => connection.subscribe(() => setGeneration(connection.generation)), []);
  return generation;
}

export function useConnectionDown(): boolean {
  const [down, setDown] = useState(connection.down);
  useEffect(() => connection.subscribe(() => setDown(connection.down)), []);
  return down;
}

/** What `GET api/server` reported; undefined until it answered. */
export const ServerContext = createContext<ServerInfo | undefined>(undefined);

export function useServer(): ServerInfo | undefined {
  return useContext(ServerContext);
}

/** Whether descriptions and tags can be edited: the server must be writable and say it supports edits. */
export function useCanEdit(): boolean {
  const server = useServer();
  return server !== undefined && server.read_only === false && server.editable === true;
}
