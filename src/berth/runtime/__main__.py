"""Command line of the instance runtime: `python -m berth.runtime --ml-app APP ...`.

Exit status: 2 for invalid arguments, 3 when the model failed to load, and 1 when
uvicorn fails to start, for example on a port in use. On SIGTERM or SIGINT uvicorn stops
listening at once (new connections are refused, so a gateway tries another instance),
lets requests in flight finish for up to --shutdown-timeout-s, and then re-raises the
signal, so the process ends by that signal.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import socket
import sys
import threading
import time
from pathlib import Path

import uvicorn

from berth.runtime.config import (
    DEFAULT_GENERATION_MAX_BATCH_SIZE,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_BATCH_WAIT_MS,
    DEFAULT_MAX_COMPLETION_TOKENS,
    LLAMA_CPP_DEFAULT_CONTEXT_LENGTH,
    RuntimeConfig,
)
from berth.runtime.loading import describe_load_failure, load_model
from berth.runtime.selection import AUTO, REQUESTABLE_RUNTIMES
from berth.runtime.server import RuntimeState, build_app
from berth.states import CheckpointFormat, MLApp

logger = logging.getLogger("berth.runtime")

EXIT_LOAD_FAILED = 3
# Longer than the gateway keeps an idle connection open, so the gateway, not the
# instance, closes idle connections and never sends a request on one being closed.
KEEP_ALIVE_TIMEOUT_S = 75


def _ml_app(text: str) -> MLApp:
    try:
        return MLApp.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _checkpoint_format(text: str) -> CheckpointFormat:
    try:
        return CheckpointFormat(text.strip().lower())
    except ValueError:
        choices = ", ".join(f"'{item.value}'" for item in CheckpointFormat)
        raise argparse.ArgumentTypeError(
            f"unknown checkpoint format '{text}'; choose one of {choices}"
        ) from None


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    message = f"must be a whole number, 0 or more, got '{text}'"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(message) from None
    if value < 0:
        raise argparse.ArgumentTypeError(message)
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number, 0 or more, got {text}")
    return value


def _optional_positive_float(text: str) -> float | None:
    value = float(text)
    if value == 0:
        return None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number, 0 or more, got {text}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m berth.runtime",
        description="Serve one model over HTTP with OpenAI-compatible routes.",
    )
    parser.add_argument(
        "--ml-app",
        type=_ml_app,
        required=True,
        help="ML App to serve: text-generation, text-embedding or echo.",
    )
    parser.add_argument(
        "--model-path",
        required=True,
        help="Local folder with the model files, or the .gguf file with --checkpoint-format "
        "gguf. Echo ignores it, so it may be ''.",
    )
    parser.add_argument(
        "--model-name",
        required=True,
        help="Model id reported by /v1/models and in the 'model' field of responses.",
    )
    parser.add_argument(
        "--checkpoint-format",
        type=_checkpoint_format,
        default=None,
        help="Layout of the model files: transformers, sentence-transformers or gguf (a "
        "single .gguf file, served by llama.cpp). Default: the ML App's folder layout.",
    )
    parser.add_argument(
        "--runtime",
        choices=REQUESTABLE_RUNTIMES,
        default=AUTO,
        help="Text Generation: library that runs the model. auto uses vLLM when it is "
        "installed and a CUDA GPU is present, else transformers, and llama.cpp for GGUF "
        "files (default: %(default)s).",
    )

    listen = parser.add_mutually_exclusive_group(required=True)
    listen.add_argument(
        "--fd",
        type=int,
        help="File descriptor of a bound, listening TCP socket inherited from the parent.",
    )
    listen.add_argument("--port", type=int, help="TCP port to listen on (with --host).")
    parser.add_argument(
        "--local-fd",
        type=int,
        help="With --fd: file descriptor of a bound, listening Unix socket inherited from "
        "the parent, served as well, for gateways on the same machine.",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="Address to listen on with --port (default: %(default)s).",
    )

    parser.add_argument(
        "--instance-id",
        default=None,
        help="Id included in every log line (default: pid-<process id>).",
    )

    parser.add_argument(
        "--max-batch-size",
        type=_positive_int,
        default=None,
        help="Text Embedding: maximum number of texts encoded together (default: "
        f"{DEFAULT_MAX_BATCH_SIZE}). Text Generation on transformers: maximum number of "
        f"queued requests generated together (default: {DEFAULT_GENERATION_MAX_BATCH_SIZE}).",
    )
    parser.add_argument(
        "--max-batch-wait-ms",
        type=_non_negative_float,
        default=DEFAULT_MAX_BATCH_WAIT_MS,
        help="Text Embedding: time in ms that a batch may wait for more texts after its "
        "first text arrived while the encoder is idle; texts that arrive while it is busy "
        "form the next batch anyway (default: %(default)s).",
    )
    parser.add_argument(
        "--max-completion-tokens",
        type=_positive_int,
        default=DEFAULT_MAX_COMPLETION_TOKENS,
        help="Text Generation: maximum number of tokens that one request may generate, and "
        "the number that a request without max_tokens generates at most; the model's "
        "context length bounds both (default: %(default)s).",
    )
    parser.add_argument(
        "--context-length",
        type=_positive_int,
        default=None,
        help="Text Generation: context window in tokens, prompt and completion together. "
        "Loading fails when it exceeds the model's trained context length (default: the "
        f"trained length, at most {LLAMA_CPP_DEFAULT_CONTEXT_LENGTH} on llama.cpp).",
    )
    parser.add_argument(
        "--echo-delay-ms",
        type=_non_negative_float,
        default=0.0,
        help="Echo: pause in ms before each streamed word and before each embedding reply, "
        "to imitate a model's generation time (default: %(default)s).",
    )
    parser.add_argument(
        "--echo-cpu-rounds",
        type=_non_negative_int,
        default=0,
        help="Echo: rounds of SHA-256 computed per embedded text and per chat or completion "
        "request, in the request's thread, to imitate a model that computes on one core. "
        "The work per round is fixed, so a request costs the same CPU time on a loaded "
        "machine (default: %(default)s).",
    )
    parser.add_argument(
        "--shutdown-timeout-s",
        type=_non_negative_float,
        default=30.0,
        help="After SIGTERM, maximum time in s that requests in flight, streams included, "
        "get to finish before they are cancelled (default: %(default)s).",
    )
    parser.add_argument(
        "--stall-timeout-s",
        type=_optional_positive_float,
        default=None,
        help="Report the instance unhealthy on /health when requests are in flight and no "
        "response data was sent for this many seconds; 0 turns the check off (default: off).",
    )
    args = parser.parse_args(argv)
    if args.local_fd is not None and args.fd is None:
        parser.error("--local-fd needs --fd: the Unix socket is served beside an inherited one")
    return args


class _InstanceIdFilter(logging.Filter):
    def __init__(self, instance_id: str) -> None:
        super().__init__()
        self._instance_id = instance_id

    def filter(self, record: logging.LogRecord) -> bool:
        record.instance_id = self._instance_id
        return True


def configure_logging(instance_id: str) -> None:
    """Send all log records to stderr, each line tagged with the instance id."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_InstanceIdFilter(instance_id))
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s [instance %(instance_id)s] %(message)s"
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logger.setLevel(logging.INFO)


def _load_in_background(state: RuntimeState, server: uvicorn.Server, failures: list[str]) -> None:
    config = state.config
    started = time.perf_counter()
    try:
        model = load_model(config)
    except BaseException as error:  # noqa: BLE001 - any failure must end the process with status 3
        reason = describe_load_failure(error, config)
        logger.error("model %s failed to load: %s", config.model_name, reason, exc_info=True)
        failures.append(reason)
        state.load_failed = True
        server.should_exit = True
        return
    state.model = model
    logger.info(
        "model %s (%s) loaded in %.2f s by runtime %s%s",
        config.model_name,
        config.ml_app.value,
        time.perf_counter() - started,
        model.runtime or "(unnamed)",
        f" ({model.runtime_note})" if model.runtime_note else "",
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = RuntimeConfig(
        ml_app=args.ml_app,
        model_path=Path(args.model_path) if args.model_path else None,
        model_name=args.model_name,
        instance_id=args.instance_id or f"pid-{os.getpid()}",
        checkpoint_format=args.checkpoint_format,
        runtime=args.runtime,
        max_batch_size=args.max_batch_size,
        max_batch_wait_ms=args.max_batch_wait_ms,
        max_completion_tokens=args.max_completion_tokens,
        context_length=args.context_length,
        echo_delay_ms=args.echo_delay_ms,
        echo_cpu_rounds=args.echo_cpu_rounds,
        stall_timeout_s=args.stall_timeout_s,
    )
    configure_logging(config.instance_id)

    state = RuntimeState(config)
    sockets: list[socket.socket] | None = None
    listen_options: dict[str, object] = {"host": args.host, "port": args.port}
    if args.fd is not None:
        # Take ownership of the inherited descriptor instead of passing fd= to uvicorn.
        # uvicorn would listen on a duplicate and close only that at shutdown, so the
        # original would stay open and queue connections that are never accepted.
        sockets = [socket.socket(fileno=args.fd)]
        listen_options = {}
    if sockets is not None and args.local_fd is not None:
        sockets.append(socket.socket(fileno=args.local_fd))
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(state),
            loop="auto",
            http="auto",
            access_log=False,
            log_level="warning",
            log_config=None,
            lifespan="on",
            timeout_keep_alive=KEEP_ALIVE_TIMEOUT_S,
            # uvicorn takes whole seconds.
            timeout_graceful_shutdown=math.ceil(args.shutdown_timeout_s),
            **listen_options,  # type: ignore[arg-type]
        )
    )

    where = f"fd {args.fd}" if args.fd is not None else f"{args.host}:{args.port}"
    if args.local_fd is not None:
        where += f" and Unix socket fd {args.local_fd}"
    logger.info(
        "starting %s runtime for model %s from %s on %s",
        config.ml_app.value,
        config.model_name,
        config.model_path or "(no path)",
        where,
    )
    failures: list[str] = []
    loader = threading.Thread(
        target=_load_in_background,
        args=(state, server, failures),
        name="berth-model-loader",
        daemon=True,  # a SIGTERM during loading must not wait for the load to finish
    )
    loader.start()
    server.run(sockets=sockets)

    if failures:
        # The last stderr line is the reason, for a parent that reports only the tail.
        print(f"berth.runtime: error: {failures[0]}", file=sys.stderr, flush=True)
        return EXIT_LOAD_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
