import { FleetError } from "./errors.js";
import { ROUTES } from "./generated.js";
import { sseEvents } from "./sse.js";
import type { Transport } from "./transport.js";

/**
 * A streaming method's answer (POST /rpc/stream): an async iterable of its parts (`output`
 * events) as they come, then `result` (the `result` event: the answer the plain call gives).
 * Iterate it once; `result` alone (without iterating) reads the parts and drops them.
 */
export class RpcStream<Part, Answer> implements AsyncIterable<Part> {
  private readonly controller = new AbortController();
  private readonly settled: Promise<Answer>;
  private resolve!: (r: Answer) => void;
  private reject!: (e: unknown) => void;
  private iterating = false;

  constructor(
    private readonly transport: Transport,
    private readonly body: string,
    signal: AbortSignal | undefined,
    /** The method's name in its errors ("execStream"). */
    private readonly what: string,
    /** One `output` event's data as the part it is. */
    private readonly decode: (data: string) => Part,
    /**
     * The part a `dropped` event (how many parts the gateway left out so far, for a reader
     * slower than the machine) becomes, if any; without it such events are not told.
     */
    private readonly dropped?: (total: number) => Part | undefined,
  ) {
    this.settled = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.settled.catch(() => undefined); // awaited or not, never an unhandled rejection
    if (signal?.aborted) this.controller.abort(signal.reason);
    signal?.addEventListener("abort", () => this.controller.abort(signal.reason), { once: true });
  }

  /** The answer, once the method is done. */
  get result(): Promise<Answer> {
    if (!this.iterating) {
      void (async () => {
        for await (const _ of this) {
          // drained: the parts are in the answer too
        }
      })().catch(() => undefined);
    }
    return this.settled;
  }

  /** Stop reading (as aborting the signal does): the stream's response is closed. */
  abort(): void {
    this.controller.abort(
      new FleetError(0, `${this.what} aborted`, { name: "Aborted", httpStatus: 0 }),
    );
  }

  [Symbol.asyncIterator](): AsyncIterator<Part> {
    if (this.iterating) throw new Error(`a ${this.what} stream is iterated once`);
    this.iterating = true;
    return this.run();
  }

  private async *run(): AsyncGenerator<Part> {
    let done = false;
    try {
      const resp = await this.transport.fetch(ROUTES.rpcStream, {
        method: "POST",
        headers: this.transport.headers({ "content-type": "application/json" }),
        body: this.body,
        signal: this.controller.signal,
      });
      const type = resp.headers.get("content-type") ?? "";
      if (!type.startsWith("text/event-stream") || resp.body === null) {
        if (!resp.ok) throw await this.transport.httpError(resp);
        const doc = (await resp.json()) as { error?: unknown };
        throw FleetError.fromWire(doc.error);
      }
      for await (const message of sseEvents(resp.body)) {
        if (message.event === ROUTES.sseOutput) {
          yield this.decode(message.data);
        } else if (message.event === ROUTES.sseDropped && this.dropped !== undefined) {
          const told = this.dropped((JSON.parse(message.data) as { parts: number }).parts);
          if (told !== undefined) yield told;
        } else if (message.event === ROUTES.sseResult) {
          const doc = JSON.parse(message.data) as { result?: Answer; error?: unknown };
          if (doc.error !== undefined) throw FleetError.fromWire(doc.error);
          done = true;
          this.resolve(doc.result as Answer);
          return;
        }
      }
      throw new FleetError(1045, "the stream ended without a result", { name: "StreamAborted" });
    } catch (err) {
      const reason = this.controller.signal.aborted ? this.controller.signal.reason : err;
      this.reject(reason);
      throw reason;
    } finally {
      if (!done) {
        // Left early (break, abort): the response is closed (an execStream's command dies).
        this.controller.abort();
        this.reject(
          new FleetError(0, `${this.what} closed before its result`, {
            name: "Aborted",
            httpStatus: 0,
          }),
        );
      }
    }
  }
}
