// The extension's commands. The suggestion commands run VS Code's own inline-suggestion
// actions, which work with any inline completion provider (this one included); the keybindings
// in package.json point at these, so they show up as codila's in the keyboard shortcuts.

import * as vscode from "vscode";

/** codila command -> the VS Code command it runs. */
export const SUGGESTION_COMMANDS: Record<string, string> = {
  "codila.acceptWord": "editor.action.inlineSuggest.acceptNextWord",
  "codila.acceptLine": "editor.action.inlineSuggest.acceptNextLine",
  "codila.nextSuggestion": "editor.action.inlineSuggest.showNext",
  "codila.previousSuggestion": "editor.action.inlineSuggest.showPrevious",
  "codila.trigger": "editor.action.inlineSuggest.trigger",
};

export interface CommandHandlers {
  infill: () => unknown;
  showMenu: () => unknown;
  toggle: () => unknown;
  chooseDecoder: () => unknown;
  showLog: () => unknown;
  restartServer: () => unknown;
}

export function registerCommands(handlers: CommandHandlers): vscode.Disposable[] {
  const own = Object.entries({
    "codila.infill": handlers.infill,
    "codila.showMenu": handlers.showMenu,
    "codila.toggle": handlers.toggle,
    "codila.chooseDecoder": handlers.chooseDecoder,
    "codila.showLog": handlers.showLog,
    "codila.restartServer": handlers.restartServer,
  }).map(([id, run]) => vscode.commands.registerCommand(id, run));
  const builtin = Object.entries(SUGGESTION_COMMANDS).map(([id, target]) =>
    vscode.commands.registerCommand(id, () => vscode.commands.executeCommand(target)));
  return [...own, ...builtin];
}
