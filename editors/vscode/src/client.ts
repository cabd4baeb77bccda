// The language client: starts codila-lsp (after checking the program exists), restarts it with
// backoff when it dies, keeps it in step with the settings, and routes what it sends: drafts to
// the live view, progress and messages to the status bar.

import * as fs from "node:fs";
import * as path from "node:path";
import * as vscode from "vscode";
import {
  CloseAction,
  ErrorAction,
  ErrorHandler,
  LanguageClient,
  LanguageClientOptions,
  MessageType,
  ShowMessageNotification,
  State,
  WorkDoneProgress,
} from "vscode-languageclient/node";
import { Draft } from "./drafts";
import { Connection, LiveDecodes, ProgressValue } from "./live";
import { Notifier } from "./notify";
import { InlineProvider } from "./provider";
import { applyPlan, clientSettings, serverSettings } from "./settings";
import { Status } from "./status";

const OWN_TOKEN = "codila-vscode-"; // prefix of the work-done tokens this extension makes
const MAX_RESTARTS = 4; // within RESTART_WINDOW_MS, then it stays down until restarted by hand
const RESTART_WINDOW_MS = 3 * 60 * 1000;

/** The program `command` runs, or undefined if there is none: an absolute or relative path must
 *  be an executable file, a bare name is looked up on PATH. */
export function findProgram(
  command: string,
  searchPath: string | undefined,
  isExecutable: (file: string) => boolean = executable,
): string | undefined {
  if (!command) return undefined;
  if (command.includes("/") || command.includes(path.sep)) return isExecutable(command) ? command : undefined;
  for (const dir of (searchPath ?? "").split(path.delimiter).filter(Boolean)) {
    const file = path.join(dir, command);
    if (isExecutable(file)) return file;
  }
  return undefined;
}

function executable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

export function notFoundMessage(command: string): string {
  return `cannot find the language server \`${command}\`. Install codila (\`pip install -e .\` in the codila ` +
    "repository, in a virtual environment) and set `codila.serverCommand` to the full path of its `codila-lsp` " +
    "(e.g. /path/to/venv/bin/codila-lsp), or put that folder on PATH.";
}

/** Restarts a crashed server up to MAX_RESTARTS times in RESTART_WINDOW_MS, then reports once. */
export class RestartPolicy implements ErrorHandler {
  private readonly restarts: number[] = [];

  constructor(
    private readonly onGiveUp: (message: string) => void,
    private readonly now: () => number = Date.now,
  ) {}

  /** A broken message: carry on the first 3 times, then stop the server and say so once. */
  error(error: Error, _message: unknown, count: number | undefined) {
    if (count !== undefined && count <= 3) return { action: ErrorAction.Continue, handled: true };
    this.onGiveUp(`the connection to codila-lsp failed (${error.message}); it was stopped. See the log, then use Restart Server.`);
    return { action: ErrorAction.Shutdown, handled: true };
  }

  closed() {
    const now = this.now();
    while (this.restarts.length > 0 && now - this.restarts[0] > RESTART_WINDOW_MS) this.restarts.shift();
    if (this.restarts.length >= MAX_RESTARTS) {
      const message = `codila-lsp stopped ${MAX_RESTARTS + 1} times in 3 minutes and is not restarted; see the log, then use Restart Server.`;
      this.onGiveUp(message);
      return { action: CloseAction.DoNotRestart, handled: true };
    }
    this.restarts.push(now);
    return { action: CloseAction.Restart, handled: true };
  }
}

/** The trace channel vscode-languageclient writes `codila.trace.server` to. The client traces
 *  only into a channel whose log level is Trace, so this one's level follows the setting. */
class TraceChannel {
  private readonly channel = vscode.window.createOutputChannel("codila trace");
  private readonly levelChanged = new vscode.EventEmitter<vscode.LogLevel>();
  readonly onDidChangeLogLevel = this.levelChanged.event;
  readonly name = "codila trace";
  logLevel: vscode.LogLevel = vscode.LogLevel.Info;

  follow(setting: unknown): void {
    const level = setting === "messages" || setting === "verbose" ? vscode.LogLevel.Trace : vscode.LogLevel.Info;
    if (level !== this.logLevel) {
      this.logLevel = level;
      this.levelChanged.fire(level);
    }
  }

  asLogChannel(): vscode.LogOutputChannel {
    const trace = this;
    const line = (message: string | Error) => this.channel.appendLine(String(message));
    return {
      name: this.name,
      get logLevel() {
        return trace.logLevel;
      },
      onDidChangeLogLevel: this.onDidChangeLogLevel,
      trace: line,
      debug: line,
      info: line,
      warn: line,
      error: line,
      append: (value: string) => this.channel.append(value),
      appendLine: line,
      replace: (value: string) => this.channel.replace(value),
      clear: () => this.channel.clear(),
      show: (preserveFocus?: boolean) => this.channel.show(preserveFocus),
      hide: () => this.channel.hide(),
      dispose: () => undefined, // disposed with the extension, not with each client
    } as vscode.LogOutputChannel;
  }

  dispose(): void {
    this.channel.dispose();
    this.levelChanged.dispose();
  }
}

export interface ClientHooks {
  provider: InlineProvider;
  live: LiveDecodes;
  status: Status;
  notify: Notifier;
  serverKeys: string[];
}

export class CodilaClient implements vscode.Disposable {
  readonly log = vscode.window.createOutputChannel("codila", { log: true });
  private readonly trace = new TraceChannel();
  private client: LanguageClient | undefined;
  private sent: Record<string, unknown> = {};
  private generation = 0; // bumps on every start, so a stale client's events are ignored

  constructor(private readonly hooks: ClientHooks) {
    this.trace.follow(this.setting("trace.server"));
  }

  /** The running server, or undefined. */
  connection(): Connection | undefined {
    const client = this.client;
    if (!client || client.state !== State.Running) return undefined;
    return {
      request: <R>(method: string, params: object, token: vscode.CancellationToken) =>
        client.sendRequest(method, params, token) as Promise<R>,
      onProgress: (token: string, handler: (value: ProgressValue) => void) =>
        client.onProgress(WorkDoneProgress.type, token, handler as (value: unknown) => void),
    };
  }

  showLog(): void {
    this.log.show(true);
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  async start(): Promise<void> {
    const { status, live, notify, provider } = this.hooks;
    const generation = ++this.generation;
    const { command, args } = clientSettings((key) => this.setting(key));
    notify.reset();
    provider.forget();
    live.reset();
    status.starting();
    this.sent = serverSettings((key) => this.setting(key), this.hooks.serverKeys);
    if (!findProgram(command, process.env.PATH)) {
      const message = notFoundMessage(command);
      this.log.error(message);
      status.failed(`\`${command}\` not found`);
      notify.error(message);
      return;
    }
    const options: LanguageClientOptions = {
      documentSelector: [{ language: "python" }],
      initializationOptions: this.sent,
      outputChannel: this.log,
      traceOutputChannel: this.trace.asLogChannel(),
      errorHandler: new RestartPolicy((message) => {
        status.stopped(message);
        notify.error(message);
      }),
      middleware: {
        provideInlineCompletionItems: (document, position, context, token) => provider.provide(document, position, context, token),
        handleWorkDoneProgress: (token, params, next) => {
          if (String(token).startsWith(OWN_TOKEN)) return next(token, params);
          this.serverProgress(params as ProgressValue);
          if (params.kind === "end") next(token, params); // lets the client's own progress part clean up
        },
      },
    };
    const client = new LanguageClient("codila", "codila", { command, args }, options);
    this.client = client;
    client.onNotification("codila/draft", (draft: Draft) => live.receive(draft));
    client.onNotification(ShowMessageNotification.type, ({ type, message }) => {
      if (type === MessageType.Error) {
        status.failed(message.replace(/^codila:\s*/, ""));
        notify.error(message);
      } else if (type === MessageType.Warning) notify.warn(message);
      else notify.info(message);
    });
    client.onDidChangeState(({ newState }) => {
      if (generation !== this.generation) return;
      if (newState === State.Running) status.ready();
      else {
        live.reset(); // a server that died mid-decode leaves no draft behind
        if (newState === State.Starting) status.starting();
        else if (status.current.phase !== "error") status.stopped();
      }
    });
    try {
      await client.start();
    } catch (error) {
      if (generation !== this.generation) return;
      const message = `codila-lsp did not start: ${error instanceof Error ? error.message : String(error)}`;
      status.failed(message);
      notify.error(message);
    }
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.generation++;
    this.hooks.live.reset();
    if (client) {
      try {
        await client.stop(2000);
      } catch {
        // already stopped, or it would not stop: the process goes with the client
      }
    }
  }

  /** Settings changed: update what the client uses, then restart or notify the server. */
  async configurationChanged(event: vscode.ConfigurationChangeEvent): Promise<void> {
    if (!event.affectsConfiguration("codila")) return;
    const { status, live, notify } = this.hooks;
    const client = clientSettings((key) => this.setting(key));
    status.configure(client.enable, client.manual);
    this.trace.follow(this.setting("trace.server"));
    live.refresh();
    const next = serverSettings((key) => this.setting(key), this.hooks.serverKeys);
    const plan = applyPlan(this.sent, next, (key) => event.affectsConfiguration(`codila.${key}`));
    if (plan === "none") return; // e.g. only codila.enable changed
    notify.reset();
    this.hooks.provider.forget();
    if (plan === "restart" || !this.connection()) {
      await this.restart();
    } else {
      this.sent = next;
      await this.client!.sendNotification("workspace/didChangeConfiguration", { settings: { codila: next } });
    }
  }

  dispose(): void {
    void this.stop();
    this.trace.dispose();
    this.log.dispose();
  }

  private setting(key: string): unknown {
    return vscode.workspace.getConfiguration("codila").get(key);
  }

  /** Progress the server started itself: loading the models. */
  private serverProgress(value: ProgressValue): void {
    const { status } = this.hooks;
    if (value.kind === "begin") status.loading(value.message ?? value.title);
    else if (value.kind === "report" && status.current.phase === "loading") status.loading(value.message);
    else if (value.kind === "end") {
      if (/^failed/i.test(value.message ?? "")) {
        if (status.current.phase !== "error") status.failed("loading the models failed (see the log)");
      } else if (status.current.phase === "loading") status.ready();
    }
  }
}
