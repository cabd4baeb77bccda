// The status bar item: starting / loading / decoding / ready / error, with the last decode's
// speed from the final draft's statistics. `statusView` is pure; `Status` keeps the state and
// hands each new view to the item.

import * as vscode from "vscode";
import { DecodeStats } from "./drafts";

export type Phase = "starting" | "loading" | "ready" | "error" | "stopped";

export interface StatusState {
  phase: Phase;
  enabled: boolean;
  manual: boolean; // triggerMode "manual"
  decoding: number; // requests in flight
  percent?: number; // of the newest decode, from $/progress
  detail?: string; // what is loading, or what went wrong
  last?: DecodeStats;
}

export interface StatusView {
  text: string;
  tooltip: string;
  kind: "normal" | "warning" | "error";
}

export const MENU_COMMAND = "codila.showMenu";

export function rate(stats: DecodeStats | undefined): string | undefined {
  const perSecond = stats?.tokens_per_s;
  if (perSecond === undefined || !Number.isFinite(perSecond)) return undefined;
  return `${perSecond >= 10 ? Math.round(perSecond) : perSecond.toFixed(1)} tok/s`;
}

export function describeStats(stats: DecodeStats): string {
  const parts: string[] = [];
  const tokens = stats.text_tokens ?? stats.tokens;
  if (tokens !== undefined) parts.push(`${tokens} tokens`);
  if (stats.wall_s !== undefined) parts.push(`in ${stats.wall_s.toFixed(2)} s`);
  const speed = rate(stats);
  if (speed) parts.push(`(${speed})`);
  if (stats.first_commit_s !== undefined && stats.first_commit_s !== null) {
    parts.push(`first block after ${stats.first_commit_s.toFixed(2)} s`);
  }
  const by = [stats.decoder && `${stats.decoder} decoder`, stats.model].filter(Boolean).join(", ");
  return parts.join(" ") + (by ? `; ${by}` : "");
}

export function statusView(s: StatusState): StatusView {
  const click = "Click for the codila menu.";
  const last = s.last ? `Last decode: ${describeStats(s.last)}` : undefined;
  const lines = (...xs: (string | undefined)[]) => xs.filter(Boolean).join("\n");
  if (s.phase === "error") {
    return { text: "$(error) codila", tooltip: lines(`codila: ${s.detail ?? "error"}`, click), kind: "error" };
  }
  if (s.phase === "stopped") {
    return { text: "$(debug-disconnect) codila", tooltip: lines(`codila-lsp is not running${s.detail ? `: ${s.detail}` : ""}`, click), kind: "warning" };
  }
  if (s.phase === "starting") {
    return { text: "$(loading~spin) codila", tooltip: lines("Starting codila-lsp…", click), kind: "normal" };
  }
  if (s.phase === "loading") {
    return { text: "$(loading~spin) codila: loading", tooltip: lines(`Loading models${s.detail ? `: ${s.detail}` : "…"}`, click), kind: "normal" };
  }
  if (s.decoding > 0) {
    const done = s.percent !== undefined ? ` ${s.percent}%` : "";
    return { text: `$(loading~spin) codila${done}`, tooltip: lines("Decoding…", last, click), kind: "normal" };
  }
  if (!s.enabled) {
    return { text: "$(circle-slash) codila", tooltip: lines("Inline suggestions are off (Infill Selection still works).", last, click), kind: "normal" };
  }
  const speed = rate(s.last);
  const mode = s.manual ? "Ready: suggestions on request (Alt+\\)." : "Ready: suggestions while you type.";
  return { text: `$(${s.manual ? "chevron-right" : "check"}) codila${speed ? ` ${speed}` : ""}`, tooltip: lines(mode, last, click), kind: "normal" };
}

/** The extension's state as the status bar shows it. */
export class Status {
  private state: StatusState = { phase: "starting", enabled: true, manual: false, decoding: 0 };

  constructor(private readonly show: (view: StatusView) => void) {
    this.update({});
  }

  get current(): Readonly<StatusState> {
    return this.state;
  }

  starting(): void {
    this.update({ phase: "starting", detail: undefined, decoding: 0, percent: undefined });
  }

  loading(detail?: string): void {
    this.update({ phase: "loading", detail });
  }

  ready(): void {
    this.update({ phase: "ready", detail: undefined });
  }

  failed(detail: string): void {
    this.update({ phase: "error", detail });
  }

  stopped(detail?: string): void {
    this.update({ phase: "stopped", detail, decoding: 0, percent: undefined });
  }

  configure(enabled: boolean, manual: boolean): void {
    this.update({ enabled, manual });
  }

  /** A decode starts; the returned call ends it (once). */
  decoding(): () => void {
    this.update({ decoding: this.state.decoding + 1, percent: undefined });
    let open = true;
    return () => {
      if (!open) return;
      open = false;
      this.update({ decoding: Math.max(0, this.state.decoding - 1), percent: undefined });
    };
  }

  progress(percent: number): void {
    if (this.state.decoding > 0) this.update({ percent: Math.max(0, Math.min(100, Math.round(percent))) });
  }

  /** A decode finished with these statistics: the server works, whatever failed before. */
  finished(stats: DecodeStats): void {
    this.update({ last: stats, ...(this.state.phase === "error" ? { phase: "ready", detail: undefined } : {}) });
  }

  private update(change: Partial<StatusState>): void {
    this.state = { ...this.state, ...change };
    this.show(statusView(this.state));
  }
}

/** The status bar item itself; a click opens the menu. */
export function createStatusItem(): { item: vscode.StatusBarItem; show: (view: StatusView) => void } {
  const item = vscode.window.createStatusBarItem("codila.status", vscode.StatusBarAlignment.Right, 100);
  item.name = "codila";
  item.command = MENU_COMMAND;
  const show = (view: StatusView) => {
    item.text = view.text;
    item.tooltip = view.tooltip;
    item.backgroundColor =
      view.kind === "error" ? new vscode.ThemeColor("statusBarItem.errorBackground")
      : view.kind === "warning" ? new vscode.ThemeColor("statusBarItem.warningBackground")
      : undefined;
    item.show();
  };
  return { item, show };
}
