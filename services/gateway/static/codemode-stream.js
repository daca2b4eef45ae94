// A codemode run, streamed: POST CODEMODE.PATH with codemode.run's params answers server-sent
// events, one per run event (its `type` as the event name), then CODEMODE.END with the result.
import { RpcError } from "./api.js";
import { CODEMODE } from "./contract.js";
import { postForEvents } from "./rpc-stream.js";

function settleEnd(end) {
  if (end?.error && !end.runId) {
    throw new RpcError(end.error.code, end.error.message, end.error.data);
  }
  return end;
}

/**
 * Runs `params` (codemode.run's); `onEvent(event)` gets each run event as it happens. Resolves
 * to the run's result ({runId, status, result, error, logs}); rejects with an RpcError.
 * Aborting `signal` stops reading (the run goes on: cancel it with codemode.cancel).
 */
export function streamRun(params, onEvent, signal = null) {
  const each = (ev) => {
    if (ev.name === CODEMODE.END) return { value: settleEnd(JSON.parse(ev.data)) };
    onEvent(JSON.parse(ev.data));
    return null;
  };
  return postForEvents(CODEMODE.PATH, params, signal, each, settleEnd);
}
