// The quick pick behind the status bar item: toggle suggestions, choose the decoder, the number
// of suggestions and the live draft, show the log, restart the server, open the settings.

import * as vscode from "vscode";

export const DECODERS: { value: string | null; label: string; detail: string }[] = [
  { value: null, label: "server default", detail: "auto, unless codila-lsp was started with other flags" },
  { value: "auto", label: "auto", detail: "codila for a DLM + AR pair, fim for an AR alone, dlm for a DLM alone" },
  { value: "codila", label: "codila", detail: "diffusion + local autoregression" },
  { value: "dlm", label: "dlm", detail: "plain diffusion baseline" },
  { value: "dream", label: "dream", detail: "Dream's own sampler" },
  { value: "fim", label: "fim", detail: "left-to-right fill-in-the-middle by the AR model" },
];

export interface MenuState {
  enabled: boolean;
  manual: boolean;
  liveDraft: boolean;
  decoder: string | null;
  suggestions: number | null;
  running: boolean;
}

export type MenuAction = "toggle" | "trigger-mode" | "decoder" | "suggestions" | "live-draft" | "log" | "restart" | "settings";

export interface MenuItem extends vscode.QuickPickItem {
  action: MenuAction;
}

export function menuItems(s: MenuState): MenuItem[] {
  return [
    s.enabled
      ? { action: "toggle", label: "$(circle-slash) Turn inline suggestions off" }
      : { action: "toggle", label: "$(check) Turn inline suggestions on" },
    {
      action: "trigger-mode",
      label: s.manual ? "$(zap) Suggest while typing" : "$(keyboard) Suggest only on request (Alt+\\)",
      description: s.manual ? "now: on request" : "now: while typing",
    },
    { action: "decoder", label: "$(symbol-misc) Choose decoder…", description: `now: ${s.decoder ?? "server default"}` },
    { action: "suggestions", label: "$(list-ordered) Suggestions per request…", description: `now: ${s.suggestions ?? "1 (server default)"}` },
    {
      action: "live-draft",
      label: s.liveDraft ? "$(eye-closed) Hide the live draft" : "$(eye) Show the live draft",
      description: "committed blocks in place, masked regions as ·",
    },
    { action: "log", label: "$(output) Show log" },
    { action: "restart", label: s.running ? "$(debug-restart) Restart server" : "$(play) Start server" },
    { action: "settings", label: "$(gear) Open settings" },
  ];
}

/** Writes a setting where it is set now: the workspace if it sets it, else the user settings. */
export async function writeSetting(key: string, value: unknown): Promise<void> {
  const config = vscode.workspace.getConfiguration("codila");
  const where = config.inspect(key);
  const target = where?.workspaceFolderValue !== undefined ? vscode.ConfigurationTarget.WorkspaceFolder
    : where?.workspaceValue !== undefined ? vscode.ConfigurationTarget.Workspace
    : vscode.ConfigurationTarget.Global;
  await config.update(key, value, target);
}

export async function chooseDecoder(current: string | null): Promise<void> {
  const items = DECODERS.map((d) => ({ ...d, description: d.value === current ? "(current)" : undefined }));
  const pick = await vscode.window.showQuickPick(items, { title: "codila: decoder", placeHolder: `now: ${current ?? "server default"}` });
  if (pick && pick.value !== current) await writeSetting("decoder", pick.value);
}

export async function chooseSuggestions(current: number | null): Promise<void> {
  const items = [1, 2, 3, 4, 5].map((n) => ({
    label: String(n),
    description: (n === (current ?? 1) ? "(current) " : "") + (n === 1 ? "one decode per request" : `${n} decodes per request, different seeds`),
    n,
  }));
  const pick = await vscode.window.showQuickPick(items, { title: "codila: suggestions per request (cycle with Alt+] / Alt+[)" });
  if (pick && pick.n !== (current ?? 1)) await writeSetting("suggestions", pick.n === 1 && current === null ? null : pick.n);
}

export interface MenuDeps {
  state: () => MenuState;
  title: () => string;
  showLog: () => void;
  restart: () => Promise<void>;
}

export async function showMenu(deps: MenuDeps): Promise<void> {
  const state = deps.state();
  const pick = await vscode.window.showQuickPick(menuItems(state), { title: "codila", placeHolder: deps.title() });
  if (!pick) return;
  switch (pick.action) {
    case "toggle":
      return writeSetting("enable", !state.enabled);
    case "trigger-mode":
      return writeSetting("triggerMode", state.manual ? "automatic" : "manual");
    case "decoder":
      return chooseDecoder(state.decoder);
    case "suggestions":
      return chooseSuggestions(state.suggestions);
    case "live-draft":
      return writeSetting("liveDraft", !state.liveDraft);
    case "log":
      return deps.showLog();
    case "restart":
      return deps.restart();
    case "settings":
      await vscode.commands.executeCommand("workbench.action.openSettings", "@ext:codila.codila");
  }
}
