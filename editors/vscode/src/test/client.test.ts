import "./stub";
import assert from "node:assert/strict";
import { test } from "node:test";
import { CloseAction, ErrorAction } from "vscode-languageclient/node";
import { RestartPolicy, findProgram, notFoundMessage } from "../client";
import { Notifier, messageText } from "../notify";
import * as stub from "./vscode";

test("findProgram looks a bare name up on PATH and checks a path as given", () => {
  const files = new Set(["/venv/bin/codila-lsp", "/usr/bin/python3"]);
  const exists = (f: string) => files.has(f);
  assert.equal(findProgram("codila-lsp", "/usr/bin:/venv/bin", exists), "/venv/bin/codila-lsp");
  assert.equal(findProgram("codila-lsp", "/usr/bin", exists), undefined);
  assert.equal(findProgram("/venv/bin/codila-lsp", "", exists), "/venv/bin/codila-lsp");
  assert.equal(findProgram("/elsewhere/codila-lsp", "/venv/bin", exists), undefined, "a path is not searched on PATH");
  assert.equal(findProgram("", "/venv/bin", exists), undefined);
  assert.equal(findProgram("codila-lsp", undefined, exists), undefined);
  assert.match(notFoundMessage("codila-lsp"), /codila\.serverCommand/);
});

test("a crashing server is restarted 4 times in 3 minutes, then left down and reported once", () => {
  let now = 0;
  const givenUp: string[] = [];
  const policy = new RestartPolicy((m) => givenUp.push(m), () => now);
  for (let i = 0; i < 4; i++) {
    now += 1000;
    assert.equal(policy.closed().action, CloseAction.Restart);
  }
  now += 1000;
  const last = policy.closed();
  assert.deepEqual([last.action, last.handled], [CloseAction.DoNotRestart, true]);
  assert.equal(givenUp.length, 1);
  now += 4 * 60 * 1000;
  assert.equal(policy.closed().action, CloseAction.Restart, "after a quiet spell it restarts again");
  assert.equal(policy.error(new Error("bad header"), undefined, 1).action, ErrorAction.Continue);
  assert.equal(policy.error(new Error("bad header"), undefined, 4).action, ErrorAction.Shutdown);
  assert.match(givenUp[1], /connection to codila-lsp failed \(bad header\)/);
});

test("each message is shown once until reset, however it is prefixed", async () => {
  stub.resetStub();
  let logs = 0;
  const notify = new Notifier(() => logs++);
  notify.error("codila: no models: run `codila models prepare`");
  notify.error("no models: run `codila models prepare`");
  notify.error("codila: no models: run `codila models prepare`");
  assert.equal(stub.recorded.messages.length, 1);
  assert.equal(stub.recorded.messages[0].text, "codila: no models: run `codila models prepare`");
  notify.reset();
  stub.answers.message = "Show Log";
  notify.error("no models: run `codila models prepare`");
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(stub.recorded.messages.length, 2);
  assert.equal(logs, 1, "the message's Show Log button opens the log");
  assert.equal(messageText("codila:  x "), "x");
});
