"""Alert notifications: one JSON POST per alerts transition to a webhook (SPANLAKE_ALERT_WEBHOOK_URL
or a rule's own `webhook`).

    {"alert_id": "...", "rule": "user-daily-spend", "metric": "cost_usd", "scope": "user_id=u1",
     "window": "1d", "window_start": "...", "window_end": "...", "observed": 7.31, "threshold": 5.0,
     "comparison": ">", "state": "FIRING", "since": "2026-06-01T10:00:00+00:00",
     "text": "FIRING user-daily-spend: cost_usd for user_id=u1 is 7.31 (> 5) over the last 1d"}

`text` is what Slack-compatible incoming webhooks display. A 2xx answer is a delivery; a
connection error, 429 or 5xx is retried (ATTEMPTS in all, short backoff), anything else is not.
HTTP is urllib3's, as for the judges (jobs.judge_client).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import urllib3

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS = 5.0
ATTEMPTS = 3
BACKOFF_SECONDS = 0.5  # doubling between attempts
_http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(total=TIMEOUT_SECONDS))


def payload(alert: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body for an alerts row (a dict)."""
    body = {k: alert[k] for k in ("alert_id", "rule", "metric", "scope", "window", "observed", "threshold",
                                  "comparison", "state")}  # fmt: skip
    for k in ("window_start", "window_end", "since"):
        body[k] = alert[k].isoformat() if isinstance(alert[k], dt.datetime) else alert[k]
    return {**body, "text": text(alert)}


def text(alert: Mapping[str, Any]) -> str:
    observed = "no data" if alert["observed"] is None else f"{alert['observed']:.4g}"
    scope = "" if alert["scope"] == "all" else f" for {alert['scope']}"
    return (
        f"{alert['state']} {alert['rule']}: {alert['metric']}{scope} is {observed} "
        f"({alert['comparison']} {alert['threshold']:g}) over the last {alert['window']}"
    )


def deliver(url: str, body: Mapping[str, Any]) -> bool:
    """POST `body` as JSON to `url`; True when the webhook accepted it (a 2xx)."""
    data = json.dumps(body).encode()
    for attempt in range(ATTEMPTS):
        if attempt:
            time.sleep(BACKOFF_SECONDS * 2 ** (attempt - 1))
        try:
            answer = _http.request("POST", url, body=data, headers={"Content-Type": "application/json"})
        except urllib3.exceptions.HTTPError as exc:
            logger.warning("alert webhook %s: %s (attempt %d of %d)", _host(url), type(exc).__name__, attempt + 1,
                           ATTEMPTS)  # fmt: skip
            continue
        if 200 <= answer.status < 300:
            return True
        logger.warning("alert webhook %s answered %d (attempt %d of %d)", _host(url), answer.status, attempt + 1,
                       ATTEMPTS)  # fmt: skip
        if answer.status != 429 and answer.status < 500:
            return False
    return False


def _host(url: str) -> str:
    # Webhook URLs carry their secret in the path (Slack's do): log only where it goes.
    return urllib3.util.parse_url(url).host or "?"
