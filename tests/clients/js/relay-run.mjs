// Drives a Relay environment (relay-runtime) against a running tokengate with the
// artifacts relay-compiler generated with persistConfig: each request carries only the
// document's id (Relay's `doc_id`), never its text. Prints every exchange as JSON for the
// Python test to check (tests/clients/test_persisted_clients.py).
//
//   node relay-run.mjs GATEWAY_URL ARTIFACT_DIR   (bearer secret in TOKENGATE_TEST_SECRET)
import path from "node:path";
import { pathToFileURL } from "node:url";
import relay from "relay-runtime";

const { Environment, Network, RecordSource, Store, fetchQuery, commitMutation } = relay;
const [gateway, artifacts] = process.argv.slice(2);
const secret = process.env.TOKENGATE_TEST_SECRET;
const exchanges = [];

async function artifact(name) {
  const url = pathToFileURL(path.join(artifacts, `${name}.graphql.js`));
  return (await import(url.href)).default;
}

async function fetchFn(params, variables) {
  if (params.text !== null) throw new Error(`${params.name}: the text was not persisted`);
  const body = { doc_id: params.id, variables };
  const response = await fetch(`${gateway}/graphql`, {
    method: "POST",
    headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const result = await response.json();
  exchanges.push({ name: params.name, request: body, status: response.status, result });
  return result;
}

const environment = new Environment({
  network: Network.create(fetchFn),
  store: new Store(new RecordSource()),
});

const pageQuery = await artifact("TokensPageQuery");
const nextQuery = await artifact("TokensPagePaginationQuery");
const revoke = await artifact("RevokeTokenMutation");

const first = await fetchQuery(environment, pageQuery, { first: 2 }).toPromise();
const { endCursor } = exchanges.at(-1).result.data.tokens.pageInfo;
await fetchQuery(environment, nextQuery, { first: 2, after: endCursor }).toPromise();
const victim = exchanges[0].result.data.tokens.edges[0].node.id;
await new Promise((resolve, reject) =>
  commitMutation(environment, {
    mutation: revoke,
    variables: { input: { id: victim } },
    onCompleted: (_response, errors) => (errors ? reject(new Error(JSON.stringify(errors))) : resolve()),
    onError: reject,
  }),
);
await fetchQuery(environment, pageQuery, { first: 2 }).toPromise();
console.log(JSON.stringify({ victim, firstPageRead: first !== undefined, exchanges }));
