"""The API reference page works without internet access."""

import re

import httpx

from tests.support import BerthServer


def test_api_reference_loads_only_local_files(server: BerthServer) -> None:
    page = httpx.get(f"{server.url}/api/v1/docs", timeout=30)

    assert page.status_code == 200
    assert "swagger-ui" in page.text
    sources = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page.text)
    assert sources
    for source in sources:
        assert source.startswith("/api/v1/"), source
        assert httpx.get(f"{server.url}{source}", timeout=30).status_code == 200, source
    assert "url: '/api/v1/openapi.json'" in page.text
    assert "http://" not in page.text
    assert "https://" not in page.text
