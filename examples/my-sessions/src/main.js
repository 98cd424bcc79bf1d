// "My devices and sessions": sign in at the identity provider, list the tokens the gateway
// says are mine (`viewer.tokens`, a page at a time), revoke one. Plain DOM, Apollo Client.
// Token fields come from upstreams: they are shown with textContent, never as HTML.
// The access token lives in memory only (no localStorage): a reload signs out.

import { ApolloClient, CombinedGraphQLErrors, HttpLink, InMemoryCache, ServerError } from "@apollo/client";
import { readConfig } from "./config.js";
import { MY_TOKENS, REVOKE } from "./operations.js";

const PAGE_SIZE = 5;
const SCOPE = "tokens:read tokens:write";

const $ = (id) => document.getElementById(id);
const state = { client: null, tokens: [], endCursor: null, hasNextPage: false, busy: false };

function show(message, isError = false) {
  $("status").textContent = message;
  $("status").className = isError ? "error" : "";
}

/** A short, user-facing reason: the GraphQL error code when there is one. */
function describe(error) {
  if (CombinedGraphQLErrors.is(error)) {
    return error.errors.map((e) => e.extensions?.code ?? e.message).join(", ");
  }
  if (ServerError.is(error)) {
    try {
      const body = JSON.parse(error.bodyText);
      const code = body.errors?.[0]?.extensions?.code;
      if (code) return `${code} (HTTP ${error.statusCode})`;
    } catch {
      // not JSON: fall through to the status
    }
    return `HTTP ${error.statusCode}`;
  }
  return error instanceof Error ? error.message : String(error);
}

async function signIn(idp, gateway, subject) {
  const response = await fetch(`${idp}/token`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ subject, scope: SCOPE }),
  });
  if (!response.ok) throw new Error(`the identity provider answered HTTP ${response.status}`);
  const { access_token: accessToken } = await response.json();
  if (typeof accessToken !== "string") throw new Error("the identity provider sent no token");
  return new ApolloClient({
    link: new HttpLink({ uri: gateway, headers: { Authorization: `Bearer ${accessToken}` } }),
    cache: new InMemoryCache(),
  });
}

function row(token) {
  const item = document.createElement("li");
  item.dataset.id = token.id;
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = token.deviceName ? `${token.name} — ${token.deviceName}` : token.name;
  const meta = document.createElement("span");
  meta.className = "meta";
  const created = token.createdAt ? new Date(token.createdAt).toLocaleDateString() : "unknown";
  meta.textContent = `${token.source.name} · ${token.status} · since ${created}`;
  const revoke = document.createElement("button");
  revoke.type = "button";
  revoke.className = "revoke";
  revoke.textContent = "Revoke";
  revoke.addEventListener("click", () => revokeToken(token, revoke));
  item.append(name, meta, revoke);
  return item;
}

function render() {
  $("tokens").replaceChildren(...state.tokens.map(row));
  $("more").hidden = !state.hasNextPage;
}

async function loadPage(after) {
  const { data } = await state.client.query({
    query: MY_TOKENS,
    variables: { first: PAGE_SIZE, after },
    fetchPolicy: "network-only",
  });
  const page = data.viewer.tokens;
  state.tokens.push(...page.edges.map((edge) => edge.node));
  state.endCursor = page.pageInfo.endCursor;
  state.hasNextPage = page.pageInfo.hasNextPage;
  render();
  return data.viewer.subject;
}

async function guarded(action) {
  if (state.busy) return;
  state.busy = true;
  document.body.setAttribute("aria-busy", "true");
  try {
    await action();
  } catch (error) {
    show(describe(error), true);
  } finally {
    state.busy = false;
    document.body.removeAttribute("aria-busy");
  }
}

async function revokeToken(token, button) {
  button.disabled = true;
  await guarded(async () => {
    await state.client.mutate({ mutation: REVOKE, variables: { id: token.id } });
    state.tokens = state.tokens.filter((t) => t.id !== token.id);
    render();
    show(`Revoked ${token.name}.`);
  });
  button.disabled = false;
}

function start() {
  const { config, error } = readConfig(window.location.search);
  if (error) {
    show(error, true);
    $("sign-in-button").disabled = true;
    return;
  }
  $("sign-in").addEventListener("submit", (event) => {
    event.preventDefault();
    const subject = $("subject").value.trim();
    if (!subject) return;
    guarded(async () => {
      // Forget the previous user (and their token) before asking for the next one.
      Object.assign(state, { client: null, tokens: [], endCursor: null, hasNextPage: false });
      $("whoami").hidden = true;
      show("");
      render();
      state.client = await signIn(config.idp, config.gateway, subject);
      const who = await loadPage(null);
      $("whoami").hidden = false;
      $("whoami").textContent = `Signed in as ${who}`;
      show(state.tokens.length ? "" : "No tokens.");
    });
  });
  $("more").addEventListener("click", () => guarded(() => loadPage(state.endCursor)));
}

start();
