// Inline suggestions: vscode-languageclient registers the provider for the server's
// `inlineCompletionProvider`, and its middleware hands every call to `InlineProvider.provide`,
// which decides whether to ask (enabled, trigger mode, debounce, the popup open), carries over
// the rest of a partly accepted suggestion, and sends the request itself with a work-done token,
// so that the status bar can show the decode's progress.

import * as vscode from "vscode";
import { Shown, carryOver } from "./carryover";
import { LspPosition, LspRange, docKey } from "./drafts";
import { Connection, LiveDecodes, protocolUri } from "./live";
import { ClientSettings } from "./settings";

export const INLINE_METHOD = "textDocument/inlineCompletion";

/** LSP InlineCompletionItem / InlineCompletionList, as the server sends them. */
interface LspInlineItem {
  insertText: string | { kind: "snippet"; value: string };
  range?: LspRange;
}
type LspInlineResult = { items: LspInlineItem[] } | LspInlineItem[] | null | undefined;

// JSON-RPC errors that only mean "no answer": cancelled, content modified, connection going away
const QUIET_ERRORS = new Set([-32800, -32801, -32802, -32097, -32096]);

export function isQuiet(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === "number" && QUIET_ERRORS.has(code);
}

/** UTF-16 offset of an LSP position in `text` (LSP's default encoding, as VS Code's strings). */
export function offsetAt(text: string, position: LspPosition): number {
  let offset = 0;
  for (let line = 0; line < position.line; line++) {
    const eol = text.indexOf("\n", offset);
    if (eol < 0) return text.length;
    offset = eol + 1;
  }
  const eol = text.indexOf("\n", offset);
  const end = eol < 0 ? text.length : eol > offset && text[eol - 1] === "\r" ? eol - 1 : eol;
  return Math.min(offset + position.character, end);
}

/** Resolves true after `ms`, false as soon as `token` is cancelled. */
export function pause(ms: number, token: vscode.CancellationToken): Promise<boolean> {
  return new Promise((resolve) => {
    if (token.isCancellationRequested) return resolve(false);
    const cancelled = token.onCancellationRequested(() => {
      clearTimeout(timer);
      cancelled.dispose();
      resolve(false);
    });
    const timer = setTimeout(() => {
      cancelled.dispose();
      resolve(true);
    }, ms);
  });
}

export interface ProviderDeps {
  connection: () => Connection | undefined; // undefined while the server is not running
  settings: () => ClientSettings;
  live: LiveDecodes;
  report: (error: unknown) => void; // a failed request: status bar and (once) a message
}

export class InlineProvider {
  private shown: Shown | undefined;

  constructor(private readonly deps: ProviderDeps) {}

  async provide(
    document: vscode.TextDocument,
    position: vscode.Position,
    context: vscode.InlineCompletionContext,
    token: vscode.CancellationToken,
  ): Promise<vscode.InlineCompletionList | undefined> {
    const settings = this.deps.settings();
    const automatic = context.triggerKind === vscode.InlineCompletionTriggerKind.Automatic;
    if (!settings.enable || (automatic && settings.manual)) return undefined;
    // the completion popup is open: an item would have to extend its choice; leave that to the popup
    if (context.selectedCompletionInfo) return undefined;

    const uri = protocolUri(document.uri);
    const key = docKey(uri);
    const text = document.getText();
    const rest = carryOver(this.shown, key, text, document.offsetAt(position));
    if (rest) return new vscode.InlineCompletionList(rest.map((t) => new vscode.InlineCompletionItem(t, new vscode.Range(position, position))));

    if (automatic && settings.debounceMs > 0 && !(await pause(settings.debounceMs, token))) return undefined;
    const connection = this.deps.connection();
    if (!connection || token.isCancellationRequested) return undefined;

    const decode = this.deps.live.begin(connection, document.uri, "inline");
    let result: LspInlineResult;
    try {
      result = await connection.request<LspInlineResult>(INLINE_METHOD, {
        textDocument: { uri },
        position: { line: position.line, character: position.character },
        context: { triggerKind: automatic ? 2 : 1 }, // LSP: Invoked = 1, Automatic = 2
        workDoneToken: decode.progressToken,
      }, token);
    } catch (error) {
      if (!token.isCancellationRequested && !isQuiet(error)) this.deps.report(error);
      return undefined;
    } finally {
      decode.end();
    }
    if (token.isCancellationRequested) return undefined;
    const items = Array.isArray(result) ? result : result?.items ?? [];
    this.remember(key, text, items);
    return new vscode.InlineCompletionList(items.map((item) => toItem(item, position)));
  }

  /** Forget what was shown (e.g. the server restarted with other settings). */
  forget(): void {
    this.shown = undefined;
  }

  private remember(key: string, text: string, items: LspInlineItem[]): void {
    const range = items[0]?.range;
    const plain = items.filter((i) => typeof i.insertText === "string" && sameRange(i.range, range));
    this.shown = range && plain.length > 0
      ? {
          key,
          before: text.slice(0, offsetAt(text, range.start)),
          after: text.slice(offsetAt(text, range.end)),
          texts: plain.map((i) => i.insertText as string),
        }
      : undefined;
  }
}

function sameRange(a: LspRange | undefined, b: LspRange | undefined): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function toItem(item: LspInlineItem, position: vscode.Position): vscode.InlineCompletionItem {
  const text = typeof item.insertText === "string" ? item.insertText : new vscode.SnippetString(item.insertText.value);
  const r = item.range;
  const range = r ? new vscode.Range(r.start.line, r.start.character, r.end.line, r.end.character) : new vscode.Range(position, position);
  return new vscode.InlineCompletionItem(text, range);
}
