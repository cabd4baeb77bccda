-- codila-lsp's life in Neovim: starting it (or saying once, without breaking anything, that it is
-- missing), its settings, its messages (each error said once, the server's log kept for
-- `:Codila log`), model loading (`$/progress`), pausing suggestions while the models cannot be
-- loaded, and restarting it with backoff when it exits on its own.

local M = {}

local api = vim.api
local config = require("codila.config")
local status = require("codila.status")
local util = require("codila.util")

local INTERNAL_ERROR = -32603
local MAX_LOGS = 2000

M.blocked = nil -- why suggestions are paused (the models cannot be loaded), until the configuration changes
M.logs = {} -- the server's window/logMessage and window/showMessage lines, oldest first (`:Codila log`)
M.restart_delay_ms = nil -- the delay before the restart scheduled last (for the status and the tests)

local wanted = {} -- buffers codila started the server for: started again after a crash
local stopping = {} -- client ids stopped on purpose: [id] = "stop" | "restart"
local loads = {} -- progress tokens of model loads under way
local crashes = { count = 0, since = nil, timer = nil }
local exiting = false

local FIX_MODELS = "Fix: give model folders, require('codila').setup({ settings = { dlm = '/path/to/dlm', "
  .. "ar = '/path/to/ar' } }) (or configure{...}), or install the default model where codila-lsp runs "
  .. "(pip install 'codila[model]'), then :Codila restart. Suggestions are paused until the configuration changes."

local function completion()
  return require("codila.completion")
end

function M.client(bufnr)
  return vim.lsp.get_clients({ bufnr = bufnr, name = "codila" })[1]
end

function M.clients()
  return vim.lsp.get_clients({ name = "codila" })
end

--- The server executable's full path, or nil when it cannot be found.
function M.executable()
  local path = vim.fn.exepath(config.options.cmd[1])
  return path ~= "" and path or nil
end

function M.missing_message()
  return ("`%s` not found. Install codila (`pip install -e .` in the codila repository) and put its "
    .. "environment's bin/ on PATH, or give the full path: require('codila').setup({ cmd = "
    .. "{ '/path/to/venv/bin/codila-lsp' } }). :checkhealth codila says more."):format(config.options.cmd[1])
end

--- Whether models are loading now (automatic requests wait for the end).
function M.loading()
  return next(loads) ~= nil
end

function M.blocked_message()
  return ("suggestions are paused: %s\n%s"):format(M.blocked or "", FIX_MODELS)
end

local function log(kind, message)
  M.logs[#M.logs + 1] = ("%s [%s] %s"):format(os.date("%H:%M:%S"), kind, message)
  if #M.logs > MAX_LOGS then
    table.remove(M.logs, 1)
  end
end

local function strip(message)
  return (message:gsub("^codila: ", ""))
end

--- An error for the user: said once (until the configuration changes), kept for :checkhealth.
function M.report(message)
  message = strip(message)
  status.failed(message)
  util.notify_once("error:" .. message, M.blocked and (message .. "\n" .. FIX_MODELS) or message,
    vim.log.levels.ERROR)
end

--- Pauses automatic suggestions until the configuration changes (the models cannot be loaded).
local function block(reason)
  M.blocked = reason
  status.failed(reason)
end

--- A request failed (not cancelled). An internal error is the server failing to load its models
--- (or another failure that the next request would repeat): pause until the configuration changes.
function M.request_failed(err)
  if err.code == INTERNAL_ERROR then
    block(strip(err.message))
  end
  M.report(err.message)
end

-- --- handlers for the server's messages -----------------------------------------------------

local function on_progress(err, params, ctx)
  vim.lsp.handlers["$/progress"](err, params, ctx) -- LspProgress, for the user's progress UI
  local value, token = params.value, params.token
  if type(value) ~= "table" then
    return
  end
  if vim.startswith(tostring(token), completion().TOKEN_PREFIX) then
    completion().on_progress(token, value)
  elseif value.kind == "begin" then -- the server's own progress: loading the models
    loads[token] = true
    status.loading()
  elseif value.kind == "end" and loads[token] then
    loads[token] = nil
    if value.message == "failed" then -- the server says why in a window/showMessage next
      block("the models could not be loaded")
    else
      M.blocked = nil
      status.ready()
      completion().models_ready()
    end
  end
end

local function on_show_message(_, params)
  local message = strip(params.message)
  log(vim.lsp.protocol.MessageType[params.type] or "Message", message)
  if params.type == vim.lsp.protocol.MessageType.Error then
    if M.blocked then
      M.blocked = message
    end
    M.report(message)
  else
    local level = params.type == vim.lsp.protocol.MessageType.Warning and vim.log.levels.WARN or vim.log.levels.INFO
    util.notify_once("message:" .. message, message, level)
  end
  return vim.NIL
end

local function on_log_message(err, params, ctx)
  log(vim.lsp.protocol.MessageType[params.type] or "Log", strip(params.message))
  return vim.lsp.handlers["window/logMessage"](err, params, ctx) -- and to lsp.log, as usual
end

local handlers = {
  ["codila/draft"] = function(...)
    return completion().on_draft(...)
  end,
  ["$/progress"] = on_progress,
  ["window/showMessage"] = on_show_message,
  ["window/logMessage"] = on_log_message,
}

-- --- starting, stopping, restarting ---------------------------------------------------------

local on_exit

function M.start(bufnr)
  wanted[bufnr] = true
  if not M.executable() then
    local message = M.missing_message()
    status.failed(message)
    util.notify_once("missing:" .. config.options.cmd[1], message, vim.log.levels.ERROR)
    return
  end
  local capabilities = vim.lsp.protocol.make_client_capabilities()
  -- offer UTF-8 only: LSP columns are then Neovim's byte columns
  capabilities.general = vim.tbl_extend("force", capabilities.general or {}, { positionEncodings = { "utf-8" } })
  local settings = config.options.settings
  local ok, err = pcall(vim.lsp.start, {
    name = "codila",
    cmd = config.options.cmd,
    root_dir = vim.fs.root(bufnr, { "pyproject.toml", "setup.py", ".git" }) or vim.fn.getcwd(),
    init_options = next(settings) and settings or vim.empty_dict(),
    capabilities = capabilities,
    handlers = handlers,
    on_init = function(_, result)
      status.version(result and result.serverInfo and result.serverInfo.version or nil)
      crashes.since = crashes.since or vim.uv.now()
    end,
    on_attach = function(client, b)
      require("codila").attach(client, b)
    end,
    on_exit = on_exit,
  }, { bufnr = bufnr })
  if not ok then
    status.failed(tostring(err))
    util.notify_once("start:" .. tostring(err), "could not start codila-lsp: " .. tostring(err), vim.log.levels.ERROR)
  end
end

--- Starts the server again for the buffers that had it.
local function start_all()
  for bufnr in pairs(wanted) do
    if api.nvim_buf_is_loaded(bufnr) and vim.tbl_contains(config.options.filetypes, vim.bo[bufnr].filetype) then
      M.start(bufnr)
    else
      wanted[bufnr] = nil
    end
  end
end

on_exit = function(code, signal, client_id)
  vim.schedule(function()
    local decoding = completion().client_exited(client_id)
    local why = stopping[client_id]
    stopping[client_id] = nil
    for token in pairs(loads) do
      loads[token] = nil
    end
    if why == "restart" then
      start_all()
      return
    end
    if why or exiting or (code == 0 and signal == 0) or signal == 15 then
      return -- stopped on purpose (by codila, :LspStop, or Neovim exiting)
    end
    local now = vim.uv.now()
    if crashes.since and now - crashes.since > 60000 then
      crashes.count = 0 -- it had been running for a minute: a new streak
    end
    crashes.count = crashes.count + 1
    local what = ("codila-lsp exited (exit code %d, signal %d)%s"):format(code, signal,
      decoding and " while decoding; its draft is cleared" or "")
    status.failed(what)
    local r = config.options.restart
    if crashes.count > r.max_attempts then
      M.restart_delay_ms = nil
      util.notify(("%s. It exited %d times in a row: not restarting it. :Codila restart tries again; :Codila log "
        .. "shows its last messages"):format(what, crashes.count), vim.log.levels.ERROR)
      return
    end
    local delay = math.min(r.delay_ms * 2 ^ (crashes.count - 1), r.max_delay_ms)
    M.restart_delay_ms = delay
    if crashes.count == 1 then -- once per streak
      util.notify(("%s. Restarting it in %.1f s (:Codila log shows its last messages)"):format(what, delay / 1000),
        vim.log.levels.WARN)
    end
    crashes.timer = vim.defer_fn(function()
      crashes.timer = nil
      crashes.since = vim.uv.now()
      start_all()
    end, delay)
  end)
end

--- Stops the running servers and starts them again (also after giving up on a crashing one).
function M.restart()
  M.blocked = nil
  util.forget()
  crashes.count, crashes.since = 0, nil
  if crashes.timer then
    crashes.timer:stop()
    crashes.timer = nil
  end
  local clients = M.clients()
  if #clients == 0 then
    start_all()
    return
  end
  for _, client in ipairs(clients) do
    stopping[client.id] = "restart"
    util.call(client, "stop")
    vim.defer_fn(function() -- a server busy decoding may not exit at once
      if not util.call(client, "is_stopped") then
        util.call(client, "stop", true)
      end
    end, 3000)
  end
end

--- Sends the settings (merged into the current ones) to the running servers; lifts the pause.
function M.configure(settings)
  config.options.settings = vim.tbl_deep_extend("force", config.options.settings, settings or {})
  M.blocked = nil
  util.forget()
  for _, client in ipairs(M.clients()) do
    util.call(client, "notify", "workspace/didChangeConfiguration", { settings = { codila = config.options.settings } })
  end
end

--- Makes `client`'s inline completions hold `n` suggestions (the server setting `suggestions`);
--- returns the function that sets it back.
function M.ask_suggestions(client, n)
  local function send(count)
    local settings = vim.tbl_extend("force", config.options.settings, { suggestions = count })
    util.call(client, "notify", "workspace/didChangeConfiguration", { settings = { codila = settings } })
  end
  send(n)
  return function()
    if not util.call(client, "is_stopped") then
      send(config.options.settings.suggestions or 1)
    end
  end
end

function M.setup()
  api.nvim_create_autocmd("VimLeavePre", {
    group = api.nvim_create_augroup("codila_exit", { clear = true }),
    callback = function()
      exiting = true
    end,
  })
end

return M
