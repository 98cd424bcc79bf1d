// Drives @apollo/client with its persisted-queries link against a running tokengate:
// a paginated tokens list (the second page through fetchMore, merged by
// relayStylePagination), a revoke mutation, and the list again. Hashed queries go out as
// GET (useGETForHashedQueries), mutations as POST. Every HTTP exchange is recorded by
// wrapping fetch and printed as JSON for the Python test to check
// (tests/clients/test_persisted_clients.py).
//
// With a MANIFEST (generate-persisted-query-manifest's output), the link sends the
// manifest's ids (generatePersistedQueryIdsFromManifest) and never a text: the trusted
// documents setup, for a gateway with only_persisted.
//
//   node apollo-run.mjs GATEWAY_URL [MANIFEST]   (bearer secret in TOKENGATE_TEST_SECRET)
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache } from "@apollo/client";
import { PersistedQueryLink } from "@apollo/client/link/persisted-queries";
import { relayStylePagination } from "@apollo/client/utilities";
import { generatePersistedQueryIdsFromManifest } from "@apollo/persisted-query-lists";
import { MY_TOKENS as TOKENS, REVOKE_ONE as REVOKE } from "./src/apollo/operations.js";

const [gateway, manifest] = process.argv.slice(2);
const secret = process.env.TOKENGATE_TEST_SECRET;
const exchanges = [];

async function recordingFetch(input, init = {}) {
  const url = new URL(typeof input === "string" ? input : input.url);
  const response = await fetch(input, init);
  const copy = response.clone();
  exchanges.push({
    method: init.method ?? "GET",
    params: Object.fromEntries(url.searchParams),
    body: init.body ? JSON.parse(init.body) : null,
    status: response.status,
    result: await copy.json(),
  });
  return response;
}

const sha256 = (text) => createHash("sha256").update(text).digest("hex");
const persisted = manifest
  ? generatePersistedQueryIdsFromManifest({
      loadManifest: () => JSON.parse(readFileSync(manifest, "utf8")),
    })
  : { sha256 };

const client = new ApolloClient({
  link: ApolloLink.from([
    new PersistedQueryLink({ ...persisted, useGETForHashedQueries: true }),
    new HttpLink({
      uri: `${gateway}/graphql`,
      headers: { authorization: `Bearer ${secret}` },
      fetch: recordingFetch,
    }),
  ]),
  cache: new InMemoryCache({
    typePolicies: { Query: { fields: { tokens: relayStylePagination(["filter"]) } } },
  }),
});

const observable = client.watchQuery({ query: TOKENS, variables: { first: 2 } });
const firstPage = await new Promise((resolve, reject) => {
  const subscription = observable.subscribe({
    next: (result) => {
      if (result.data?.tokens) {
        subscription.unsubscribe();
        resolve(result.data);
      }
    },
    error: reject,
  });
});
const more = await observable.fetchMore({
  variables: { after: firstPage.tokens.pageInfo.endCursor },
});
const merged = client.readQuery({ query: TOKENS, variables: { first: 2 } });
const victim = firstPage.tokens.edges[0].node.id;
const revoked = await client.mutate({ mutation: REVOKE, variables: { id: victim } });
const after = await client.query({
  query: TOKENS,
  variables: { first: 2 },
  fetchPolicy: "network-only",
});
console.log(
  JSON.stringify({
    victim,
    revokedTokenId: revoked.data.revokeToken.revokedTokenId,
    secondPage: more.data.tokens.edges.map((e) => e.node.id),
    merged: merged.tokens.edges.map((e) => e.node.id),
    afterRevoke: after.data.tokens.edges.map((e) => e.node.id),
    exchanges,
  }),
);
