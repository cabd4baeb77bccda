import assert from "node:assert/strict";
import { test } from "node:test";
import { Draft, DraftTracker, ghostText, tokensPerSecond } from "../helpers";

const URI = "file:///a.py";
const range = { start: { line: 1, character: 4 }, end: { line: 1, character: 4 } };
const draft = (id: number, text: string, done = false): Draft => ({ uri: URI, id, range, text, done });

test("ghostText puts a multi-line draft on one line without indentation", () => {
  assert.equal(ghostText("\n    if x:\n        return ⋯\n"), " ⏎ if x: ⏎ return ⋯ ⏎ ");
  assert.equal(ghostText("a + ⋯  "), "a + ⋯");
});

test("a draft shows while its request runs and goes when done", () => {
  const drafts = new DraftTracker();
  assert.equal(drafts.receive(draft(1, "x")), false, "no request running");
  const end = drafts.start(URI);
  assert.ok(drafts.busy());
  assert.ok(drafts.receive(draft(2, "a ⋯")));
  assert.equal(drafts.shown(URI)?.text, "a ⋯");
  assert.ok(drafts.receive(draft(2, "a b", true)));
  assert.equal(drafts.shown(URI), undefined);
  end();
  assert.equal(drafts.busy(), false);
});

test("drafts of a superseded request are dropped", () => {
  const drafts = new DraftTracker();
  const endOld = drafts.start(URI);
  drafts.receive(draft(3, "old ⋯"));
  const endNew = drafts.start(URI);
  assert.equal(drafts.shown(URI), undefined, "a new request hides the old draft");
  assert.equal(drafts.receive(draft(3, "old old")), false);
  assert.ok(drafts.receive(draft(4, "new ⋯")));
  endOld();
  endOld();
  assert.equal(drafts.shown(URI)?.text, "new ⋯", "the old request ending keeps the new draft");
  endNew();
  assert.equal(drafts.shown(URI), undefined, "cancelled: nothing left to show");
});

test("tokensPerSecond reads the server's log line of a finished request", () => {
  const log = (outcome: string) =>
    `codila: inline block_body at 5:17: ${outcome}, first block 0.472s, total 2.621s, 24 tokens, 9.2 tokens/s, 6 iterations`;
  assert.equal(tokensPerSecond(log("done")), 9.2);
  assert.equal(tokensPerSecond(log("cancelled")), undefined);
  assert.equal(tokensPerSecond("codila: models loaded in 1.2s"), undefined);
});
