import pytest

from lsp_server.spans import SpanCaps, choose_span, language_error

CURSOR = "▮"


def span_at(marked, caps=SpanCaps()):
    """choose_span on `marked` with the cursor where ▮ is; returns (span, text)."""
    offset = marked.index(CURSOR)
    text = marked.replace(CURSOR, "", 1)
    return choose_span(text, offset, caps), text


CASES = [
    # (marked text, kind, replaced text, indent)
    # mid-line: the rest of the line, closing brackets included
    ("foo(▮)\n", "line_rest", ")", None),
    ("x = a▮ + b  # c\ny = 2\n", "line_rest", " + b  # c", None),
    ("    ▮return x\n", "line_rest", "return x", None),
    ("s = 'é😀▮中'\n", "line_rest", "中'", None),
    # unfinished line: continue it (empty span at the end of the line)
    ("x = foo(▮\n", "line_rest", "", None),
    ("x = foo(a,▮\n        b)\n", "line_rest", "", None),
    ("x = 1 +▮\ny = 2\n", "line_rest", "", None),
    ("x = 1 \\▮\n", "line_rest", "", None),
    ("f = lambda x:▮\n", "line_rest", "", None),
    ("d = {a:▮\n", "line_rest", "", None),
    ("def f(x)▮\n", "line_rest", "", None),
    ("import▮\n", "line_rest", "", None),
    ('x = "abc▮\ny = 2\n', "line_rest", "", None),
    ("x = y.▮\n    z = 2\n", "line_rest", "", None),
    ('def f():\n    """Doc▮   \n    more"""\n', "line_rest", "   ", None),
    ("x = foo(\n▮\n)\n", "line_rest", "", None),
    # block headers: a body, replacing blank lines up to where the text resumes
    ("def f(x):▮\n    return 1\n", "block_body", "", "    "),
    ("def f(x):▮", "block_body", "", "    "),
    ("def f(x):▮  \n\n\ndef g():\n    pass\n", "block_body", "  ", "    "),
    ("class A:\n    def f(self):▮\n\n    def g(self):\n        pass\n", "block_body", "", "        "),
    ("def f(a,\n      b):▮\n", "block_body", "", "    "),
    ("def f():  # why▮\n", "block_body", "", "    "),
    ("if x:\n    pass\nelse:▮", "block_body", "", "    "),
    ("try:\n    pass\nexcept ValueError as e:▮\n", "block_body", "", "    "),
    ("match x:\n    case 1:▮\n", "block_body", "", "        "),
    ("async def f():▮\n", "block_body", "", "    "),
    ("def f():\n\tif x:▮\n", "block_body", "", "\t\t"),
    ("if a:\n  b = 1\nwhile x:▮\n", "block_body", "", "  "),
    ("for i in range(3):▮\n    x = foo(\n", "block_body", "", "    "),
    ("else:▮\n", "block_body", "", "    "),  # no if: tree-sitter gives ERROR, line rule decides
    # empty body: the cursor on a blank line under a header
    ("def f(x):\n    ▮\n", "block_body", "", "    "),
    ("def f(x):\n▮\n\nx = 1\n", "block_body", "", "    "),
    ("def f(x):\n        ▮\n", "block_body", "", "        "),
    ("def f():\n    # todo▮\n", "block_body", "", "    "),
    # end of a finished statement: the next statement at its level
    ("x = 1▮\ny = 2\n", "next_statement", "", ""),
    ("x = 1▮\n\n\ny = 2\n", "next_statement", "", ""),
    ("def f():\n    return x▮", "next_statement", "", "    "),
    ("x = foo(a,\n        b)▮\n", "next_statement", "", ""),
    ("if x: return 1▮\n", "next_statement", "", ""),
    ("x = 1  # note▮\n", "next_statement", "", ""),
    ("@dec▮\n", "next_statement", "", ""),
    ("x = 1▮\ny = foo(\n", "next_statement", "", ""),
    # blank line between statements: the cursor's indentation, else the next line's
    ("def f():\n    x = 1\n    ▮\n    y = 2\n", "next_statement", "", "    "),
    ("class A:\n    x = 1\n▮\n    y = 2\n", "next_statement", "", "    "),
    ("def f():\n    x = 1\n\n▮\ndef g():\n    pass\n", "next_statement", "", ""),
    ("▮", "next_statement", "", ""),
    ("# just a comment\n▮", "next_statement", "", ""),
]


@pytest.mark.parametrize("marked, kind, replaced, indent", CASES)
def test_span_rules(marked, kind, replaced, indent):
    span, text = span_at(marked)
    assert (span.kind, text[span.start : span.end], span.indent) == (kind, replaced, indent)
    assert span.start == marked.index(CURSOR)


def test_mask_tokens_come_from_caps():
    caps = SpanCaps(line_rest=3, block_body=5, next_statement=7)
    assert span_at("foo(▮)", caps)[0].mask_tokens == 3
    assert span_at("def f():▮", caps)[0].mask_tokens == 5
    assert span_at("x = 1▮", caps)[0].mask_tokens == 7
    assert span_at("x = 1▮")[0].mask_tokens == SpanCaps().next_statement


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_caps_must_be_positive_ints(bad):
    with pytest.raises(ValueError, match="SpanCaps.block_body must be a positive int"):
        SpanCaps(block_body=bad)


def test_crlf_and_cr_documents():
    text = "def f():\r\n    x = 1\r\n\r\ny = 2\r\n"
    span = choose_span(text, text.index("x = 1") + 5)
    assert (span.kind, text[span.start : span.end], span.indent) == ("next_statement", "", "    ")
    text = "def f():\r    pass\r"
    span = choose_span(text, text.index(":") + 1)
    assert (span.kind, text[span.start : span.end], span.indent) == ("block_body", "", "    ")
    assert choose_span("ab\r\ncd", 3).kind == "next_statement"  # between \r and \n


def test_offsets_are_str_offsets_after_non_ascii():
    text = "s = '😀😀'\nif s:\n    pass\n"
    span = choose_span(text, text.index("if s:") + 5)
    assert (span.kind, span.start, span.end) == ("block_body", 14, 14)


@pytest.mark.parametrize("offset", [-1, 4, 1.5, None])
def test_offset_outside_text_is_a_clear_error(offset):
    with pytest.raises(ValueError, match=r"cursor offset .* is outside the text \(length 3\)"):
        choose_span("abc", offset)


BROKEN = [
    "def f(x:\n    return [1, 2\n\nclass\n",
    "if x ==\nelse:\n  pass\n))) ((\n",
    "x = '''unterminated\n   é😀\n",
    "def g():\r\n\tyield from (\r\n\r\n@\n",
    "lambda: \\\n\\\n",
    "\x00\ud800é\tmatch x:\n  case [1,\n",
    "  \n\t\n  x = 1\n\n",
]


@pytest.mark.parametrize("text", BROKEN)
def test_every_offset_of_broken_code_gives_a_sane_span(text):
    for offset in range(len(text) + 1):
        span = choose_span(text, offset)
        assert span.start == offset <= span.end <= len(text)
        assert span.kind in ("line_rest", "block_body", "next_statement")
        assert span.indent is None or span.indent.strip(" \t") == ""
        assert span.mask_tokens > 0


def test_language_error():
    assert language_error("python") is None
    message = language_error("rust")
    assert "Python only" in message and "'rust'" in message
