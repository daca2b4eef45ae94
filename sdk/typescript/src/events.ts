import { FleetError } from "./errors.js";
import { type FleetEvent, ROUTES } from "./generated.js";
import { sseEvents } from "./sse.js";
import { anySignal, backoffMs, sleep, type Transport } from "./transport.js";

export interface EventsOptions {
  /** Only this machine's events, from its first one (else: new events of every machine). */
  machineId?: string;
  /** Resume after this stream sequence (an event's id; 0 replays everything stored). */
  since?: number;
  /** Aborting it ends the iteration. */
  signal?: AbortSignal;
  /** End once the stored events are read (the gateway says `caught-up`), instead of following. */
  follow?: boolean;
  /** How long the stream may keep failing to reopen, in a row, before it gives up (ms). */
  resumeDeadlineMs?: number;
}

/** Default of EventsOptions.resumeDeadlineMs: longer than a gateway's restart. */
export const DEFAULT_RESUME_DEADLINE_MS = 60_000;

/**
 * GET /events as an async iterable of typed events. A dropped connection (a gateway
 * restarting, a balancer cutting it, the gateway's bus failing over, a client too slow) is
 * reopened from the last event's id (`Last-Event-ID`): no event is missed or repeated.
 * `lastEventId` is that id, to resume from in a later stream (`since`).
 */
export class EventStream implements AsyncIterable<FleetEvent> {
  private last: number | undefined;
  private started = false;

  constructor(
    private readonly transport: Transport,
    private readonly options: EventsOptions,
  ) {
    this.last = options.since;
  }

  /** The stream sequence of the last event read. */
  get lastEventId(): number | undefined {
    return this.last;
  }

  [Symbol.asyncIterator](): AsyncIterator<FleetEvent> {
    if (this.started) throw new Error("an EventStream is iterated once");
    this.started = true;
    return this.run();
  }

  private async *run(): AsyncGenerator<FleetEvent> {
    const limit = this.options.resumeDeadlineMs ?? DEFAULT_RESUME_DEADLINE_MS;
    let failingSince: number | undefined;
    let attempt = 0;
    for (;;) {
      const local = new AbortController();
      const { signal, dispose } = anySignal([this.options.signal, local.signal]);
      try {
        for await (const event of this.once(signal)) {
          failingSince = undefined;
          attempt = 0;
          if (event === "caught-up") return;
          yield event;
        }
      } catch (err) {
        if (this.options.signal?.aborted) return;
        const resumable =
          err instanceof FleetError &&
          (err.retryable || (err.name === "ConnectionFailed" && err.code === 0));
        if (!resumable && err instanceof FleetError) throw err;
        // Anything else is the connection breaking mid-stream: resume as for a clean end.
      } finally {
        local.abort();
        dispose();
      }
      if (this.options.signal?.aborted) return;
      failingSince ??= Date.now();
      attempt += 1;
      if (Date.now() - failingSince > limit) {
        throw new FleetError(0, `GET /events could not be resumed for ${limit} ms`, {
          name: "ConnectionFailed",
          httpStatus: 0,
        });
      }
      try {
        await sleep(backoffMs(attempt, 100, 2000), this.options.signal);
      } catch {
        return;
      }
    }
  }

  /** One GET /events: its events, `caught-up`, or its end (an error, an overflow, EOF). */
  private async *once(signal: AbortSignal): AsyncGenerator<FleetEvent | "caught-up"> {
    const query = new URLSearchParams();
    if (this.options.machineId !== undefined) query.set("machineId", this.options.machineId);
    const headers: Record<string, string> = { accept: "text/event-stream" };
    if (this.last !== undefined) headers["last-event-id"] = String(this.last);
    const qs = query.toString();
    const resp = await this.transport.fetch(`/events${qs ? `?${qs}` : ""}`, {
      headers: this.transport.headers(headers),
      signal,
    });
    if (!resp.ok || resp.body === null) throw await this.transport.httpError(resp);
    for await (const message of sseEvents(resp.body)) {
      if (message.event === ROUTES.sseOverflow) return; // cut off for falling behind: resume
      if (message.event === ROUTES.sseError) throw FleetError.fromWire(safeJson(message.data));
      if (message.event === ROUTES.sseCaughtUp) {
        if (this.options.follow === false) yield "caught-up";
        continue;
      }
      if (message.event !== "message" || message.data === "") continue;
      const seq = Number(message.id);
      if (this.last !== undefined && seq <= this.last) continue; // never twice
      const event = JSON.parse(message.data) as FleetEvent;
      this.last = seq;
      yield event;
    }
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return { code: -32603, message: `an unreadable stream error: ${text.slice(0, 200)}` };
  }
}
