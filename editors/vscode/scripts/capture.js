// Drives the extension in a real VS Code workbench (code-server) from headless Chromium and saves
// screenshots: how docs/*.png and docs/infill.gif were made. Not part of the tests (it needs
// code-server, Chromium and a model); editors/README.md says how to set them up.
//
//   npm install --no-save puppeteer-core
//   URL=http://127.0.0.1:8377/?folder=/tmp/demo FILE=stats.py OUT=/tmp/shots node scripts/capture.js infill 3 5
//   ... capture.js inline 10          (a new line after line 10: an automatic suggestion)
//   ... capture.js accept 10          (the same, then Ctrl+Right and Shift+Tab)
//   ... capture.js menu
"use strict";
const fs = require("node:fs");
const puppeteer = require("puppeteer-core");

const { URL, FILE = "stats.py", OUT = "/tmp/shots", CHROMIUM = "/usr/bin/chromium" } = process.env;
const [mode = "infill", a = "3", b = "5"] = process.argv.slice(2);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...xs) => console.log(new Date().toISOString().slice(11, 19), ...xs);

async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM, headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--window-size=1280,760"],
    defaultViewport: { width: 1280, height: 760 },
  });
  const page = await browser.newPage();
  const key = async (combo) => {
    const keys = combo.split("+");
    for (const k of keys.slice(0, -1)) await page.keyboard.down(k);
    await page.keyboard.press(keys[keys.length - 1]);
    for (const k of keys.slice(0, -1).reverse()) await page.keyboard.up(k);
  };
  const status = () => page.evaluate(() => {
    const item = [...document.querySelectorAll(".statusbar-item")].find((e) => /codila/.test(e.textContent || ""));
    return item ? (item.getAttribute("aria-label") || "").split("\n")[0] : "(none)";
  });
  let n = 0;
  const shot = async (name) => {
    await page.screenshot({ path: `${OUT}/${String(n++).padStart(3, "0")}-${name}.png` });
    log(name, await status());
  };
  const gotoLine = async (line) => {
    await key("Control+KeyG");
    await sleep(500);
    await page.keyboard.type(String(line));
    await page.keyboard.press("Enter");
    await sleep(300);
  };
  const busy = async () => /spin|Decoding/.test(await status());

  await page.goto(URL, { waitUntil: "domcontentloaded" });
  await page.waitForSelector(".monaco-workbench", { timeout: 120_000 });
  await sleep(4000);
  await page.evaluate((file) => {
    const row = [...document.querySelectorAll(".monaco-list-row")].find((r) => (r.textContent || "").includes(file));
    row?.dispatchEvent(new MouseEvent("dblclick", { bubbles: true }));
  }, FILE);
  await sleep(3000);
  await page.click(".monaco-editor .view-lines");
  for (let i = 0; i < 600 && !/Ready/.test(await status()); i++) await sleep(1000); // the models load
  await shot("ready");

  if (mode === "infill") {
    // select lines a..b whole, run Infill Selection from the command palette, shoot while it decodes
    await gotoLine(Number(a));
    await page.keyboard.press("Home");
    await page.keyboard.press("Home");
    for (let i = Number(a); i <= Number(b); i++) await key("Shift+ArrowDown");
    await shot("selected");
    await page.keyboard.press("F1");
    await sleep(800);
    await page.keyboard.type("codila: Infill Selection", { delay: 20 });
    await sleep(1200);
    await page.keyboard.press("Enter");
    await sleep(1500);
    while (await busy()) {
      await shot("infill");
      await sleep(700);
    }
    await shot("infilled");
  } else if (mode === "inline" || mode === "accept") {
    await gotoLine(Number(a));
    await page.keyboard.press("End");
    await page.keyboard.press("Enter");
    await sleep(1500);
    while (await busy()) {
      await shot("inline");
      await sleep(700);
    }
    await sleep(1000);
    await shot("suggestion");
    if (mode === "accept") {
      await key("Control+ArrowRight");
      await sleep(800);
      await shot("accepted-word");
      await key("Shift+Tab");
      await sleep(800);
      await shot("accepted-line");
    }
  } else if (mode === "menu") {
    await page.evaluate(() => {
      const item = [...document.querySelectorAll(".statusbar-item")].find((e) => /codila/.test(e.textContent || ""));
      item?.querySelector("a, .statusbar-item-label")?.click();
    });
    await sleep(1500);
    await shot("menu");
  }
  await browser.close();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
