/** A small request's answer, read whole: what a JSON-RPC call needs. */
export interface Answer {
  status: number;
  header(name: string): string | null;
  text: string;
}

/** What node:http and node:https have alike, of what a call uses. */
interface NodeHttp {
  request: typeof import("node:http").request;
  Agent: typeof import("node:http").Agent;
}

/**
 * Requests whose body is in memory (a JSON-RPC call, an upload of bytes), their answers read
 * whole. On Node they go through `node:http(s)` with a keep-alive agent, whose overhead per
 * request is under fetch's (benchmark 27 compares the SDK's calls and uploads with the Python
 * client's); elsewhere, through fetch.
 */
export class Poster {
  private node:
    | Promise<{ http: NodeHttp; https: NodeHttp; agents: Map<string, unknown> } | undefined>
    | undefined;

  constructor(private readonly fetchImpl: typeof fetch | undefined) {}

  post(
    url: string,
    body: string,
    headers: Record<string, string>,
    signal: AbortSignal,
  ): Promise<Answer> {
    return this.send("POST", url, new TextEncoder().encode(body), headers, signal);
  }

  /** A request whose body is in memory, its answer read whole (an upload's is small JSON). */
  async send(
    method: string,
    url: string,
    payload: Uint8Array,
    headers: Record<string, string>,
    signal: AbortSignal | undefined,
  ): Promise<Answer> {
    const node = this.fetchImpl === undefined ? await this.loadNode() : undefined;
    if (node === undefined) return await this.viaFetch(method, url, payload, headers, signal);
    const target = new URL(url);
    const secure = target.protocol === "https:";
    const lib = secure ? node.https : node.http;
    let agent = node.agents.get(target.protocol);
    if (agent === undefined) {
      agent = new lib.Agent({ keepAlive: true });
      node.agents.set(target.protocol, agent);
    }
    return await new Promise<Answer>((resolve, reject) => {
      const req = lib.request(
        target,
        {
          method,
          agent: agent as import("node:http").Agent,
          headers: { ...headers, "content-length": String(payload.byteLength) },
          ...(signal ? { signal } : {}),
        },
        (res) => {
          const parts: Uint8Array[] = [];
          res.on("data", (chunk: Uint8Array) => parts.push(chunk));
          res.on("error", reject);
          res.on("end", () => {
            const raw = res.headers;
            resolve({
              status: res.statusCode ?? 0,
              header: (name) => {
                const v = raw[name.toLowerCase()];
                return v === undefined ? null : Array.isArray(v) ? v.join(", ") : v;
              },
              text: Buffer.concat(parts).toString("utf8"),
            });
          });
        },
      );
      req.on("error", reject);
      req.end(payload);
    });
  }

  private loadNode() {
    const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
    if (typeof p?.versions?.node !== "string") return Promise.resolve(undefined);
    this.node ??= Promise.all([import("node:http"), import("node:https")]).then(
      ([http, https]) => ({
        http: http as NodeHttp,
        https: https as unknown as NodeHttp,
        agents: new Map<string, unknown>(),
      }),
      () => undefined,
    );
    return this.node;
  }

  private async viaFetch(
    method: string,
    url: string,
    body: Uint8Array,
    headers: Record<string, string>,
    signal: AbortSignal | undefined,
  ): Promise<Answer> {
    const f = this.fetchImpl ?? globalThis.fetch;
    const resp = await f(url, {
      method,
      headers,
      body: body as BodyInit,
      ...(signal ? { signal } : {}),
    });
    return {
      status: resp.status,
      header: (name) => resp.headers.get(name),
      text: await resp.text(),
    };
  }
}
