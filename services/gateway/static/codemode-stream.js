// A codemode run, streamed: POST CODEMODE.PATH with codemode.run's params answers server-sent
// events, one per run event (its `type` as the event name), then CODEMODE.END with the result.
import { NO_ANSWER, RpcError, session } from "./api.js";
import { CODEMODE, ERROR_HTTP_STATUS } from "./contract.js";
import { takeEvents } from "./rpc-stream.js";
import { state } from "./state.js";

function settleEnd(end) {
  if (end?.error && !end.runId) {
    throw new RpcError(end.error.code, end.error.message, end.error.data);
  }
  return end;
}

/** An answer that is not a stream: `{error}` about the request itself. */
async function refused(resp) {
  let body = null;
  try {
    body = await resp.json();
  } catch {
    throw new RpcError(resp.status, `HTTP ${resp.status} ${resp.statusText}`);
  }
  if (resp.status === ERROR_HTTP_STATUS.UNAUTHORIZED) state.onUnauthorized();
  return settleEnd(body);
}

/**
 * Runs `params` (codemode.run's); `onEvent(event)` gets each run event as it happens. Resolves
 * to the run's result ({runId, status, result, error, logs}); rejects with an RpcError.
 * Aborting `signal` stops reading (the run goes on: cancel it with codemode.cancel).
 */
export async function streamRun(params, onEvent, signal = null) {
  let resp;
  try {
    resp = await fetch(CODEMODE.PATH, {
      method: "POST",
      headers: { Authorization: `Bearer ${session.token}`, "Content-Type": "application/json" },
      body: JSON.stringify(params),
      signal,
    });
  } catch (exc) {
    throw new RpcError(NO_ANSWER, `cannot reach the gateway (${exc.message})`);
  }
  if (!(resp.headers.get("Content-Type") || "").startsWith("text/event-stream")) {
    return refused(resp);
  }
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new RpcError(NO_ANSWER, "the stream ended without a result");
    const taken = takeEvents(buffer + value);
    buffer = taken.rest;
    for (const ev of taken.events) {
      if (ev.name === CODEMODE.END) return settleEnd(JSON.parse(ev.data));
      onEvent(JSON.parse(ev.data));
    }
  }
}
