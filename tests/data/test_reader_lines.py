"""The line layer under every delimited reader (``text_lines``) and the quoted-CSV path of ``read_delimited``:
blank and white-space lines dropped with the physical line numbers kept, ``\\r\\n`` ends, records read from the
text itself when it has no blank line and from its non-blank lines otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from attnrec.data.readers.files import text_lines
from attnrec.data.readers.tabular import read_table
from attnrec.errors import DataError


def test_text_lines_numbers_physical_lines_and_drops_blank_ones() -> None:
    got = text_lines("h\r\na\r\n\r\n  \t\nb\r\n\u00a0\u2003\nc", "f.csv")
    assert got["line"].to_list() == [1, 2, 5, 7]
    assert got["text"].to_list() == ["h", "a", "b", "c"]
    assert text_lines("h\na\n\nb\n", "f.csv", skip_first=1)["line"].to_list() == [2, 4]
    assert text_lines("x\ry\r", "mac.csv")["text"].to_list() == ["x", "y"]  # old Mac line ends
    with pytest.raises(DataError, match="no data lines"):
        text_lines(" \n\n\t\n", "blank.csv")


def test_text_lines_keeps_leading_spaces_and_inner_carriage_returns() -> None:
    got = text_lines("  a ,b\nx\ry\n", "f.csv")
    assert got["text"].to_list() == ["  a ,b", "x\ry"]


def _write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode())
    return path


@pytest.mark.parametrize("end", ["\n", "\r\n"])
def test_quoted_csv_without_blank_lines_keeps_line_numbers(tmp_path: Path, end: str) -> None:
    text = end.join(
        ["user_id,item_id,review", 'u1,i1,"good, really"', 'u2,i2,"said ""fine"""', "u3,i3,plain"]
    )
    ds = read_table(_write(tmp_path / "q.csv", text + end))
    assert ds.interactions["review"].to_list() == ["good, really", 'said "fine"', "plain"]
    assert ds.lines is not None and ds.lines.to_list() == [2, 3, 4]


def test_quoted_csv_with_blank_lines_skips_them(tmp_path: Path) -> None:
    text = 'user_id,item_id,review\n\nu1,i1,"a, b"\n   \nu2,i2,c\n'
    ds = read_table(_write(tmp_path / "q.csv", text))
    assert ds.interactions["user_id"].to_list() == ["u1", "u2"]
    assert ds.interactions["review"].to_list() == ["a, b", "c"]
    assert ds.lines is not None and ds.lines.to_list() == [3, 5]


def test_quoted_field_spanning_lines_is_one_record(tmp_path: Path) -> None:
    text = 'user_id,item_id,review\nu1,i1,"first\nsecond"\nu2,i2,x\n'
    ds = read_table(_write(tmp_path / "q.csv", text))
    assert ds.interactions["review"].to_list() == ["first\nsecond", "x"]
    # two physical lines hold the first record: rows are numbered as records from the first data line
    assert ds.lines is not None and ds.lines.to_list() == [2, 3]


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_quoted_fields_keep_their_blank_lines_and_records_their_first_line(newline: str) -> None:
    # a review with paragraphs: the blank line inside the quotes is text, the one between records is not
    from attnrec.data.readers.tabular import read_delimited

    nl = newline
    text = f'u,i,review{nl}1,2,"first para{nl}{nl}second para"{nl}{nl}3,4,ok{nl}5,6,"a{nl}   {nl}b"{nl}'
    frame, _ = read_delimited(text, Path("r.csv"), sep=",", has_header=True, on_bad_lines="error")
    assert frame["review"].to_list() == [f"first para{nl}{nl}second para", "ok", f"a{nl}   {nl}b"]
    assert frame["line"].to_list() == [2, 6, 7]  # the physical line each record starts on
    assert frame["u"].to_list() == ["1", "3", "5"]
    bad = text + f'7,8,"x",9{nl}'
    with pytest.raises(DataError, match=r"r\.csv:10: .*wrong number of fields: found 4"):
        read_delimited(bad, Path("r.csv"), sep=",", has_header=True, on_bad_lines="error")
