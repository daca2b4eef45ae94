/**
 * The Web Crypto API: the runtime's global one (browsers, Node 19+), else Node 18's
 * `node:crypto` webcrypto, which it has but does not make global.
 */
export async function webcrypto(): Promise<Crypto> {
  if (globalThis.crypto?.subtle !== undefined) return globalThis.crypto;
  const { webcrypto } = await import("node:crypto");
  return webcrypto as unknown as Crypto;
}
