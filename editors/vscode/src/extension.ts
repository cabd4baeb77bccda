// codila for VS Code: starts codila-lsp, lets vscode-languageclient turn its inline completions into
// inline suggestions, and shows the streamed `codila/draft` text as a decoration while a request runs.

import * as vscode from "vscode";
import {
  CancellationToken,
  LanguageClient,
  LanguageClientOptions,
  LogMessageNotification,
  MessageType,
} from "vscode-languageclient/node";
import { Draft, DraftTracker, ghostText, tokensPerSecond } from "./helpers";

const INFILL_COMMAND = "codila.infillSelection";
const CLIENT_ONLY = new Set(["serverCommand", "serverArgs"]); // settings the server does not take

let client: LanguageClient | undefined;
let settingKeys: string[] = []; // the server's settings, as package.json declares them
let sentSettings: Record<string, unknown> = {};
const drafts = new DraftTracker();
let lastRate: string | undefined;
let status: vscode.StatusBarItem;
let ghost: vscode.TextEditorDecorationType; // the draft, greyed, at the start of its range
let replaced: vscode.TextEditorDecorationType; // the text the draft will replace, dimmed

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const declared = context.extension.packageJSON.contributes.configuration.properties;
  settingKeys = Object.keys(declared).map((name) => name.slice("codila.".length)).filter((k) => !CLIENT_ONLY.has(k));
  status = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right);
  status.tooltip = "codila code completion";
  ghost = vscode.window.createTextEditorDecorationType({
    before: { color: new vscode.ThemeColor("editorGhostText.foreground"), fontStyle: "italic" },
  });
  replaced = vscode.window.createTextEditorDecorationType({ opacity: "0.45" });
  context.subscriptions.push(status, ghost, replaced);
  context.subscriptions.push(
    vscode.workspace.onDidChangeConfiguration(async (event) => {
      if (!event.affectsConfiguration("codila")) return;
      const settings = serverSettings();
      const removed = Object.keys(sentSettings).some((key) => !(key in settings));
      if (!client || removed || event.affectsConfiguration("codila.serverCommand")
          || event.affectsConfiguration("codila.serverArgs")) {
        await restart(); // a fresh server: the only way back to a server default
      } else {
        sentSettings = settings;
        await client.sendNotification("workspace/didChangeConfiguration", { settings: { codila: settings } });
      }
    }),
  );
  await restart();
}

export async function deactivate(): Promise<void> {
  await client?.stop();
}

/** The `codila.*` settings the user set, without the client's own: initializationOptions. */
function serverSettings(): Record<string, unknown> {
  const config = vscode.workspace.getConfiguration("codila");
  const settings: Record<string, unknown> = {};
  for (const key of settingKeys) {
    const value = config.get(key);
    if (value !== null && value !== undefined) settings[key] = value;
  }
  return settings;
}

async function restart(): Promise<void> {
  await client?.stop();
  const config = vscode.workspace.getConfiguration("codila");
  const command = config.get<string>("serverCommand", "codila-lsp");
  const args = config.get<string[]>("serverArgs", []);
  sentSettings = serverSettings();
  const options: LanguageClientOptions = {
    documentSelector: [{ language: "python" }],
    initializationOptions: sentSettings,
    middleware: {
      provideInlineCompletionItems: (document, position, context, token, next) =>
        track(document.uri, token, () => next(document, position, context, token)),
      executeCommand: (command, args, next) => {
        // from the context menu (args: the file's Uri) or the palette (no args): infill the selection
        const editor = vscode.window.activeTextEditor;
        const fromUi = args.length === 0 || args[0] instanceof vscode.Uri;
        if (command !== INFILL_COMMAND || !fromUi || !editor || !client) return next(command, args);
        const target = {
          textDocument: { uri: client.code2ProtocolConverter.asUri(editor.document.uri) },
          range: client.code2ProtocolConverter.asRange(editor.selection),
        };
        return track(editor.document.uri, undefined, () => next(command, [target]));
      },
    },
  };
  const started = new LanguageClient("codila", "codila", { command, args }, options);
  client = started;
  started.onNotification("codila/draft", (draft: Draft) => {
    const uri = vscode.Uri.parse(draft.uri).toString(); // the server sends the uri percent-decoded
    if (drafts.receive({ ...draft, uri })) render(uri);
  });
  started.onNotification(LogMessageNotification.type, ({ type, message }) => {
    logTo(started, type, message); // replaces the client's own handler, so log as it does
    const rate = tokensPerSecond(message);
    if (rate !== undefined) {
      lastRate = `${Math.round(rate)} tok/s`;
      showStatus();
    }
  });
  showStatus();
  try {
    await started.start();
  } catch (error) {
    client = undefined;
    void vscode.window.showErrorMessage(
      `codila: cannot start the language server \`${[command, ...args].join(" ")}\` (${error}). ` +
        "Install codila (`pip install -e .` in the codila repository) and set `codila.serverCommand` to " +
        "the full path of its `codila-lsp` (e.g. /path/to/venv/bin/codila-lsp), or put that folder on PATH.",
    );
  }
}

function logTo(client: LanguageClient, type: MessageType, message: string): void {
  if (type === MessageType.Error) client.error(message, undefined, false);
  else if (type === MessageType.Warning) client.warn(message, undefined, false);
  else if (type === MessageType.Info) client.info(message, undefined, false);
  else client.debug(message, undefined, false);
}

/** Runs a request for `uri`, showing its drafts until it answers or is cancelled. */
async function track<T>(uri: vscode.Uri, token: CancellationToken | undefined, request: () => T): Promise<Awaited<T>> {
  const key = uri.toString();
  const end = drafts.start(key);
  const finish = () => {
    end();
    render(key);
  };
  const cancelled = token?.onCancellationRequested(finish);
  render(key);
  try {
    return await request();
  } finally {
    cancelled?.dispose();
    finish();
  }
}

function render(uri: string): void {
  const draft = drafts.shown(uri);
  for (const editor of vscode.window.visibleTextEditors) {
    if (editor.document.uri.toString() !== uri) continue;
    if (!draft || !client) {
      editor.setDecorations(ghost, []);
      editor.setDecorations(replaced, []);
      continue;
    }
    const range = client.protocol2CodeConverter.asRange(draft.range);
    const at = new vscode.Range(range.start, range.start);
    editor.setDecorations(ghost, [{ range: at, renderOptions: { before: { contentText: ghostText(draft.text) } } }]);
    editor.setDecorations(replaced, range.isEmpty ? [] : [range]);
  }
  showStatus();
}

function showStatus(): void {
  status.text = drafts.busy() ? "$(loading~spin) codila: thinking…" : `codila${lastRate ? `: ${lastRate}` : ""}`;
  status.show();
}
