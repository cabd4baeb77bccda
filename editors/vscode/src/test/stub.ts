// Makes `require("vscode")` load the stand-in (./vscode) for the modules under test; any class
// name the stand-in lacks resolves to an empty class, so vscode-languageclient loads too. Import it
// first in every test file.
import Module = require("node:module");

const stub = require.resolve("./vscode");
const mod = Module as unknown as { _resolveFilename: (request: string, ...rest: unknown[]) => string };
const resolve = mod._resolveFilename;
mod._resolveFilename = function (request: string, ...rest: unknown[]) {
  return request === "vscode" ? stub : resolve.call(this, request, ...rest);
};
const real = require("./vscode");
// Namespaces (window, workspace, languages, ...) answer for what the stand-in lacks: `on...`
// events that never fire, `register...` / `create...` calls that return something disposable.
const disposable = () => ({ dispose() {} });
const namespace = (target: Record<string, unknown>) => new Proxy(target, {
  get: (t, name) => {
    if (name in t || typeof name !== "string") return t[name as string];
    if (name.startsWith("on")) return () => disposable();
    if (name.startsWith("register") || name.startsWith("create")) return () => disposable();
    return undefined;
  },
});
const namespaces = new Map<string, unknown>();
require.cache[stub]!.exports = new Proxy(real, {
  get: (target, name) => {
    if (!(name in target)) return typeof name === "string" && /^[A-Z]/.test(name) ? class {} : undefined;
    const value = target[name];
    if (typeof name === "string" && /^[a-z]/.test(name) && value && typeof value === "object" && !Array.isArray(value)) {
      if (!namespaces.has(name)) namespaces.set(name, namespace(value));
      return namespaces.get(name);
    }
    return value;
  },
});
