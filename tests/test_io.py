"""Files the tool writes never reach through a link to a file outside the folder it was given."""

import os

import pytest

from modelprint._io import atomic_write_text, nesting_depth, open_in_place
from modelprint.errors import OutputPathError


def test_an_atomic_write_onto_a_link_replaces_the_link_not_its_target(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("mine\n")
    (tmp_path / "out").mkdir()
    link = tmp_path / "out" / "results.json"
    link.symlink_to(victim)
    atomic_write_text(link, "{}\n")
    assert victim.read_text() == "mine\n"
    assert not link.is_symlink() and link.read_text() == "{}\n"


@pytest.mark.parametrize("how", ["append", "update"])
@pytest.mark.parametrize("kind", ["symlink", "dangling", "hardlink", "fifo", "folder"])
def test_a_file_written_in_place_is_never_a_link_or_a_special_file(how, kind, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("mine\n")
    path = tmp_path / "lock"
    if kind == "symlink":
        path.symlink_to(victim)
    elif kind == "dangling":
        path.symlink_to(tmp_path / "created")
    elif kind == "hardlink":
        os.link(victim, path)
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    with pytest.raises(OutputPathError, match="link|not a regular file|cannot write"):
        open_in_place(path, how)
    assert victim.read_text() == "mine\n" and not (tmp_path / "created").exists()


def test_a_regular_file_is_opened_in_place(tmp_path):
    with open_in_place(tmp_path / "log", "append") as f:
        f.write("one\n")
    with open_in_place(tmp_path / "log", "update") as f:
        assert f.read() == "one\n"


def test_nesting_depth_counts_without_recursion():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    assert nesting_depth(deep, 32) == 33  # stops looking past the limit
    assert nesting_depth({"a": [1, {"b": []}]}, 32) == 3
    assert nesting_depth(7, 32) == 0
