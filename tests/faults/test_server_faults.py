"""The Berth server itself killed or stopped: nothing committed is lost, endpoints come
back Live without duplicate instances, and a graceful stop drains requests in flight."""

import signal
import threading
import time

import httpx
import psutil
import pytest

from berth.client import ApiError, Client, ConnectionFailed
from tests.faults.conftest import deploy_paced_echo, record, runtime_processes, settled
from tests.faults.load import LoadGenerator
from tests.support import BerthServer, pid_alive, wait_until

RECOVERY_TIMEOUT_S = 60.0
WARM_UP_REQUESTS = 20


class Writer(threading.Thread):
    """Sets the endpoint's description to an increasing number until stopped, and
    remembers the last number the server acknowledged."""

    def __init__(self, url: str, api_key: str, endpoint_id: str) -> None:
        super().__init__(name="description-writer", daemon=True)
        self._client = Client(server=url, api_key=api_key)
        self._endpoint_id = endpoint_id
        self._halted = threading.Event()
        self.acknowledged = 0

    def run(self) -> None:
        number = 0
        while not self._halted.is_set() and number < 10_000:
            number += 1
            try:
                self._client.update_endpoint(self._endpoint_id, description=str(number))
            except (ApiError, ConnectionFailed, httpx.HTTPError):
                return
            self.acknowledged = number

    def stop(self) -> None:
        self._halted.set()
        self.join(timeout=10)
        self._client.close()


@pytest.mark.timeout(240)
def test_killed_server_recovers_under_load(own_server: BerthServer) -> None:
    own_server.start()
    client = own_server.client()
    endpoint, key = deploy_paced_echo(client, own_server, "fault-server-kill", 2)
    old_pids = {row["pid"] for row in endpoint["instance_list"]}
    load = LoadGenerator(endpoint["openai_base_url"], key, "SIGKILL of the server, then restart")
    writer = Writer(own_server.url, own_server.env["BERTH_ADMIN_KEY"], endpoint["id"])

    with load:
        load.wait_for_requests(WARM_UP_REQUESTS)
        writer.start()
        wait_until(lambda: writer.acknowledged >= 5, 10, "a few acknowledged updates")
        killed_at = time.monotonic()
        own_server.kill()
        writer.stop()
        client.close()

        own_server.start()
        up_at = time.monotonic()
        client = own_server.client()
        info = wait_until(
            lambda: settled(client, own_server, endpoint["id"], 2),
            RECOVERY_TIMEOUT_S,
            "the endpoint to be Live again with 2 instances",
        )
        live_at = time.monotonic()
        load.wait_for_requests(len(load.figures.outcomes) + 2 * WARM_UP_REQUESTS)

    figures = record(load.figures)
    in_flight = [o for o in figures.outcomes if o.started < killed_at < o.ended]
    after_restart = [o for o in figures.outcomes if o.started >= up_at]
    while_down = [o for o in figures.failed if killed_at <= o.started < up_at]
    figures.notes["cut at the kill"] = sum(1 for o in in_flight if not o.ok)
    figures.notes["refused while down"] = len(while_down)
    figures.notes["failed after restart"] = sum(1 for o in after_restart if not o.ok)
    figures.notes["Live again after s"] = round(live_at - killed_at, 1)

    # Requests cut by the kill broke off in transport, with no HTTP error status.
    assert {o.result for o in in_flight if not o.ok} <= {"cut", "stream_cut"}
    assert {o.result for o in while_down} <= {"refused", "cut"}
    assert after_restart and all(o.ok for o in after_restart), figures.summary()

    # Nothing acknowledged was lost; the update in flight at the kill may have landed too.
    description = int(info["description"])
    assert writer.acknowledged <= description <= writer.acknowledged + 1
    # Exactly the two instances run, none of the old processes is left.
    new_pids = {row["pid"] for row in info["instance_list"]}
    assert new_pids.isdisjoint(old_pids)
    assert not any(pid_alive(pid) for pid in old_pids)
    assert {process.pid for process in runtime_processes(own_server)} == new_pids
    client.close()


@pytest.mark.timeout(240)
def test_server_killed_during_scale_up(own_server: BerthServer) -> None:
    own_server.start()
    with own_server.client() as client:
        endpoint, _key = deploy_paced_echo(client, own_server, "fault-kill-scaling", 1)
        client.update_endpoint(endpoint["id"], instances=3)
        # Kill as soon as the first new instance process exists, before it is ready.
        wait_until(
            lambda: len(client.get_endpoint(endpoint["id"])["instance_list"]) > 1,
            10,
            "a new instance to start",
            interval_s=0.02,
        )
    own_server.kill()

    own_server.start()
    with own_server.client() as client:
        info = wait_until(
            lambda: settled(client, own_server, endpoint["id"], 3),
            RECOVERY_TIMEOUT_S,
            "3 instances after the restart",
        )
    pids = {row["pid"] for row in info["instance_list"]}
    assert len(pids) == 3
    assert {process.pid for process in runtime_processes(own_server)} == pids


@pytest.mark.timeout(120)
@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGHUP], ids=["TERM", "HUP"])
def test_graceful_stop_drains_requests(own_server: BerthServer, signal_number: int) -> None:
    """SIGTERM, and SIGHUP from a closed terminal, let requests in flight finish."""
    name = signal.Signals(signal_number).name
    own_server.start()
    with own_server.client() as client:
        endpoint, key = deploy_paced_echo(client, own_server, "fault-drain-server", 2, 50)
    pids = [row["pid"] for row in endpoint["instance_list"]]
    # Requests of 40 words at 50 ms per word last about 2 s.
    load = LoadGenerator(
        endpoint["openai_base_url"], key, f"{name} of the server with requests in flight", words=40
    )

    with load:
        load.wait_for_requests(4)
        load.halt()
        stopped_at = time.monotonic()
        status = own_server.stop(signal_number=signal_number)
    figures = record(load.figures)
    in_flight = [o for o in figures.outcomes if o.started < stopped_at < o.ended]
    figures.notes[f"in flight at {name}"] = len(in_flight)

    assert status in (0, -signal_number)
    assert in_flight, "no request was in flight when the server was stopped"
    assert figures.failed == [], figures.summary()
    assert not any(pid_alive(pid) for pid in pids)


# 40 words at 300 ms each keep a request in its instance for about 12 s.
CUTOFF_WORDS = 40
CUTOFF_DELAY_MS = 300


def _server_connections(server: BerthServer) -> int:
    """Count the connections that the server process has accepted on its port."""
    assert server.process is not None
    connections = psutil.Process(server.process.pid).net_connections(kind="tcp")
    return sum(
        1
        for connection in connections
        if connection.laddr.port == server.port and connection.status == psutil.CONN_ESTABLISHED
    )


@pytest.mark.timeout(120)
def test_shutdown_timeout_answers_requests(own_server: BerthServer) -> None:
    """Requests still running when BERTH_SHUTDOWN_TIMEOUT_S runs out get a JSON 503, or
    an error event when their stream has started, and the log has no traceback."""
    own_server.env["BERTH_SHUTDOWN_TIMEOUT_S"] = "1"
    own_server.start()
    with own_server.client() as client:
        endpoint, key = deploy_paced_echo(
            client, own_server, "fault-cutoff", 1, delay_ms=CUTOFF_DELAY_MS
        )
    url = f"{endpoint['openai_base_url']}/completions"
    headers = {"Authorization": f"Bearer {key}"}
    prompt = " ".join(f"word{number}" for number in range(CUTOFF_WORDS))
    plain_results: list[httpx.Response | Exception] = []

    def send_plain() -> None:
        try:
            body = {"prompt": prompt, "max_tokens": 480}
            plain_results.append(httpx.post(url, json=body, headers=headers, timeout=60))
        except httpx.HTTPError as exc:
            plain_results.append(exc)

    plain_senders = [threading.Thread(target=send_plain) for _ in range(2)]
    for sender in plain_senders:
        sender.start()
    wait_until(
        lambda: _server_connections(own_server) >= 2, 10, "the server to accept both requests"
    )

    stream_body = {"prompt": prompt, "max_tokens": 480, "stream": True}
    with httpx.stream("POST", url, json=stream_body, headers=headers, timeout=60) as stream:
        assert stream.status_code == 200
        chunks = stream.iter_bytes()
        received = next(chunks)
        status = own_server.stop()
        received += b"".join(chunks)
    for sender in plain_senders:
        sender.join(timeout=30)

    assert status in (0, -signal.SIGTERM), own_server.log()
    assert len(plain_results) == 2
    for result in plain_results:
        assert isinstance(result, httpx.Response), result
        assert result.status_code == 503, result.text
        assert result.headers["content-type"] == "application/json"
        assert result.headers["retry-after"] == "5"
        assert result.json()["error"]["code"] == "server_shutting_down"
    events = [line for line in received.decode().splitlines() if line.startswith("data: ")]
    assert len(events) < CUTOFF_WORDS, "the stream finished before the server stopped"
    assert "server_shutting_down" in events[-1], received.decode()
    log = own_server.log()
    assert "Traceback" not in log, log
    assert log.count("responded with 503 before its response started") == 2, log
    assert log.count("ended its event stream with an error event") == 1, log
