// Checks a document with the validators its community uses, none of them ours:
//   node tests/js/validate_specs.mjs openrpc  FILE   @open-rpc/schema-utils-js (validate, dereference)
//   node tests/js/validate_specs.mjs redocly  FILE   Redocly's linter (@redocly/openapi-core), recommended rules
//   node tests/js/validate_specs.mjs asyncapi FILE   @asyncapi/parser
// Prints {"problems": [...]} (an empty list when the document passes) and exits 0; exits 2 on
// bad usage. Driven by tests/integration/test_standard_clients.py.
import { readFileSync } from "node:fs";

const [kind, file] = process.argv.slice(2);
const text = readFileSync(file, "utf8");

async function openrpc() {
  const utils = await import("@open-rpc/schema-utils-js");
  const doc = JSON.parse(text);
  const result = utils.validateOpenRPCDocument(doc);
  if (result !== true) return [String(result.message ?? result)];
  await utils.dereferenceDocument(doc); // every $ref resolves
  return [];
}

async function redocly() {
  const { lintFromString, createConfig } = await import("@redocly/openapi-core");
  const config = await createConfig({ extends: ["recommended"] });
  const found = await lintFromString({ source: text, absoluteRef: file, config });
  return found
    .filter((p) => p.severity === "error" || p.severity === "warn")
    .map((p) => `${p.severity} ${p.ruleId}: ${p.message} at ${p.location?.[0]?.pointer ?? "?"}`);
}

async function asyncapi() {
  const { Parser } = await import("@asyncapi/parser");
  const diagnostics = await new Parser().validate(text);
  // severity 0 = error, 1 = warning (Spectral's scale); hints and info are style advice.
  return diagnostics
    .filter((d) => d.severity <= 1)
    .map((d) => `${d.severity === 0 ? "error" : "warn"} ${d.code}: ${d.message} at /${d.path.join("/")}`);
}

const checks = { openrpc, redocly, asyncapi };
if (!checks[kind] || !file) {
  console.error("usage: validate_specs.mjs openrpc|redocly|asyncapi FILE");
  process.exit(2);
}
console.log(JSON.stringify({ problems: await checks[kind]() }));
