import pytest
import tree_sitter_python
from lsprotocol.types import Position, Range
from tree_sitter import Language, Parser

from lsp_server.positions import (
    LineIndex,
    PositionError,
    byte_to_offset,
    column_length,
    encode,
    line_count,
    line_end,
    line_start,
    offset_to_byte,
    offset_to_position,
    offsets_to_range,
    position_to_offset,
    range_to_offsets,
    window,
)

MIXED = "a = 'é'\r\nb = '中文'\rc = '😀x'\n\nd = 1"


def pos(line, character):
    return Position(line=line, character=character)


def test_lines_break_on_crlf_cr_and_lf_only():
    index = LineIndex("a\r\nb\rc\nd\x0be\u2028f")
    assert index.line_count == 4
    assert [index.bounds(n) for n in range(4)] == [(0, 1), (3, 4), (5, 6), (7, 12)]


def test_empty_text_and_trailing_newline_have_a_last_empty_line():
    assert LineIndex("").line_count == 1
    assert LineIndex("x\n").line_count == 2
    assert position_to_offset("x\n", pos(1, 0)) == 2


def test_utf16_counts_astral_characters_twice():
    for text in ["", "abc", "é", "中文", "😀", "a😀é中\U0010ffff"]:
        assert column_length(text) == len(text.encode("utf-16-le")) // 2


def test_position_to_offset_counts_utf16_units():
    text = "é😀x\n"
    assert [position_to_offset(text, pos(0, c)) for c in (0, 1, 3, 4)] == [0, 1, 2, 3]


def test_character_inside_a_surrogate_pair_rounds_down():
    assert position_to_offset("é😀x", pos(0, 2)) == 1


def test_round_trip_every_offset():
    index = LineIndex(MIXED)
    for offset in range(len(MIXED) + 1):
        if MIXED[offset - 1 : offset + 1] == "\r\n":
            continue  # between \r and \n: no LSP position points there
        position = offset_to_position(MIXED, offset, index)
        assert position_to_offset(MIXED, position, index) == offset


def test_offset_inside_crlf_maps_to_end_of_line():
    assert offset_to_position("ab\r\ncd", 3) == pos(0, 2)


def test_positions_on_each_kind_of_line():
    assert offset_to_position(MIXED, MIXED.index("b")) == pos(1, 0)
    assert offset_to_position(MIXED, MIXED.index("x")) == pos(2, 7)
    assert offset_to_position(MIXED, len(MIXED)) == pos(4, 5)
    assert position_to_offset(MIXED, pos(2, 7)) == MIXED.index("x")


def test_line_outside_document_names_position_and_extent():
    text = "x\n" * 11
    with pytest.raises(PositionError, match=r"line 40, character 3 is outside the document \(12 lines\)"):
        position_to_offset(text, pos(40, 3))


def test_character_past_end_of_line_is_an_error():
    with pytest.raises(PositionError, match=r"line 0, character 5 .*line 0 has 4 characters"):
        position_to_offset("é😀x\nmore", pos(0, 5))
    assert issubclass(PositionError, ValueError)


def test_offset_outside_text_is_an_error():
    with pytest.raises(PositionError, match="offset 9 is outside the document"):
        offset_to_position("abc", 9)
    with pytest.raises(PositionError):
        offset_to_byte("abc", -1)


def test_range_round_trip_and_order():
    start, end = MIXED.index("中"), MIXED.index("x") + 1
    range_ = offsets_to_range(MIXED, start, end)
    assert range_ == Range(start=pos(1, 5), end=pos(2, 8))
    assert range_to_offsets(MIXED, range_) == (start, end)
    with pytest.raises(PositionError, match="before it starts"):
        range_to_offsets(MIXED, Range(start=pos(2, 0), end=pos(1, 0)))
    with pytest.raises(PositionError, match="before its start"):
        offsets_to_range(MIXED, 5, 2)


def test_bytes_for_one_to_four_byte_characters():
    text = "aé中😀"
    assert [offset_to_byte(text, n) for n in range(5)] == [0, 1, 3, 6, 10]
    assert [byte_to_offset(text, b) for b in (0, 1, 3, 6, 10)] == [0, 1, 2, 3, 4]


def test_byte_inside_a_character_rounds_down_and_out_of_range_fails():
    text = "a😀"
    assert [byte_to_offset(text, b) for b in range(1, 5)] == [1, 1, 1, 1]
    with pytest.raises(PositionError, match="byte offset 6 is outside the document"):
        byte_to_offset(text, 6)


def test_lone_surrogate_survives_encoding():
    text = "a\ud800b"
    assert offset_to_byte(text, 2) == 4
    assert byte_to_offset(text, 4) == 2


def test_byte_offsets_agree_with_tree_sitter():
    text = "s = 'é😀中'\nname = 1\n"
    tree = Parser(Language(tree_sitter_python.language())).parse(encode(text))
    node = tree.root_node.children[1].children[0].children[0]
    assert node.text == b"name"
    assert byte_to_offset(text, node.start_byte) == text.index("name")
    assert offset_to_byte(text, text.index("name")) == node.start_byte


def test_negotiated_utf8_and_utf32_encodings():
    text = "é😀x\n"
    assert position_to_offset(text, pos(0, 6), encoding="utf-8") == 2  # é = 2 bytes, 😀 = 4
    assert position_to_offset(text, pos(0, 2), encoding="utf-32") == 2
    assert offset_to_position(text, 3, encoding="utf-8") == pos(0, 7)
    assert offset_to_position(text, 3, encoding="utf-32") == pos(0, 3)
    with pytest.raises(ValueError, match="unknown position encoding"):
        column_length("x", encoding="utf-7")


def test_clamped_positions_follow_lsp_for_edits():
    text = "ab\r\ncd"
    assert position_to_offset(text, pos(0, 9), clamp=True) == 2  # past the line's end: the line's end
    assert position_to_offset(text, pos(7, 0), clamp=True) == len(text)  # past the last line: the end
    with pytest.raises(PositionError):
        position_to_offset(text, pos(0, 9))


def test_window_keeps_whole_lines_and_the_cursor_line():
    text = "".join(f"line {n}\n" for n in range(100))
    cursor = text.index("line 50")
    lo, hi = window(text, cursor, cursor, 20)
    assert text[lo:hi] == "line 48\nline 49\nline 50\nline 51\n"  # 20 characters each side, whole lines
    long_line = "x" * 1000 + "\n" + "y" * 1000
    assert window(long_line, 500, 500, 10) == (0, 1000)  # never cuts the cursor's line
    assert window("short", 2, 2, 100) == (0, 5)


def test_large_text_conversions_need_no_line_index():
    text = "é😀\n" * 200_000 + "tail"
    assert line_count(text) == 200_001
    assert position_to_offset(text, pos(200_000, 2)) == 600_002
    assert offset_to_position(text, 600_002) == pos(200_000, 2)
    assert offset_to_position(text, 4) == pos(1, 1)  # after the é on line 1
    assert line_start(text, 4) == 3 and line_end(text, 4) == 5
