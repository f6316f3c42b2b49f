"""A signed proof (`mxg.proof`) as a page a data protection officer can
read, print and file: one self-contained HTML file, no scripts, no
external resources. The JSON beside it is what is signed; the page says
so and how to check it."""

from __future__ import annotations

from html import escape
from typing import Any

# The recipient fields shown, in order, with their labels.
RECIPIENT_ROWS = (
    ("status", "Outcome"),
    ("required", "Required level"),
    ("level", "Level reached"),
    ("method", "Authentication"),
    ("host", "Receiving server"),
    ("ip", "Address"),
    ("tls_version", "TLS version"),
    ("cipher", "Cipher"),
    ("group", "Key exchange group"),
    ("peer_cert_sha256", "Certificates (SHA-256)"),
    ("tlsa", "Matched TLSA record"),
    ("mta_sts", "MTA-STS policy"),
    ("tlsa_dnssec", "DNSSEC of the TLSA answer"),
    ("mx_dnssec", "DNSSEC of the MX answer"),
    ("host_dnssec", "DNSSEC of the addresses"),
    ("reply", "Server's reply"),
    ("at", "Recorded"),
    ("reason", "Failure reason"),
    ("decision", "Decision (unmet level)"),
    ("decided", "Decided"),
    ("decided_by", "Decided by"),
    ("decision_token", "Decision link (token id)"),
    ("decision_client", "Decided from address"),
)

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #111; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; width: 100%; margin: .5em 0; }
th, td { border: 1px solid #bbb; padding: .3em .5em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; width: 14em; font-weight: 600; }
td { word-break: break-all; }
.ok { color: #075; font-weight: 600; } .bad { color: #a00; font-weight: 600; }
@media print { body { margin: 0; } }
"""


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return "<br>".join(escape(str(v)) for v in value) or "&mdash;"
    return escape(str(value)) if value not in (None, "") else "&mdash;"


def _table(rows: list[tuple[str, Any]]) -> str:
    return (
        "<table>"
        + "".join(f"<tr><th>{escape(k)}</th><td>{_cell(v)}</td></tr>" for k, v in rows)
        + "</table>"
    )


def _grid(header: list[str], rows: list[list[Any]]) -> str:
    if not rows:
        return "<p>None.</p>"
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render(proof: dict[str, Any]) -> str:
    m = proof["message"]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        "style-src 'unsafe-inline'\">",
        f"<title>Delivery proof {escape(m['queue_id'])}</title><style>{STYLE}</style></head><body>",
        f"<h1>Delivery proof for message {escape(m['queue_id'])}</h1>",
        _table(
            [
                ("Message-ID", m["message_id"]),
                ("Sender", m["sender"]),
                ("Received", m["received"]),
                ("Size (octets)", m["size"]),
                ("Risk class", m["class"]),
                ("Set by", [f"{r['rule']}: {r['why']}" for r in m["rules"]]),
                ("Gateway", proof["gateway"]),
                ("Proof issued", proof["issued"]),
                ("Signed by key", proof.get("manifest", {}).get("key_id", "(unsigned)")),
            ]
        ),
    ]
    for r in proof["recipients"]:
        met = r["status"] == "sent"
        verdict = "ok" if met else "bad"
        parts.append(
            f"<h2>Recipient {escape(r['recipient'])} "
            f"<span class='{verdict}'>{escape(r['status'])}</span></h2>"
        )
        parts.append(_table([(label, r.get(key)) for key, label in RECIPIENT_ROWS]))
        parts.append(
            _grid(
                ["When", "Outcome", "Server", "Level", "Reply", "Reason"],
                [
                    [
                        a["at"],
                        a["status"],
                        f"{a['host']} {a['ip']}".strip(),
                        a["level"],
                        " ".join(str(x) for x in (a["code"], a["enhanced"], a["reply"]) if x),
                        a["reason"],
                    ]
                    for a in r["attempts"]
                ],
            )
        )
    parts.append("<h2>Operator actions</h2>")
    parts.append(
        _grid(
            ["When", "Who", "Action", "Why"],
            [[e["at"], e["actor"], e["action"], e["detail"]] for e in proof["operator_actions"]],
        )
    )
    parts.append("<h2>Audit trail records</h2>")
    parts.append(
        _grid(
            ["Record", "Kind", "Block", "Block hash"],
            [[a["seq"], a["kind"], a["block"], a["block_hash"]] for a in proof["audit"]],
        )
    )
    parts.append(
        "<h2>Checking this proof</h2><p>This page is a rendering. The signed document is the "
        f"JSON file <code>{escape(m['queue_id'])}.proof.json</code> beside it. Check it with the "
        "gateway's public key (<code>mxg keys export</code>): <code>mxg proof verify "
        f"{escape(m['queue_id'])}.proof.json --key gateway.pub</code>. Any field that was changed "
        "after signing is named.</p></body></html>"
    )
    return "\n".join(parts)
