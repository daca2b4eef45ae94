import type {
  CreatedWebhook,
  Deliveries,
  RotatedSecret,
  Webhook,
  WebhooksCreateParams,
  WebhooksDeliveriesParams,
} from "./generated.js";
import type { Transport } from "./transport.js";

/**
 * `fleet.webhooks`: endpoints that machine events are POSTed to, signed as the Standard
 * Webhooks specification says (`webhook-id`, `webhook-timestamp`, `webhook-signature`). An
 * instance's owner manages its own (`instanceId`); a platform admin the platform's (without
 * one), which get every machine's events. The secret is answered once, by `create` and
 * `rotateSecret`.
 */
export class Webhooks {
  constructor(private readonly transport: Transport) {}

  create(params: WebhooksCreateParams): Promise<CreatedWebhook> {
    return this.transport.call("webhooks.create", params);
  }

  async list(instanceId?: string): Promise<Webhook[]> {
    const params = instanceId === undefined ? {} : { instanceId };
    return (await this.transport.call("webhooks.list", params)).webhooks;
  }

  async delete(webhookId: string): Promise<boolean> {
    return (await this.transport.call("webhooks.delete", { webhookId })).deleted;
  }

  /** A new secret; the previous one signs beside it for 24 hours. */
  rotateSecret(webhookId: string): Promise<RotatedSecret> {
    return this.transport.call("webhooks.rotateSecret", { webhookId });
  }

  /** Sends a `webhook.test` event; its id is the `webhook-id` the endpoint gets. */
  async test(webhookId: string): Promise<string> {
    return (await this.transport.call("webhooks.test", { webhookId })).eventId;
  }

  /** The last delivery attempts, newest first, and how many events wait. */
  deliveries(params: WebhooksDeliveriesParams): Promise<Deliveries> {
    return this.transport.call("webhooks.deliveries", params);
  }
}
