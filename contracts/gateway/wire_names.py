"""The names a client spells on the wire besides the method specs, for one that calls without
loading them (the CLI's blocking path, fleet/cli/oneshot.py): the JSON-RPC paths, a streamed
answer's event names, and the methods that path calls. ``live`` and ``rpc`` spell their specs
with these."""

#: The HTTP path of a JSON-RPC call.
RPC_PATH = "/rpc"
#: The HTTP path that answers a streaming method as server-sent events.
RPC_STREAM_PATH = "/rpc/stream"
#: The SSE event names of a streamed answer.
SSE_OUTPUT = "output"
SSE_RESULT = "result"
#: How many parts a client that read slower than its machine wrote missed (past what the
#: gateway holds for a stream), so far: ``{"parts": n}``, before the next part once it grew,
#: and before the result.
SSE_DROPPED = "dropped"
MACHINES_LIST = "machines.list"
MACHINES_EXEC_STREAM = "machines.execStream"
