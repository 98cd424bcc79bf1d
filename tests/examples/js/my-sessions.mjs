// Drives examples/my-sessions in headless chromium as a user would and writes what it saw.
// `node my-sessions.mjs PLAN.json RESULT.json`; the plan gives the browser, the page URL,
// the user and which token to revoke; the Python test (test_my_sessions.py) asserts.
// Every host but 127.0.0.1 is unresolvable, so nothing can leave the machine.
import { readFileSync, writeFileSync } from "node:fs";
import { chromium } from "playwright-core";
import { OFFLINE_CHROMIUM_ARGS } from "../../offline-chromium.mjs";

const [planFile, resultFile] = process.argv.slice(2);
const plan = JSON.parse(readFileSync(planFile, "utf8"));
const result = { requests: [], consoleErrors: [], pageErrors: [], steps: {} };
const TIMEOUT = 20_000;

const browser = await chromium.launch({
  executablePath: plan.chromium,
  headless: true,
  args: OFFLINE_CHROMIUM_ARGS,
});

const listed = (page) =>
  page.$$eval("#tokens li", (items) => items.map((li) => li.dataset.id));

try {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  context.on("request", (request) => result.requests.push(request.url()));
  page.on("console", (message) => {
    if (message.type() === "error") result.consoleErrors.push(message.text());
  });
  page.on("pageerror", (error) => result.pageErrors.push(String(error)));
  page.on("response", async (response) => {
    // The first sign-in's token (plan.subject): Python reuses it.
    if (response.url() === `${plan.idp}/token` && response.ok() && !result.accessToken) {
      result.accessToken = (await response.json()).access_token;
    }
  });

  await page.goto(plan.pageUrl);
  await page.fill("#subject", plan.subject);
  await page.click("#sign-in-button");
  await page.waitForSelector("#tokens li, #status.error");
  result.steps.signedIn = {
    whoami: await page.textContent("#whoami"),
    status: await page.textContent("#status"),
    ids: await listed(page),
    moreVisible: await page.isVisible("#more"),
  };

  const firstPage = result.steps.signedIn.ids.length;
  if (firstPage > 0 && result.steps.signedIn.moreVisible) {
    await page.click("#more");
    await page.waitForFunction(
      (n) => document.querySelectorAll("#tokens li").length > n,
      firstPage,
    );
    result.steps.more = { ids: await listed(page), moreVisible: await page.isVisible("#more") };

    // Revoke the planned token if the page shows it, else the first one listed.
    const ids = result.steps.more.ids;
    const target = ids.find((id) => plan.revokePrefer?.includes(id)) ?? ids[0];
    const row = page.locator(`#tokens li[data-id="${target}"]`);
    const shownName = await row.locator(".name").textContent();
    await row.locator("button.revoke").click();
    await row.waitFor({ state: "detached" });
    await page.waitForFunction(() => !document.body.hasAttribute("aria-busy"));
    result.steps.revoked = {
      id: target,
      name: shownName,
      ids: await listed(page),
      status: await page.textContent("#status"),
    };
    await page.screenshot({ path: plan.screenshot, fullPage: true });

    // Then page to the end: the cursor taken before the revoke still continues the list.
    for (let i = 0; i < 50 && (await page.isVisible("#more")); i++) {
      if (await page.isVisible("#status.error")) break;
      await page.click("#more");
      await page.waitForFunction(() => !document.body.hasAttribute("aria-busy"));
    }
    result.steps.all = { ids: await listed(page), status: await page.textContent("#status") };
    result.steps.texts = await page.$$eval("#tokens li .name", (names) =>
      names.map((n) => n.textContent),
    );
    result.steps.injected = await page.evaluate(() => window.__tokengatePwned === true);

    // Revoke a second one (an internal token: kept at the gateway, marked REVOKED).
    const second = page.locator(`#tokens li[data-id="${plan.revokeSecond}"]`);
    await second.locator("button.revoke").click();
    await second.waitFor({ state: "detached" });
    await page.waitForFunction(() => !document.body.hasAttribute("aria-busy"));
    result.steps.revokedSecond = {
      ids: await listed(page),
      status: await page.textContent("#status"),
    };
  }

  // Other users, signing in on the same page: only their own tokens, or "No tokens."
  result.steps.others = {};
  for (const user of plan.otherUsers ?? []) {
    await page.fill("#subject", user);
    await page.click("#sign-in-button");
    await page.waitForFunction(
      (who) =>
        !document.body.hasAttribute("aria-busy") &&
        (document.getElementById("whoami").textContent === `Signed in as ${who}` ||
          document.querySelector("#status.error")),
      user,
    );
    result.steps.others[user] = {
      whoami: await page.textContent("#whoami"),
      status: await page.textContent("#status"),
      ids: await listed(page),
      moreVisible: await page.isVisible("#more"),
    };
  }

  // Addresses the page refuses to work with (a link pointing it at another gateway, no
  // IdP): it says why, before any request leaves the page's origin.
  result.steps.refused = [];
  for (const url of plan.refusedUrls ?? []) {
    const refused = await context.newPage();
    refused.setDefaultTimeout(TIMEOUT);
    const before = result.requests.length;
    await refused.goto(url);
    await refused.waitForSelector("#status.error");
    result.steps.refused.push({
      status: await refused.textContent("#status"),
      signInDisabled: await refused.isDisabled("#sign-in-button"),
      requests: result.requests.slice(before),
    });
    await refused.close();
  }
} catch (error) {
  result.failure = String(error && error.stack ? error.stack : error);
} finally {
  await browser.close();
  writeFileSync(resultFile, JSON.stringify(result, null, 2));
}
