import "./stub";
import assert from "node:assert/strict";
import { test } from "node:test";
import { Status, StatusState, StatusView, createStatusItem, describeStats, rate, statusView } from "../status";
import * as stub from "./vscode";

const base: StatusState = { phase: "ready", enabled: true, manual: false, decoding: 0 };
const stats = { text_tokens: 24, tokens: 32, tokens_per_s: 9.16, wall_s: 2.621, first_commit_s: 0.472, decoder: "codila", model: "qwen-0.5b" };

test("each state has its own icon, text and colour", () => {
  assert.equal(statusView({ ...base, phase: "starting" }).text, "$(loading~spin) codila");
  const loading = statusView({ ...base, phase: "loading", detail: "dlm=default" });
  assert.equal(loading.text, "$(loading~spin) codila: loading");
  assert.match(loading.tooltip, /Loading models: dlm=default/);
  assert.equal(statusView(base).text, "$(check) codila");
  assert.equal(statusView({ ...base, decoding: 1 }).text, "$(loading~spin) codila");
  assert.equal(statusView({ ...base, decoding: 1, percent: 40 }).text, "$(loading~spin) codila 40%");
  const error = statusView({ ...base, phase: "error", detail: "no models" });
  assert.deepEqual([error.text, error.kind], ["$(error) codila", "error"]);
  assert.match(error.tooltip, /no models/);
  assert.equal(statusView({ ...base, phase: "stopped" }).kind, "warning");
  assert.equal(statusView({ ...base, enabled: false }).text, "$(circle-slash) codila");
  assert.equal(statusView({ ...base, manual: true }).text, "$(chevron-right) codila");
  for (const phase of ["starting", "loading", "ready", "error", "stopped"] as const) {
    assert.match(statusView({ ...base, phase }).tooltip, /Click for the codila menu/);
  }
});

test("the last decode's speed comes from the final draft's statistics", () => {
  assert.equal(rate(stats), "9.2 tok/s");
  assert.equal(rate({ tokens_per_s: 42.4 }), "42 tok/s");
  assert.equal(rate({}), undefined);
  const view = statusView({ ...base, last: stats });
  assert.equal(view.text, "$(check) codila 9.2 tok/s");
  assert.equal(describeStats(stats), "24 tokens in 2.62 s (9.2 tok/s) first block after 0.47 s; codila decoder, qwen-0.5b");
  assert.match(view.tooltip, /Last decode: 24 tokens/);
});

test("Status moves through loading, decoding, ready and error", () => {
  const views: StatusView[] = [];
  const status = new Status((v) => views.push(v));
  assert.equal(status.current.phase, "starting");
  status.loading("dlm=default");
  assert.equal(views.at(-1)!.text, "$(loading~spin) codila: loading");
  status.ready();
  const end = status.decoding();
  status.progress(37.6);
  assert.equal(views.at(-1)!.text, "$(loading~spin) codila 38%");
  end();
  end();
  assert.equal(status.current.decoding, 0, "ending twice counts once");
  status.finished(stats);
  assert.equal(views.at(-1)!.text, "$(check) codila 9.2 tok/s");
  status.failed("no models");
  assert.equal(views.at(-1)!.kind, "error");
  status.finished(stats);
  assert.equal(status.current.phase, "ready", "a finished decode clears an error");
  status.configure(false, false);
  assert.equal(views.at(-1)!.text, "$(circle-slash) codila");
  status.progress(50);
  assert.equal(status.current.percent, undefined, "no percentage without a decode");
});

test("the status bar item opens the menu and turns red on errors", () => {
  stub.resetStub();
  const { item, show } = createStatusItem();
  assert.equal(item.command, "codila.showMenu");
  show(statusView({ ...base, phase: "error", detail: "x" }));
  assert.equal((item.backgroundColor as stub.ThemeColor).id, "statusBarItem.errorBackground");
  show(statusView(base));
  assert.equal(item.backgroundColor, undefined);
  assert.equal((item as unknown as { visible: boolean }).visible, true);
});
