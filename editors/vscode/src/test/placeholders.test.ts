import assert from "node:assert/strict";
import { test } from "node:test";
import { keepIndent, layoutDraft, oneLine, showMasks } from "../placeholders";

const range = (sl: number, sc: number, el: number, ec: number) => ({ start: { line: sl, character: sc }, end: { line: el, character: ec } });
const lengths = (lines: string[]) => (line: number) => lines[line]?.length ?? 0;
const NB = "\u00a0";

test("masked runs become dimmed dot runs, as long as the server says when it says", () => {
  assert.equal(showMasks("a ⋯ b ⋯"), "a ··· b ···");
  assert.equal(showMasks("a ⋯ b ⋯", [5, 1]), "a ····· b ·");
  assert.equal(showMasks("⋯", [0]), "·", "a run is never drawn empty");
  assert.equal(showMasks("no masks"), "no masks");
});

test("indentation survives as no-break spaces (decoration text collapses spaces)", () => {
  assert.equal(keepIndent("    return x"), `${NB.repeat(4)}return x`);
  assert.equal(keepIndent("\t\treturn x", 4), `${NB.repeat(8)}return x`);
  assert.equal(keepIndent("  \treturn", 4), `${NB.repeat(4)}return`);
});

test("oneLine joins a multi-line draft with ⏎ and drops the indentation", () => {
  assert.equal(oneLine("\n    if x:\n        return ⋯\n"), " ⏎ if x: ⏎ return ⋯ ⏎ ");
  assert.equal(oneLine("a + ⋯  "), "a + ⋯");
});

test("inline: the draft on one line at the span's start, the replaced text dimmed", () => {
  const layout = layoutDraft("x ⋯\n    ⋯", range(2, 8, 2, 12), "inline", { lineLength: () => 20 });
  assert.deepEqual(layout.texts, [{ at: { line: 2, character: 8 }, text: "x ··· ⏎ ···", masked: false }]);
  assert.deepEqual(layout.dimmed, [range(2, 8, 2, 12)]);
  assert.deepEqual(layout.hidden, []);
  const insertion = layoutDraft("⋯", range(1, 0, 1, 0), "inline", { lineLength: () => 0 });
  assert.deepEqual(insertion.dimmed, [], "nothing replaced, nothing dimmed");
  assert.equal(insertion.texts[0].masked, true, "placeholders only: the dimmer style");
});

test("infill: committed text in place over the selection's lines, masked regions as dots", () => {
  const doc = ["def f(x):", "    a = 1", "    b = 2", "    return a + b", "print(f(1))"];
  // selection: lines 1..3 whole (end at the end of line 3)
  const layout = layoutDraft("    y = x * 2\n    ⋯\n    return ⋯", range(1, 0, 3, 16), "infill", { lineLength: lengths(doc), masks: [4, 2] });
  assert.deepEqual(layout.texts, [
    { at: { line: 1, character: 0 }, text: `${NB.repeat(4)}y = x * 2`, masked: false },
    { at: { line: 2, character: 0 }, text: `${NB.repeat(4)}····`, masked: true },
    { at: { line: 3, character: 0 }, text: `${NB.repeat(4)}return ··`, masked: false },
  ]);
  assert.deepEqual(layout.hidden, [range(1, 0, 1, 9), range(2, 0, 2, 9), range(3, 0, 3, 16)], "the selection's text is hidden");
  assert.deepEqual(layout.dimmed, []);
});

test("infill: a selection starting mid-line keeps the line's prefix and the last line's suffix", () => {
  const doc = ["total = compute(a, b) + 1"];
  const layout = layoutDraft("⋯(a)", range(0, 8, 0, 21), "infill", { lineLength: lengths(doc) });
  assert.deepEqual(layout.texts, [{ at: { line: 0, character: 8 }, text: "···(a)", masked: false }]);
  assert.deepEqual(layout.hidden, [range(0, 8, 0, 21)], "only the selection is hidden: `total = ` and ` + 1` stay");
});

test("infill: draft lines beyond the selection's last line join onto it", () => {
  const doc = ["if x:", "    pass", "done()"];
  const layout = layoutDraft("    y = 1\n    z = ⋯\n    w = 3", range(1, 0, 1, 8), "infill", { lineLength: lengths(doc) });
  assert.deepEqual(layout.texts, [{ at: { line: 1, character: 0 }, text: `${NB.repeat(4)}y = 1 ⏎ z = ··· ⏎ w = 3`, masked: false }]);
});

test("infill: a draft shorter than the selection leaves the rest of it blank", () => {
  const doc = ["a", "b", "c", "d"];
  const layout = layoutDraft("x", range(0, 0, 2, 1), "infill", { lineLength: lengths(doc) });
  assert.deepEqual(layout.texts, [{ at: { line: 0, character: 0 }, text: "x", masked: false }]);
  assert.equal(layout.hidden.length, 3);
});

test("infill of whole lines (ending at column 0 of the next line): that next line is left alone", () => {
  const doc = ["def f(values):", "    total = 0", "    for v in values:", "        total += v", "    return total"];
  // lines 1..3 selected with Shift+Down: the selection ends at (4, 0)
  const layout = layoutDraft("    s = ⋯\n\n    # one\n    # two\n", range(1, 0, 4, 0), "infill", { lineLength: lengths(doc) });
  assert.deepEqual(layout.texts, [
    { at: { line: 1, character: 0 }, text: `${NB.repeat(4)}s = ···`, masked: false },
    { at: { line: 3, character: 0 }, text: `${NB.repeat(4)}# one ⏎ # two`, masked: false },
  ]);
  assert.deepEqual(layout.hidden, [range(1, 0, 1, 13), range(2, 0, 2, 20), range(3, 0, 3, 18)], "`    return total` stays visible");
});

test("infill at an empty selection: the draft at the cursor, nothing hidden", () => {
  const layout = layoutDraft("⋯ + 1", range(4, 6, 4, 6), "infill", { lineLength: () => 10 });
  assert.deepEqual(layout.texts, [{ at: { line: 4, character: 6 }, text: "··· + 1", masked: false }]);
  assert.deepEqual(layout.hidden, []);
});
