// The drafts codila-lsp streams while it decodes (`codila/draft`): which one to show for a
// document, and how a draft's URI is matched to the document. Pure (no vscode import).

export interface LspPosition {
  line: number;
  character: number;
}

export interface LspRange {
  start: LspPosition;
  end: LspPosition;
}

/** The final draft's (and `codila/infill`'s) statistics; only the fields the extension shows. */
export interface DecodeStats {
  tokens?: number;
  text_tokens?: number;
  tokens_per_s?: number;
  wall_s?: number;
  first_commit_s?: number | null;
  iterations?: number;
  decoder?: string;
  model?: string | null;
}

/** params of the server's `codila/draft` notification */
export interface Draft {
  uri: string;
  id: number | string; // JSON-RPC id of the request the draft belongs to
  range: LspRange; // the span the result will replace
  text: string; // the span so far, `⋯` for each run of still-masked tokens
  done: boolean;
  stats?: DecodeStats; // on the final draft
  masks?: number[]; // optional: masked tokens in each `⋯` run, in order
}

export type DraftMode = "inline" | "infill";

/** A URI as a key that survives percent-encoding differences: the server echoes the URI the
 *  client sent (`file:///a%23b.py` for a file named `a#b.py`), but a server that decodes it
 *  (`file:///a#b.py`) must still match, and parsing that as a URI would make `#b.py` a fragment. */
export function docKey(uri: string): string {
  try {
    return decodeURIComponent(uri);
  } catch {
    return uri; // a lone `%`: compare as sent
  }
}

interface DocState {
  pending: number; // requests in flight for the document
  newest: number; // highest numeric draft id seen
  floor: number; // drafts with an id up to this belong to superseded requests
  mode: DraftMode; // how the newest request's drafts are shown
  draft?: Draft;
}

/** Keeps, per document, the latest draft of the newest request still running. */
export class DraftTracker {
  private docs = new Map<string, DocState>();

  /** A request for the document starts: drafts seen so far are stale. Returns the call that ends it. */
  start(key: string, mode: DraftMode = "inline"): () => void {
    const doc = this.doc(key);
    doc.pending += 1;
    doc.floor = doc.newest;
    doc.mode = mode;
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

  /** Takes a notification; true when what `shown(key)` returns changed. */
  receive(draft: Draft): boolean {
    const doc = this.doc(docKey(draft.uri));
    const id = typeof draft.id === "number" ? draft.id : undefined;
    if (id !== undefined) doc.newest = Math.max(doc.newest, id);
    if (doc.pending === 0) return false;
    if (id !== undefined && (id <= doc.floor || (typeof doc.draft?.id === "number" && id < doc.draft.id))) return false;
    doc.draft = draft.done ? undefined : draft;
    return true;
  }

  shown(key: string): { draft: Draft; mode: DraftMode } | undefined {
    const doc = this.docs.get(key);
    return doc?.draft ? { draft: doc.draft, mode: doc.mode } : undefined;
  }

  busy(): boolean {
    return [...this.docs.values()].some((doc) => doc.pending > 0);
  }

  /** Documents with a draft on screen. */
  keys(): string[] {
    return [...this.docs.entries()].filter(([, doc]) => doc.draft).map(([key]) => key);
  }

  /** The server went away: request ids start again from 1, and nothing in flight will answer. */
  clear(): void {
    for (const doc of this.docs.values()) doc.draft = undefined;
    this.docs.clear();
  }

  private doc(key: string): DocState {
    let doc = this.docs.get(key);
    if (!doc) {
      doc = { pending: 0, newest: 0, floor: 0, mode: "inline" };
      this.docs.set(key, doc);
    }
    return doc;
  }
}
