// Composes tokengate's served subgraph SDL with the users subgraph, serves the supergraph
// through @apollo/gateway on loopback, and runs the requests it is given against it.
//
//   node compose-and-query.mjs REQUESTS.json
//
// Environment: TOKENGATE_URL (the gateway's base URL), TOKENGATE_SECRET (a bearer that may
// read the SDL). REQUESTS.json: [{"query", "variables", "secret"}]; each request goes to the
// federated gateway with `Authorization: Bearer <secret>` (omitted when secret is null),
// which RemoteGraphQLDataSource.willSendRequest forwards to tokengate.
// Prints one JSON object: {"hints": [{code, message}], "results": [{status, body}]}.
// Exits 2 when composition fails (its errors on stderr).
import { readFile } from "node:fs/promises";
import { composeServices } from "@apollo/composition";
import { ApolloGateway, RemoteGraphQLDataSource, LocalGraphQLDataSource } from "@apollo/gateway";
import { ApolloServer } from "@apollo/server";
import { startStandaloneServer } from "@apollo/server/standalone";
import { parse } from "graphql";
import { usersSchema, usersTypeDefs } from "./users-subgraph.mjs";

const base = process.env.TOKENGATE_URL;
const secret = process.env.TOKENGATE_SECRET;
if (!base || !secret || process.argv.length < 3) {
  console.error("usage: TOKENGATE_URL=... TOKENGATE_SECRET=... node compose-and-query.mjs REQUESTS.json");
  process.exit(64);
}
const requests = JSON.parse(await readFile(process.argv[2], "utf8"));
const tokengateUrl = `${base}/graphql`;

async function servedSdl() {
  const response = await fetch(tokengateUrl, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${secret}` },
    body: JSON.stringify({ query: "{ _service { sdl } }" }),
  });
  const body = await response.json();
  if (response.status !== 200 || body.errors) {
    throw new Error(`could not read the SDL: ${response.status} ${JSON.stringify(body.errors)}`);
  }
  return body.data._service.sdl;
}

const composition = composeServices([
  { name: "tokengate", typeDefs: parse(await servedSdl()), url: tokengateUrl },
  { name: "users", typeDefs: usersTypeDefs, url: "local://users" },
]);
if (composition.errors) {
  for (const error of composition.errors) console.error(`composition error: ${error.message}`);
  process.exit(2);
}
const hints = composition.hints.map((h) => ({ code: h.definition.code, message: h.message }));

const gateway = new ApolloGateway({
  supergraphSdl: composition.supergraphSdl,
  buildService({ name, url }) {
    if (name === "users") return new LocalGraphQLDataSource(usersSchema());
    return new RemoteGraphQLDataSource({
      url,
      willSendRequest({ request, context }) {
        if (context.authorization) request.http.headers.set("authorization", context.authorization);
      },
    });
  },
});
const server = new ApolloServer({ gateway });
const { url } = await startStandaloneServer(server, {
  listen: { port: 0, host: "127.0.0.1" },
  context: async ({ req }) => ({ authorization: req.headers.authorization }),
});

const results = [];
try {
  for (const { query, variables, secret: bearer } of requests) {
    const headers = { "content-type": "application/json" };
    if (bearer) headers.authorization = `Bearer ${bearer}`;
    const response = await fetch(url, {
      method: "POST",
      headers,
      body: JSON.stringify({ query, variables: variables ?? {} }),
    });
    results.push({ status: response.status, body: await response.json() });
  }
} finally {
  await server.stop();
}
process.stdout.write(JSON.stringify({ hints, results }) + "\n");
