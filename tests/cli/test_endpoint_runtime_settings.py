"""`berth endpoint` runtime settings options, and the SDK keywords that they use."""

from berth.client import Client
from tests.cli.conftest import WAIT_TIMEOUT_S, RunCli, parse_json, unboxed, unique

EMBEDDING_MODEL = "all-MiniLM-L6-v2"


def test_create_sets_batching(cli: RunCli) -> None:
    name = unique("batching")

    result = cli(
        "endpoint",
        "create",
        "--endpoint-name",
        name,
        "--model",
        EMBEDDING_MODEL,
        "--max-batch-size",
        "4",
        "--max-batch-wait-ms",
        "2.5",
        "-o",
        "json",
    )

    created = parse_json(result)
    assert created["runtime_settings"] == {
        "max_batch_size": 4,
        "max_batch_wait_ms": 2.5,
        "runtime": None,
        "max_completion_tokens": None,
        "context_length": None,
    }


def test_info_shows_settings(cli: RunCli, client: Client) -> None:
    name = unique("batch-info")
    client.create_endpoint("default", name, EMBEDDING_MODEL, max_batch_size=8)

    result = cli("endpoint", "info", name)

    assert result.exit_code == 0, result.output
    assert "Max batch size   8 texts" in result.stdout
    assert "Max batch wait   0 ms" in result.stdout
    assert "Runtime choice" not in result.stdout
    assert "Max completion" not in result.stdout
    assert "Context length" not in result.stdout


def test_info_shows_runtime_choice(cli: RunCli, client: Client) -> None:
    name = unique("runtime-info")
    client.create_endpoint("default", name, "demo-tiny-llama", runtime="transformers")
    client.stop_endpoint(name)

    result = cli("endpoint", "info", name)

    assert result.exit_code == 0, result.output
    assert "Runtime choice   transformers" in result.stdout
    assert "Max batch size   8 requests" in result.stdout
    assert "Max completion   4096 tokens" in result.stdout
    assert "Context length   model default" in result.stdout
    assert "Max batch wait" not in result.stdout


def test_update_setting_waits_for_new_instances(cli: RunCli, client: Client) -> None:
    name = unique("batch-roll")
    created = client.create_endpoint("default", name, EMBEDDING_MODEL, max_batch_size=4)
    live = client.wait_for_state(created["id"], {"Live"}, timeout_s=float(WAIT_TIMEOUT_S))

    result = cli(
        "endpoint",
        "update",
        name,
        "--max-batch-size",
        "8",
        "--wait",
        "--timeout",
        WAIT_TIMEOUT_S,
        "-o",
        "json",
    )

    updated = parse_json(result)
    assert updated["runtime_settings"]["max_batch_size"] == 8
    assert updated["generation"] == live["generation"] + 1
    assert updated["state"] == "Live"
    # --wait returns only once the instances of the new generation serve.
    assert [row["generation"] for row in updated["instance_list"]] == [updated["generation"]]
    assert [row["state"] for row in updated["instance_list"]] == ["Ready"]


def test_update_same_value_keeps_generation(cli: RunCli, client: Client) -> None:
    name = unique("batch-same")
    created = client.create_endpoint("default", name, EMBEDDING_MODEL, max_batch_size=4)

    result = cli("endpoint", "update", name, "--max-batch-size", "4", "-o", "json")

    updated = parse_json(result)
    assert updated["generation"] == created["generation"]
    assert updated["version"] == created["version"]


def test_setting_of_other_ml_app_fails(cli: RunCli) -> None:
    result = cli(
        "endpoint",
        "create",
        "--endpoint-name",
        unique("echo-batch"),
        "--model",
        "echo",
        "--max-batch-size",
        "4",
    )

    assert result.exit_code == 1
    message = unboxed(result.stderr)
    assert (
        "--max-batch-size applies only to Text Embedding and Text Generation endpoints" in message
    )
    assert "model 'echo' has the ML App Echo" in message
    assert "runtime_settings" not in message


def test_runtime_error_names_cli_option(cli: RunCli) -> None:
    name = unique("echo-runtime")

    created = cli(
        "endpoint", "create", "--endpoint-name", name, "--model", "echo", "--runtime", "auto"
    )
    updated = cli("endpoint", "update", "anything", "--runtime", "transformers")

    assert created.exit_code == 1
    assert created.stderr == (
        "Error: --runtime applies only to Text Generation endpoints, but model 'echo' has "
        "the ML App Echo; leave it out\n"
    )
    # An error without a runtime setting in it passes through unchanged.
    assert updated.exit_code == 1
    assert "endpoint 'anything' not found" in updated.stderr


def test_out_of_range_batch_size_fails(cli: RunCli) -> None:
    result = cli(
        "endpoint",
        "create",
        "--endpoint-name",
        unique("huge-batch"),
        "--model",
        EMBEDDING_MODEL,
        "--max-batch-size",
        "5000",
    )

    assert result.exit_code == 1
    assert "--max-batch-size" in unboxed(result.stderr)
    assert "runtime_settings" not in unboxed(result.stderr)
    assert "less than or equal to 1024" in unboxed(result.stderr)


def test_unknown_runtime_is_usage_error(cli: RunCli) -> None:
    result = cli(
        "endpoint",
        "create",
        "--endpoint-name",
        unique("tgi"),
        "--model",
        "demo-tiny-llama",
        "--runtime",
        "tgi",
    )

    assert result.exit_code == 2
    assert "'tgi' is not one of" in unboxed(result.output)


def test_update_runtime_only_is_a_change(cli: RunCli, client: Client) -> None:
    name = unique("runtime-update")
    created = client.create_endpoint("default", name, "demo-tiny-llama")
    client.stop_endpoint(name)

    result = cli("endpoint", "update", name, "--runtime", "TRANSFORMERS", "-o", "json")

    updated = parse_json(result)
    assert updated["runtime_settings"]["runtime"] == "transformers"
    assert updated["generation"] == created["generation"] + 1


def test_reset_setting_restores_default(cli: RunCli, client: Client) -> None:
    name = unique("batch-reset")
    created = client.create_endpoint(
        "default", name, EMBEDDING_MODEL, max_batch_size=4, max_batch_wait_ms=2.5
    )
    client.stop_endpoint(name)

    result = cli(
        "endpoint",
        "update",
        name,
        "--reset-setting",
        "max-batch-size",
        "--reset-setting",
        "MAX-BATCH-WAIT-MS",
        "-o",
        "json",
    )

    updated = parse_json(result)
    assert updated["runtime_settings"] == {
        "max_batch_size": 32,
        "max_batch_wait_ms": 0.0,
        "runtime": None,
        "max_completion_tokens": None,
        "context_length": None,
    }
    assert updated["generation"] == created["generation"] + 1


def test_reset_and_set_same_setting_is_usage_error(cli: RunCli) -> None:
    result = cli(
        "endpoint",
        "update",
        "anything",
        "--max-batch-size",
        "8",
        "--reset-setting",
        "max-batch-size",
    )

    assert result.exit_code == 2
    assert "--max-batch-size and --reset-setting max-batch-size contradict each other" in unboxed(
        result.output
    )


def test_unknown_reset_setting_is_usage_error(cli: RunCli) -> None:
    result = cli("endpoint", "update", "anything", "--reset-setting", "batch")

    assert result.exit_code == 2
    assert "'batch' is not one of" in unboxed(result.output)


def test_completion_limit_set_and_reset(cli: RunCli, client: Client) -> None:
    name = unique("completion-limit")
    created = parse_json(
        cli(
            "endpoint",
            "create",
            "--endpoint-name",
            name,
            "--model",
            "demo-tiny-llama",
            "--max-completion-tokens",
            "16384",
            "-o",
            "json",
        )
    )
    client.stop_endpoint(name)

    info = cli("endpoint", "info", name)
    reset = cli(
        "endpoint", "update", name, "--reset-setting", "max-completion-tokens", "-o", "json"
    )

    assert created["runtime_settings"]["max_completion_tokens"] == 16384
    assert info.exit_code == 0, info.output
    assert "Max completion   16384 tokens" in info.stdout
    updated = parse_json(reset)
    assert updated["runtime_settings"]["max_completion_tokens"] == 4096
    assert updated["generation"] == created["generation"] + 1


def test_out_of_range_completion_limit_fails(cli: RunCli) -> None:
    result = cli(
        "endpoint",
        "create",
        "--endpoint-name",
        unique("huge-limit"),
        "--model",
        "demo-tiny-llama",
        "--max-completion-tokens",
        "2000000",
    )

    assert result.exit_code == 1
    message = unboxed(result.stderr)
    assert "--max-completion-tokens" in message
    assert "runtime_settings" not in message
    assert "--max-completion-tokens 2000000 is out of range: use 1 to 1048576" in message


def test_context_length_set_and_reset(cli: RunCli, client: Client) -> None:
    name = unique("context-length")
    created = parse_json(
        cli(
            "endpoint",
            "create",
            "--endpoint-name",
            name,
            "--model",
            "demo-tiny-llama",
            "--context-length",
            "256",
            "-o",
            "json",
        )
    )
    client.stop_endpoint(name)

    info = cli("endpoint", "info", name)
    reset = cli("endpoint", "update", name, "--reset-setting", "context-length", "-o", "json")

    assert created["runtime_settings"]["context_length"] == 256
    assert info.exit_code == 0, info.output
    assert "Context length   256 tokens" in info.stdout
    updated = parse_json(reset)
    assert updated["runtime_settings"]["context_length"] is None
    assert updated["generation"] == created["generation"] + 1


def test_out_of_range_context_length_fails(cli: RunCli) -> None:
    result = cli(
        "endpoint",
        "create",
        "--endpoint-name",
        unique("tiny-window"),
        "--model",
        "demo-tiny-llama",
        "--context-length",
        "8",
    )

    assert result.exit_code == 1
    message = unboxed(result.stderr)
    assert "runtime_settings" not in message
    assert "--context-length 8 is out of range: use 16 to 1048576 tokens" in message
