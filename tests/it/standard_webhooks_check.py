"""Verify webhook requests with the `standardwebhooks` package (an implementation of the
Standard Webhooks specification independent of orderctl).

  standard_webhooks_check.py FILE   FILE holds [{"secrets": [...], "headers": {...}, "body": "..."}]
                                    prints [[true|false per secret] per request]

A `whsec_...` secret is given to the package as it is; any other secret as its bytes (how the
specification's libraries take a raw key). Needs `python3 -m pip install standardwebhooks`
(.ci/run does).
"""
import json
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def verifies(secret, headers, body):
    key = secret if secret.startswith("whsec_") else secret.encode()
    try:
        Webhook(key).verify(body, headers)
        return True
    except WebhookVerificationError:
        return False


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as f:
        requests = json.load(f)
    print(json.dumps([[verifies(s, r["headers"], r["body"]) for s in r["secrets"]] for r in requests]))
