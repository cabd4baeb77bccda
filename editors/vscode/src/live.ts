// Decodes in flight: each one shows its drafts (when `codila.liveDraft` is on), counts in the
// status bar, and follows the server's work-done progress for its token.

import * as vscode from "vscode";
import { Draft, DraftMode, DraftTracker, docKey } from "./drafts";
import { DraftDecorations } from "./decorations";
import { Status } from "./status";

/** `$/progress` values (LSP WorkDoneProgressBegin / Report / End). */
export interface ProgressValue {
  kind: "begin" | "report" | "end";
  title?: string;
  message?: string;
  percentage?: number;
}

/** What the features need from the language client (a fake one in the tests). */
export interface Connection {
  request<R>(method: string, params: object, token: vscode.CancellationToken): Promise<R>;
  onProgress(token: string, handler: (value: ProgressValue) => void): vscode.Disposable;
}

/** The URI the client sends for a document (vscode-languageclient's default conversion). */
export function protocolUri(uri: vscode.Uri): string {
  return uri.toString();
}

export interface Decode {
  key: string; // the document, as drafts name it (docKey)
  progressToken: string; // goes into the request's workDoneToken
  end(): void;
}

export interface Watch {
  draft?: (draft: Draft) => void;
  progress?: (value: ProgressValue) => void;
}

export class LiveDecodes implements vscode.Disposable {
  private readonly drafts = new DraftTracker();
  private readonly decorations = new DraftDecorations();
  private readonly watchers = new Map<string, Set<(draft: Draft) => void>>();
  private nextToken = 1;

  constructor(
    private readonly status: Status,
    private readonly liveDraft: () => boolean,
  ) {}

  /** A request for `uri` starts. `watch` sees its document's drafts and its progress (e.g. for a
   *  progress notification). */
  begin(connection: Connection, uri: vscode.Uri, mode: DraftMode, watch: Watch = {}): Decode {
    const onDraft = watch.draft;
    const key = docKey(protocolUri(uri));
    const endDraft = this.drafts.start(key, mode);
    const endStatus = this.status.decoding();
    const progressToken = `codila-vscode-${this.nextToken++}`;
    const progress = connection.onProgress(progressToken, (value) => {
      if (value.percentage !== undefined) this.status.progress(value.percentage);
      watch.progress?.(value);
    });
    if (onDraft) this.watch(key).add(onDraft);
    this.render(key);
    let open = true;
    return {
      key,
      progressToken,
      end: () => {
        if (!open) return;
        open = false;
        endDraft();
        endStatus();
        progress.dispose();
        if (onDraft) this.watch(key).delete(onDraft);
        this.render(key);
      },
    };
  }

  /** A `codila/draft` notification. */
  receive(draft: Draft): void {
    if (draft.done && draft.stats) this.status.finished(draft.stats);
    const key = docKey(draft.uri);
    if (this.drafts.receive(draft)) this.render(key);
    for (const watcher of this.watchers.get(key) ?? []) watcher(draft);
  }

  busy(): boolean {
    return this.drafts.busy();
  }

  /** Draws again in every visible editor (new editors, or `codila.liveDraft` changed). */
  refresh(): void {
    const keys = new Set(vscode.window.visibleTextEditors.map((e) => docKey(protocolUri(e.document.uri))));
    for (const key of keys) this.render(key);
  }

  /** The server stopped: nothing in flight will answer, and request ids start again. */
  reset(): void {
    const keys = this.drafts.keys();
    this.drafts.clear();
    for (const key of keys) this.render(key);
  }

  dispose(): void {
    this.decorations.dispose();
  }

  private watch(key: string): Set<(draft: Draft) => void> {
    let set = this.watchers.get(key);
    if (!set) this.watchers.set(key, (set = new Set()));
    return set;
  }

  private render(key: string): void {
    const editors = vscode.window.visibleTextEditors.filter((e) => docKey(protocolUri(e.document.uri)) === key);
    this.decorations.render(editors, this.liveDraft() ? this.drafts.shown(key) : undefined);
  }
}
