// After accepting part of a suggestion (a word, a line) or typing what it suggests, VS Code asks
// again at the new cursor. The rest of the last suggestion still fits there, so it is returned
// at once instead of decoding again. Pure (works on the document's text and offsets).

export interface Shown {
  key: string; // the document
  before: string; // document text before the suggestion's range
  after: string; // document text after the suggestion's range
  texts: string[]; // the suggestions, as inserted there
}

/** The rest of each shown suggestion that still fits at `offset` in `text`, or undefined when the
 *  document moved away from them (other text typed, edits elsewhere, nothing accepted yet). */
export function carryOver(shown: Shown | undefined, key: string, text: string, offset: number): string[] | undefined {
  if (!shown || shown.key !== key) return undefined;
  const start = shown.before.length;
  if (offset <= start || !text.startsWith(shown.before) || text.slice(offset) !== shown.after) return undefined;
  const typed = text.slice(start, offset);
  const rest = shown.texts.filter((t) => t.length > typed.length && t.startsWith(typed)).map((t) => t.slice(typed.length));
  return rest.length > 0 ? rest : undefined;
}
