// A real OpenID provider for the tests: the certified `oidc-provider` from npm, on 127.0.0.1 at
// a port the kernel gives. One confidential client, the gateway (the code flow with PKCE for
// browsers, the device flow for `fleet login`); any login name signs in (its dev interactions),
// as <name>@example.com, with what USERS gives it. Prints "ready <issuer> <its own URL>" once
// listening. argv[2], when given, is the issuer: a test's front that forwards to this provider
// (which builds its endpoints' URLs from the Host each request names, the front's).
// Its configuration is the library's default where the gateway must cope with any provider:
// conformIdTokenClaims stays on, so the ID token carries `sub` and the scopes' claims (email,
// name, groups) come from UserInfo only (OpenID Connect Core 5.4).
import { createServer } from "node:http";
import { once } from "node:events";
import Provider from "oidc-provider";

// Listening before the provider exists: its issuer, by default, names the port it was given.
const server = createServer();
server.listen(0, "127.0.0.1");
await once(server, "listening");
const own = `http://127.0.0.1:${server.address().port}`;
const issuer = process.argv[2] ?? own;
// What a login's claims have besides the defaults (<name>@example.com, verified, no groups).
// Two are an attacker's accounts: a provider that lets them set carol's email, not verified;
// and a second account (another `sub`) whose verified email is carol's. The last is carol at a
// provider that never sends `email_verified` (as Microsoft Entra ID): undefined is left out.
const USERS = {
  ann: { groups: ["fleet-admins"] },
  audrey: { groups: ["fleet-auditors"] },
  "eve-as-carol": { email: "carol@example.com", email_verified: false },
  "carol-second": { email: "carol@example.com" },
  "carol-entra": { email: "carol@example.com", email_verified: undefined },
};

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: "fleet",
      client_secret: "fleet-test-secret",
      redirect_uris: ["http://127.0.0.1/auth/callback"],
      grant_types: ["authorization_code", "urn:ietf:params:oauth:grant-type:device_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
    },
  ],
  claims: {
    openid: ["sub"],
    email: ["email", "email_verified"],
    profile: ["name"],
    groups: ["groups"],
  },
  features: { devInteractions: { enabled: true }, deviceFlow: { enabled: true } },
  cookies: { keys: ["test-only-cookie-key"] },
  async findAccount(_ctx, id) {
    return {
      accountId: id,
      async claims() {
        const all = {
          sub: id,
          email: `${id}@example.com`,
          email_verified: true,
          name: id,
          groups: [],
          ...USERS[id],
        };
        return Object.fromEntries(Object.entries(all).filter(([, v]) => v !== undefined));
      },
    };
  },
});
// The gateway under test listens on a free port: its callback on any port of 127.0.0.1.
provider.Client.prototype.redirectUriAllowed = (uri) =>
  /^http:\/\/127\.0\.0\.1:\d+\/auth\/callback$/.test(uri);

server.on("request", provider.callback());
console.log(`ready ${issuer} ${own}`);
