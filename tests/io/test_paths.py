from pathlib import Path

from dmsps.io.paths import is_within


def test_is_within_is_by_path_parts_not_string_prefix(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    assert is_within(data, data)
    assert is_within(data / "sub" / "out", data)
    assert not is_within(tmp_path / "data2", data)  # shares the string prefix only
    assert not is_within(tmp_path, data)


def test_is_within_sees_through_links_and_dots(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    link = tmp_path / "link"
    link.symlink_to(data)
    assert is_within(link / "out", data)
    assert is_within(tmp_path / "x" / ".." / "data" / "out", data)
