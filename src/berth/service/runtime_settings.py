"""Runtime settings of an endpoint: batching, and the Text Generation runtime and its token limits.

`Endpoint.settings` stores the values that a user set. The local backend passes each of
them to the endpoint's instances as the runtime command-line option of the same name, and
a setting that was never set takes the runtime's default. The column may also contain
settings that the API does not expose: the Echo test aids `echo_delay_ms`, which the
faults tests write, and `echo_cpu_rounds`, which the instances benchmark writes. A merge
keeps them.
"""

import math
from dataclasses import asdict, dataclass
from typing import Any

from berth.db.models import Checkpoint, Model
from berth.errors import InvalidInput, value_text
from berth.runtime.config import (
    DEFAULT_GENERATION_MAX_BATCH_SIZE,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_BATCH_WAIT_MS,
    DEFAULT_MAX_COMPLETION_TOKENS,
    MAX_BATCH_SIZE_LIMIT,
    MAX_BATCH_WAIT_MS_LIMIT,
    MAX_COMPLETION_TOKENS_LIMIT,
    MAX_CONTEXT_LENGTH,
    MIN_CONTEXT_LENGTH,
)
from berth.runtime.selection import (
    AUTO,
    GGUF_RUNTIMES,
    REQUESTABLE_RUNTIMES,
    TRANSFORMERS_CHECKPOINT_RUNTIMES,
    VLLM_INSTALL_HINT,
    RequestedRuntime,
    module_installed,
)
from berth.states import CheckpointFormat, MLApp

# The API's name of the object that contains the settings, the first part of error fields.
FIELD_PREFIX = "runtime_settings"

# Each setting with the ML Apps whose runtimes read it and its default in each. The
# default None of context_length leaves the window to the runtime and the model.
_DEFAULTS: dict[str, dict[MLApp, Any]] = {
    "max_batch_size": {
        MLApp.TEXT_EMBEDDING: DEFAULT_MAX_BATCH_SIZE,
        MLApp.TEXT_GENERATION: DEFAULT_GENERATION_MAX_BATCH_SIZE,
    },
    "max_batch_wait_ms": {MLApp.TEXT_EMBEDDING: DEFAULT_MAX_BATCH_WAIT_MS},
    "runtime": {MLApp.TEXT_GENERATION: AUTO},
    "max_completion_tokens": {MLApp.TEXT_GENERATION: DEFAULT_MAX_COMPLETION_TOKENS},
    "context_length": {MLApp.TEXT_GENERATION: None},
}


@dataclass(frozen=True)
class RuntimeSettings:
    """Settings given in one request. None keeps a setting's value, or its default on create.

    `reset` names the settings to remove, so that their defaults apply again: the API's
    null for a setting.
    """

    max_batch_size: int | None = None
    max_batch_wait_ms: float | None = None
    runtime: str | None = None
    max_completion_tokens: int | None = None
    context_length: int | None = None
    reset: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        unknown = self.reset - _DEFAULTS.keys()
        if unknown:
            raise ValueError(f"unknown runtime settings to reset: {sorted(unknown)}")
        given = self.given()
        both = self.reset & given.keys()
        if both:
            raise ValueError(f"runtime settings both set and reset: {sorted(both)}")

    def given(self) -> dict[str, Any]:
        return {
            name: value
            for name, value in asdict(self).items()
            if name != "reset" and value is not None
        }

    def requested(self) -> bool:
        """Tell whether the request sets or resets any setting."""
        return bool(self.reset or self.given())


def setting_defaults(
    name: str, checkpoint_format: CheckpointFormat | None = None
) -> dict[MLApp, Any]:
    """Return the default of setting `name` in each ML App whose runtime reads it.

    An ML App is left out when a checkpoint of `checkpoint_format` does not use the
    setting, as a GGUF checkpoint does not use max_batch_size. A default of None, as for
    context_length, means that the runtime and the model decide.
    """
    defaults = {
        ml_app: effective_settings({}, ml_app, checkpoint_format)[name]
        for ml_app in _DEFAULTS[name]
    }
    return {
        ml_app: value
        for ml_app, value in defaults.items()
        if value is not None or _DEFAULTS[name][ml_app] is None
    }


def field_name(setting: str) -> str:
    return f"{FIELD_PREFIX}.{setting}"


def effective_settings(
    stored: dict[str, Any], ml_app: MLApp, checkpoint_format: CheckpointFormat | None = None
) -> dict[str, Any]:
    """Return each setting with the value that instances run with.

    Settings that the ML App's runtime does not read are None, and so is the batch size
    of a GGUF checkpoint, which llama.cpp generates one request at a time. An unset
    context_length is None too, because the model decides the window then.
    """
    settings = {
        name: stored.get(name, defaults[ml_app]) if ml_app in defaults else None
        for name, defaults in _DEFAULTS.items()
    }
    if checkpoint_format == CheckpointFormat.GGUF:
        settings["max_batch_size"] = None
    return settings


def merge_settings(
    stored: dict[str, Any],
    requested: RuntimeSettings,
    model: Model,
    checkpoint: Checkpoint | None,
) -> dict[str, Any]:
    """Return `stored` with the requested settings applied, for an endpoint of `model`.

    A reset setting is removed, so that the runtime's default applies again. Resetting a
    setting that is not stored, or that the model's ML App does not use, changes nothing.
    Raises InvalidInput, with the field `runtime_settings.<setting>`, for a value out of
    range, a setting that the model's ML App does not use, a runtime that cannot serve
    the checkpoint, or a context_length above the checkpoint's trained context length.
    The stored runtime and context_length are checked too, because a new checkpoint may
    need another runtime or have a shorter trained context length.
    """
    given = {name: _checked_value(name, value) for name, value in requested.given().items()}
    for name in given:
        _check_ml_app(name, model)
    if "max_batch_size" in given and checkpoint and checkpoint.format == CheckpointFormat.GGUF:
        raise InvalidInput(
            f"{field_name('max_batch_size')} does not apply to model '{model.name}': its "
            "checkpoint is a GGUF file, which llama.cpp generates one request at a time; "
            "leave it out",
            field=field_name("max_batch_size"),
        )
    merged = {
        name: value for name, value in {**stored, **given}.items() if name not in requested.reset
    }
    if model.ml_app is MLApp.TEXT_GENERATION:
        _check_runtime_fits(merged.get("runtime", AUTO), "runtime" in given, model, checkpoint)
        _check_context_length_fits(
            merged.get("context_length"), "context_length" in given, model, checkpoint
        )
    # Checked after the fit, so that a runtime that cannot serve the checkpoint at all is
    # not reported as a package to install.
    if "runtime" in given:
        _check_installed(given["runtime"])
    return merged


def changed_settings(
    before: dict[str, Any],
    after: dict[str, Any],
    ml_app: MLApp,
    checkpoint_format: CheckpointFormat | None = None,
) -> list[str]:
    """Return the names of the settings whose effective value differs, in a stable order."""
    old = effective_settings(before, ml_app, checkpoint_format)
    new = effective_settings(after, ml_app, checkpoint_format)
    return [name for name in _DEFAULTS if old[name] != new[name]]


def _checked_value(name: str, value: Any) -> Any:
    """Return `value` as it is stored: an int, a float or a plain string."""
    field = field_name(name)
    if name == "max_batch_size":
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInput(
                f"{field} must be a whole number, got {value_text(value)}", field=field
            )
        if not 1 <= value <= MAX_BATCH_SIZE_LIMIT:
            raise InvalidInput(
                f"{field} {value} is out of range: use 1 to {MAX_BATCH_SIZE_LIMIT} (texts for "
                "Text Embedding, requests for Text Generation)",
                field=field,
            )
        return value
    if name == "max_completion_tokens":
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInput(
                f"{field} must be a whole number, got {value_text(value)}", field=field
            )
        if not 1 <= value <= MAX_COMPLETION_TOKENS_LIMIT:
            raise InvalidInput(
                f"{field} {value} is out of range: use 1 to {MAX_COMPLETION_TOKENS_LIMIT} "
                "tokens per completion",
                field=field,
            )
        return value
    if name == "context_length":
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInput(
                f"{field} must be a whole number, got {value_text(value)}", field=field
            )
        if not MIN_CONTEXT_LENGTH <= value <= MAX_CONTEXT_LENGTH:
            raise InvalidInput(
                f"{field} {value} is out of range: use {MIN_CONTEXT_LENGTH} to "
                f"{MAX_CONTEXT_LENGTH} tokens for prompt and completion together",
                field=field,
            )
        return value
    if name == "max_batch_wait_ms":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInput(f"{field} must be a number, got {value_text(value)}", field=field)
        if not (math.isfinite(value) and 0 <= value <= MAX_BATCH_WAIT_MS_LIMIT):
            raise InvalidInput(
                f"{field} {value} is out of range: use 0 to {MAX_BATCH_WAIT_MS_LIMIT:g} ms",
                field=field,
            )
        return float(value)
    if value not in REQUESTABLE_RUNTIMES:
        raise InvalidInput(
            f"{field} '{value}' is not a known runtime; use {_one_of(REQUESTABLE_RUNTIMES)}",
            field=field,
        )
    # A RequestedRuntime member becomes its plain value, as the JSON column stores it.
    return str(value)


def _one_of(choices: tuple[str, ...]) -> str:
    quoted = [f"'{choice}'" for choice in choices]
    return f"{', '.join(quoted[:-1])} or {quoted[-1]}" if len(quoted) > 1 else quoted[0]


def _check_ml_app(name: str, model: Model) -> None:
    ml_apps = list(_DEFAULTS[name])
    if model.ml_app not in ml_apps:
        names = " and ".join(ml_app.display_name for ml_app in ml_apps)
        raise InvalidInput(
            f"{field_name(name)} applies only to {names} endpoints, but model "
            f"'{model.name}' has the ML App {model.ml_app.display_name}; leave it out",
            field=field_name(name),
        )


def _check_installed(runtime: str) -> None:
    # Instances run in the server's Python environment (the local backend starts them
    # with the server's interpreter), so a package missing here is missing there too.
    # NOTE: vLLM also needs a CUDA GPU. Checking for one imports torch, which takes
    # seconds, so an instance without a GPU fails at start-up with that reason instead.
    if runtime == RequestedRuntime.VLLM and not module_installed("vllm"):
        raise InvalidInput(
            f"{field_name('runtime')} 'vllm' needs the vllm package, which is not installed "
            f"on the Berth server; install it with `{VLLM_INSTALL_HINT}` in Berth's folder or use "
            f"'{AUTO}'",
            field=field_name("runtime"),
        )


def _check_context_length_fits(
    context_length: int | None, requested: bool, model: Model, checkpoint: Checkpoint | None
) -> None:
    """Raise InvalidInput for a context_length above the checkpoint's trained context length.

    A checkpoint whose trained length is unknown (None) accepts any value in range, and
    the instance's load then rejects one above the length that the files state.
    """
    if checkpoint is None or checkpoint.trained_context_length is None:
        return
    trained = checkpoint.trained_context_length
    if context_length is None or context_length <= trained:
        return
    field = field_name("context_length")
    name = f"{model.name}:{checkpoint.name}"
    if requested:
        raise InvalidInput(
            f"{field} {context_length} exceeds the trained context length of checkpoint "
            f"'{name}' ({trained} tokens); set context_length to at most {trained}, or "
            "leave it unset to use the model's own",
            field=field,
        )
    # The value was set before and the update moves the endpoint to this checkpoint.
    raise InvalidInput(
        f"{field} {context_length}, which the endpoint keeps unless the update changes it, "
        f"exceeds the trained context length of checkpoint '{name}' ({trained} tokens); "
        f"set context_length to at most {trained}, or reset it (null) to use the model's own",
        field=field,
    )


def _check_runtime_fits(
    runtime: str, requested: bool, model: Model, checkpoint: Checkpoint | None
) -> None:
    is_gguf = checkpoint is not None and checkpoint.format == CheckpointFormat.GGUF
    fitting = GGUF_RUNTIMES if is_gguf else TRANSFORMERS_CHECKPOINT_RUNTIMES
    if runtime in fitting:
        return
    choices = _one_of(tuple(str(item) for item in fitting))
    files = "is a GGUF file" if is_gguf else "is not a GGUF file"
    reason = f"runtime '{runtime}' cannot serve model '{model.name}' because its checkpoint {files}"
    if requested:
        fix = f"use {choices}"
    else:
        # The runtime was set before and the update changes the model.
        fix = (
            f"the endpoint keeps its runtime unless the update changes it, so also set "
            f"{field_name('runtime')} to {choices}"
        )
    raise InvalidInput(f"{reason}; {fix}", field=field_name("runtime"))
