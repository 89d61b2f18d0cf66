"""The run's HTTP clients keep no cookie from any answer (a balancer's cookie never follows a key)."""

from __future__ import annotations

import httpx
import pytest
import trio

from lipbatch.engine.accounts import CookielessClient


def _recording(seen: list[str | None]) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("cookie"))
        return httpx.Response(200, headers={"set-cookie": "AWSALB=sticky; Path=/"}, json={})

    return httpx.MockTransport(answer)


def test_a_cookie_set_by_an_answer_is_not_sent_again() -> None:
    seen: list[str | None] = []

    async def main() -> None:
        async with CookielessClient(transport=_recording(seen), base_url="http://127.0.0.1") as http:
            for path in ("/v1/tasks/1", "/v1/tasks/2", "/v1/tasks/3"):
                assert (await http.get(path)).cookies.get("AWSALB") == "sticky"  # the answer still shows it
            assert not http.cookies

    trio.run(main)
    assert seen == [None, None, None]


def test_a_plain_httpx_client_would_have_sent_it() -> None:
    """The premise: httpx keeps cookies by default, so the test above can fail."""
    seen: list[str | None] = []

    async def main() -> None:
        async with httpx.AsyncClient(transport=_recording(seen), base_url="http://127.0.0.1") as http:
            await http.get("/a")
            await http.get("/b")

    trio.run(main)
    assert seen == [None, "AWSALB=sticky"]


def test_cookies_cannot_be_given_to_it() -> None:
    client = CookielessClient()
    with pytest.raises(TypeError):
        client.cookies = {"session": "x"}
    trio.run(client.aclose)
