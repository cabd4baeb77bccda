// codila for VS Code: wires the parts together.
//   client.ts       starts codila-lsp, restarts it, keeps it in step with the settings
//   provider.ts     inline suggestions (debounce, toggle, trigger mode, carry-over after partial accepts)
//   infill.ts       Infill Selection under a cancellable progress notification
//   live.ts         decodes in flight: drafts on screen, status, progress
//   drafts.ts, placeholders.ts, decorations.ts   which draft to show and how
//   status.ts, menu.ts, notify.ts, commands.ts, settings.ts

import * as vscode from "vscode";
import { CodilaClient } from "./client";
import { registerCommands } from "./commands";
import { infillSelection } from "./infill";
import { LiveDecodes } from "./live";
import { chooseDecoder, showMenu, writeSetting } from "./menu";
import { Notifier } from "./notify";
import { InlineProvider } from "./provider";
import { clientSettings, declaredKeys, serverKeys } from "./settings";
import { Status, createStatusItem, statusView } from "./status";

let codila: CodilaClient | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const setting = (key: string) => vscode.workspace.getConfiguration("codila").get(key);
  const settings = () => clientSettings(setting);

  const { item, show } = createStatusItem();
  const status = new Status(show);
  status.configure(settings().enable, settings().manual);
  const live = new LiveDecodes(status, () => settings().liveDraft);
  let client: CodilaClient | undefined;
  const notify = new Notifier(() => client?.showLog());
  const report = (error: unknown) => {
    const message = error instanceof Error ? error.message : String(error);
    status.failed(message.replace(/^codila:\s*/, ""));
    notify.error(message);
  };
  const connection = () => client?.connection();
  const provider = new InlineProvider({ connection, settings, live, report });
  client = codila = new CodilaClient({
    provider, live, status, notify, serverKeys: serverKeys(declaredKeys(context.extension.packageJSON)),
  });

  context.subscriptions.push(
    item,
    live,
    client,
    ...registerCommands({
      infill: () => infillSelection({ connection, live, report }),
      showMenu: () => showMenu({
        state: () => ({
          enabled: settings().enable,
          manual: settings().manual,
          liveDraft: settings().liveDraft,
          decoder: (setting("decoder") as string | null | undefined) ?? null,
          suggestions: (setting("suggestions") as number | null | undefined) ?? null,
          running: connection() !== undefined,
        }),
        title: () => statusView(status.current).tooltip.split("\n")[0],
        showLog: () => client?.showLog(),
        restart: () => client!.restart(),
      }),
      toggle: () => writeSetting("enable", !settings().enable),
      chooseDecoder: () => chooseDecoder((setting("decoder") as string | null | undefined) ?? null),
      showLog: () => client?.showLog(),
      restartServer: () => client?.restart(),
    }),
    vscode.workspace.onDidChangeConfiguration((event) => client?.configurationChanged(event)),
    vscode.window.onDidChangeVisibleTextEditors(() => live.refresh()),
  );
  await client.start();
}

export async function deactivate(): Promise<void> {
  await codila?.stop();
}
