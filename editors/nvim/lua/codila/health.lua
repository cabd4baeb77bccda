-- :checkhealth codila — Neovim, the server (found, version, running), the models (configured,
-- prepared, loaded), device and dtype, keys, and the last error.

local M = {}

local health = vim.health

local function run(cmd, timeout_ms)
  local ok, job = pcall(vim.system, cmd, { text = true })
  if not ok then
    return nil, tostring(job)
  end
  local done = job:wait(timeout_ms)
  if done.code ~= 0 then
    local said = vim.trim((done.stderr or "") .. (done.stdout or ""))
    return nil, said ~= "" and said or ("exit code %s"):format(done.code)
  end
  return vim.trim(done.stdout or "")
end

function M.check()
  local config = require("codila.config")
  local server = require("codila.server")
  local codila = require("codila")
  local options = config.options
  local info = codila.status_info()

  health.start("codila: Neovim")
  if vim.fn.has("nvim-0.10") == 1 then
    health.ok("Neovim " .. tostring(vim.version()))
  else
    health.error("Neovim " .. tostring(vim.version()) .. ": codila needs 0.10 or newer")
  end
  if vim.fn.exists(":CodilaInfill") ~= 2 then
    health.warn("require('codila').setup({...}) has not run: the plugin is loaded but not set up")
  end

  health.start("codila: server")
  local exe = server.executable()
  if not exe then
    health.error(server.missing_message())
  else
    health.ok(("`%s` found: %s"):format(options.cmd[1], exe))
    local version, err = run(vim.list_extend(vim.deepcopy(options.cmd), { "--version" }), 15000)
    if version then
      health.ok("version: " .. version)
    else
      health.error("`" .. table.concat(options.cmd, " ") .. " --version` failed: " .. tostring(err))
    end
  end
  local clients = server.clients()
  if #clients == 0 then
    health.info("not running (it starts for " .. table.concat(options.filetypes, ", ") .. " buffers)")
  end
  for _, client in ipairs(clients) do
    local si = client.server_info or {}
    health.ok(("running: client %d, %s %s, root %s, %d buffer(s)"):format(client.id, si.name or "codila-lsp",
      si.version or "", client.root_dir or client.config.root_dir or "?", vim.tbl_count(client.attached_buffers or {})))
  end
  health.info("state: " .. info.state .. (info.enabled and "" or " (suggestions off here)"))

  health.start("codila: models")
  local settings = options.settings
  if settings.dlm or settings.ar then
    for _, key in ipairs({ "dlm", "ar" }) do
      local folder = settings[key]
      if folder then
        if vim.fn.isdirectory(vim.fn.expand(folder)) == 1 then
          health.ok(("%s: %s"):format(key, folder))
        else
          health.error(("%s: %s is not a folder"):format(key, folder), { "settings." .. key .. " must be a model folder" })
        end
      end
    end
  else
    local cli = exe and vim.fs.joinpath(vim.fs.dirname(exe), "codila")
    if cli and vim.fn.executable(cli) == 1 then
      local args = { cli, "models", "list" }
      if settings.cacheDir then
        vim.list_extend(args, { "--cache-dir", settings.cacheDir })
      end
      local out, err = run(args, 30000)
      if not out then
        health.warn("`codila models list` failed: " .. tostring(err))
      else
        for _, line in ipairs(vim.split(out, "\n", { trimempty = true })) do
          local name, state, path = unpack(vim.split(line, "\t"))
          if state == "prepared" then
            health.ok(("default model %s: prepared (%s)"):format(name, path or ""))
          else
            health.warn(("default model %s: %s"):format(name, state or line),
              { "codila models prepare (or pip install 'codila[model]')" })
          end
        end
      end
    else
      health.info("default model: `codila models list` (next to codila-lsp) says whether it is prepared")
    end
  end
  if info.paused then
    health.error("suggestions paused: " .. info.paused, { "fix the model settings, then :Codila restart" })
  elseif info.stats and info.stats.model then
    health.ok(("loaded: %s (last completion: %s decoder, %s tok/s)"):format(info.stats.model,
      info.stats.decoder or "?", info.stats.tokens_per_s or "?"))
  elseif info.state == "ready" then
    health.ok("loaded")
  end
  local stats = info.stats or {}
  health.info(("device: %s%s"):format(settings.device or "auto",
    stats.device and (" (in use: " .. stats.device .. ")") or " (settings.device)"))
  health.info(("dtype: %s%s"):format(settings.dtype or "auto",
    stats.dtype and (" (in use: " .. stats.dtype .. ")") or " (settings.dtype)"))

  health.start("codila: keys and options")
  local mapped = {}
  for name, lhs in pairs(options.keys) do
    mapped[#mapped + 1] = ("%s=%s"):format(name, lhs or "off")
  end
  table.sort(mapped)
  health.info("keys: " .. table.concat(mapped, ", "))
  health.info(("auto_trigger=%s, debounce_ms=%d, request_timeout_ms=%d, live_draft=%s, builtin=%s"):format(
    tostring(options.auto_trigger), options.debounce_ms, options.request_timeout_ms, tostring(options.live_draft),
    tostring(options.builtin)))

  health.start("codila: last error")
  if info.error then
    health.warn(info.error)
  else
    health.ok("none")
  end
end

return M
