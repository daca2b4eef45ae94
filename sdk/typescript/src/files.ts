import { FleetError } from "./errors.js";
import { ROUTES, type Uploaded } from "./generated.js";
import type { Transport } from "./transport.js";
import { webcrypto } from "./webcrypto.js";

/** What `files.write` takes: text (written as UTF-8), bytes, or a stream of bytes. */
export type FileData = string | Uint8Array | ReadableStream<Uint8Array>;

export interface WriteOptions {
  /** Permission bits (default: the replaced file's, else 0o644). */
  mode?: number;
  signal?: AbortSignal;
}

/** A download under way: its size and mode, and its bytes as a stream (async iterable too). */
export interface FileDownload extends AsyncIterable<Uint8Array> {
  size: number | undefined;
  mode: number;
  stream: ReadableStream<Uint8Array>;
}

/** The route of one file: its path relative to the home, each segment percent-encoded. */
export function filesPath(machineId: string, path: string): string {
  const rel = path.startsWith("~/") ? path.slice(2) : path;
  const encoded = rel.split("/").map(encodeURIComponent).join("/");
  return `${ROUTES.filesPrefix}${encodeURIComponent(machineId)}/files/${encoded}`;
}

async function sha256Hex(data: Uint8Array): Promise<string> {
  const crypto = await webcrypto();
  const digest = await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A stream's bytes, counted as they pass. */
function counted(
  stream: ReadableStream<Uint8Array>,
  count: { bytes: number },
): ReadableStream<Uint8Array> {
  return stream.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        count.bytes += chunk.byteLength;
        controller.enqueue(chunk);
      },
    }),
  );
}

/**
 * `fleet.files`: a machine's files of any size over the streaming route
 * (`PUT`/`GET /machines/{machineId}/files/{path}`), never base64 in JSON.
 */
export class Files {
  constructor(private readonly transport: Transport) {}

  /**
   * Put `data` at `path` (relative to the home, or `~/...`). The bytes are hashed as they are
   * sent and compared with the SHA-256 the machine computed of what it wrote (a stream: by its
   * size); a transfer that fails leaves nothing at the path.
   */
  async write(
    machineId: string,
    path: string,
    data: FileData,
    options: WriteOptions = {},
  ): Promise<Uploaded> {
    const query = new URLSearchParams();
    if (options.mode !== undefined) query.set("mode", options.mode.toString(8));
    const qs = query.toString();
    const target = `${filesPath(machineId, path)}${qs ? `?${qs}` : ""}`;
    const headers = this.transport.headers({ "content-type": "application/octet-stream" });
    let done: Uploaded;
    let sent: number;
    let sha: string | undefined;
    if (typeof data === "string" || data instanceof Uint8Array) {
      const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
      // Hashed while it is sent, as the Python client does: the digest is not on the way.
      const [digest, answer] = await Promise.all([
        sha256Hex(bytes),
        this.transport.poster
          .send("PUT", this.transport.url + target, bytes, headers, options.signal)
          .catch((err: unknown) => {
            if (options.signal?.aborted) throw options.signal.reason;
            throw this.transport.unreachable(err);
          }),
      ]);
      if (answer.status !== 200 && answer.status !== 201) throw this.transport.answerError(answer);
      done = JSON.parse(answer.text) as Uploaded;
      [sent, sha] = [bytes.byteLength, digest];
    } else {
      const count = { bytes: 0 };
      const resp = await this.transport.fetch(target, {
        method: "PUT",
        headers,
        body: counted(data, count) as BodyInit,
        duplex: "half",
        ...(options.signal ? { signal: options.signal } : {}),
      });
      if (resp.status !== 200 && resp.status !== 201) throw await this.transport.httpError(resp);
      done = (await resp.json()) as Uploaded;
      sent = count.bytes;
    }
    if (done.size !== sent || (sha !== undefined && done.sha256 !== sha)) {
      throw new FleetError(
        1054,
        `${path}: the machine wrote ${done.size} bytes (SHA-256 ${done.sha256}); ${sent} bytes${sha ? ` (SHA-256 ${sha})` : ""} were sent`,
        { data: { ...done } },
      );
    }
    return done;
  }

  /** The file's bytes, whole (checked against the announced size). */
  async read(
    machineId: string,
    path: string,
    options: { signal?: AbortSignal } = {},
  ): Promise<Uint8Array> {
    const download = await this.readStream(machineId, path, options);
    const parts: Uint8Array[] = [];
    let size = 0;
    for await (const chunk of download) {
      parts.push(chunk);
      size += chunk.byteLength;
    }
    if (download.size !== undefined && size !== download.size) {
      throw new FleetError(1054, `${path}: ${size} of ${download.size} bytes came`);
    }
    const out = new Uint8Array(size);
    let at = 0;
    for (const part of parts) {
      out.set(part, at);
      at += part.byteLength;
    }
    return out;
  }

  /** The file as a stream, read as it is consumed (the machine sends only as fast). */
  async readStream(
    machineId: string,
    path: string,
    options: { signal?: AbortSignal } = {},
  ): Promise<FileDownload> {
    const resp = await this.transport.fetch(filesPath(machineId, path), {
      headers: this.transport.headers(),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    if (resp.status !== 200 || resp.body === null) throw await this.transport.httpError(resp);
    const length = resp.headers.get("content-length");
    const stream = resp.body;
    return {
      size: length === null ? undefined : Number(length),
      mode: Number.parseInt(resp.headers.get("x-fleet-mode") ?? "644", 8),
      stream,
      async *[Symbol.asyncIterator]() {
        const reader = stream.getReader();
        try {
          for (;;) {
            const { value, done } = await reader.read().catch((err: unknown) => {
              throw new FleetError(1054, `${path}: the download broke off (${String(err)})`);
            });
            if (done) return;
            yield value;
          }
        } finally {
          reader.releaseLock();
        }
      },
    };
  }
}
