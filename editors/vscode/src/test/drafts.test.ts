import assert from "node:assert/strict";
import { test } from "node:test";
import { URI } from "vscode-uri";
import { Draft, DraftTracker, docKey } from "../drafts";

const URI_A = "file:///a.py";
const range = { start: { line: 1, character: 4 }, end: { line: 1, character: 4 } };
const draft = (id: number | string, text: string, done = false, uri = URI_A): Draft => ({ uri, id, range, text, done });

test("a draft shows while its request runs and goes when done", () => {
  const drafts = new DraftTracker();
  assert.equal(drafts.receive(draft(1, "x")), false, "no request running");
  const end = drafts.start(URI_A, "infill");
  assert.ok(drafts.busy());
  assert.ok(drafts.receive(draft(2, "a ⋯")));
  assert.deepEqual(drafts.shown(URI_A), { draft: draft(2, "a ⋯"), mode: "infill" });
  assert.deepEqual(drafts.keys(), [URI_A]);
  assert.ok(drafts.receive(draft(2, "a b", true)));
  assert.equal(drafts.shown(URI_A), undefined);
  end();
  assert.equal(drafts.busy(), false);
});

test("drafts of a superseded request are dropped", () => {
  const drafts = new DraftTracker();
  const endOld = drafts.start(URI_A);
  drafts.receive(draft(3, "old ⋯"));
  const endNew = drafts.start(URI_A);
  assert.equal(drafts.shown(URI_A), undefined, "a new request hides the old draft");
  assert.equal(drafts.receive(draft(3, "old old")), false);
  assert.ok(drafts.receive(draft(4, "new ⋯")));
  endOld();
  endOld();
  assert.equal(drafts.shown(URI_A)?.draft.text, "new ⋯", "the old request ending keeps the new draft");
  endNew();
  assert.equal(drafts.shown(URI_A), undefined, "cancelled: nothing left to show");
});

test("clear(): after a server restart request ids start again and old drafts go", () => {
  const drafts = new DraftTracker();
  drafts.start(URI_A);
  drafts.receive(draft(40, "before the crash ⋯"));
  drafts.clear();
  assert.equal(drafts.shown(URI_A), undefined);
  drafts.start(URI_A);
  assert.ok(drafts.receive(draft(1, "new server ⋯")), "id 1 of the new server is not taken for stale");
});

test("a command's draft (string id) is shown too", () => {
  const drafts = new DraftTracker();
  drafts.start(URI_A, "infill");
  assert.ok(drafts.receive(draft("cmd-7", "x ⋯")));
});

test("URIs with # and % match whether the server echoes them encoded or decoded", () => {
  const cases = ["/tmp/a#b.py", "/tmp/dir #1/c.py", "/tmp/50%/d.py", "/tmp/é ü/e.py", "/tmp/q?x=1.py"];
  for (const path of cases) {
    const sent = URI.file(path).toString(); // what the extension sends (VS Code's URI encoding)
    assert.ok(!sent.includes("#"), `${sent} is encoded`);
    const decoded = decodeURIComponent(sent);
    assert.equal(docKey(sent), docKey(decoded), path);
    const drafts = new DraftTracker();
    drafts.start(docKey(sent));
    assert.ok(drafts.receive(draft(1, "⋯", false, sent)), `echoed as sent: ${sent}`);
    assert.ok(drafts.receive(draft(2, "x ⋯", false, decoded)), `echoed decoded: ${decoded}`);
    assert.equal(drafts.shown(docKey(sent))?.draft.text, "x ⋯");
  }
  // distinct files stay distinct
  assert.notEqual(docKey(URI.file("/tmp/a#b.py").toString()), docKey(URI.file("/tmp/a%23b.py").toString()));
  assert.equal(docKey("file:///bad%zz.py"), "file:///bad%zz.py", "a malformed escape is compared as sent");
});
