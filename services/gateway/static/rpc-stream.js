// A streaming JSON-RPC request (POST STREAMING.PATH): server-sent events read from fetch's body,
// since EventSource can neither POST nor set the Authorization header.
import { NO_ANSWER, RpcError, session } from "./api.js";
import { ERROR_HTTP_STATUS, STREAMING } from "./contract.js";
import { state } from "./state.js";

/** The name and data of each complete server-sent event in `buffer`, and what is left of it. */
export function takeEvents(buffer) {
  const events = [];
  let rest = buffer;
  let end = rest.indexOf("\n\n");
  while (end >= 0) {
    const block = rest.slice(0, end);
    rest = rest.slice(end + 2);
    let name = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event: ")) name = line.slice(7);
      else if (line.startsWith("data: ")) data.push(line.slice(6));
    }
    if (data.length) events.push({ name, data: data.join("\n") });
    end = rest.indexOf("\n\n");
  }
  return { events, rest };
}

/** The result of a JSON-RPC response object, or the RpcError it carries. */
function settle(answer) {
  if (answer?.error) throw new RpcError(answer.error.code, answer.error.message, answer.error.data);
  return answer?.result;
}

/** An answer that is not a stream: its JSON body, about the request itself. */
export async function refusal(resp) {
  let body = null;
  try {
    body = await resp.json();
  } catch {
    throw new RpcError(resp.status, `HTTP ${resp.status} ${resp.statusText}`);
  }
  if (resp.status === ERROR_HTTP_STATUS.UNAUTHORIZED) state.onUnauthorized();
  return body;
}

/**
 * POSTs `body` to `path` and reads the server-sent events of the answer. `onEvent({name, data})`
 * gets each one; the first time it returns `{value}`, the read ends with that value. An answer
 * that is not a stream (an error before it started) goes to `onRefusal(body)`.
 */
export async function postForEvents(path, body, signal, onEvent, onRefusal) {
  let resp;
  try {
    resp = await fetch(path, {
      method: "POST",
      headers: { ...session.headers(), "Content-Type": "application/json" },
      body: JSON.stringify(body),
      signal,
    });
  } catch (exc) {
    throw new RpcError(NO_ANSWER, `cannot reach the gateway (${exc.message})`);
  }
  if (!(resp.headers.get("Content-Type") || "").startsWith("text/event-stream")) {
    return onRefusal(await refusal(resp));
  }
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new RpcError(NO_ANSWER, "the stream ended without a result");
    const taken = takeEvents(buffer + value);
    buffer = taken.rest;
    for (const ev of taken.events) {
      const ended = onEvent(ev);
      if (ended) return ended.value;
    }
  }
}

/**
 * Calls streaming `method`; `onChunk({seq, stream, data})` gets the output as it comes. Resolves
 * to the result; rejects with an RpcError. Aborting `signal` closes the stream, which ends the
 * command on the machine.
 */
export function rpcStream(method, params, onChunk, signal = null) {
  const body = { jsonrpc: "2.0", id: state.nextRpcId++, method, params };
  const onEvent = (ev) => {
    if (ev.name === STREAMING.OUTPUT) onChunk(JSON.parse(ev.data));
    return ev.name === STREAMING.RESULT ? { value: settle(JSON.parse(ev.data)) } : null;
  };
  return postForEvents(STREAMING.PATH, body, signal, onEvent, settle);
}
