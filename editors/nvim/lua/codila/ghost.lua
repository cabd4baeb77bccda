-- Ghost text: one extmark per buffer that shows a draft or a suggestion where it will go. The first
-- line is inline at the span's start, further lines are virtual lines below it, and the text the
-- span will replace is struck through. The same extmark id is set again for every draft, so the
-- ghost text grows in place. In a draft, each run of still-masked tokens (`⋯`) is drawn as a
-- dimmed placeholder (CodilaMasked) between the committed text.

local M = {}

local api = vim.api

M.ns = api.nvim_create_namespace("codila")
M.MASK = "⋯" -- what the server writes for a run of masked tokens

--- The highlight groups, as defaults a colour scheme or the user can override (`default = true`).
--- Explicit colours for GUI and cterm: a link to Comment has no cterm colour in some schemes, and
--- the suggestion then looks like real code. Set again after `:colorscheme` (which clears them).
function M.highlights()
  local dark = vim.o.background == "dark"
  local function set(name, spec)
    api.nvim_set_hl(0, name, vim.tbl_extend("force", spec, { default = true }))
  end
  set("CodilaGhost", {
    fg = dark and "#8a8a8a" or "#7a7a7a", ctermfg = dark and 245 or 243,
    italic = true, cterm = { italic = true },
  })
  set("CodilaMasked", { fg = dark and "#4e4e4e" or "#c6c6c6", ctermfg = dark and 239 or 251 })
  set("CodilaReplaced", { strikethrough = true, cterm = { strikethrough = true } })
end

--- A line of ghost text as virt_text chunks; with `placeholder`, each `⋯` becomes a dimmed run:
--- one `·` per masked token where the draft says how many (`runs`, taken in order), else `placeholder`.
local function chunks(line, placeholder, runs)
  if not placeholder or not line:find(M.MASK, 1, true) then
    return { { line, "CodilaGhost" } }
  end
  local out, pos = {}, 1
  while true do
    local s, e = line:find(M.MASK, pos, true)
    if not s then
      break
    end
    if s > pos then
      out[#out + 1] = { line:sub(pos, s - 1), "CodilaGhost" }
    end
    local n = runs and table.remove(runs, 1)
    out[#out + 1] = { type(n) == "number" and string.rep("·", n) or placeholder, "CodilaMasked" }
    pos = e + 1
  end
  if pos <= #line then
    out[#out + 1] = { line:sub(pos), "CodilaGhost" }
  end
  return out
end

--- Shows `text`, which will replace `range` (LSP range, UTF-8 columns), as the extmark `id` (nil: a
--- new one). `placeholder`: draw masked runs as it (drafts); nil: the text as it is (suggestions).
--- `masks` (a draft's): how many tokens each `⋯` stands for, drawn as that many `·`.
--- Returns the extmark id.
function M.show(bufnr, id, range, text, placeholder, masks)
  local lines = vim.split(text, "\n", { plain = true })
  local runs = type(masks) == "table" and vim.list_slice(masks) or nil
  local first = chunks(lines[1], placeholder, runs)
  local virt_lines = {}
  for i = 2, #lines do
    virt_lines[#virt_lines + 1] = chunks(lines[i], placeholder, runs)
  end
  return api.nvim_buf_set_extmark(bufnr, M.ns, range.start.line, range.start.character, {
    id = id,
    virt_text = first,
    virt_text_pos = "inline",
    virt_lines = virt_lines,
    end_row = range["end"].line,
    end_col = range["end"].character,
    hl_group = "CodilaReplaced",
    hl_mode = "combine",
    strict = false,
  })
end

function M.hide(bufnr)
  if api.nvim_buf_is_valid(bufnr) then
    api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  end
end

return M
