// How a draft is drawn: committed text where it will land, and each still-masked run as a
// dimmed run of `·`. Pure (no vscode import): it turns a draft into per-line texts and the ranges
// to hide or dim; decorations.ts puts them on screen.
//
// VS Code decorations cannot insert lines, and the order of several decorations at one position
// is not defined, so each line gets a single piece of text:
// - infill (a selection is replaced): the draft is laid over the selection's own lines, draft
//   line i on the selection's line i; the selection's text is hidden; draft lines beyond the
//   selection's last line are joined onto it with ` ⏎ ` (a selection of whole lines, ending at
//   column 0 of the next line, ends on the line before).
// - inline (a suggestion at the cursor): the draft on one line at the span's start, its lines
//   joined with ` ⏎ ` and unindented; the text the span replaces is dimmed.

import { LspPosition, LspRange } from "./drafts";

export const MASK = "⋯"; // the server's placeholder: one per run of masked tokens
export const DOT = "·";
export const JOIN = " ⏎ ";
const UNKNOWN_RUN = 3; // dots for a run whose length the server did not send

/** One piece of text drawn before `at`; `masked`: it is nothing but placeholders. */
export interface LineText {
  at: LspPosition;
  text: string;
  masked: boolean;
}

export interface DraftLayout {
  texts: LineText[];
  hidden: LspRange[]; // text the draft replaces, hidden (infill)
  dimmed: LspRange[]; // text the draft replaces, dimmed (inline)
}

export interface LayoutOptions {
  lineLength: (line: number) => number; // the document's line lengths
  masks?: number[]; // masked tokens in each run, in order, if the server sent them
  tabSize?: number;
}

/** The draft with each `⋯` run replaced by `·` x its length in tokens (or a short run). */
export function showMasks(text: string, masks?: number[]): string {
  let run = 0;
  return text.replace(/⋯+/g, () => DOT.repeat(Math.max(1, masks?.[run++] ?? UNKNOWN_RUN)));
}

/** Leading whitespace as no-break spaces: decoration text is CSS content, where spaces collapse. */
export function keepIndent(line: string, tabSize = 4): string {
  const indent = /^[ \t]*/.exec(line)![0];
  const width = [...indent].reduce((w, ch) => (ch === "\t" ? w + tabSize - (w % tabSize) : w + 1), 0);
  return "\u00a0".repeat(width) + line.slice(indent.length);
}

/** A multi-line draft on one line: lines joined by ` ⏎ `, indentation dropped. */
export function oneLine(text: string): string {
  return text
    .split("\n")
    .map((line, i) => (i === 0 ? line.trimEnd() : line.trim()))
    .join(JOIN);
}

function isMasked(text: string): boolean {
  return text.trim() !== "" && /^[\s·⏎\u00a0]*$/.test(text);
}

export function layoutDraft(text: string, range: LspRange, mode: "inline" | "infill", options: LayoutOptions): DraftLayout {
  const shown = showMasks(text, options.masks);
  if (mode === "inline") {
    const line = oneLine(shown);
    const empty = range.start.line === range.end.line && range.start.character === range.end.character;
    return { texts: line ? [{ at: range.start, text: line, masked: isMasked(line) }] : [], hidden: [], dimmed: empty ? [] : [range] };
  }
  const draftLines = shown.split("\n");
  const first = range.start.line;
  // a selection of whole lines ends at column 0 of the next line: that line keeps its text
  const wholeLines = range.end.character === 0 && range.end.line > first;
  const last = wholeLines ? range.end.line - 1 : range.end.line;
  const texts: LineText[] = [];
  const hidden: LspRange[] = [];
  for (let line = first; line <= last; line++) {
    const i = line - first;
    const from = line === first ? range.start.character : 0;
    const to = line === last && !wholeLines ? range.end.character : options.lineLength(line);
    if (to > from) hidden.push({ start: { line, character: from }, end: { line, character: to } });
    const pieces = line < last ? draftLines.slice(i, i + 1) : draftLines.slice(i);
    while (pieces.length > 1 && pieces[pieces.length - 1].trim() === "") pieces.pop(); // a trailing newline
    const body = pieces.map((piece, j) => (j === 0 ? keepIndent(piece, options.tabSize) : piece.trim()));
    const drawn = body.join(JOIN).trimEnd();
    if (drawn) texts.push({ at: { line, character: from }, text: drawn, masked: isMasked(drawn) });
  }
  return { texts, hidden, dimmed: [] };
}
