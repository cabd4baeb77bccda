-- codila for Neovim: starts codila-lsp for Python buffers and shows its inline completions as ghost
-- text, including the draft the server streams (`codila/draft`) while it decodes: committed text
-- in place, still-masked runs as dimmed placeholders. Keys accept all of a suggestion or its next
-- word / line, cycle, dismiss and trigger; `:Codila` switches suggestions on and off, restarts the
-- server and shows its log; `require("codila").status()` feeds statuslines; `:checkhealth codila`
-- says what is wrong; `:CodilaInfill` infills a selection. See doc/codila.txt.
--
-- Modules: config (options), server (the client's life, messages, restarts), completion (requests,
-- drafts, cycling, enabling, infill), state (per-buffer requests and suggestions), accept (all, word,
-- line), ghost (extmarks, highlights), keys (mappings with fallback), status, health.

local M = {}

local api = vim.api
local accept = require("codila.accept")
local completion = require("codila.completion")
local config = require("codila.config")
local ghost = require("codila.ghost")
local keys = require("codila.keys")
local server = require("codila.server")
local state = require("codila.state")
local status = require("codila.status")
local util = require("codila.util")

local function uses_builtin()
  return config.options.builtin and vim.lsp.inline_completion ~= nil
end

local function buf(bufnr)
  return (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
end

--- Accepts the visible suggestion; false when there is none (so your own mapping can fall back).
function M.accept(bufnr)
  if uses_builtin() then
    return vim.lsp.inline_completion.get({ bufnr = buf(bufnr) })
  end
  return accept.accept(buf(bufnr))
end

--- Accepts the suggestion's next word; false when there is none.
function M.accept_word(bufnr)
  return accept.accept(buf(bufnr), "word")
end

--- Accepts the suggestion's next line; false when there is none.
function M.accept_line(bufnr)
  return accept.accept(buf(bufnr), "line")
end

--- Shows the next suggestion (asking the server for several the first time).
function M.next(bufnr)
  if uses_builtin() then
    vim.lsp.inline_completion.select({ bufnr = buf(bufnr), count = 1 })
    return true
  end
  return completion.cycle(buf(bufnr), 1)
end

--- Shows the previous suggestion.
function M.prev(bufnr)
  if uses_builtin() then
    vim.lsp.inline_completion.select({ bufnr = buf(bufnr), count = -1 })
    return true
  end
  return completion.cycle(buf(bufnr), -1)
end

--- Dismisses the suggestion or draft and cancels its request.
function M.dismiss(bufnr)
  state.dismiss(buf(bufnr))
end

--- Asks for a suggestion now (also with `auto_trigger = false`).
function M.trigger(bufnr)
  return completion.trigger(buf(bufnr))
end

--- Suggestions on, off, or switched, `scope`: nil (everywhere), "buffer" or "filetype" (the
--- current buffer's). Returns the new state.
function M.enable(scope)
  return completion.set_enabled(true, scope)
end

function M.disable(scope)
  return completion.set_enabled(false, scope)
end

function M.toggle(scope)
  return completion.set_enabled(nil, scope)
end

function M.is_enabled(bufnr)
  return completion.enabled(buf(bufnr))
end

--- For statuslines: "" outside codila's buffers, else e.g. "codila: loading…",
--- "codila: decoding 40%", "codila: 8.9 tok/s", "codila: error", "codila: off".
function M.status(bufnr)
  bufnr = buf(bufnr)
  local here = server.client(bufnr) ~= nil or vim.tbl_contains(config.options.filetypes, vim.bo[bufnr].filetype)
  return status.line(here, completion.enabled(bufnr))
end

--- The state behind `status()`: state, percentage, stats (of the last completion), error, version,
--- index / count (of the suggestion shown), enabled, paused (why), restart_delay_ms.
function M.status_info(bufnr)
  local info = status.get()
  info.enabled = completion.enabled(buf(bufnr))
  info.paused = server.blocked
  info.restart_delay_ms = server.restart_delay_ms
  return info
end

--- Sends new server settings (merged into the current ones) to the running servers
--- (workspace/didChangeConfiguration); resumes suggestions paused by a failed model load.
function M.configure(settings)
  server.configure(settings)
end

--- Restarts codila-lsp.
function M.restart()
  server.restart()
end

--- Called when codila-lsp attaches to a buffer.
function M.attach(_, bufnr)
  local actions
  if uses_builtin() then
    vim.lsp.inline_completion.enable(true, { bufnr = bufnr })
    actions = { accept = M.accept, next = M.next, prev = M.prev }
  else
    completion.watch(bufnr)
    actions = {
      accept = M.accept, accept_word = M.accept_word, accept_line = M.accept_line, next = M.next, prev = M.prev,
      dismiss = completion.dismiss_key, trigger = M.trigger,
    }
  end
  keys.map(bufnr, config.options.keys, actions)
end

-- --- commands ---------------------------------------------------------------------------------

local function open_log()
  local lines = #server.logs > 0 and server.logs or { "(no messages from codila-lsp yet)" }
  vim.cmd("botright new")
  local b = api.nvim_get_current_buf()
  vim.bo[b].buftype, vim.bo[b].bufhidden, vim.bo[b].swapfile = "nofile", "wipe", false
  pcall(api.nvim_buf_set_name, b, "codila://log")
  api.nvim_buf_set_lines(b, 0, -1, false, lines)
  vim.bo[b].modifiable = false
  api.nvim_win_set_cursor(0, { #lines, 0 })
end

local function echo_status()
  local info = M.status_info()
  local line = M.status()
  local parts = { line ~= "" and line or ("codila: " .. info.state) }
  if info.stats then
    parts[#parts + 1] = ("last completion: %s tokens, %s tok/s, %s decoder, %s"):format(info.stats.tokens or "?",
      info.stats.tokens_per_s or "?", info.stats.decoder or "?", info.stats.model or "?")
  end
  parts[#parts + 1] = "last error: " .. (info.error or "none")
  api.nvim_echo({ { table.concat(parts, "\n") } }, false, {})
end

local subcommands = {
  enable = M.enable,
  disable = M.disable,
  toggle = M.toggle,
  restart = M.restart,
  log = open_log,
  status = echo_status,
}
local scopes = { buffer = true, filetype = true }

local function command(args)
  local name, scope = args.fargs[1] or "status", args.fargs[2]
  if not subcommands[name] or (scope and not scopes[scope]) then
    util.notify("usage: :Codila enable|disable|toggle [buffer|filetype], :Codila restart|log|status",
      vim.log.levels.ERROR)
    return
  end
  local value = subcommands[name](scope)
  if type(value) == "boolean" then
    api.nvim_echo({ { ("codila: suggestions %s%s"):format(value and "on" or "off",
      scope and (" for this " .. scope) or "") } }, false, {})
  end
end

local function complete(lead, line)
  local words = vim.split(line, "%s+", { trimempty = true })
  local choices = vim.tbl_keys(subcommands)
  if #words >= 2 and (#words > 2 or line:match("%s$")) then
    choices = { "buffer", "filetype" }
  end
  table.sort(choices)
  return vim.tbl_filter(function(c)
    return vim.startswith(c, lead)
  end, choices)
end

function M.setup(opts)
  local options, problems = config.resolve(opts)
  config.options = options
  for _, problem in ipairs(problems) do
    util.notify(problem .. " (ignored; :h codila-config)", vim.log.levels.WARN)
  end
  completion.global_enabled = options.enabled
  ghost.highlights()
  server.setup()
  local group = api.nvim_create_augroup("codila", { clear = true })
  api.nvim_create_autocmd("ColorScheme", {
    group = group,
    callback = function()
      ghost.highlights()
    end,
  })
  api.nvim_create_autocmd("FileType", {
    group = group,
    pattern = options.filetypes,
    callback = function(event)
      -- never raise from here: an error would abort the FileType autocommands after this one
      local ok, err = pcall(server.start, event.buf)
      if not ok then
        util.notify_once("start", "could not start codila-lsp: " .. tostring(err), vim.log.levels.ERROR)
      end
    end,
  })
  for _, bufnr in ipairs(api.nvim_list_bufs()) do -- buffers opened before setup (lazy loading)
    if api.nvim_buf_is_loaded(bufnr) and vim.tbl_contains(options.filetypes, vim.bo[bufnr].filetype) then
      server.start(bufnr)
    end
  end
  api.nvim_create_user_command("Codila", command, {
    nargs = "*",
    complete = complete,
    desc = "codila: enable|disable|toggle [buffer|filetype], restart, log, status",
  })
  api.nvim_create_user_command("CodilaInfill", completion.infill, {
    range = true,
    desc = "codila: infill the visual selection (or lines, or at the cursor)",
  })
end

return M
