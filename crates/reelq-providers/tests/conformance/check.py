"""Holds the simulator's journal (every request reelq's adapters sent, the answer each got, and
every callback the simulator sent) against the providers' published OpenAPI documents, with
openapi-core, an independent validator.

    check.py SPECS_DIR EXCHANGES_JSON

SPECS_DIR/index.toml names, per contract, its document, where it comes from, the host its
paths sit on and, where the document describes the callback body, the schema of it. Every
call of such a contract must be an operation of the document, with parameters, headers and
body as it says; every answer with a documented status must match it (a 2xx must be
documented); every callback must match its schema. Each contract must have had at least one
documented 2xx call checked, so a run that exercised nothing cannot pass. Exits 1 on any
problem, printing each.
"""

import json
import sys
import tomllib
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs

import jsonschema
from openapi_core import OpenAPI
from openapi_core.templating.paths.exceptions import PathError
from openapi_core.templating.responses.exceptions import ResponseNotFound
from openapi_core.testing import MockRequest, MockResponse


def main(specs_dir: Path, exchanges_path: Path) -> int:
    index = tomllib.loads((specs_dir / "index.toml").read_text())
    exchanges = json.loads(exchanges_path.read_text())
    problems: list[str] = []
    counts: dict[str, Counter] = {}
    for contract, entry in index.items():
        document = json.loads((specs_dir / entry["file"]).read_text())
        openapi = OpenAPI.from_dict(document)
        count = counts.setdefault(contract, Counter())
        for exchange in (e for e in exchanges if e["contract"] == contract):
            label = f'{contract} {exchange["kind"]} {exchange["method"]} {exchange["path"]} -> {exchange["status"]}'
            if any(
                exchange["path"] == prefix or exchange["path"].startswith(prefix.rstrip("/") + "/")
                and prefix.endswith("/")
                for prefix in entry.get("outside", [])
            ):
                count["outside the document (listed in index.toml)"] += 1
                continue
            if exchange["kind"] == "callback":
                problems += check_callback(document, entry, exchange, label, count)
            else:
                problems += check_call(openapi, entry, exchange, label, count)
        if count["checked 2xx"] == 0:
            problems.append(f"{contract}: no documented 2xx call was checked: the run proves nothing")
    for contract, count in counts.items():
        summary = ", ".join(f"{n} {what}" for what, n in sorted(count.items()))
        print(f"{contract} ({index[contract]['file']}): {summary}")
    for problem in problems:
        print("PROBLEM", problem)
    return 1 if problems else 0


def body_bytes(body) -> bytes:
    return b"" if body is None else json.dumps(body).encode()


def check_call(openapi, entry, exchange, label, count) -> list[str]:
    headers = {name: value for name, value in exchange["headers"]}
    request = MockRequest(
        entry["host"],
        exchange["method"].lower(),
        exchange["path"],
        args=parse_qs(exchange["query"] or ""),
        headers=headers,
        data=body_bytes(exchange["request_body"]),
        content_type=exchange["request_type"] or "application/json",
    )
    try:
        openapi.validate_request(request)
    except PathError as err:
        return [f"{label}: not an operation of the published document ({err})"]
    except Exception as err:  # every validation error openapi-core raises
        return [f"{label}: the request does not conform: {describe(err)}"]
    count["requests conform"] += 1
    status = exchange["status"]
    response_type = exchange["response_type"] or ""
    if "json" not in response_type:
        count["non-JSON answers (not checked)"] += 1
        return []
    response = MockResponse(
        body_bytes(exchange["response_body"]),
        status_code=status,
        content_type=response_type.split(";")[0],
    )
    try:
        openapi.validate_response(request, response)
    except ResponseNotFound:
        if 200 <= status < 300:
            return [f"{label}: a 2xx the document does not describe"]
        count["undocumented error answers"] += 1
        return []
    except Exception as err:
        return [f"{label}: the answer does not conform: {describe(err)}"]
    count["checked 2xx" if 200 <= status < 300 else "documented error answers"] += 1
    return []


def check_callback(document, entry, exchange, label, count) -> list[str]:
    schema_name = entry.get("callback_schema")
    if schema_name is None:
        count["callbacks (the document describes none)"] += 1
        return []
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": document["components"]}
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(exchange["request_body"]), key=str
    )
    if errors:
        return [f"{label}: the callback does not conform: " + "; ".join(e.message for e in errors[:3])]
    count["callbacks conform"] += 1
    return []


def describe(err: Exception) -> str:
    causes = [str(err)]
    for detail in getattr(err, "schema_errors", None) or getattr(getattr(err, "__cause__", None), "schema_errors", []) or []:
        causes.append(f"{list(detail.absolute_path)}: {detail.message}")
    return "; ".join(causes)


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
