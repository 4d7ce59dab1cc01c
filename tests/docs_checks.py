"""Check that a Swagger UI page works offline: it references no other host, and everything it
references (script, stylesheet, icon, OpenAPI document, OAuth2 redirect page) is served by the
app itself. Used for the services' ``/docs`` and the gateway's."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx

#: Attributes through which an HTML page makes the browser load something.
_URL_ATTRIBUTES = frozenset({"src", "href", "srcset", "action", "formaction", "data", "poster", "background"})
#: Anything in the page text that could make the browser go to another host.
_ABSOLUTE = re.compile(r"""(?:[a-zA-Z][a-zA-Z0-9+.-]*:)?//[^\s'"<>)]*""")
#: A string literal of the inline script, with the key it is the value of (``url: '/openapi.json'``,
#: ``oauth2RedirectUrl: window.location.origin + '/docs/oauth2-redirect'``, ``"validatorUrl": null``).
_LITERAL = re.compile(
    r"""(?:["']?(?P<key>[A-Za-z_$][\w$]*)["']?\s*:\s*(?:window\.location\.origin\s*\+\s*)?)?"""
    r"""(?P<q>['"])(?P<value>(?:\\.|(?!(?P=q)).)*)(?P=q)"""
)

#: What each kind of reference must answer with.
CONTENT_TYPES = {
    "script": ("text/javascript", "application/javascript"),
    "stylesheet": ("text/css",),
    "icon": ("image/",),
    "openapi": ("application/json",),
    "oauth2-redirect": ("text/html",),
}


@dataclass
class PageReferences:
    """The URLs a page makes the browser load, by kind, and its inline scripts."""

    urls: list[tuple[str, str]] = field(default_factory=list)  # (kind, url)
    inline_scripts: list[str] = field(default_factory=list)
    unclassified: list[str] = field(default_factory=list)


class _Parser(HTMLParser):
    def __init__(self, refs: PageReferences) -> None:
        super().__init__(convert_charrefs=True)
        self.refs = refs
        self._script: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        rel = (attributes.get("rel") or "").lower().split()
        for name, value in attrs:
            if name not in _URL_ATTRIBUTES or not value:
                continue
            if tag == "script" and name == "src":
                kind = "script"
            elif tag == "link" and "stylesheet" in rel:
                kind = "stylesheet"
            elif tag == "link" and "icon" in rel:
                kind = "icon"
            else:
                self.refs.unclassified.append(value)
                continue
            self.refs.urls.append((kind, value))
        if tag == "script" and "src" not in attributes:
            self._script = []

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._script.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._script is not None:
            self.refs.inline_scripts.append("".join(self._script))
            self._script = None


def page_references(html: str) -> PageReferences:
    """Every URL ``html`` references: src/href attributes and URL literals of its inline scripts."""
    refs = PageReferences()
    _Parser(refs).feed(html)
    for script in refs.inline_scripts:
        for match in _LITERAL.finditer(script):
            value, key = match["value"], match["key"]
            if not (value.startswith(("/", ".")) or "://" in value or key in ("url", "oauth2RedirectUrl")):
                continue  # not a URL: "#swagger-ui", "BaseLayout", " "...
            if key == "url":
                refs.urls.append(("openapi", value))
            elif key == "oauth2RedirectUrl":
                refs.urls.append(("oauth2-redirect", value))
            else:
                refs.unclassified.append(value)
    return refs


def assert_no_other_host(html: str, host: str) -> None:
    """No ``scheme://`` or ``//`` reference in the page text, unless to ``host`` itself."""
    foreign = [u for u in _ABSOLUTE.findall(html) if urlsplit(u).netloc not in ("", host)]
    assert not foreign, f"the page references other hosts: {foreign}"


async def assert_docs_work_offline(client: httpx.AsyncClient, docs: str = "/docs") -> PageReferences:
    """GET ``docs``; assert it references nothing elsewhere and that each of its references
    (JS, CSS, favicon, OpenAPI document, OAuth2 redirect page) answers 200, non-empty, with the
    content type of its kind. Returns the references."""
    page = await client.get(docs)
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    host = client.base_url.netloc.decode()
    assert_no_other_host(page.text, host)
    refs = page_references(page.text)
    assert not refs.unclassified, f"references of unknown kind: {refs.unclassified}"
    kinds = {kind for kind, _ in refs.urls}
    assert {"script", "stylesheet", "icon", "openapi"} <= kinds, refs.urls
    page_url = str(page.url)
    for kind, ref in refs.urls:
        absolute = urlsplit(urljoin(page_url, ref))
        assert absolute.netloc == host, f"{kind} {ref!r} is loaded from {absolute.netloc}, not {host}"
        response = await client.get(absolute.path + (f"?{absolute.query}" if absolute.query else ""))
        assert response.status_code == 200, f"{kind} {ref!r}: HTTP {response.status_code}"
        assert response.content, f"{kind} {ref!r}: empty body"
        content_type = response.headers.get("content-type", "")
        assert content_type.startswith(CONTENT_TYPES[kind]), f"{kind} {ref!r}: content-type {content_type!r}"
        if kind == "openapi":
            assert "openapi" in response.json()
        if kind == "oauth2-redirect":
            assert_no_other_host(response.text, host)
            assert not page_references(response.text).urls
    return refs
