"""Inspection and storage of model files brought into the Model Hub.

`inspect_path` reads a Hugging Face model folder, a folder in the Hugging Face cache
layout (`models--ORG--NAME/snapshots/<revision>/`) or a GGUF file. It finds the format,
architecture and ML App, and it checks that the files are complete and readable
without loading the model. `store_files` copies them into Berth's storage (or leaves
them in place), and `digest_files` gives their size and a content checksum.
"""

import errno
import hashlib
import json
import os
import shutil
import stat
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from berth.errors import InvalidInput
from berth.runtime.loading import TRAINED_CONTEXT_LENGTH_ATTRIBUTE, trained_context_length
from berth.states import CheckpointFormat, MLApp

if TYPE_CHECKING:
    from gguf import GGUFReader

GGUF_MAGIC = b"GGUF"
CHUNK_BYTES = 1024 * 1024
# Files that mark a sentence-transformers model, whatever its architecture.
_SENTENCE_TRANSFORMERS_MARKERS = (
    "modules.json",
    "config_sentence_transformers.json",
    "sentence_bert_config.json",
)
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer.model", "vocab.json", "spiece.model")
_GENERATION_SUFFIXES = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")
_ENCODER_TYPES = {
    "bert",
    "roberta",
    "xlm-roberta",
    "distilbert",
    "mpnet",
    "albert",
    "electra",
    "deberta",
    "deberta-v2",
    "nomic_bert",
    "modernbert",
}


@dataclass
class Inspection:
    # The folder (or GGUF file) whose files make up the checkpoint.
    source: Path
    format: CheckpointFormat
    ml_app: MLApp | None
    architecture: str
    field_of_application: str
    # Paths of the checkpoint's files, relative to `source` (or its folder for GGUF).
    files: list[str]
    # Whether the tokenizer has a chat template; None when it cannot be read (a GGUF
    # file while the gguf package is not installed).
    has_chat_template: bool | None = None
    # Tokens of prompt and completion together that the model was trained on: from
    # config.json, or from `<architecture>.context_length` in a GGUF file. None when the
    # files do not state it, or for a GGUF file while the gguf package is not installed.
    trained_context_length: int | None = None


def _invalid(message: str) -> InvalidInput:
    return InvalidInput(message, field="path")


def _unreadable(path: Path, error: OSError) -> InvalidInput:
    """Build the error for a file or folder that the server failed to read. The OSError's
    file name, when set, is the exact file inside the import that failed."""
    where = error.filename if error.filename is not None else path
    reason = error.strerror or str(error)
    hint = ""
    if isinstance(error, PermissionError):
        hint = "; make it readable by the user that runs the Berth server"
    return _invalid(f"cannot read '{where}' on the Berth server: {reason}{hint}")


def inspect_path(path_text: str) -> Inspection:
    """Describe the model at `path_text`, or raise InvalidInput saying what is wrong."""
    if not path_text or not path_text.strip():
        raise _invalid("path is empty; give the folder or .gguf file of the model")
    path = _expand(path_text.strip())
    is_folder = _check_source(path)
    try:
        if not is_folder:
            return _inspect_gguf(path)
        folder = _resolve_cache_layout(path)
        return _inspect_folder(folder)
    except OSError as exc:
        raise _unreadable(path, exc) from exc


def _expand(text: str) -> Path:
    if "\0" in text:
        raise _invalid("path contains a NUL character; give the folder or .gguf file of the model")
    try:
        return Path(text).expanduser()
    except RuntimeError as exc:
        # "~name" where the server has no user of that name, or "~" without a home.
        home = text.split("/", 1)[0]
        raise _invalid(
            f"path '{text}' starts with '{home}', a home folder that the Berth server "
            "cannot find; give an absolute path"
        ) from exc


def _check_source(path: Path) -> bool:
    """Check that `path` is a folder that the server can list or a regular file; return
    True for a folder. Raise InvalidInput for anything else, such as a FIFO or a socket,
    which the importer must never open because reading one can block."""
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError) as exc:
        if path.is_symlink():
            target = os.readlink(path)
            raise _invalid(
                f"path '{path}' is a broken symbolic link: its target '{target}' does not exist"
            ) from exc
        raise _invalid(f"path '{path}' does not exist on the Berth server") from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _invalid(
                f"path '{path}' cannot be resolved: its symbolic links form a loop "
                "or are nested too deeply"
            ) from exc
        raise _unreadable(path, exc) from exc
    if stat.S_ISDIR(mode):
        try:
            with os.scandir(path):
                pass
        except OSError as exc:
            raise _unreadable(path, exc) from exc
        return True
    if stat.S_ISREG(mode):
        return False
    raise _invalid(
        f"path '{path}' is {_kind_of(mode)}, not a model folder or a .gguf file; "
        "give the folder or .gguf file of the model"
    )


def _kind_of(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    return "a special file"


def _inspect_gguf(path: Path) -> Inspection:
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        raise _invalid(
            f"file '{path}' is not a GGUF model (it does not start with 'GGUF'); "
            "import a model folder or a .gguf file"
        )
    architecture, has_chat_template, trained = _gguf_metadata(path)
    return Inspection(
        source=path,
        format=CheckpointFormat.GGUF,
        ml_app=MLApp.TEXT_GENERATION,
        architecture=architecture,
        field_of_application="Language",
        files=[path.name],
        has_chat_template=has_chat_template,
        trained_context_length=trained,
    )


def _gguf_metadata(path: Path) -> tuple[str, bool | None, int | None]:
    """Return the GGUF file's architecture, whether it has a chat template and its
    trained context length."""
    try:
        from gguf import GGUFReader
        from gguf.gguf_reader import READER_SUPPORTED_VERSIONS
    except ImportError:
        return "gguf", None, None
    version = _gguf_version(path)
    if version is None:
        raise _truncated_gguf(path, "no version follows the magic")
    if version not in READER_SUPPORTED_VERSIONS:
        raise _invalid(
            f"GGUF file '{path}' has version {version}, which the installed gguf package "
            f"cannot read (it reads versions {', '.join(map(str, READER_SUPPORTED_VERSIONS))})"
        )
    try:
        reader = GGUFReader(str(path))
    except (ValueError, IndexError, struct.error) as exc:
        # The reader maps the file into memory and cuts arrays from it, so data that ends
        # early shows as a numpy reshape or dtype error rather than as an end-of-file error.
        raise _truncated_gguf(path, str(exc)) from exc
    field = reader.fields.get("general.architecture")
    if field is None:
        raise _invalid(f"GGUF file '{path}' names no architecture (general.architecture)")
    architecture = bytes(field.parts[field.data[0]]).decode("utf-8", "replace")
    has_chat_template = "tokenizer.chat_template" in reader.fields
    return architecture, has_chat_template, _gguf_context_length(reader, architecture)


def _gguf_context_length(reader: "GGUFReader", architecture: str) -> int | None:
    """Return `<architecture>.context_length`, the key that llama.cpp reads, or None
    when the file lacks it or stores something other than one integer."""
    field = reader.fields.get(f"{architecture}.context_length")
    if field is None or len(field.data) != 1:
        return None
    value = field.parts[field.data[0]]
    if value.size != 1 or value.dtype.kind not in "iu":
        return None
    return trained_context_length(int(value[0]))


def _truncated_gguf(path: Path, detail: str) -> InvalidInput:
    size = path.stat().st_size
    return _invalid(
        f"GGUF file '{path}' is truncated or damaged: its {size} bytes end before the "
        f"metadata and tensors that its header declares ({detail}); copy or convert the "
        "file again"
    )


def _gguf_version(path: Path) -> int | None:
    """Return the version after the magic, or None for a file that ends before it."""
    with open(path, "rb") as handle:
        handle.seek(len(GGUF_MAGIC))
        raw = handle.read(4)
    if len(raw) < 4:
        return None
    (version,) = struct.unpack("<I", raw)
    # As in gguf's reader, a version whose low half is zero is read from a big-endian file.
    if version & 0xFFFF == 0:
        (version,) = struct.unpack(">I", raw)
    return int(version)


def _resolve_cache_layout(path: Path) -> Path:
    """Return the snapshot folder when `path` is a model folder of the Hugging Face cache."""
    snapshots = path / "snapshots"
    if not snapshots.is_dir():
        if any(child.name.startswith("models--") for child in path.iterdir() if child.is_dir()):
            raise _invalid(
                f"'{path}' is a Hugging Face cache with several models; "
                "give one model's folder (models--ORG--NAME)"
            )
        return path
    revision_file = path / "refs" / "main"
    if revision_file.is_file():
        revision = revision_file.read_text().strip()
        folder = snapshots / revision
        if not folder.is_dir():
            raise _invalid(
                f"the cache folder '{path}' points refs/main at revision {revision}, "
                "which has no snapshot; the download is incomplete"
            )
        return folder
    candidates = sorted(child for child in snapshots.iterdir() if child.is_dir())
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise _invalid(f"the cache folder '{path}' has no snapshot; the download is incomplete")
    names = ", ".join(child.name for child in candidates)
    raise _invalid(
        f"the cache folder '{path}' has several snapshots ({names}) and no refs/main; "
        "import one snapshot folder"
    )


def _inspect_folder(folder: Path) -> Inspection:
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise _invalid(f"model folder '{folder}' has no config.json; is it a Hugging Face model?")
    raw_config = config_path.read_bytes()
    try:
        config = json.loads(raw_config)
    except ValueError as exc:
        # ValueError covers json.JSONDecodeError and text that is not UTF-8, -16 or -32.
        raise _invalid(f"config.json in '{folder}' is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise _invalid(f"config.json in '{folder}' is not a JSON object")

    architecture = _architecture(config, folder)
    _check_weights(folder)
    if not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        raise _invalid(
            f"model folder '{folder}' has no tokenizer (tokenizer.json, vocab.txt, "
            "tokenizer.model or vocab.json)"
        )

    is_sentence_transformers = any(
        (folder / name).is_file() for name in _SENTENCE_TRANSFORMERS_MARKERS
    )
    if is_sentence_transformers:
        ml_app: MLApp | None = MLApp.TEXT_EMBEDDING
        file_format = CheckpointFormat.SENTENCE_TRANSFORMERS
    else:
        ml_app = _ml_app_of(architecture, str(config.get("model_type", "")))
        file_format = CheckpointFormat.TRANSFORMERS
    files = _list_files(folder)
    return Inspection(
        folder,
        file_format,
        ml_app,
        architecture,
        "Language",
        files,
        has_chat_template=_has_chat_template(folder),
        trained_context_length=_config_context_length(config),
    )


def _config_context_length(config: dict[str, object]) -> int | None:
    """Return the trained context length that config.json states, under the key that the
    model's transformers config class reads as max_position_embeddings.

    NOTE: a config.json without that key gives None (unknown), although the config class
    may have a default for it (LlamaConfig: 2048). The instance's load still checks the
    endpoint's context_length against that default.
    """
    from transformers import CONFIG_MAPPING

    key = TRAINED_CONTEXT_LENGTH_ATTRIBUTE
    model_type = config.get("model_type")
    # _architecture has already rejected a model_type that is missing from CONFIG_MAPPING.
    if isinstance(model_type, str) and model_type in CONFIG_MAPPING:
        key = CONFIG_MAPPING[model_type].attribute_map.get(key, key)
    return trained_context_length(config.get(key))


def _has_chat_template(folder: Path) -> bool:
    """Tell whether transformers would find a chat template for the folder's tokenizer:
    in a template file of its own, or under "chat_template" in tokenizer_config.json."""
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    config_path = folder / "tokenizer_config.json"
    if not config_path.is_file():
        return False
    try:
        config = json.loads(config_path.read_bytes())
    except ValueError as exc:
        raise _invalid(f"tokenizer_config.json in '{folder}' is not valid JSON: {exc}") from exc
    return isinstance(config, dict) and bool(config.get("chat_template"))


def _list_files(folder: Path) -> list[str]:
    """List the regular files under `folder` (relative paths), skipping hidden files and
    folders, and check that each one opens.

    A subfolder that cannot be listed raises OSError rather than being left out.
    FIFOs, sockets and device files are skipped without being opened.
    """

    def raise_error(error: OSError) -> None:
        raise error

    files = []
    for root, folders, names in os.walk(folder, onerror=raise_error):
        folders[:] = [name for name in folders if not name.startswith(".")]
        for name in names:
            if name.startswith("."):
                continue
            file = Path(root, name)
            relative = file.relative_to(folder)
            if file.is_file():
                # Opening is enough to find a file the server may not read.
                with open(file, "rb"):
                    pass
                files.append(str(relative))
            elif file.is_symlink() and not file.exists():
                raise _invalid(
                    f"model folder '{folder}' contains a broken symbolic link '{relative}' "
                    f"(its target '{os.readlink(file)}' does not exist); the download may be "
                    "incomplete"
                )
    return sorted(files)


def _architecture(config: dict[str, object], folder: Path) -> str:
    architectures = config.get("architectures")
    model_type = config.get("model_type")
    if isinstance(architectures, list) and architectures and isinstance(architectures[0], str):
        architecture = architectures[0]
    elif isinstance(model_type, str) and model_type:
        architecture = model_type
    else:
        raise _invalid(
            f"unknown architecture: config.json in '{folder}' names neither "
            "'architectures' nor 'model_type'"
        )
    if isinstance(model_type, str) and model_type:
        _check_known_model_type(model_type, folder)
    return architecture


def _check_known_model_type(model_type: str, folder: Path) -> None:
    from transformers import CONFIG_MAPPING
    from transformers import __version__ as transformers_version

    if model_type not in CONFIG_MAPPING:
        raise _invalid(
            f"unknown architecture: model_type '{model_type}' in '{folder}' is not supported "
            f"by the installed transformers {transformers_version}"
        )


def _ml_app_of(architecture: str, model_type: str) -> MLApp | None:
    if architecture.endswith(_GENERATION_SUFFIXES):
        return MLApp.TEXT_GENERATION
    if model_type in _ENCODER_TYPES or architecture.endswith("Model"):
        return MLApp.TEXT_EMBEDDING
    return None


def _check_weights(folder: Path) -> None:
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index_path = folder / index_name
        if index_path.is_file():
            _check_shards(folder, index_path)
            return
    single = folder / "model.safetensors"
    if single.is_file():
        check_safetensors(single)
        return
    if (folder / "pytorch_model.bin").is_file():
        return
    raise _invalid(
        f"model folder '{folder}' has no weights (model.safetensors, pytorch_model.bin "
        "or a sharded index)"
    )


def _check_shards(folder: Path, index_path: Path) -> None:
    raw_index = index_path.read_bytes()
    try:
        weight_map = json.loads(raw_index)["weight_map"]
    except (ValueError, KeyError, TypeError) as exc:
        raise _invalid(f"{index_path.name} in '{folder}' is unreadable: {exc}") from exc
    if not isinstance(weight_map, dict) or not all(
        isinstance(shard, str) for shard in weight_map.values()
    ):
        raise _invalid(
            f"{index_path.name} in '{folder}' is invalid: 'weight_map' must be an object "
            "that maps tensor names to file names"
        )
    shards = sorted(set(weight_map.values()))
    missing = [shard for shard in shards if not (folder / shard).is_file()]
    if missing:
        raise _invalid(
            f"model folder '{folder}' is incomplete: missing weight files {', '.join(missing)}"
        )
    for shard in shards:
        if shard.endswith(".safetensors"):
            check_safetensors(folder / shard)


def check_safetensors(path: Path) -> None:
    """Check that a safetensors file's header is readable and its tensors fit in the file."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            (header_length,) = struct.unpack("<Q", handle.read(8))
            if header_length > size - 8:
                raise ValueError("header length exceeds the file size")
            header = json.loads(handle.read(header_length))
    except OSError as exc:
        raise _unreadable(path, exc) from exc
    except (ValueError, struct.error) as exc:
        raise _invalid(f"weights file '{path}' is not a readable safetensors file: {exc}") from exc
    if not isinstance(header, dict):
        raise _invalid(
            f"weights file '{path}' is not a safetensors file: its header is not a JSON object"
        )
    try:
        ends = [
            int(tensor["data_offsets"][1])
            for name, tensor in header.items()
            if name != "__metadata__" and isinstance(tensor, dict)
        ]
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise _invalid(
            f"weights file '{path}' is not a safetensors file: a tensor has no valid "
            f"data_offsets ({exc!r})"
        ) from exc
    if ends and 8 + header_length + max(ends) > size:
        raise _invalid(f"weights file '{path}' is truncated: its tensors end past the file")


def digest_files(root: Path, files: list[str]) -> tuple[int, str]:
    """Return the total size and a SHA-256 over each file's relative path and content."""
    digest = hashlib.sha256()
    total = 0
    for relative in sorted(files):
        digest.update(relative.encode("utf-8") + b"\0")
        try:
            with open(root / relative, "rb") as handle:
                while chunk := handle.read(CHUNK_BYTES):
                    digest.update(chunk)
                    total += len(chunk)
        except OSError as exc:
            raise _unreadable(root / relative, exc) from exc
    return total, f"sha256:{digest.hexdigest()}"


def file_stats(root: Path, files: list[str]) -> dict[str, list[int]]:
    """Return each file's size in bytes and modification time in nanoseconds, following
    symbolic links, keyed by its path relative to `root`."""
    stats = {}
    for relative in files:
        try:
            result = (root / relative).stat()
        except OSError as exc:
            raise _unreadable(root / relative, exc) from exc
        stats[relative] = [result.st_size, result.st_mtime_ns]
    return stats


def find_changed_file(
    root: Path, recorded: dict[str, list[int]], compare_mtime: bool = True
) -> str | None:
    """Return a message naming the first file under `root` whose size, or modification
    time when `compare_mtime` is true, differs from `recorded` (see `file_stats`), or
    that is missing; None when every file matches. Only metadata is read, so the check
    costs one stat call per file."""
    for relative, (size, mtime_ns) in sorted(recorded.items()):
        path = root / relative
        try:
            result = path.stat()
        except OSError as exc:
            return f"file '{path}' cannot be read: {exc.strerror or exc}"
        if result.st_size != size:
            return f"file '{path}' is now {result.st_size} bytes, not {size} as at import"
        if compare_mtime and result.st_mtime_ns != mtime_ns:
            return f"file '{path}' was modified after import"
    return None


def store_files(inspection: Inspection, target: Path) -> Path:
    """Copy the checkpoint's files into `target` (created atomically); returns the artifact
    path: the folder, or the .gguf file inside it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".importing-", dir=target.parent))
    try:
        root = (
            inspection.source.parent
            if inspection.format == CheckpointFormat.GGUF
            else (inspection.source)
        )
        for relative in inspection.files:
            destination = staging / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            # copyfile follows symbolic links, as the cache layout's snapshots are links.
            shutil.copyfile(root / relative, destination)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if inspection.format == CheckpointFormat.GGUF:
        return target / inspection.files[0]
    return target


def source_root(inspection: Inspection) -> Path:
    if inspection.format == CheckpointFormat.GGUF:
        return inspection.source.parent
    return inspection.source
