-- Insert-mode keys. Each is a buffer-local expression mapping that runs its action when there is
-- something to act on (a suggestion to accept, say) and otherwise does what the key did without
-- codila: the buffer-local mapping the key had when codila mapped it, else the user's global
-- mapping of that key as it is at that moment (a snippet or completion plugin's <Tab>), else the
-- key itself. The fallback is copied to `<Plug>(codila-<action>-fallback)` and fed from there.
-- A completion plugin that wraps existing mappings itself (nvim-cmp's `fallback()`) finds
-- codila's mapping there and reaches the same chain.

local M = {}

local api = vim.api

local DESC = "codila: "
M.descriptions = {
  accept = "accept the suggestion",
  accept_word = "accept the suggestion's next word",
  accept_line = "accept the suggestion's next line",
  next = "next suggestion",
  prev = "previous suggestion",
  dismiss = "dismiss the suggestion",
  trigger = "ask for a suggestion now",
}

local saved = {} -- [bufnr][action]: the buffer-local mapping the key had before codila's (maparg dict)

local function is_codila(m)
  return m.desc ~= nil and vim.startswith(m.desc, DESC)
end

--- The user's global insert-mode mapping of `lhs` now, or nil.
local function global_mapping(lhs)
  local want = vim.keycode(lhs)
  for _, m in ipairs(api.nvim_get_keymap("i")) do
    if vim.keycode(m.lhs) == want and not is_codila(m) then
      return m
    end
  end
end

--- Points `<Plug>(codila-<name>-fallback)` at what `lhs` does without codila; returns that <Plug>.
local function fallback(bufnr, name, lhs)
  local plug = ("<Plug>(codila-%s-fallback)"):format(name)
  local m = saved[bufnr] and saved[bufnr][name] or global_mapping(lhs)
  if not m then
    api.nvim_buf_set_keymap(bufnr, "i", plug, lhs, { noremap = true })
    return plug
  end
  local opts = {
    noremap = m.noremap == 1, expr = m.expr == 1, silent = m.silent == 1, nowait = m.nowait == 1,
    script = m.script == 1, callback = m.callback,
  }
  if m.expr == 1 and m.callback then
    opts.replace_keycodes = m.replace_keycodes == 1
  end
  api.nvim_buf_set_keymap(bufnr, "i", plug, m.callback and "" or (m.rhs or ""), opts)
  return plug
end

--- Maps `keys` ({ action = lhs or false }) in `bufnr`; `actions[name](bufnr)` returns true when it
--- acted (it must not change text itself: mappings run under textlock, so actions schedule edits).
function M.map(bufnr, keys, actions)
  saved[bufnr] = saved[bufnr] or {}
  for name, lhs in pairs(keys) do
    if lhs and actions[name] then
      local before = vim.fn.maparg(lhs, "i", false, true)
      if before.buffer == 1 and not is_codila(before) then
        saved[bufnr][name] = before
      end
      vim.keymap.set("i", lhs, function()
        if actions[name](bufnr) then
          return ""
        end
        return fallback(bufnr, name, lhs)
      end, { buffer = bufnr, expr = true, remap = true, desc = DESC .. M.descriptions[name] })
    end
  end
end

function M.forget(bufnr)
  saved[bufnr] = nil
end

return M
