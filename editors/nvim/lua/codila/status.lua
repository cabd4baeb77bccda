-- What codila is doing, for statuslines (`require("codila").status()`) and `:checkhealth codila`.
-- Fed by the server's `$/progress` (model loading, decoding percentage) and the statistics of each
-- final draft (tokens/s, decoder, model), never by log text. Every change fires the autocommand
-- `User CodilaStatus` and redraws the statuslines.

local M = {}

local S = {
  state = "off", -- off (no server yet) | loading | ready | decoding | error
  percentage = nil, -- of the decode in flight, from $/progress
  stats = nil, -- the last completion's statistics (tokens, tokens_per_s, decoder, model, ...)
  error = nil, -- the last error, kept for :checkhealth until a later one replaces it
  version = nil, -- the server's, from its initialize result
  index = nil, -- the suggestion shown, and how many there are (when there are several)
  count = nil,
}

local pending = false
local function changed()
  if pending then
    return
  end
  pending = true
  vim.schedule(function() -- coalesce bursts (a draft per commit) into one redraw
    pending = false
    pcall(vim.api.nvim_exec_autocmds, "User", { pattern = "CodilaStatus", modeline = false })
    pcall(vim.cmd.redrawstatus)
  end)
end

local function set(state, fields)
  S.state = state
  S.percentage = nil
  for k, v in pairs(fields or {}) do
    S[k] = v
  end
  changed()
end

function M.loading()
  set("loading")
end

function M.ready()
  set("ready")
end

function M.decoding(percentage)
  S.percentage = percentage
  if S.state ~= "decoding" then
    set("decoding", { percentage = percentage })
  else
    changed()
  end
end

--- A decode ended with its statistics (the final draft's `stats`).
function M.finished(stats)
  set("ready", { stats = stats })
end

--- A request ended without statistics (cancelled, superseded, timed out).
function M.idle()
  if S.state == "decoding" then
    set("ready")
  end
end

function M.failed(message)
  set("error", { error = message })
end

function M.suggestion(index, count)
  if S.index ~= index or S.count ~= count then
    S.index, S.count = index, count
    changed()
  end
end

function M.version(version)
  S.version = version
end

--- A copy of the state.
function M.get()
  return vim.deepcopy(S)
end

--- The statusline text: "" where codila does not run (`here` false); `enabled` false shows "off".
function M.line(here, enabled)
  if not here then
    return ""
  end
  if not enabled then
    return "codila: off"
  end
  if S.state == "loading" or S.state == "off" then
    return "codila: loading…"
  elseif S.state == "decoding" then
    return S.percentage and ("codila: decoding %d%%"):format(S.percentage) or "codila: decoding…"
  elseif S.state == "error" then
    return "codila: error"
  end
  local text = "codila: ready"
  if S.stats and S.stats.tokens_per_s then
    text = ("codila: %.1f tok/s"):format(S.stats.tokens_per_s)
  end
  if S.count and S.count > 1 then
    text = ("%s [%d/%d]"):format(text, S.index, S.count)
  end
  return text
end

return M
