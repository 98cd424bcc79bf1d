// Where the gateway and the demo identity provider are. The gateway defaults to
// `tokengate serve --demo`'s; the demo IdP's port changes at every start, so ?idp= is needed.
// The query string may point the page elsewhere (?gateway=URL&idp=URL), but only at a
// loopback host: a link must not be able to send the user's token to another server.
// A real application fixes these URLs at build time instead.

export const DEFAULTS = {
  gateway: "http://127.0.0.1:8000/graphql",
  idp: null,
};

const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]"]);

function loopbackUrl(text) {
  let url;
  try {
    url = new URL(text);
  } catch {
    return null;
  }
  if (!["http:", "https:"].includes(url.protocol) || !LOOPBACK.has(url.hostname)) return null;
  if (url.username || url.password) return null;
  return url.href.replace(/\/$/, "");
}

/** The URLs to use, or an error naming the refused parameter. */
export function readConfig(search) {
  const params = new URLSearchParams(search);
  const config = { ...DEFAULTS };
  for (const key of Object.keys(DEFAULTS)) {
    const given = params.get(key);
    if (given === null) continue;
    const url = loopbackUrl(given);
    if (url === null) return { error: `?${key}= must be an http(s) URL on a loopback host` };
    config[key] = url;
  }
  if (config.idp === null) {
    return { error: "Add ?idp=URL to this address: the identity provider `tokengate serve --demo` prints" };
  }
  return { config };
}
