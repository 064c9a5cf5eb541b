"""The console's page and files as the engine serves them: no browser needed.

The page loads only the engine's own files, under a policy that runs nothing else; it says
whether the API needs a key; it and its files stay open while keys are in force.
"""

from __future__ import annotations

import re

from orderengine import console
from tests.harness import Client, StartApp

KEY = "alice-key-0123456789"


def loaded(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="(/console/[^"]+)"', html)


async def test_the_page_runs_only_the_engines_own_files(client: Client) -> None:
    page = await client.get("/")
    html = await page.text()
    policy = page.headers["Content-Security-Policy"]

    assert page.status == 200
    assert page.content_type == "text/html"
    assert "script-src 'self';" in policy
    assert "style-src 'self';" in policy
    assert "connect-src 'self';" in policy
    assert "unsafe" not in policy
    assert "<script>" not in html
    assert 'data-keys="open"' in html
    assert set(loaded(html)) >= {"/console/app.js", "/console/uPlot.iife.min.js"}
    for url in loaded(html):
        answer = await client.get(url)
        assert answer.status == 200, url
        assert answer.content_type == console.FILES[url.removeprefix("/console/")][1]
        assert answer.headers["Cache-Control"] == console.FILE_CACHE


async def test_every_module_the_page_imports_is_served(client: Client) -> None:
    for name, (_, media_type) in console.FILES.items():
        if media_type != "text/javascript" or name.startswith("uPlot"):
            continue
        script = await (await client.get(f"/console/{name}")).text()
        for imported in re.findall(r'from "\./([^"]+)"', script):
            assert imported in console.FILES, f"{name} imports {imported}"


async def test_the_vendored_chart_library_is_uplot_as_published(client: Client) -> None:
    script = await (await client.get("/console/uPlot.iife.min.js")).text()

    assert script.startswith("/*! https://github.com/leeoniya/uPlot (v1.6.32) */")


async def test_a_file_the_page_does_not_load_is_not_served(client: Client) -> None:
    answers = [
        await client.get(path)
        for path in ("/console/index.html", "/console/README.md", "/console/..%2F..%2Fconsole.py")
    ]

    assert [answer.status for answer in answers] == [404] * len(answers)
    assert (await answers[0].json())["error"]["code"] == "not_found"


async def test_with_keys_the_page_asks_for_one_and_stays_open(start_app: StartApp) -> None:
    keyed = await start_app(api_keys={"alice": KEY})

    page = await keyed.get("/")
    script = await keyed.get("/console/app.js")
    refused = await keyed.get("/api/orders")

    assert page.status == script.status == 200
    assert 'data-keys="required"' in await page.text()
    assert refused.status == 401
