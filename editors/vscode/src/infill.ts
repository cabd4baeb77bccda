// Infill Selection: the selection (or the cursor) is decoded by the server (`codila/infill`)
// under a cancellable progress notification, its drafts drawn over the selection, and the result
// applied as an edit if the document did not change meanwhile.

import * as vscode from "vscode";
import { DecodeStats, Draft, LspRange } from "./drafts";
import { Connection, LiveDecodes, protocolUri } from "./live";
import { MASK } from "./placeholders";
import { isQuiet } from "./provider";

export const INFILL_METHOD = "codila/infill";

interface InfillResult {
  range: LspRange;
  text: string;
  stats?: DecodeStats;
}

/** The progress message for a draft: how many masked runs are left. */
export function infillMessage(draft: Draft): string {
  if (draft.done) return "applying…";
  const runs = draft.text.split(MASK).length - 1;
  if (draft.masks) return `${draft.masks.reduce((a, b) => a + b, 0)} tokens still masked`;
  return runs === 0 ? "finishing…" : `${runs} masked ${runs === 1 ? "region" : "regions"} left`;
}

export interface InfillDeps {
  connection: () => Connection | undefined;
  live: LiveDecodes;
  report: (error: unknown) => void;
}

export async function infillSelection(deps: InfillDeps, editor = vscode.window.activeTextEditor): Promise<boolean> {
  const connection = deps.connection();
  if (!editor) return false;
  if (!connection) {
    void vscode.window.showWarningMessage("codila: the language server is not running (see the status bar item).");
    return false;
  }
  const document = editor.document;
  const selection = editor.selection;
  const version = document.version;
  const lines = selection.end.line - selection.start.line + (selection.end.character > 0 || selection.isEmpty ? 1 : 0);
  const title = selection.isEmpty ? "codila: infilling at the cursor" : `codila: infilling ${lines} line${lines === 1 ? "" : "s"}`;

  const result = await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title, cancellable: true },
    async (progress, token) => {
      let done = 0; // percent reported so far
      const decode = deps.live.begin(connection, document.uri, "infill", {
        draft: (draft) => progress.report({ message: infillMessage(draft) }),
        progress: (value) => {
          if (value.percentage === undefined || value.percentage <= done) return;
          progress.report({ increment: value.percentage - done, message: value.message });
          done = value.percentage;
        },
      });
      try {
        return await connection.request<InfillResult | null>(INFILL_METHOD, {
          textDocument: { uri: protocolUri(document.uri) },
          range: {
            start: { line: selection.start.line, character: selection.start.character },
            end: { line: selection.end.line, character: selection.end.character },
          },
          workDoneToken: decode.progressToken, // used by a server that reports infill progress
        }, token);
      } catch (error) {
        if (!token.isCancellationRequested && !isQuiet(error)) deps.report(error);
        return null;
      } finally {
        decode.end();
      }
    },
  );
  if (!result) return false;
  if (document.version !== version) {
    void vscode.window.showWarningMessage("codila: the document changed while decoding; the infill was not applied.");
    return false;
  }
  const r = result.range;
  const edit = new vscode.WorkspaceEdit();
  edit.replace(document.uri, new vscode.Range(r.start.line, r.start.character, r.end.line, r.end.character), result.text);
  return vscode.workspace.applyEdit(edit);
}
