"""What a run leaves for tracking: its name, its executed config, and a checked MLflow tracking URI.

:func:`unique_run_name` names a run; :func:`write_executed_config` records the config the running
MONAI workflow (:func:`running_workflow`) holds, merged and overridden, for MLflow.

MONAI's ``MLFlowHandler`` first talks to the server when the trainer starts: an unreachable
server then fails only after the data, teacher and networks were built and MLflow's HTTP
retries ran out, with the cause buried under several tracebacks. :func:`check_tracking_uri`
asks the server once, through MLflow's own client, with a short timeout and no retries; :func:`require_tracking_server` is its
bundle-config form.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from .privacy import mask_credentials, redact_paths

__all__ = ["check_tracking_uri", "require_tracking_server", "credentials_to_environment", "unique_run_name",
           "running_workflow", "write_executed_config"]

# the call the check makes (MlflowClient.search_experiments), named in messages
_PROBE = "/api/2.0/mlflow/experiments/search"
_HINT = "start it or pass --tracking_uri sqlite:///path/mlruns.db"


def _effective_uri(uri: str) -> str:
    # MONAI's MLFlowHandler and MLflow itself let the environment win over the argument; the
    # check must look at the server the run will really use
    return os.environ.get("MLFLOW_TRACKING_URI") or uri


@contextlib.contextmanager
def _one_quick_request(timeout: float):
    # MLflow retries a failing request for minutes by default; one attempt with a short timeout
    # is enough to tell a dead server from a live one
    saved = {name: os.environ.get(name) for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT=str(max(1, round(timeout))))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _check_http(uri: str, timeout: float) -> None:
    # MLflow's own client, so its credentials (MLFLOW_TRACKING_TOKEN / USERNAME / PASSWORD),
    # TLS settings and proxies apply exactly as they will for the run
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        with _one_quick_request(timeout):
            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
        return
    except MlflowException as error:
        status = error.get_http_status_code()
        if status in (401, 403):
            reason = (f"HTTP {status}: credentials refused; set MLFLOW_TRACKING_USERNAME/"
                      "MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN")
        elif status == 404:
            reason = f"HTTP 404 on {_PROBE}: not an MLflow tracking server"
        elif "failed with exception" in str(error):
            reason = _connection_reason(error)
        else:
            reason = f"HTTP {status}" if status != 500 else " ".join(str(error).split())[:160]
    raise ConnectionError(f"MLflow tracking server {mask_credentials(uri)} is not reachable ({reason}); {_HINT}")


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
    ``http(s)://``: one ``MlflowClient.search_experiments`` call (MLflow's own client, so its
    credential, TLS and proxy settings apply) must succeed within ``timeout`` seconds, with no
    retries. ``sqlite:///<path>``: the database folder is created if
    missing and must be writable. Other schemes (``databricks``, ...) are returned unchecked.

    Raises:
        ConnectionError: with one line naming the URI, the reason and what to do.
    """
    uri = credentials_to_environment(_effective_uri(str(uri)))
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


def _without_credentials(uri: str) -> tuple[str, str | None, str | None]:
    """``(uri without user:password, user, password)``; URIs without them come back as they are."""
    parts = urlsplit(uri)
    if parts.scheme.lower() not in ("http", "https") or "@" not in parts.netloc:
        return uri, None, None
    host = parts.netloc.rsplit("@", 1)[1]
    clean = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return clean, (unquote(parts.username) if parts.username else None), (unquote(parts.password) if parts.password else None)


def credentials_to_environment(uri: str) -> str:
    """``uri`` without the ``user:password@`` it may carry; the credentials go to MLflow's own
    ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` variables instead.

    MLflow prints its tracking URI (``View run ... at: <uri>/#/...``) and records it in places a
    team shares; credentials written into the URI would go with it. Moved to the environment,
    MLflow still sends them (HTTP basic auth) and never prints them. ``MLFLOW_TRACKING_URI``,
    which MLflow lets win over the argument, is cleaned the same way. For the bundles' MLflow
    handlers: ``tracking_uri: "$rd_components.tracking.credentials_to_environment(@tracking_uri)"``.
    """
    env_uri = os.environ.get("MLFLOW_TRACKING_URI")
    if env_uri:
        clean_env, user, password = _without_credentials(env_uri)
        if clean_env != env_uri:
            os.environ["MLFLOW_TRACKING_URI"] = clean_env
            _set_credentials(user, password)
    clean, user, password = _without_credentials(str(uri))
    if clean != str(uri):
        _set_credentials(user, password)
    return clean


def _set_credentials(user: str | None, password: str | None) -> None:
    if user is not None:
        os.environ["MLFLOW_TRACKING_USERNAME"] = user
    if password is not None:
        os.environ["MLFLOW_TRACKING_PASSWORD"] = password


def unique_run_name(prefix: str = "rd") -> str:
    """``<prefix>-YYYYmmdd-HHMMSS-<6 hex>``: MLflow re-attaches to unfinished runs of the same name."""
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def running_workflow() -> Any | None:
    """The MONAI ``ConfigWorkflow`` whose config is being evaluated, or ``None``.

    MONAI hands config expressions no reference to the workflow that runs them, so it is found on
    the call stack: the nearest frame whose ``self`` is a ``ConfigWorkflow``. That covers
    ``python -m monai.bundle run`` and ``monai.bundle.run(...)`` / ``ConfigWorkflow`` in Python alike.
    """
    from monai.bundle import ConfigWorkflow

    frame = inspect.currentframe()
    try:
        while frame is not None:
            owner = frame.f_locals.get("self")
            if isinstance(owner, ConfigWorkflow):
                return owner
            frame = frame.f_back
        return None
    finally:
        del frame  # a frame held in a local keeps every frame above it alive


def write_executed_config(folder: str | os.PathLike) -> str | None:
    """Write the config this process runs (its config files merged, command-line overrides
    applied, as the running MONAI workflow holds it) to ``<folder>/executed_config.json``;
    return the path, or ``None`` when no MONAI workflow runs this process.
    """
    from monai.bundle import ConfigParser

    workflow = running_workflow()
    if workflow is None:
        return None
    path = Path(folder) / "executed_config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    # absolute paths (a PACS export folder may be named after the patient) become digests,
    # credentials in URIs are masked: the file is uploaded to MLflow
    ConfigParser.export_config_file(redact_paths(workflow.parser.get()), str(path), fmt="json", indent=2)
    return str(path)
