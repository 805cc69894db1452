// The Node.js peer of the dashboard benchmark (issue 17): the dashboard query served by
// graphql-yoga over Consentry's own SQLite database with better-sqlite3, and each page's
// delegated consents batched by DataLoader — how a careful Node.js team would write it.
//
//   NODE_ENV=production node server.mjs --database PATH --port PORT --msp MSP
//
// It answers what Consentry answers for the fields the dashboard selects (`clients(first,
// after) { edges { cursor node { name graphApiTile { status problem { code }
// availableActions } delegatedConsents(first) { userPrincipalName status } } } pageInfo }`),
// byte for byte the same JSON; the benchmark checks that before it measures. It checks no
// token (Consentry verifies one on every request): every shortcut here favours the peer.

import { createServer } from "node:http";
import { parseArgs } from "node:util";

import Database from "better-sqlite3";
import DataLoader from "dataloader";
import { createSchema, createYoga } from "graphql-yoga";

const { values: args } = parseArgs({
  options: {
    database: { type: "string" },
    port: { type: "string" },
    msp: { type: "string", default: "bench" },
  },
});
if (!args.database || !args.port) {
  console.error("usage: node server.mjs --database PATH --port PORT [--msp MSP]");
  process.exit(2);
}

const db = new Database(args.database, { readonly: true, fileMustExist: true });

const firstPage = db.prepare(
  `SELECT c.id, c.name, c.name_key, t.status, t.problem_code
     FROM client c JOIN graph_api_tile t ON t.client_id = c.id
    WHERE c.msp_id = ?
    ORDER BY c.name_key, c.id LIMIT ?`,
);
const nextPage = db.prepare(
  `SELECT c.id, c.name, c.name_key, t.status, t.problem_code
     FROM client c JOIN graph_api_tile t ON t.client_id = c.id
    WHERE c.msp_id = ? AND (c.name_key > ? OR (c.name_key = ? AND c.id > ?))
    ORDER BY c.name_key, c.id LIMIT ?`,
);

// One prepared statement per batch size, as DataLoader batches vary.
const consentStatements = new Map();
function consentsOf(count) {
  let statement = consentStatements.get(count);
  if (!statement) {
    const holes = new Array(count).fill("?").join(", ");
    statement = db.prepare(
      `SELECT client_id, user_principal_name, status FROM delegated_consent
        WHERE client_id IN (${holes}) ORDER BY granted_at DESC, id ASC`,
    );
    consentStatements.set(count, statement);
  }
  return statement;
}

// Client ids are stored as 16-byte blobs.
const key = (id) => Buffer.from(id).toString("hex");
const uuid = (id) => {
  const h = key(id);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
};
const cursor = (row) =>
  Buffer.from(JSON.stringify([row.name_key, uuid(row.id)])).toString("base64url");

function loadConsents(ids) {
  const byClient = new Map(ids.map((id) => [key(id), []]));
  for (const row of consentsOf(ids.length).all(...ids)) {
    byClient.get(key(row.client_id))?.push(row);
  }
  return Promise.resolve(ids.map((id) => byClient.get(key(id))));
}

function availableActions(tile) {
  switch (tile.status) {
    case "NOT_AUTHORISED":
    case "AWAITING_CONSENT":
    case "REVOKED":
      return ["AUTHORISE"];
    case "VERIFYING":
      return [];
    case "AUTHORISED":
      return ["VERIFY", "AUTHORISE", "DELEGATE"];
    case "FAILED":
      return tile.problem_code === "MISSING_SERVICE_PRINCIPAL" || tile.problem_code === "LINK_EXPIRED"
        ? ["CREATE_SERVICE_PRINCIPAL", "AUTHORISE"]
        : ["AUTHORISE"];
    default:
      throw new Error(`unknown status ${tile.status}`);
  }
}

const typeDefs = /* GraphQL */ `
  enum GraphApiStatus { NOT_AUTHORISED AWAITING_CONSENT VERIFYING AUTHORISED FAILED REVOKED }
  enum GraphApiAction { AUTHORISE VERIFY CREATE_SERVICE_PRINCIPAL DELEGATE }
  enum GraphApiProblemCode {
    MISSING_SERVICE_PRINCIPAL SERVICE_PRINCIPAL_CREATED CONSENT_DECLINED ADMIN_CONSENT_REQUIRED
    WRONG_TENANT PERMISSIONS_MISSING CONSENT_REVOKED CONDITIONAL_ACCESS LINK_EXPIRED
    IDENTITY_PROVIDER_UNAVAILABLE UNKNOWN
  }
  enum DelegatedConsentStatus { ACTIVE EXPIRED REVOKED }

  type Query {
    clients(first: Int = 50, after: String): ClientConnection!
  }
  type ClientConnection { edges: [ClientEdge!]! pageInfo: PageInfo! }
  type PageInfo { hasNextPage: Boolean! endCursor: String }
  type ClientEdge { cursor: String! node: Client! }
  type Client {
    name: String!
    graphApiTile: GraphApiTile!
    delegatedConsents(first: Int = 20): [DelegatedConsent!]!
  }
  type GraphApiTile {
    status: GraphApiStatus!
    problem: GraphApiProblem
    availableActions: [GraphApiAction!]!
  }
  type GraphApiProblem { code: GraphApiProblemCode! }
  type DelegatedConsent { userPrincipalName: String! status: DelegatedConsentStatus! }
`;

const resolvers = {
  Query: {
    clients(_, { first, after }) {
      if (first < 1 || first > 100) throw new Error("first must be between 1 and 100");
      let rows;
      if (after) {
        const [nameKey, id] = JSON.parse(Buffer.from(after, "base64url").toString());
        const blob = Buffer.from(id.replaceAll("-", ""), "hex");
        rows = nextPage.all(args.msp, nameKey, nameKey, blob, first + 1);
      } else {
        rows = firstPage.all(args.msp, first + 1);
      }
      const hasNextPage = rows.length > first;
      rows = rows.slice(0, first);
      return {
        edges: rows.map((row) => ({ cursor: cursor(row), node: row })),
        pageInfo: { hasNextPage, endCursor: rows.length ? cursor(rows.at(-1)) : null },
      };
    },
  },
  Client: {
    graphApiTile: (row) => row,
    delegatedConsents: async (row, { first }, context) =>
      (await context.consents.load(row.id)).slice(0, first),
  },
  GraphApiTile: {
    problem: (row) => (row.problem_code ? { code: row.problem_code } : null),
    availableActions: (row) => availableActions(row),
  },
  DelegatedConsent: {
    userPrincipalName: (row) => row.user_principal_name,
  },
};

const yoga = createYoga({
  schema: createSchema({ typeDefs, resolvers }),
  graphqlEndpoint: "/graphql",
  logging: false,
  graphiql: false,
  landingPage: false,
  context: () => ({ consents: new DataLoader(loadConsents, { cacheKeyFn: key }) }),
});

const server = createServer((request, response) => {
  if (request.url === "/readyz") {
    response.writeHead(200, { "content-type": "text/plain" }).end("ready");
    return;
  }
  yoga(request, response);
});
server.listen(Number(args.port), "127.0.0.1", () => {
  console.log(`node peer on 127.0.0.1:${args.port} over ${args.database}`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
