// One page of the Dagster UI in Debian's headless Chromium (playwright-core), saved as a PNG.
// Usage: node screenshot.mjs URL OUT.png [--click TEXT] [--expand-groups]
//   --click TEXT      click the first element reading TEXT first (e.g. a "Plots" tab)
//   --expand-groups   open every collapsed asset group of a lineage graph
// Prints one JSON line: the URL the page ended on and the text of any dialog over it (e.g. a pop-up).
import { chromium } from "playwright-core";

const [url, out, ...options] = process.argv.slice(2);
const click = options.includes("--click") ? options[options.indexOf("--click") + 1] : null;
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"],
});
const page = await browser.newPage({ viewport: { width: 1600, height: 1150 } });
await page.goto(url, { waitUntil: "networkidle" });
await page.waitForTimeout(2500);
const dialogs = await page.locator('[role="dialog"]').allInnerTexts();
if (click) {
  await page.getByText(click, { exact: true }).first().click();
  await page.waitForTimeout(2500);
}
if (options.includes("--expand-groups")) {
  const collapsed = page.locator('foreignObject [aria-label="unfold_more"]');
  for (let n = await collapsed.count(); n > 0; n = await collapsed.count()) {
    await collapsed.first().click();
    await page.waitForTimeout(1000);
  }
  await page.waitForTimeout(1500);
}
await page.waitForTimeout(1500);
await page.screenshot({ path: out });
console.log(JSON.stringify({ url: page.url(), dialogs }));
await browser.close();
