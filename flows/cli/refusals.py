"""A team service refusing this client's credentials, said in one line that names the setting to fix;
and the tracking server down or without its database, said in one line (registry.tracking.unavailable).

Without this, a wrong MLflow password, Prefect auth string or S3 key surfaces as a library exception
with a response body; the fix is always the same: the settings `shopfloor stack env` prints.
"""

from __future__ import annotations

import os

FIX = 'take them from `eval "$(shopfloor stack env)"` on the stack\'s machine'


def refusal(err: BaseException) -> str | None:
    """The one line for a credentials refusal or a tracking outage, or None for any other error."""
    text = str(err)
    kind = type(err).__name__
    if kind == "MlflowException":
        from registry.tracking import unavailable  # mlflow is loaded already when its error is here

        if said := unavailable(err):
            return said
    if kind == "MlflowException" and ("401" in text or "403" in text or "not authenticated" in text.lower()):
        uri = os.environ.get("MLFLOW_TRACKING_URI", "the tracking server")
        return f"MLflow at {uri} refused the login: check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD; {FIX}"
    status = getattr(getattr(err, "response", None), "status_code", None)
    if status in (401, 403) and "prefect" in type(err).__module__ + kind.lower():
        url = os.environ.get("PREFECT_API_URL", "the Prefect server")
        return f"Prefect at {url} refused the request ({status}): check PREFECT_API_AUTH_STRING; {FIX}"
    code = getattr(err, "response", {}).get("Error", {}).get("Code") if kind == "ClientError" else None
    if code in ("SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied"):
        return f"the object store refused the S3 key ({code}): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; {FIX}"
    return None
