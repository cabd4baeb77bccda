import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { CLIENT_KEYS, RESTRICTED_KEYS, applyPlan, clientSettings, declaredKeys, serverKeys, serverSettings } from "../settings";

const pkg = JSON.parse(readFileSync(join(__dirname, "..", "..", "package.json"), "utf8"));
const properties: Record<string, { type?: unknown; description?: string; markdownDescription?: string }> = Object.assign(
  {},
  ...pkg.contributes.configuration.map((section: { properties: object }) => section.properties),
);

test("declared settings split into the extension's and the server's", () => {
  const declared = declaredKeys(pkg);
  for (const key of CLIENT_KEYS) assert.ok(declared.includes(key), `${key} is declared`);
  const server = serverKeys(declared);
  for (const key of ["dlm", "ar", "device", "decoder", "blockSize", "suggestions", "spanCaps", "infillTokens"]) {
    assert.ok(server.includes(key), `${key} goes to the server`);
  }
  for (const key of CLIENT_KEYS) assert.ok(!server.includes(key), `${key} stays in the extension`);
  assert.ok(!server.includes("placeholder"), "the draft placeholder is not a user setting: the rendering relies on ⋯");
});

test("settings that run a program or load files are restricted in untrusted workspaces", () => {
  const untrusted = pkg.capabilities.untrustedWorkspaces;
  assert.equal(untrusted.supported, "limited");
  assert.ok(untrusted.description.length > 20);
  assert.deepEqual([...untrusted.restrictedConfigurations].sort(), RESTRICTED_KEYS.map((k) => `codila.${k}`).sort());
  // anything whose description speaks of a program, a path or a folder must be in the list
  for (const [name, p] of Object.entries(properties)) {
    const text = `${p.description ?? ""} ${p.markdownDescription ?? ""}`;
    if (/\b(program|command|folder|path|executable)\b/i.test(text) && /string|array/.test(JSON.stringify(p.type))) {
      assert.ok(untrusted.restrictedConfigurations.includes(name), `${name} names a program or files: restrict it`);
    }
  }
  for (const name of untrusted.restrictedConfigurations) assert.ok(name in properties, `${name} is declared`);
});

test("trace, debounce, enable and trigger mode are declared with sane defaults", () => {
  assert.deepEqual(properties["codila.trace.server"], { ...properties["codila.trace.server"], enum: ["off", "messages", "verbose"], default: "off" });
  assert.equal((properties["codila.debounceMs"] as { default: number }).default, 200);
  assert.equal((properties["codila.enable"] as { default: boolean }).default, true);
  assert.equal((properties["codila.liveDraft"] as { default: boolean }).default, true);
  assert.deepEqual((properties["codila.suggestions"] as { minimum: number; maximum: number }).minimum, 1);
  assert.deepEqual((properties["codila.suggestions"] as { minimum: number; maximum: number }).maximum, 5);
});

test("only the server settings the user set are sent", () => {
  const values: Record<string, unknown> = { blockSize: 8, decoder: null, device: undefined, spanCaps: { lineRest: 4 } };
  assert.deepEqual(serverSettings((k) => values[k], ["blockSize", "decoder", "device", "spanCaps"]), { blockSize: 8, spanCaps: { lineRest: 4 } });
});

test("client settings fall back to their defaults", () => {
  assert.deepEqual(clientSettings(() => undefined), { enable: true, manual: false, debounceMs: 200, liveDraft: true, command: "codila-lsp", args: [] });
  const set: Record<string, unknown> = { enable: false, triggerMode: "manual", debounceMs: -3, liveDraft: false, serverCommand: "/v/bin/codila-lsp", serverArgs: ["--log-level", "info"] };
  assert.deepEqual(clientSettings((k) => set[k]), { enable: false, manual: true, debounceMs: 200, liveDraft: false, command: "/v/bin/codila-lsp", args: ["--log-level", "info"] });
});

test("a changed value is notified; a removed one or a new command restarts the server", () => {
  const none = () => false;
  assert.equal(applyPlan({ blockSize: 4 }, { blockSize: 8 }, none), "notify");
  assert.equal(applyPlan({ blockSize: 4 }, { blockSize: 4, mode: "dynamic" }, none), "notify");
  assert.equal(applyPlan({ blockSize: 4, mode: "dynamic" }, { blockSize: 4 }, none), "restart", "back to a server default");
  assert.equal(applyPlan({ spanCaps: { lineRest: 4 } }, { spanCaps: { lineRest: 4 } }, none), "none");
  assert.equal(applyPlan({}, {}, (key) => key === "serverCommand"), "restart");
  assert.equal(applyPlan({}, {}, (key) => key === "enable"), "none", "client-only settings do not touch the server");
});
