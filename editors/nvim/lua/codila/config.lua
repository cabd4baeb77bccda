-- The plugin's options: defaults, validation, and the live table every module reads
-- (`require("codila.config").options`). Documented in doc/codila.txt (`:h codila-config`).

local M = {}

M.defaults = {
  cmd = { "codila-lsp" }, -- or e.g. { "/path/to/venv/bin/python", "-m", "lsp_server" }
  settings = {}, -- server settings (top-level README "Settings"), e.g. { device = "cuda", blockSize = 4 }
  filetypes = { "python" }, -- where the server is started
  enabled = true, -- suggestions on at startup (`:Codila toggle` switches; also per buffer / filetype)
  auto_trigger = true, -- request after `debounce_ms` of typing; false: only the `trigger` key asks
  debounce_ms = 200, -- idle time in insert mode before a completion is requested
  request_timeout_ms = 10000, -- an inline completion still decoding after this is cancelled (0: no cap)
  infill_timeout_ms = 60000, -- the same for `:CodilaInfill` (0: no cap)
  live_draft = true, -- show drafts while decoding: committed text in place, masked runs as placeholders
  placeholder = "···", -- a masked run (`⋯` in a draft) of unknown length; known ones: one · per token
  cycle_suggestions = 3, -- how many suggestions to ask the server for when you cycle (next / prev)
  keys = { -- insert mode; false: no mapping. Without a suggestion each key does what it did before
    accept = "<Tab>",
    accept_word = "<C-Right>",
    accept_line = "<S-Tab>",
    next = "<M-]>",
    prev = "<M-[>",
    dismiss = "<C-]>",
    trigger = "<M-\\>",
  },
  restart = { -- when codila-lsp exits on its own: restart it after delay_ms, doubling up to max_delay_ms
    delay_ms = 1000,
    max_delay_ms = 30000,
    max_attempts = 5, -- in a row (a server that ran a minute resets the count)
  },
  builtin = false, -- Neovim 0.12+: use vim.lsp.inline_completion instead (no drafts, word/line, status)
}

M.options = vim.deepcopy(M.defaults)

local function is_key(v)
  return v == false or type(v) == "string"
end

--- Merges `opts` over the defaults. Returns the options and a list of problems (unknown keys,
--- wrong types); the defaults are kept for what is wrong.
function M.resolve(opts)
  opts = vim.deepcopy(opts or {})
  local problems = {}
  if opts.accept_key ~= nil then -- the option's earlier name
    opts.keys = vim.tbl_extend("force", opts.keys or {}, { accept = opts.accept_key })
    opts.accept_key = nil
  end
  local types = {
    cmd = "table", settings = "table", filetypes = "table", enabled = "boolean", auto_trigger = "boolean",
    debounce_ms = "number", request_timeout_ms = "number", infill_timeout_ms = "number", live_draft = "boolean",
    placeholder = "string", cycle_suggestions = "number", keys = "table", restart = "table", builtin = "boolean",
  }
  for key, value in pairs(opts) do
    if types[key] == nil then
      problems[#problems + 1] = ("unknown option `%s`"):format(key)
      opts[key] = nil
    elseif type(value) ~= types[key] then
      problems[#problems + 1] = ("option `%s` should be a %s, not %s"):format(key, types[key], vim.inspect(value))
      opts[key] = nil
    end
  end
  for name, lhs in pairs(opts.keys or {}) do
    if M.defaults.keys[name] == nil or not is_key(lhs) then
      problems[#problems + 1] = ("keys.%s: expected a key (string) or false, got %s"):format(name, vim.inspect(lhs))
      opts.keys[name] = nil
    end
  end
  if opts.cmd and (type(opts.cmd[1]) ~= "string" or opts.cmd[1] == "") then
    problems[#problems + 1] = "option `cmd` should be a list like { '/path/to/codila-lsp' }"
    opts.cmd = nil
  end
  return vim.tbl_deep_extend("force", vim.deepcopy(M.defaults), opts), problems
end

return M
