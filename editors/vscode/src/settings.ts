// The `codila.*` settings: which belong to the extension, which go to the server, and which
// change needs a fresh server. Pure (no vscode import): the callers hand in a getter.

/** Settings the extension itself uses; every other declared `codila.*` key goes to the server. */
export const CLIENT_KEYS = [
  "enable",
  "triggerMode",
  "debounceMs",
  "liveDraft",
  "serverCommand",
  "serverArgs",
  "trace.server",
] as const;

/** Settings that run a program or load files: VS Code ignores an untrusted workspace's values
 *  for them (package.json `capabilities.untrustedWorkspaces.restrictedConfigurations`). */
export const RESTRICTED_KEYS = [
  "serverCommand",
  "serverArgs",
  "dlm",
  "ar",
  "cacheDir",
  "engineUrl",
  "engineTokenFile",
] as const;

/** Client settings that need a new server process when they change. */
const PROCESS_KEYS = ["serverCommand", "serverArgs"];

export type Getter = (key: string) => unknown;

export interface ClientSettings {
  enable: boolean;
  manual: boolean; // triggerMode "manual": only explicit requests
  debounceMs: number;
  liveDraft: boolean;
  command: string;
  args: string[];
}

/** Keys under `codila.` declared in package.json's configuration (one or several sections). */
export function declaredKeys(packageJson: { contributes?: { configuration?: unknown } }): string[] {
  const config = packageJson.contributes?.configuration;
  const sections = (Array.isArray(config) ? config : [config]) as { properties?: Record<string, unknown> }[];
  return sections.flatMap((s) => Object.keys(s?.properties ?? {})).map((name) => name.replace(/^codila\./, ""));
}

export function serverKeys(declared: string[]): string[] {
  const client = new Set<string>(CLIENT_KEYS);
  return declared.filter((key) => !client.has(key));
}

/** The server settings the user set (unset ones are left to the server's defaults). */
export function serverSettings(get: Getter, keys: string[]): Record<string, unknown> {
  const settings: Record<string, unknown> = {};
  for (const key of keys) {
    const value = get(key);
    if (value !== null && value !== undefined) settings[key] = value;
  }
  return settings;
}

export function clientSettings(get: Getter): ClientSettings {
  const debounce = Number(get("debounceMs") ?? 200);
  const args = get("serverArgs");
  return {
    enable: get("enable") !== false,
    manual: get("triggerMode") === "manual",
    debounceMs: Number.isFinite(debounce) && debounce >= 0 ? debounce : 200,
    liveDraft: get("liveDraft") !== false,
    command: String(get("serverCommand") || "codila-lsp"),
    args: Array.isArray(args) ? args.map(String) : [],
  };
}

/** How to bring the server up to date after a settings change. A removed server setting needs a
 *  new process too: didChangeConfiguration can only set values, not return to a default. */
export function applyPlan(
  sent: Record<string, unknown>,
  next: Record<string, unknown>,
  changed: (key: string) => boolean,
): "restart" | "notify" | "none" {
  if (PROCESS_KEYS.some(changed)) return "restart";
  if (Object.keys(sent).some((key) => !(key in next))) return "restart";
  const same = Object.keys(next).length === Object.keys(sent).length
    && Object.keys(next).every((key) => JSON.stringify(next[key]) === JSON.stringify(sent[key]));
  return same ? "none" : "notify";
}
