// Drives a shopping-cart demo (examples/longpoll_cart or examples/websocket_cart) in
// Debian's chromium, headless: opens the page in two browser contexts (two shoppers, two
// sessions), clicks "add" in the first and expects the inventory count shown by the
// second to drop by one within 1 s — pushed by the server, never reloaded — then
// "remove" and the count back. Saves a screenshot of the second shopper's page.
//
//   node cart_test.mjs --url http://127.0.0.1:PORT/ --screenshot out.png [--chromium PATH]
//
// The page's contract: #count holds the inventory count, #add and #remove are buttons.
// Exits 0 on success, 1 with the reason on stderr otherwise.
import { existsSync } from "node:fs";
import { parseArgs } from "node:util";
import puppeteer from "puppeteer-core";

const { values: options } = parseArgs({
  options: {
    url: { type: "string" },
    screenshot: { type: "string" },
    chromium: { type: "string", default: process.env.CHROMIUM || "/usr/bin/chromium" },
    "push-timeout-ms": { type: "string", default: "1000" },
  },
});
if (!options.url || !options.screenshot) {
  console.error("usage: node cart_test.mjs --url URL --screenshot FILE [--chromium PATH]");
  process.exit(2);
}
if (!existsSync(options.chromium)) {
  console.error(`cart_test: no chromium at ${options.chromium} (apt-get install chromium)`);
  process.exit(1);
}
const pushTimeout = Number(options["push-timeout-ms"]);

const countOf = (page) => page.$eval("#count", (element) => Number(element.textContent.trim()));

// Resolves once `page` shows `expected`, or fails after pushTimeout.
async function expectCount(page, expected, what) {
  const started = Date.now();
  try {
    await page.waitForFunction((n) => Number(document.querySelector("#count")?.textContent.trim()) === n,
      { timeout: pushTimeout, polling: "mutation" }, expected);
  } catch {
    throw new Error(`${what}: the other shopper still sees ${await countOf(page)}, ` +
      `expected ${expected} within ${pushTimeout} ms`);
  }
  return Date.now() - started;
}

const browser = await puppeteer.launch({
  executablePath: options.chromium,
  headless: true,
  // --no-sandbox: CI runs as root, where chromium's sandbox refuses to start.
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
});
let status = 0;
try {
  const shoppers = [];
  for (let i = 0; i < 2; i++) {
    const context = await browser.createBrowserContext();
    const page = await context.newPage();
    page.on("pageerror", (error) => console.error(`cart_test: page error in shopper ${i + 1}: ${error}`));
    const response = await page.goto(options.url, { waitUntil: "domcontentloaded", timeout: 10000 });
    if (!response || response.status() !== 200) {
      throw new Error(`GET ${options.url} answered ${response ? response.status() : "nothing"}`);
    }
    await page.waitForSelector("#count", { timeout: 5000 });
    shoppers.push(page);
  }
  const [first, second] = shoppers;
  // Let both pages open their status request or socket before anything changes.
  await new Promise((resolve) => setTimeout(resolve, 300));
  const before = await countOf(second);
  if (!Number.isInteger(before) || before < 1) throw new Error(`the page shows no stock to take: '${before}'`);

  await first.click("#add");
  const added = await expectCount(second, before - 1, "after add");
  await expectCount(first, before - 1, "after add (the shopper who added)");
  await first.click("#remove");
  const removed = await expectCount(second, before, "after remove");
  await second.screenshot({ path: options.screenshot });
  console.log(`cart_test: ${options.url}: add seen by the other shopper after ${added} ms, ` +
    `remove after ${removed} ms; screenshot ${options.screenshot}`);
} catch (error) {
  console.error(`cart_test: ${options.url}: ${error.message}`);
  status = 1;
} finally {
  await browser.close();
}
process.exit(status);
