// Pure helpers (no vscode import, so node's test runner can load them): which streamed
// `codila/draft` to show for a document, how to show a multi-line draft on one line, and the
// decoding speed from the server's per-request log line.

export interface LspRange {
  start: { line: number; character: number };
  end: { line: number; character: number };
}

/** params of the server's `codila/draft` notification */
export interface Draft {
  uri: string;
  id: number; // JSON-RPC id of the request the draft belongs to
  range: LspRange; // the span the result will replace
  text: string; // the span so far, `⋯` where tokens are still masked
  done: boolean;
}

interface DocState {
  pending: number; // requests in flight for the document
  newest: number; // highest draft id seen
  floor: number; // drafts with an id up to this belong to superseded requests
  draft?: Draft;
}

/** Keeps, per document, the draft of the newest request still running. */
export class DraftTracker {
  private docs = new Map<string, DocState>();

  /** A request for `uri` starts: drafts seen so far are stale. Returns the call that ends it. */
  start(uri: string): () => void {
    const doc = this.doc(uri);
    doc.pending += 1;
    doc.floor = doc.newest;
    doc.draft = undefined;
    let open = true;
    return () => {
      if (open) {
        open = false;
        doc.pending -= 1;
        if (doc.pending === 0) doc.draft = undefined;
      }
    };
  }

  /** Takes a notification; true when what `shown(uri)` returns changed. */
  receive(draft: Draft): boolean {
    const doc = this.doc(draft.uri);
    doc.newest = Math.max(doc.newest, draft.id);
    if (doc.pending === 0 || draft.id <= doc.floor || (doc.draft && draft.id < doc.draft.id)) return false;
    doc.draft = draft.done ? undefined : draft;
    return true;
  }

  shown(uri: string): Draft | undefined {
    return this.docs.get(uri)?.draft;
  }

  busy(): boolean {
    return [...this.docs.values()].some((doc) => doc.pending > 0);
  }

  private doc(uri: string): DocState {
    let doc = this.docs.get(uri);
    if (!doc) {
      doc = { pending: 0, newest: 0, floor: 0 };
      this.docs.set(uri, doc);
    }
    return doc;
  }
}

/** A draft on one line: lines joined by ` ⏎ `, indentation dropped (decorations cannot break lines). */
export function ghostText(text: string): string {
  return text
    .split("\n")
    .map((line, i) => (i === 0 ? line.trimEnd() : line.trim()))
    .join(" ⏎ ");
}

/** tokens/s from codila-lsp's log line for a finished request (none for a cancelled one):
 *  "codila: inline block_body at 5:17: done, first block 0.472s, total 2.621s, 24 tokens, 9.2 tokens/s, ..." */
export function tokensPerSecond(logMessage: string): number | undefined {
  const rate = /: done, .*, ([\d.]+) tokens\/s/.exec(logMessage);
  return rate ? Number(rate[1]) : undefined;
}
