// Drives tokengate's GraphiQL page in Debian's chromium, headless, with every host but
// 127.0.0.1 unresolvable, and prints what it saw as one JSON object on stdout (the Python
// test, tests/browser/test_graphiql_browser.py, makes the claims).
//
// Environment: TOKENGATE_CHROMIUM (the browser), GATEWAY_URL (http://127.0.0.1:PORT),
// BEARER (a secret to type into the Headers pane), ARTIFACTS (where the screenshot goes).
import { chromium } from "playwright-core";
import { OFFLINE_CHROMIUM_ARGS } from "../../offline-chromium.mjs";

const gateway = process.env.GATEWAY_URL;
const bearer = process.env.BEARER;
const artifacts = process.env.ARTIFACTS;
const QUERY = "query Sources { sources { key provider } }";

const browser = await chromium.launch({
  executablePath: process.env.TOKENGATE_CHROMIUM,
  headless: true,
  args: OFFLINE_CHROMIUM_ARGS,
});
const seen = { requests: [], consoleErrors: [], pageErrors: [] };
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  context.on("request", (request) => seen.requests.push(request.url()));
  const page = await context.newPage();
  page.on("console", (message) => {
    if (message.type() === "error") seen.consoleErrors.push(message.text());
  });
  page.on("pageerror", (error) => seen.pageErrors.push(String(error)));
  // Runs before the page's scripts (through the DevTools protocol, not subject to the CSP).
  await page.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener("securitypolicyviolation", (event) => {
      window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
    });
  });

  // The sandbox is offline: a public host does not resolve (else the test proves nothing).
  const probe = await context.newPage();
  try {
    await probe.goto("https://registry.npmjs.org/", { timeout: 10000 });
    seen.publicHostReached = true;
  } catch (error) {
    seen.publicHostReached = false;
    seen.publicHostError = String(error).split("\n")[0];
  }
  await probe.close();
  seen.requests.length = 0;

  const response = await page.goto(`${gateway}/graphql`, { waitUntil: "load" });
  seen.pageStatus = response.status();
  seen.pageCsp = response.headers()["content-security-policy"] || null;
  await page.waitForSelector(".graphiql-container .graphiql-query-editor .CodeMirror", {
    timeout: 20000,
  });
  seen.rendered = true;

  // The query: typed into the query editor (insertText: no auto-closed brackets).
  await page.click(".graphiql-query-editor .CodeMirror");
  await page.keyboard.press("Control+A");
  await page.keyboard.press("Delete");
  await page.keyboard.insertText(QUERY);
  // The header: typed into the Headers pane, open by default on this page.
  const headers = ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror";
  await page.waitForSelector(headers, { timeout: 10000 });
  await page.click(headers);
  await page.keyboard.press("Control+A");
  await page.keyboard.press("Delete");
  await page.keyboard.insertText(JSON.stringify({ Authorization: `Bearer ${bearer}` }));

  await page.click(".graphiql-execute-button");
  await page.waitForFunction(
    () => {
      const result = document.querySelector(".result-window");
      return result && result.innerText.includes('"sources"');
    },
    null,
    { timeout: 20000 },
  );
  seen.resultText = await page.$eval(".result-window", (el) => el.innerText);
  seen.queryText = await page.$eval(".graphiql-query-editor", (el) => el.innerText);
  // Let GraphiQL's debounced storage writes (tabs, query) happen before looking.
  await page.waitForTimeout(1500);
  await page.screenshot({ path: `${artifacts}/graphiql.png`, fullPage: true });

  // The rest of the page's furniture, so that the CSP is tried against it too: schema
  // re-fetched with the header, documentation explorer, history, settings and short keys
  // dialogs (Radix dialogs, tooltips).
  await page.click('[aria-label="Re-fetch GraphQL schema"]');
  await page.waitForTimeout(500);
  await page.click('.graphiql-sidebar [aria-label*="Documentation Explorer"]');
  await page.waitForSelector(".graphiql-doc-explorer", { timeout: 10000 });
  seen.docExplorer = await page.$eval(".graphiql-doc-explorer", (el) => el.innerText);
  await page.click('.graphiql-sidebar [aria-label*="History"]');
  await page.waitForTimeout(300);
  for (const dialog of ["Open settings dialog", "Open short keys dialog"]) {
    await page.click(`[aria-label="${dialog}"]`);
    await page.waitForSelector('[role="dialog"]', { timeout: 10000 });
    await page.keyboard.press("Escape");
    await page.waitForSelector('[role="dialog"]', { state: "detached", timeout: 10000 });
  }
  await page.hover('[aria-label="Re-fetch GraphQL schema"]');
  await page.waitForTimeout(800);

  const dumpStorage = () =>
    page.evaluate(() => {
      const dump = (store) => {
        const out = {};
        for (let i = 0; i < store.length; i += 1) out[store.key(i)] = store.getItem(store.key(i));
        return out;
      };
      return {
        local: dump(window.localStorage),
        session: dump(window.sessionStorage),
        cookie: document.cookie,
      };
    });
  seen.storage = await dumpStorage();
  seen.cookies = await context.cookies();
  seen.cspViolations = await page.evaluate(() => window.__cspViolations);

  // What an older page could have left: headers under their own key and in favourites.
  // The page scrubs them when it starts.
  await page.evaluate((secret) => {
    const header = JSON.stringify({ Authorization: `Bearer ${secret}` });
    window.localStorage.setItem("graphiql:headers", header);
    window.localStorage.setItem(
      "graphiql:favorites",
      JSON.stringify({ favorites: [{ query: "{ __typename }", headers: header }] }),
    );
  }, bearer);
  // After a reload the query is still there (storage works), the header is not.
  await page.reload({ waitUntil: "load" });
  await page.waitForSelector(headers, { timeout: 20000 });
  seen.afterReload = {
    query: await page.$eval(".graphiql-query-editor", (el) => el.innerText),
    headers: await page.$eval(headers, (el) => el.innerText),
  };
  seen.storageAfterReload = await dumpStorage();
  seen.cspViolations.push(...(await page.evaluate(() => window.__cspViolations)));
  await context.close();
} catch (error) {
  seen.error = String(error && error.stack ? error.stack : error);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(seen));
