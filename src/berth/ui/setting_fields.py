"""The runtime settings that the endpoint dialogs edit, with the limits that the API checks."""

from dataclasses import dataclass
from typing import Any

from berth.runtime.config import (
    LLAMA_CPP_DEFAULT_CONTEXT_LENGTH,
    MAX_BATCH_SIZE_LIMIT,
    MAX_BATCH_WAIT_MS_LIMIT,
    MAX_COMPLETION_TOKENS_LIMIT,
    MAX_CONTEXT_LENGTH,
    MIN_CONTEXT_LENGTH,
)
from berth.runtime.selection import REQUESTABLE_RUNTIMES
from berth.service.runtime_settings import FIELD_PREFIX, setting_defaults
from berth.states import CheckpointFormat


@dataclass(frozen=True)
class SettingField:
    """A runtime setting as one field of the endpoint dialogs.

    A field with `choices` is a select. Any other field is a number input that takes
    `minimum` to `maximum`, and only whole numbers when `whole` is true.
    """

    name: str  # the setting's key in the API's runtime_settings object
    label: str
    description: str
    minimum: float = 0
    maximum: float = 0
    whole: bool = True
    unit: str = ""
    choices: tuple[str, ...] = ()
    # Shown as the server default where the default is None: the model decides.
    model_default: str = ""

    @property
    def error_field(self) -> str:
        """The field name that the API's errors give for this setting."""
        return f"{FIELD_PREFIX}.{self.name}"

    @property
    def range_text(self) -> str:
        """The accepted values, such as "1 to 1024" or "0 to 1000 ms"."""
        if self.choices:
            return ", ".join(self.choices)
        text = f"{_number_text(self.minimum)} to {_number_text(self.maximum)}"
        return f"{text} {self.unit}" if self.unit else text

    @property
    def defaults(self) -> dict[str, Any]:
        """The server default by ML App, for the ML Apps whose runtimes read the setting."""
        return {ml_app.value: value for ml_app, value in setting_defaults(self.name).items()}

    @property
    def gguf_defaults(self) -> dict[str, Any]:
        """`defaults` for an endpoint whose checkpoint is a GGUF file."""
        defaults = setting_defaults(self.name, CheckpointFormat.GGUF)
        return {ml_app.value: value for ml_app, value in defaults.items()}


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


# One entry per setting that the dialogs offer, in the order they show them.
SETTING_FIELDS = (
    SettingField(
        "max_completion_tokens",
        "Max completion tokens",
        "The maximum number of tokens that one request may generate, and that a request "
        "without max_tokens generates. The model's context length bounds both.",
        minimum=1,
        maximum=MAX_COMPLETION_TOKENS_LIMIT,
        unit="tokens",
    ),
    SettingField(
        "context_length",
        "Context length",
        "The context window, prompt and reply together. A value above the model's trained "
        "context length makes the instances fail to load.",
        minimum=MIN_CONTEXT_LENGTH,
        maximum=MAX_CONTEXT_LENGTH,
        unit="tokens",
        model_default=(
            "the model's trained length, and at most "
            f"{LLAMA_CPP_DEFAULT_CONTEXT_LENGTH} tokens on llama.cpp"
        ),
    ),
    SettingField(
        "max_batch_size",
        "Max batch size",
        "The maximum number of texts that an instance encodes together (Text Embedding), or "
        "of queued requests that transformers generates together (Text Generation).",
        minimum=1,
        maximum=MAX_BATCH_SIZE_LIMIT,
    ),
    SettingField(
        "max_batch_wait_ms",
        "Max batch wait",
        "How long a batch waits for more texts while the encoder is idle.",
        minimum=0,
        maximum=MAX_BATCH_WAIT_MS_LIMIT,
        whole=False,
        unit="ms",
    ),
    SettingField(
        "runtime",
        "Runtime",
        "The library that runs the model. llama.cpp serves only GGUF checkpoints, "
        "transformers and vllm only the others, and auto chooses.",
        choices=REQUESTABLE_RUNTIMES,
    ),
)
