"""Check an MLflow tracking URI before training, so a dead server stops the run with one line.

MONAI's ``MLFlowHandler`` first talks to the server when the trainer starts: an unreachable
server then fails only after the data, teacher and networks were built and MLflow's HTTP
retries ran out, with the cause buried under several tracebacks. :func:`check_tracking_uri`
asks the server once with a short timeout; :func:`require_tracking_server` is its
bundle-config form.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

__all__ = ["check_tracking_uri", "require_tracking_server"]

# the lightest call every MLflow tracking server (and MLflow behind a proxy) answers
_PROBE = "api/2.0/mlflow/experiments/search"
_HINT = "start it or pass --tracking_uri sqlite:///path/mlruns.db"


def _effective_uri(uri: str) -> str:
    # MONAI's MLFlowHandler and MLflow itself let the environment win over the argument; the
    # check must look at the server the run will really use
    return os.environ.get("MLFLOW_TRACKING_URI") or uri


def _auth() -> tuple[dict[str, str], tuple[str, str] | None]:
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return headers, (user, password) if user and password else None


def _check_http(uri: str, timeout: float) -> None:
    import requests

    url = uri.rstrip("/") + "/" + _PROBE
    headers, auth = _auth()
    insecure = os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true"
    try:
        response = requests.get(url, params={"max_results": 1}, headers=headers, auth=auth, timeout=timeout,
                                verify=not insecure)
    except requests.exceptions.Timeout:
        reason = f"no answer within {timeout:g} s"
    except requests.exceptions.SSLError as error:
        reason = f"TLS error: {type(error).__name__}"
    except requests.exceptions.ConnectionError as error:
        reason = _connection_reason(error)
    except requests.exceptions.RequestException as error:
        reason = f"{type(error).__name__}: {' '.join(str(error).split())}"
    else:
        if response.ok:
            return
        if response.status_code in (401, 403):
            reason = (f"HTTP {response.status_code}: credentials refused; set MLFLOW_TRACKING_USERNAME/"
                      "MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN")
        elif response.status_code == 404:
            reason = f"HTTP 404 on /{_PROBE}: not an MLflow tracking server"
        else:
            reason = f"HTTP {response.status_code} on /{_PROBE}"
    raise ConnectionError(f"MLflow tracking server {uri} is not reachable ({reason}); {_HINT}")


def _connection_reason(error: Exception) -> str:
    # requests nests the socket error (MaxRetryError -> NewConnectionError -> OSError); the
    # innermost OSError is the readable reason ("connection refused", "name or service not known")
    queue, seen = [error], set()
    while queue:
        item = queue.pop(0)
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, OSError) and item.strerror:
            return item.strerror.lower()
        links = [getattr(item, "reason", None), item.__cause__, item.__context__, *item.args[:1]]
        queue += [link for link in links if isinstance(link, BaseException)]
    return "connection failed"


def _check_sqlite(uri: str) -> None:
    path = unquote(urlsplit(uri).path.removeprefix("/")) if uri.startswith("sqlite:///") else ""
    if not path or path == ":memory:":
        return  # sqlite:// and sqlite:///:memory: are in-memory databases
    folder = Path(path).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConnectionError(f"MLflow database folder {folder} cannot be created ({error.strerror or error}); "
                              "pass --tracking_uri sqlite:///<writable folder>/mlruns.db") from None
    if not os.access(folder, os.W_OK):
        raise ConnectionError(f"MLflow database folder {folder} is not writable; "
                              "pass --tracking_uri sqlite:///<writable folder>/mlruns.db")


def check_tracking_uri(uri: str, timeout: float = 5.0) -> str:
    """Check that the MLflow tracking URI the run will use can be written to; return it.

    ``MLFLOW_TRACKING_URI``, when set, overrides ``uri`` (as in MONAI's ``MLFlowHandler``).
    ``http(s)://``: one ``GET <uri>/api/2.0/mlflow/experiments/search`` (with the credentials
    of ``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` or ``MLFLOW_TRACKING_TOKEN``) must answer
    2xx within ``timeout`` seconds. ``sqlite:///<path>``: the database folder is created if
    missing and must be writable. Other schemes (``databricks``, ...) are returned unchecked.

    Raises:
        ConnectionError: with one line naming the URI, the reason and what to do.
    """
    uri = _effective_uri(str(uri))
    scheme = uri.split(":", 1)[0].lower()
    if scheme in ("http", "https"):
        _check_http(uri, timeout)
    elif scheme == "sqlite":
        _check_sqlite(uri)
    return uri


def require_tracking_server(uri: str, timeout: float = 5.0, enabled: bool = True) -> str | None:
    """:func:`check_tracking_uri` for bundle configs' ``initialize``: on failure, exit the process.

    MONAI wraps any error raised while a config expression is evaluated in a ``RuntimeError``
    ("Failed to evaluate ...") whose traceback hides the reason; a ``SystemExit`` carrying the
    one-line message is not wrapped, so the message is the last line the user sees (exit code 1).
    ``enabled=False`` (e.g. tracking switched off) returns ``None`` without checking.
    """
    if not enabled:
        return None
    try:
        return check_tracking_uri(uri, timeout)
    except ConnectionError as error:
        raise SystemExit(str(error)) from None
