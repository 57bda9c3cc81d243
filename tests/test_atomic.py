"""`medad.atomic`: folders and files replaced whole, and never at the cost of a user's file."""

from __future__ import annotations

import os

from medad.atomic import replace_dir, write_text


def test_replace_dir_replaces_what_it_brings_and_keeps_the_rest(tmp_path):
    dst = tmp_path / "runs" / "r"
    (dst / "sub").mkdir(parents=True)
    (dst / "metrics.json").write_text("old")
    (dst / "notes.txt").write_text("a user's notes")
    (dst / "sub" / "mine.csv").write_text("1,2")
    (dst / "sub" / "a.txt").write_text("old a")
    src = tmp_path / "staging"
    (src / "sub").mkdir(parents=True)
    (src / "metrics.json").write_text("new")
    (src / "sub" / "a.txt").write_text("new a")
    replace_dir(src, dst)
    assert (dst / "metrics.json").read_text() == "new"
    assert (dst / "sub" / "a.txt").read_text() == "new a"
    assert (dst / "notes.txt").read_text() == "a user's notes"
    assert (dst / "sub" / "mine.csv").read_text() == "1,2"
    assert sorted(os.listdir(tmp_path)) == ["runs"] and os.listdir(tmp_path / "runs") == ["r"]


def test_replace_dir_onto_nothing_and_write_text(tmp_path):
    src = tmp_path / "s"
    src.mkdir()
    (src / "x").write_text("x")
    replace_dir(src, tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b" / "x").read_text() == "x" and not src.exists()
    write_text(tmp_path / "t" / "f.txt", "hello")
    assert os.listdir(tmp_path / "t") == ["f.txt"]
