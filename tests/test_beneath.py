"""worker/beneath.py: paths resolved beneath a directory descriptor, with openat2 and with the
O_NOFOLLOW walk used where openat2 is missing (which the server tests cannot reach on this kernel)."""

from __future__ import annotations

import errno
import os

import pytest

from theater import beneath


@pytest.fixture
def root(tmp_path):
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("outside")
    (tmp_path / "root" / "sub").mkdir(parents=True)
    (tmp_path / "root" / "sub" / "f").write_text("inside")
    (tmp_path / "root" / "in").symlink_to("sub")
    (tmp_path / "root" / "out").symlink_to("../outside")
    (tmp_path / "root" / "abs").symlink_to(tmp_path / "outside" / "secret")
    fd = os.open(tmp_path / "root", os.O_PATH | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def read(root: int, path: str, openat2: bool) -> str:
    fd = beneath.open_beneath(root, path, os.O_RDONLY, openat2=openat2)
    try:
        return os.read(fd, 100).decode()
    finally:
        os.close(fd)


@pytest.mark.parametrize("openat2", [True, False] if beneath.HAVE_OPENAT2 else [False])
@pytest.mark.parametrize("path", ["../outside/secret", "sub/../../outside/secret", "/etc/passwd", "out/secret", "abs"])
def test_nothing_outside_is_reached(root, openat2, path):
    with pytest.raises(OSError) as err:
        read(root, path, openat2)
    # openat2 says why (EXDEV); the walk refuses a symlink it will not follow (ELOOP / ENOTDIR)
    assert isinstance(err.value, beneath.Escape) or err.value.errno in (errno.ELOOP, errno.ENOTDIR)


@pytest.mark.parametrize("openat2", [True, False] if beneath.HAVE_OPENAT2 else [False])
def test_paths_inside_are_reached(root, openat2):
    assert read(root, "sub/f", openat2) == "inside"
    assert read(root, "./sub//f", openat2) == "inside"


def test_only_openat2_follows_a_symlink_that_stays_inside(root):
    if beneath.HAVE_OPENAT2:
        assert read(root, "in/f", True) == "inside"
        assert read(root, "sub/../sub/f", True) == "inside"
    with pytest.raises(OSError):
        read(root, "in/f", False)
    with pytest.raises(beneath.Escape):
        read(root, "sub/../sub/f", False)      # the walk refuses every ".."


def test_split_never_names_the_directory_itself():
    assert beneath.split("a/b/c") == ("a/b", "c")
    assert beneath.split("c/") == ("", "c")
    for path in ("", ".", "a/..", "/"):
        with pytest.raises(OSError):
            beneath.split(path)
