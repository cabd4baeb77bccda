"""codila-lsp as a thin client: the same server tests, with every decode on the team server.

The tests below that come from test_server.py run unchanged against a language server whose
worker sends decodes to `codila serve` (the shared one of serve_fixtures.py: local Ray, two
replicas, the tiny pair): drafts, cancels, edits, progress and statistics must look exactly as
with models in-process. Then what only a remote engine can do: lose the connection, refuse the
token, and stop a stale decode on its replica within one iteration.
"""

from __future__ import annotations

import os
import sys

import pytest
import pytest_asyncio
import pytest_lsp
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient
from serve_fixtures import URL, TeamServer, token_of
from serve_fixtures import team_server  # noqa: F401 - the shared server, a fixture
from test_server import (  # noqa: F401 - the tests are collected here, where `client` is this module's
    CLIENT_SETTINGS,
    infill,
    long_settings,
    initialize,
    infill_params,
    inline_params,
    long_infill,
    open_doc,
    plain,
    test_cancel_request_stops_decode_and_server_keeps_serving,
    test_drafts_echo_the_uri_exactly_as_the_client_sent_it,
    test_drafts_stream_before_response_and_last_equals_result,
    test_edit_touching_span_cancels,
    test_infill_selection_command_applies_edit_and_answers_with_statistics,
    test_inline_completion_mid_line_replaces_rest_of_line,
    test_loading_and_decoding_progress_reach_the_client_as_work_done_progress,
    test_malformed_infill_request_is_an_error,
    test_newer_request_cancels_older,
    test_non_ascii_document,
    until,
)

from codila_engine.serve.client import RemoteEngine
from lsp_server import protocol

pytestmark = pytest.mark.asyncio(loop_scope="module")  # the async tests share the module's clients
EDITOR = "editor"  # the language servers' client name on the team server


def launch(url: str, token: str) -> ClientServerConfig:
    """codila-lsp with its decodes on the engine at `url`, with `token`."""
    return ClientServerConfig(
        server_command=[sys.executable, "-m", "lsp_server", "--engine-url", url],
        server_env={**os.environ, "CODILA_TOKEN": token},
    )


@pytest.fixture(scope="module", autouse=True)
def engine_running(team_server: TeamServer):  # noqa: F811
    """The team server runs before any language server here starts (and looks for it)."""
    return team_server


@pytest_lsp.fixture(scope="module", config=launch(URL, token_of(EDITOR)))
async def client(lsp_client: LanguageClient, tiny_pair):
    await initialize(lsp_client, tiny_pair)
    yield
    await lsp_client.shutdown_session()


@pytest_asyncio.fixture(loop_scope="module")
async def long_decodes(client: LanguageClient):
    """test_server's, on this module's event loop (where this module's client lives)."""
    async with long_settings(client):
        yield


async def test_models_come_from_the_team_server(client: LanguageClient, team_server: TeamServer):  # noqa: F811
    await until(lambda: any("models loaded" in m.message for m in client.log_messages), "loaded models")
    loaded = [m.message for m in client.log_messages if "models loaded" in m.message][0]
    assert RemoteEngine(team_server.url, token_of(EDITOR)).name in loaded


async def test_a_stale_request_is_cancelled_on_its_replica_within_one_iteration(
    client: LanguageClient,
    long_decodes,  # noqa: F811
    team_server: TeamServer,  # noqa: F811
):
    engine = RemoteEngine(team_server.url, token_of(EDITOR))
    before = {r["uid"] for r in engine.records()}
    open_doc(client)
    first_draft = client.protocol.wait_for_notification_async(protocol.DRAFT)
    older = long_infill(client, "stale-1")
    await first_draft
    newer = await infill(client, infill_params((1, 11), (1, 16)))
    assert await older is None and newer["text"] is not None
    records = [r for r in engine.records() if r["uid"] not in before]
    (stale,) = [r for r in records if r["status"] == "cancelled"]
    assert stale["iterations"] < 400 and stale["iterations"] - stale["cancel_at"] <= 1, stale
    print(f"\nstale decode stopped on its replica {stale['cancel_s'] * 1000:.1f} ms after the cancel reached it")


async def test_a_request_the_engine_cannot_run_is_invalid_params(client: LanguageClient):
    open_doc(client)
    with pytest.raises(JsonRpcException, match="does not fit the DLM's 1024 positions") as caught:
        await infill(client, infill_params((0, 0), (0, 3), maxTokens=1500))
    assert caught.value.code == -32602
    assert (await infill(client, infill_params((1, 11), (1, 16))))["text"] is not None


@pytest_lsp.fixture(scope="module", config=launch("http://127.0.0.1:9", "x" * 32))  # nothing listens on 9
async def unreachable(lsp_client: LanguageClient, tiny_pair):
    await initialize(lsp_client, tiny_pair)
    yield
    await lsp_client.shutdown_session()


@pytest_lsp.fixture(scope="module", config=launch(URL, "wrong-token-0123456789"))
async def refused(lsp_client: LanguageClient, tiny_pair):
    await initialize(lsp_client, tiny_pair)
    yield
    await lsp_client.shutdown_session()


async def _told_and_refused(client: LanguageClient, told: str, answered: str) -> None:
    errors = lambda: [m.message for m in client.messages if m.type == types.MessageType.Error]  # noqa: E731
    await until(lambda: any(told in m for m in errors()), f"the message {told!r}")
    open_doc(client)
    with pytest.raises(JsonRpcException, match=answered):
        await client.text_document_inline_completion_async(inline_params(3, 6))
    assert await client.protocol.send_request_async(protocol.SETTINGS) is not None  # still serving


async def test_an_unreachable_engine_is_told_to_the_user_and_requests_fail_cleanly(unreachable: LanguageClient):
    await _told_and_refused(unreachable, "could not use the codila engine at http://127.0.0.1:9", "cannot reach")


async def test_a_refused_token_is_told_to_the_user_and_requests_fail_cleanly(refused: LanguageClient):
    await _told_and_refused(refused, f"could not use the codila engine at {URL}", "did not accept the token")
