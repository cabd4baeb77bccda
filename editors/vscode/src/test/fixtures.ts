// Test fixtures: a fake codila-lsp connection that records requests and lets a test answer
// them, send drafts and progress; and the extension's parts wired as extension.ts wires them.

import "./stub";
import * as vscode from "vscode";
import { Draft } from "../drafts";
import { Connection, LiveDecodes, ProgressValue } from "../live";
import { Notifier } from "../notify";
import { InlineProvider } from "../provider";
import { clientSettings } from "../settings";
import { Status, StatusView } from "../status";
import * as stub from "./vscode";

export interface SentRequest {
  method: string;
  params: any;
  token: vscode.CancellationToken;
  resolve(result: unknown): void;
  reject(error: unknown): void;
}

export class FakeServer implements Connection {
  readonly requests: SentRequest[] = [];
  readonly progress = new Map<string, (value: ProgressValue) => void>();

  request<R>(method: string, params: object, token: vscode.CancellationToken): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      const sent: SentRequest = { method, params, token, resolve: resolve as (r: unknown) => void, reject };
      this.requests.push(sent);
      // as vscode-jsonrpc does: a cancelled request ends with RequestCancelled
      token.onCancellationRequested(() => reject(Object.assign(new Error("cancelled"), { code: -32800 })));
    });
  }

  onProgress(token: string, handler: (value: ProgressValue) => void): vscode.Disposable {
    this.progress.set(token, handler);
    return new stub.Disposable(() => this.progress.delete(token)) as unknown as vscode.Disposable;
  }

  last(): SentRequest {
    return this.requests[this.requests.length - 1];
  }
}

/** Lets pending promise callbacks and timers of 0 ms run. */
export function tick(ms = 0): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function draft(uri: string, id: number, text: string, range: any, extra: Partial<Draft> = {}): Draft {
  return { uri, id, range, text, done: false, ...extra };
}

export function lspRange(sl: number, sc: number, el: number, ec: number) {
  return { start: { line: sl, character: sc }, end: { line: el, character: ec } };
}

/** The extension's parts around a fake server, with one editor showing `text` at `path`. */
export function setup(text: string, path = "/work/a.py") {
  stub.resetStub();
  const server = new FakeServer();
  const views: StatusView[] = [];
  const status = new Status((view) => views.push(view));
  const get = (key: string) => vscode.workspace.getConfiguration("codila").get(key);
  const settings = () => clientSettings(get);
  status.configure(settings().enable, settings().manual);
  status.ready(); // the server is up
  const live = new LiveDecodes(status, () => settings().liveDraft);
  const errors: unknown[] = [];
  const report = (error: unknown) => {
    errors.push(error);
    status.failed(String((error as Error)?.message ?? error));
  };
  let connected = true;
  const connection = () => (connected ? server : undefined);
  const provider = new InlineProvider({ connection, settings, live, report });
  const document = new stub.TextDocument(stub.Uri.file(path), text);
  const editor = new stub.TextEditor(document);
  stub.window.visibleTextEditors = [editor];
  stub.window.activeTextEditor = editor;
  return {
    server, status, views, live, provider, document, editor, errors, report,
    notifier: new Notifier(() => undefined),
    disconnect: () => { connected = false; },
    connection,
    uri: document.uri.toString(),
  };
}

/** Calls the provider as VS Code does, with its own cancellation source. */
export function ask(
  f: ReturnType<typeof setup>,
  line: number,
  character: number,
  kind: stub.InlineCompletionTriggerKind = stub.InlineCompletionTriggerKind.Automatic,
  extra: object = {},
) {
  const source = new stub.CancellationTokenSource();
  const result = f.provider.provide(
    f.document as unknown as vscode.TextDocument,
    new stub.Position(line, character) as unknown as vscode.Position,
    { triggerKind: kind, selectedCompletionInfo: undefined, ...extra } as unknown as vscode.InlineCompletionContext,
    source.token as unknown as vscode.CancellationToken,
  );
  return { result, cancel: () => source.cancel() };
}
