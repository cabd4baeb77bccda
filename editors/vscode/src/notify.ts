// Messages to the user, each said once: a server that cannot load its models answers every
// request with the same error, and a notification per typing pause helps nobody. The set of
// messages already shown is cleared when the settings change or the server restarts.

import * as vscode from "vscode";

const SHOW_LOG = "Show Log";

/** The text of a message without the server's `codila: ` prefix, so the same problem reported
 *  as a `window/showMessage` and as an error response counts once. */
export function messageText(message: string): string {
  return message.replace(/^codila:\s*/, "").trim();
}

export class Notifier {
  private readonly seen = new Set<string>();

  constructor(private readonly showLog: () => void) {}

  error(message: string): void {
    this.once(message, (text, ...items) => vscode.window.showErrorMessage(text, ...items));
  }

  warn(message: string): void {
    this.once(message, (text, ...items) => vscode.window.showWarningMessage(text, ...items));
  }

  info(message: string): void {
    this.once(message, (text, ...items) => vscode.window.showInformationMessage(text, ...items));
  }

  /** Settings changed or the server restarted: problems may be new again. */
  reset(): void {
    this.seen.clear();
  }

  private once(message: string, show: (text: string, ...items: string[]) => Thenable<string | undefined>): void {
    const text = messageText(message);
    if (this.seen.has(text)) return;
    this.seen.add(text);
    void Promise.resolve(show(`codila: ${text}`, SHOW_LOG)).then((choice) => {
      if (choice === SHOW_LOG) this.showLog();
    });
  }
}
