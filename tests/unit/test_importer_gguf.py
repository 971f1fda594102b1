"""Inspection of GGUF files at import: truncated files and unsupported versions."""

import struct
from pathlib import Path

import pytest

from berth.errors import InvalidInput
from berth.hub import importer

gguf = pytest.importorskip("gguf", reason="the gguf package is not installed")


def write_gguf(path: Path) -> Path:
    import numpy

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", numpy.zeros((64, 64), dtype=numpy.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_complete_gguf_is_accepted(tmp_path: Path) -> None:
    inspection = importer.inspect_path(str(write_gguf(tmp_path / "model.gguf")))

    assert inspection.architecture == "llama"
    assert inspection.has_chat_template is False


@pytest.mark.parametrize("kept_bytes", [6, 30, 200, -100])
def test_truncated_gguf_is_named_truncated(tmp_path: Path, kept_bytes: int) -> None:
    path = write_gguf(tmp_path / "model.gguf")
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(kept_bytes if kept_bytes > 0 else size + kept_bytes)

    with pytest.raises(InvalidInput) as error:
        importer.inspect_path(str(path))

    assert "is truncated or damaged" in str(error.value)
    assert str(path) in str(error.value)


def test_unsupported_gguf_version_is_named(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "model.gguf")
    with open(path, "r+b") as handle:
        handle.seek(4)
        handle.write(struct.pack("<I", 99))

    with pytest.raises(InvalidInput) as error:
        importer.inspect_path(str(path))

    assert "has version 99" in str(error.value)
