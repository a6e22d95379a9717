// Screenshot of one page in Debian's headless Chromium with playwright-core, after clicking an
// optional button (e.g. "Plots"). Usage: node screenshot.mjs URL OUT.png [BUTTON_TEXT]
import { chromium } from "playwright-core";

const [url, out, button] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"],
});
const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
await page.goto(url, { waitUntil: "networkidle" });
if (button) {
  await page.getByText(button, { exact: true }).first().click();
  await page.waitForTimeout(2500);
}
await page.waitForTimeout(1500);
await page.screenshot({ path: out });
await browser.close();
