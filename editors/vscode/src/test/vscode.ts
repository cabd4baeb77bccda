// A stand-in for the `vscode` module, enough for the extension's modules to run under node's
// test runner: the API surface they use, recording what they do (decorations, status bar text,
// messages, commands, progress, edits) so the tests can look. URIs are the real thing
// (vscode-uri is VS Code's own URI implementation). stub.ts makes `require("vscode")` load this.

import { URI } from "vscode-uri";

export const Uri = URI;
export const version = "1.91.0";

export class Position {
  constructor(readonly line: number, readonly character: number) {}
  isEqual(other: Position): boolean {
    return this.line === other.line && this.character === other.character;
  }
}

export class Range {
  readonly start: Position;
  readonly end: Position;
  constructor(a: Position | number, b: Position | number, c?: number, d?: number) {
    this.start = typeof a === "number" ? new Position(a, b as number) : a;
    this.end = typeof a === "number" ? new Position(c!, d!) : (b as Position);
  }
  get isEmpty(): boolean {
    return this.start.isEqual(this.end);
  }
}

export class Selection extends Range {
  constructor(anchor: Position, active: Position) {
    super(anchor, active);
  }
}

export class ThemeColor {
  constructor(readonly id: string) {}
}

export class SnippetString {
  constructor(readonly value: string) {}
}

export class InlineCompletionItem {
  constructor(readonly insertText: string | SnippetString, readonly range?: Range, readonly command?: unknown) {}
}

export class InlineCompletionList {
  constructor(readonly items: InlineCompletionItem[]) {}
}

export class Disposable {
  constructor(private readonly callOnDispose: () => void = () => undefined) {}
  dispose(): void {
    this.callOnDispose();
  }
}

export class EventEmitter<T> {
  private listeners = new Set<(e: T) => void>();
  readonly event = (listener: (e: T) => void) => {
    this.listeners.add(listener);
    return new Disposable(() => this.listeners.delete(listener));
  };
  fire(e: T): void {
    for (const listener of [...this.listeners]) listener(e);
  }
  dispose(): void {
    this.listeners.clear();
  }
}

export class CancellationTokenSource {
  private readonly emitter = new EventEmitter<void>();
  private cancelled = false;
  readonly token: { readonly isCancellationRequested: boolean; onCancellationRequested: EventEmitter<void>["event"] };
  constructor() {
    const state = this;
    this.token = {
      get isCancellationRequested() {
        return state.cancelled;
      },
      onCancellationRequested: this.emitter.event,
    };
  }
  cancel(): void {
    if (!this.cancelled) {
      this.cancelled = true;
      this.emitter.fire();
    }
  }
  dispose(): void {
    this.emitter.dispose();
  }
}

export class WorkspaceEdit {
  readonly edits: { uri: URI; range: Range; text: string }[] = [];
  replace(uri: URI, range: Range, text: string): void {
    this.edits.push({ uri, range, text });
  }
}

export enum StatusBarAlignment { Left = 1, Right = 2 }
export enum ProgressLocation { SourceControl = 1, Window = 10, Notification = 15 }
export enum InlineCompletionTriggerKind { Invoke = 0, Automatic = 1 }
export enum ConfigurationTarget { Global = 1, Workspace = 2, WorkspaceFolder = 3 }
export enum LogLevel { Off = 0, Trace = 1, Debug = 2, Info = 3, Warning = 4, Error = 5 }

/** A text document held in memory; `edit` changes it and bumps its version. */
export class TextDocument {
  version = 1;
  constructor(readonly uri: URI, private text: string, readonly languageId = "python") {}
  getText(): string {
    return this.text;
  }
  get lineCount(): number {
    return this.text.split("\n").length;
  }
  lineAt(line: number): { text: string } {
    return { text: this.text.split("\n")[line].replace(/\r$/, "") };
  }
  offsetAt(position: Position): number {
    const lines = this.text.split("\n");
    let offset = 0;
    for (let i = 0; i < position.line; i++) offset += lines[i].length + 1;
    return offset + Math.min(position.character, lines[position.line]?.length ?? 0);
  }
  positionAt(offset: number): Position {
    const before = this.text.slice(0, offset).split("\n");
    return new Position(before.length - 1, before[before.length - 1].length);
  }
  edit(range: Range, text: string): void {
    this.text = this.text.slice(0, this.offsetAt(range.start)) + text + this.text.slice(this.offsetAt(range.end));
    this.version += 1;
  }
}

interface DecorationType {
  key: string;
  options: any;
  dispose(): void;
}

/** An editor that records the decorations set on it, by decoration type. */
export class TextEditor {
  readonly decorations = new Map<DecorationType, any[]>();
  options = { tabSize: 4 };
  selection: Selection;
  constructor(readonly document: TextDocument, selection?: Selection) {
    this.selection = selection ?? new Selection(new Position(0, 0), new Position(0, 0));
  }
  /** Every distinct state drawn, in order: the texts and how many ranges are hidden. */
  readonly history: { drawn: [number, number, string, boolean][]; hidden: number }[] = [];
  setDecorations(type: DecorationType, items: any[]): void {
    this.decorations.set(type, items);
    const state = { drawn: this.drawn(), hidden: this.styled(/display: none/).length };
    const last = this.history[this.history.length - 1];
    if (!last || JSON.stringify(last) !== JSON.stringify(state)) this.history.push(state);
  }
  /** The decoration texts drawn, as [line, character, text, masked] (masked: the dimmer type). */
  drawn(): [number, number, string, boolean][] {
    const out: [number, number, string, boolean][] = [];
    for (const [type, items] of this.decorations) {
      for (const item of items) {
        const text = item.renderOptions?.before?.contentText;
        if (text !== undefined) {
          out.push([item.range.start.line, item.range.start.character, text, /opacity/.test(type.options.before?.textDecoration ?? "")]);
        }
      }
    }
    return out.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  }
  /** The ranges of decorations of types with a given style (e.g. "display: none"). */
  styled(pattern: RegExp): Range[] {
    const out: Range[] = [];
    for (const [type, items] of this.decorations) {
      if (pattern.test(JSON.stringify(type.options))) out.push(...items.map((i: any) => (i instanceof Range ? i : i.range)));
    }
    return out;
  }
}

// --- recorded state, reset between tests --------------------------------------------------
export const recorded = {
  messages: [] as { kind: "error" | "warning" | "info"; text: string }[],
  executed: [] as { command: string; args: unknown[] }[],
  progress: [] as { title?: string; reports: { message?: string; increment?: number }[]; source: CancellationTokenSource }[],
  edits: [] as WorkspaceEdit[],
  quickPicks: [] as { items: any[]; options: any }[],
  configUpdates: [] as { key: string; value: unknown; target: ConfigurationTarget }[],
  statusItems: [] as { text: string; tooltip: unknown; backgroundColor: unknown }[],
  channels: [] as { name: string; lines: string[] }[],
};
/** Answers for showQuickPick, in order (a function picks from the items). */
export const answers: { quickPick: ((items: any[]) => any)[]; message?: string } = { quickPick: [] };
const settings = new Map<string, unknown>();
const workspaceSettings = new Map<string, unknown>();
const commandHandlers = new Map<string, (...args: any[]) => unknown>();
const configurationChanged = new EventEmitter<{ affectsConfiguration(section: string): boolean }>();
let decorationTypes = 0;

export function resetStub(): void {
  for (const list of Object.values(recorded)) list.length = 0;
  answers.quickPick = [];
  answers.message = undefined;
  settings.clear();
  workspaceSettings.clear();
  commandHandlers.clear();
  window.visibleTextEditors = [];
  window.activeTextEditor = undefined;
  workspace.textDocuments = [];
  providers.length = 0;
}

/** Sets `codila.<key>` (user settings) and fires onDidChangeConfiguration. */
export function setSetting(key: string, value: unknown, where: "user" | "workspace" = "user"): void {
  (where === "user" ? settings : workspaceSettings).set(key, value);
  configurationChanged.fire({ affectsConfiguration: (s: string) => s === "codila" || s === `codila.${key}` });
}

function message(kind: "error" | "warning" | "info") {
  return (text: string) => {
    recorded.messages.push({ kind, text });
    return Promise.resolve(answers.message);
  };
}

const visibleEditorsChanged = new EventEmitter<TextEditor[]>();

export const window = {
  onDidChangeVisibleTextEditors: visibleEditorsChanged.event,
  onDidChangeActiveTextEditor: new EventEmitter<unknown>().event,
  tabGroups: { all: [] as unknown[], onDidChangeTabs: new EventEmitter<unknown>().event, onDidChangeTabGroups: new EventEmitter<unknown>().event },
  visibleTextEditors: [] as TextEditor[],
  activeTextEditor: undefined as TextEditor | undefined,
  createStatusBarItem(id?: string, alignment?: StatusBarAlignment, priority?: number) {
    const item = { id, alignment, priority, text: "", tooltip: "", name: "", command: undefined as unknown, backgroundColor: undefined as unknown, visible: false, show() { this.visible = true; }, hide() { this.visible = false; }, dispose() {} };
    recorded.statusItems.push(item);
    return item;
  },
  createTextEditorDecorationType(options: any): DecorationType {
    return { key: `type-${++decorationTypes}`, options, dispose() {} };
  },
  createOutputChannel(name: string) {
    const lines: string[] = [];
    recorded.channels.push({ name, lines });
    return { name, lines, append: (v: string) => lines.push(v), appendLine: (v: string) => lines.push(v), replace() {}, clear() {}, show() {}, hide() {}, dispose() {}, error: (v: string) => lines.push(v), warn: (v: string) => lines.push(v), info: (v: string) => lines.push(v), debug() {}, trace() {}, logLevel: LogLevel.Info, onDidChangeLogLevel: new EventEmitter<LogLevel>().event };
  },
  showErrorMessage: message("error"),
  showWarningMessage: message("warning"),
  showInformationMessage: message("info"),
  async showQuickPick(items: any[], options: any) {
    recorded.quickPicks.push({ items, options });
    const answer = answers.quickPick.shift();
    return answer ? answer(items) : undefined;
  },
  async withProgress<R>(options: { title?: string }, task: (progress: any, token: any) => Promise<R>): Promise<R> {
    const entry = { title: options.title, reports: [] as { message?: string; increment?: number }[], source: new CancellationTokenSource() };
    recorded.progress.push(entry);
    return task({ report: (value: { message?: string; increment?: number }) => entry.reports.push(value) }, entry.source.token);
  },
};

const documentOpened = new EventEmitter<TextDocument>();
const noEvent = new EventEmitter<unknown>().event;

export const workspace = {
  textDocuments: [] as TextDocument[],
  notebookDocuments: [] as unknown[],
  workspaceFolders: undefined as unknown,
  onDidOpenTextDocument: documentOpened.event,
  onDidCloseTextDocument: noEvent,
  onDidChangeTextDocument: noEvent,
  onDidSaveTextDocument: noEvent,
  onWillSaveTextDocument: noEvent,
  onDidChangeWorkspaceFolders: noEvent,
  createFileSystemWatcher: () => ({ onDidCreate: noEvent, onDidChange: noEvent, onDidDelete: noEvent, dispose() {} }),
  /** Opens a document (as VS Code does when an editor shows it). */
  open(document: TextDocument): void {
    this.textDocuments.push(document);
    documentOpened.fire(document);
  },
  getConfiguration(section: string) {
    const name = (key: string) => (section ? `${section}.${key}` : key).replace(/^codila\./, "");
    return {
      get: (key: string, fallback?: unknown) => workspaceSettings.get(name(key)) ?? settings.get(name(key)) ?? fallback,
      inspect: (key: string) => ({ key, globalValue: settings.get(name(key)), workspaceValue: workspaceSettings.get(name(key)) }),
      update: async (key: string, value: unknown, target: ConfigurationTarget) => {
        recorded.configUpdates.push({ key, value, target });
        setSetting(name(key), value, target === ConfigurationTarget.Global ? "user" : "workspace");
      },
    };
  },
  onDidChangeConfiguration: configurationChanged.event,
  async applyEdit(edit: WorkspaceEdit): Promise<boolean> {
    recorded.edits.push(edit);
    for (const e of edit.edits) {
      const editor = window.visibleTextEditors.find((ed) => ed.document.uri.toString() === e.uri.toString());
      editor?.document.edit(e.range, e.text);
    }
    return true;
  },
};

export const commands = {
  registerCommand(id: string, handler: (...args: any[]) => unknown) {
    if (commandHandlers.has(id)) throw new Error(`command '${id}' already exists`);
    commandHandlers.set(id, handler);
    return new Disposable(() => commandHandlers.delete(id));
  },
  async executeCommand(command: string, ...args: unknown[]) {
    recorded.executed.push({ command, args });
    return commandHandlers.get(command)?.(...args);
  },
};

/** Inline completion providers registered (by vscode-languageclient). */
export const providers: { selector: unknown; provider: any }[] = [];

export const languages = {
  match(selector: unknown, document: TextDocument): number {
    const filters = (Array.isArray(selector) ? selector : [selector]) as ({ language?: string } | string)[];
    return filters.some((f) => (typeof f === "string" ? f : f.language) === document.languageId) ? 10 : 0;
  },
  registerInlineCompletionItemProvider(selector: unknown, provider: any) {
    const entry = { selector, provider };
    providers.push(entry);
    return new Disposable(() => providers.splice(providers.indexOf(entry), 1));
  },
  createDiagnosticCollection: () => ({ set() {}, delete() {}, clear() {}, forEach() {}, dispose() {} }),
};

export const env = { appName: "vscode-stub", language: "en", openExternal: async () => false };
