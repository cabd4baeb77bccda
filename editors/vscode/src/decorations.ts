// Puts a draft's layout (placeholders.ts) on screen with decorations, in every visible editor of
// the document: committed text greyed and italic, placeholder-only lines dimmer still, and the
// text the draft replaces hidden (infill) or dimmed (inline suggestion).

import * as vscode from "vscode";
import { Draft, DraftMode } from "./drafts";
import { DraftLayout, layoutDraft } from "./placeholders";

export class DraftDecorations implements vscode.Disposable {
  private readonly text = vscode.window.createTextEditorDecorationType({
    before: { color: new vscode.ThemeColor("editorGhostText.foreground"), fontStyle: "italic" },
  });
  private readonly masked = vscode.window.createTextEditorDecorationType({
    // opacity on decoration text is only reachable through textDecoration's CSS
    before: { color: new vscode.ThemeColor("editorGhostText.foreground"), textDecoration: "none; opacity: 0.55" },
  });
  private readonly hidden = vscode.window.createTextEditorDecorationType({
    textDecoration: "none; display: none",
  });
  private readonly dimmed = vscode.window.createTextEditorDecorationType({ opacity: "0.45" });

  /** Draws `shown` in the editors of the document (`undefined`: clears them). */
  render(editors: readonly vscode.TextEditor[], shown: { draft: Draft; mode: DraftMode } | undefined): void {
    for (const editor of editors) {
      const layout = shown ? this.layout(editor, shown.draft, shown.mode) : undefined;
      const texts = layout?.texts ?? [];
      const at = (t: (typeof texts)[number]) => {
        const position = new vscode.Position(t.at.line, t.at.character);
        return { range: new vscode.Range(position, position), renderOptions: { before: { contentText: t.text } } };
      };
      editor.setDecorations(this.text, texts.filter((t) => !t.masked).map(at));
      editor.setDecorations(this.masked, texts.filter((t) => t.masked).map(at));
      editor.setDecorations(this.hidden, (layout?.hidden ?? []).map(toRange));
      editor.setDecorations(this.dimmed, (layout?.dimmed ?? []).map(toRange));
    }
  }

  dispose(): void {
    for (const type of [this.text, this.masked, this.hidden, this.dimmed]) type.dispose();
  }

  private layout(editor: vscode.TextEditor, draft: Draft, mode: DraftMode): DraftLayout {
    const document = editor.document;
    const lineLength = (line: number) => (line < document.lineCount ? document.lineAt(line).text.length : 0);
    const tabSize = typeof editor.options.tabSize === "number" ? editor.options.tabSize : 4;
    return layoutDraft(draft.text, draft.range, mode, { lineLength, masks: draft.masks, tabSize });
  }
}

function toRange(r: { start: { line: number; character: number }; end: { line: number; character: number } }): vscode.Range {
  return new vscode.Range(r.start.line, r.start.character, r.end.line, r.end.character);
}
