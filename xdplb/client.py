"""A client of a director's REST API (api/), for the operator commands: where the API is and which
token to send, then one call per request with the API's errors as exceptions.

Where: flags, else the environment (XDPLB_URL, XDPLB_TOKEN, XDPLB_TOKEN_FILE), else the CLI's
configuration file (XDPLB_CLI_CONFIG, default /etc/xdplb/cli.yaml: `url`, `token_file`), else
http://127.0.0.1:9780 and the token file of the one director of this host
(/var/lib/xdplb/<director>/api.token), when there is exactly one. A URL `unix:/path` talks to a
daemon listening on a Unix socket.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import yaml

from xdplb.config import API_PORT, STATE_ROOT

log = logging.getLogger(__name__)

DEFAULT_URL = f"http://127.0.0.1:{API_PORT}"
DEFAULT_CLI_CONFIG = Path("/etc/xdplb/cli.yaml")
TOKEN_FILE = "api.token"  # under each director's state directory
_CONFIG_KEYS = {"url", "token_file"}


class SettingsError(ValueError):
    """Where the API is, or its token, cannot be worked out: a usage error."""


class Unreachable(Exception):
    """No connection to the API."""

    def __init__(self, target: Target, reason: str) -> None:
        self.target = target
        super().__init__(f"cannot reach the xdplb API at {target.url} ({target.url_from}): {reason}")


class ApiError(Exception):
    """The API refused a request; `errors` holds its lines, one per problem."""

    def __init__(self, status: int, errors: list[str]) -> None:
        self.status = status
        self.errors = errors or [f"HTTP {status}"]
        super().__init__("; ".join(self.errors))


@dataclass(frozen=True)
class Target:
    url: str
    url_from: str             # which flag, variable or file said so, for messages
    token: str | None
    token_from: str           # idem, or why there is none
    config_file: Path         # the CLI configuration file consulted (it may not exist)


@dataclass(frozen=True)
class Reply:
    data: Any                 # the body, decoded
    version: int | None       # the state's version, from the ETag


def resolve(url: str | None = None, token: str | None = None, token_file: str | None = None,
            cli_config: str | None = None, env: Mapping[str, str] | None = None) -> Target:
    """Where the API is and which token to send (flags first, see the module's text)."""
    env = os.environ if env is None else env
    config_path, config = _cli_config(cli_config, env)
    found_url, url_from = _first((url, "--url"), (env.get("XDPLB_URL"), "XDPLB_URL"),
                                 (config.get("url"), str(config_path)), (DEFAULT_URL, "the default"))
    if not found_url.startswith(("http://", "https://", "unix:/")):
        raise SettingsError(f"{found_url!r} ({url_from}) is not an API URL: http://HOST:PORT or unix:/path")
    the_token, token_from = _token(token, token_file, env, config, config_path)
    return Target(found_url, url_from, the_token, token_from, config_path)


def _first(*candidates: tuple[Any, str]) -> tuple[Any, str]:
    return next((value, source) for value, source in candidates if value)


def _cli_config(flag: str | None, env: Mapping[str, str]) -> tuple[Path, dict[str, Any]]:
    """The CLI's configuration file: one given (flag, environment) must exist; the default may not."""
    given = flag or env.get("XDPLB_CLI_CONFIG")
    path = Path(given) if given else DEFAULT_CLI_CONFIG
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        if given:
            raise SettingsError(f"no CLI configuration file {path}") from None
        return path, {}
    except (OSError, yaml.YAMLError) as e:
        raise SettingsError(f"{path}: {e}") from None
    data = data or {}
    if not isinstance(data, dict) or not data.keys() <= _CONFIG_KEYS:
        raise SettingsError(f"{path}: a mapping with the keys {', '.join(sorted(_CONFIG_KEYS))} is expected")
    if data.get("token_file"):
        data["token_file"] = str(path.parent / str(data["token_file"]))  # relative to the file
    return path, data


def _token(token: str | None, token_file: str | None, env: Mapping[str, str], config: dict[str, Any],
           config_path: Path) -> tuple[str | None, str]:
    if token:
        return token, "--token"
    if token_file:
        return _read_token(Path(token_file)), f"{token_file} (--token-file)"
    if env.get("XDPLB_TOKEN"):
        return env["XDPLB_TOKEN"], "XDPLB_TOKEN"
    for path, source in ((env.get("XDPLB_TOKEN_FILE"), "XDPLB_TOKEN_FILE"),
                         (config.get("token_file"), str(config_path))):
        if path:
            return _read_token(Path(path)), f"{path} ({source})"
    return _default_token()


def _read_token(path: Path) -> str:
    try:
        token = path.read_text().strip()
    except OSError as e:
        raise SettingsError(f"cannot read the token file {path}: {e.strerror or e}") from None
    if not token:
        raise SettingsError(f"the token file {path} is empty")
    return token


def _default_token() -> tuple[str | None, str]:
    """The token file of the one director of this host, if there is exactly one and it is readable."""
    files = sorted(STATE_ROOT.glob(f"*/{TOKEN_FILE}"))
    if len(files) != 1:
        return None, (f"none: {len(files)} directors here ({STATE_ROOT}/*/{TOKEN_FILE})" if files
                      else f"none: no {STATE_ROOT}/*/{TOKEN_FILE}")
    try:
        return files[0].read_text().strip() or None, f"{files[0]} (the one director here)"
    except OSError as e:
        return None, f"none: cannot read {files[0]}: {e.strerror or e}"


def service_path(service_id: str, *rest: str) -> str:
    """/v1/services/{id}/...: ids and addresses quoted for a URL path."""
    return "/".join(["/v1/services", quote(service_id, safe=":"), *(quote(p, safe=":") for p in rest)])


class ApiClient:
    """One director's API. Every call raises Unreachable or ApiError rather than answering an error."""

    def __init__(self, target: Target, timeout: float = 30.0) -> None:
        self.target = target
        headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
        if target.url.startswith("unix:"):
            transport = httpx.HTTPTransport(uds=target.url.removeprefix("unix:"))
            self._http = httpx.Client(transport=transport, base_url="http://xdplb", headers=headers, timeout=timeout)
        else:
            self._http = httpx.Client(base_url=target.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def get(self, path: str, **params: Any) -> Reply:
        return self.call("GET", path, params=params)

    def call(self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None,
             if_match: int | None = None) -> Reply:
        headers = {"If-Match": f'"{if_match}"'} if if_match is not None else {}
        log.debug("%s %s %s", method, path, params or "")
        try:
            r = self._http.request(method, path, params=_params(params), json=body, headers=headers)
        except httpx.TransportError as e:
            raise Unreachable(self.target, str(e) or type(e).__name__) from None
        _raise_for(r)
        return Reply(r.json() if r.content else None, _version(r))

    @contextmanager
    def stream(self, path: str, timeout: float | None, **params: Any) -> Iterator[Iterator[bytes]]:
        """The body of a long GET, chunk by chunk (a capture: pcap bytes until it ends)."""
        try:
            wait = httpx.Timeout(timeout, connect=10.0)  # connecting is quick; the body may take long
            with self._http.stream("GET", path, params=_params(params), timeout=wait) as r:
                if r.is_error:
                    r.read()
                    _raise_for(r)
                yield r.iter_bytes()
        except httpx.TransportError as e:
            raise Unreachable(self.target, str(e) or type(e).__name__) from None


def _params(params: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (params or {}).items() if v is not None}


def _version(r: httpx.Response) -> int | None:
    tag = r.headers.get("etag", "").removeprefix("W/").strip('"')
    return int(tag) if tag.isdigit() else None


def _raise_for(r: httpx.Response) -> None:
    if not r.is_error:
        return
    try:
        body = r.json()
        errors = [str(e) for e in body.get("errors") or [body.get("detail")] if e]
    except (ValueError, AttributeError):
        errors = [r.text.strip() or r.reason_phrase]
    raise ApiError(r.status_code, errors)
