from pathlib import Path

import pytest

from pipekit.errors import InputDataError
from voxelflex.config import InputConfig
from voxelflex.data.splits import read_split_file, read_splits


def test_split_file_tolerates_blank_comments_whitespace_crlf(tmp_path: Path) -> None:
    p = tmp_path / "s.txt"
    p.write_bytes(b"# header\r\n\r\n  1abcA00  \r\n2xyzB01 # trailing\r\n\t\r\n1abcA00\r\n3qrsC02")
    assert read_split_file(str(p)) == ["1abcA00", "2xyzB01", "3qrsC02"]


def _splits(tmp_path: Path, train: str, val: str, test: str | None = None) -> InputConfig:
    files = {}
    for name, text in (("train", train), ("val", val), ("test", test)):
        if text is not None:
            (tmp_path / name).write_text(text)
            files[f"{name}_split_file"] = str(tmp_path / name)
    return InputConfig(**files)


def test_domain_in_two_splits_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(
        InputDataError, match="'d2' is in both the train split .* and the test split"
    ):
        read_splits(_splits(tmp_path, "d1\nd2\n", "d3\n", "d2\n"))


def test_missing_split_file_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match="input.val_split_file"):
        (tmp_path / "t").write_text("d1")
        read_splits(InputConfig(train_split_file=str(tmp_path / "t"), val_split_file=None))

    with pytest.raises(InputDataError, match="'input.val_split_file' not found: .*nope"):
        read_splits(
            InputConfig(train_split_file=str(tmp_path / "t"), val_split_file=str(tmp_path / "nope"))
        )


def test_test_split_is_optional_and_max_domains_caps(tmp_path: Path) -> None:
    inp = _splits(tmp_path, "a\nb\nc\n", "d\ne\n")
    capped = InputConfig(**{**inp.__dict__, "max_domains": 2})
    assert read_splits(capped) == {"train": ["a", "b"], "val": ["d", "e"], "test": []}
