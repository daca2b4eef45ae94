import { EventStream, type EventsOptions } from "./events.js";
import { Files } from "./files.js";
import type {
  EnvListParams,
  EnvSetParams,
  EnvUnsetParams,
  EnvVar,
  Instance,
  InstancesCreateParams,
  ListeningPort,
  MethodName,
  Methods,
  Repo,
  ReposAddParams,
  ReposRemoveParams,
} from "./generated.js";
import { Machines } from "./machines.js";
import { Terminals } from "./terminals.js";
import { type CallOptions, type FleetOptions, Transport } from "./transport.js";
import { Webhooks } from "./webhooks.js";

/** `fleet.instances`: a user's projects; each owns env vars, repos and a current machine. */
export class Instances {
  constructor(private readonly transport: Transport) {}

  create(params: InstancesCreateParams): Promise<Instance> {
    return this.transport.call("instances.create", params);
  }

  get(instanceId: string): Promise<Instance> {
    return this.transport.call("instances.get", { instanceId });
  }

  async list(): Promise<Instance[]> {
    return (await this.transport.call("instances.list", {})).instances;
  }
}

/** `fleet.env`: env vars, of an instance (`instanceId`) or of the platform (without one). */
export class Env {
  constructor(private readonly transport: Transport) {}

  set(params: EnvSetParams): Promise<EnvVar> {
    return this.transport.call("env.set", params);
  }

  async unset(params: EnvUnsetParams): Promise<boolean> {
    return (await this.transport.call("env.unset", params)).removed;
  }

  async list(params: EnvListParams = {}): Promise<EnvVar[]> {
    return (await this.transport.call("env.list", params)).vars;
  }
}

/** `fleet.repos`: the git repos checked out in an instance's machines. */
export class Repos {
  constructor(private readonly transport: Transport) {}

  add(params: ReposAddParams): Promise<Repo> {
    return this.transport.call("repos.add", params);
  }

  async remove(params: ReposRemoveParams): Promise<boolean> {
    return (await this.transport.call("repos.remove", params)).removed;
  }

  async list(instanceId: string): Promise<Repo[]> {
    return (await this.transport.call("repos.list", { instanceId })).repos;
  }
}

/** `fleet.ports`: what listens in a machine, and browser previews of it. */
export class Ports {
  constructor(private readonly transport: Transport) {}

  async list(machineId: string): Promise<ListeningPort[]> {
    return (await this.transport.call("machines.ports", { machineId })).ports;
  }

  /** A URL that opens the port's preview in a browser, once, within seconds. */
  async previewUrl(machineId: string, port: number): Promise<string> {
    const { url, ticket } = await this.transport.call("machines.previewTicket", {
      machineId,
      port,
    });
    const out = new URL(url);
    out.searchParams.set("fleet_ticket", ticket);
    return out.toString();
  }
}

/**
 * A client of one fleetd gateway.
 *
 * ```ts
 * const fleet = new Fleet({ url: "http://127.0.0.1:8080", token });
 * ```
 */
export class Fleet {
  readonly instances: Instances;
  readonly machines: Machines;
  readonly files: Files;
  readonly terminals: Terminals;
  readonly ports: Ports;
  readonly env: Env;
  readonly repos: Repos;
  readonly webhooks: Webhooks;
  private readonly transport: Transport;

  constructor(options: FleetOptions = {}) {
    this.transport = new Transport(options);
    this.instances = new Instances(this.transport);
    this.machines = new Machines(this.transport);
    this.files = new Files(this.transport);
    this.terminals = new Terminals(this.transport);
    this.ports = new Ports(this.transport);
    this.env = new Env(this.transport);
    this.repos = new Repos(this.transport);
    this.webhooks = new Webhooks(this.transport);
  }

  /** The gateway's URL. */
  get url(): string {
    return this.transport.url;
  }

  /**
   * Any method of the gateway, typed by its name. Retryable errors (1501, 1502, the rate
   * limit) are sent again after the wait they name, within the retry deadline; nothing else
   * is. Every failure is a FleetError.
   */
  call<M extends MethodName>(
    method: M,
    params: Methods[M]["params"],
    options: Pick<CallOptions, "signal" | "timeoutMs"> = {},
  ): Promise<Methods[M]["result"]> {
    return this.transport.call(method, params, options);
  }

  /**
   * Machine events as they happen (or from `since`), typed: switch on `event.type`. A dropped
   * connection is resumed after the last event, with no duplicate and no gap.
   */
  events(options: EventsOptions = {}): EventStream {
    return new EventStream(this.transport, options);
  }
}
