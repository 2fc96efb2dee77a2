"""$batch conformance: multipart format, change sets, Content-ID references, errors."""

import json
import re
import uuid

from dynamics_sandbox import seed

API_PATH = "/api/data/v9.2/"


def request_part(method, url, body=None, content_id=None, headers=None):
    """Return one application/http part (without delimiter) as CRLF text."""
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id is not None:
        lines.append(f"Content-ID: {content_id}")
    lines += ["", f"{method} {url} HTTP/1.1"]
    if body is not None:
        lines.append("Content-Type: application/json; type=entry")
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    lines.append("")
    lines.append(json.dumps(body) if body is not None else "")
    return "\r\n".join(lines)


def change_set(parts, boundary="changeset_1"):
    body = "".join(f"--{boundary}\r\n{part}\r\n" for part in parts) + f"--{boundary}--"
    return f"Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n{body}"


def batch_body(parts, boundary="batch_1"):
    return "".join(f"--{boundary}\r\n{part}\r\n" for part in parts) + f"--{boundary}--\r\n"


def send_batch(api, parts, headers=None, boundary="batch_1"):
    return api.post(
        "$batch",
        data=batch_body(parts, boundary).encode("utf-8"),
        headers={"Content-Type": f"multipart/mixed; boundary={boundary}", **(headers or {})},
    )


def parse_parts(content_type, body):
    """Return the response parts as dicts: status, headers, body, content_id.

    A change set response is flattened into its parts, in order.
    """
    boundary = re.search(r"boundary=(\S+)", content_type).group(1)
    pieces = body.split(f"--{boundary}")
    parts = []
    for piece in pieces[1:]:
        if piece.startswith("--"):
            break
        head, _, content = piece[2:].partition("\r\n\r\n")
        mime = dict(line.split(": ", 1) for line in head.split("\r\n") if line)
        if mime["Content-Type"].startswith("multipart/mixed"):
            parts += parse_parts(mime["Content-Type"], content.rstrip("\r\n"))
            continue
        http_head, _, http_body = content.partition("\r\n\r\n")
        status_line, *header_lines = http_head.split("\r\n")
        parts.append({
            "status": int(status_line.split(" ")[1]),
            "headers": dict(line.split(": ", 1) for line in header_lines),
            "body": http_body.rstrip("\r\n"),
            "content_id": mime.get("Content-ID"),
        })
    return parts


def parts_of(response):
    return parse_parts(response.headers["Content-Type"], response.text)


def leads_with(sandbox, email):
    return [row for row in sandbox.store.records("lead") if row["emailaddress1"] == email]


def lead(email, **values):
    return {"lastname": "Lee", "emailaddress1": email, **values}


def test_batch_creates(sales_api, sandbox, email):
    response = send_batch(sales_api, [
        request_part("POST", API_PATH + "leads", lead(email)),
        request_part("POST", sandbox.base_url + API_PATH + "leads", lead(email)),
    ])
    parts = parts_of(response)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("multipart/mixed; boundary=batchresponse_")
    assert [part["status"] for part in parts] == [204, 204]
    assert len(leads_with(sandbox, email)) == 2


def test_batch_create_headers(sales_api, email):
    parts = parts_of(send_batch(sales_api, [request_part("POST", API_PATH + "leads", lead(email))]))
    headers = parts[0]["headers"]
    assert re.fullmatch(r"https://.+/api/data/v9\.2/leads\([0-9a-f-]{36}\)", headers["OData-EntityId"])
    assert headers["Location"] == headers["OData-EntityId"]
    assert headers["OData-Version"] == "4.0"


def test_batch_get_part(sales_api):
    parts = parts_of(send_batch(sales_api, [request_part("GET", API_PATH + "WhoAmI")]))
    assert parts[0]["status"] == 200
    assert json.loads(parts[0]["body"])["UserId"] == seed.SAM_ID


def test_batch_relative_url(sales_api):
    parts = parts_of(send_batch(sales_api, [request_part("GET", "WhoAmI")]))
    assert parts[0]["status"] == 200


def test_batch_foreign_host(sales_api):
    response = send_batch(sales_api, [
        request_part("GET", "https://org.crm.dynamics.com/api/data/v9.2/WhoAmI"),
    ])
    assert response.status_code == 400
    assert parts_of(response)[0]["status"] == 400


def test_batch_representation_part(sales_api, email):
    parts = parts_of(send_batch(sales_api, [
        request_part("POST", API_PATH + "leads", lead(email),
                     headers={"Prefer": "return=representation"}),
    ]))
    assert parts[0]["status"] == 201
    assert json.loads(parts[0]["body"])["emailaddress1"] == email


def test_change_set_commits(sales_api, sandbox, email):
    response = send_batch(sales_api, [change_set([
        request_part("POST", API_PATH + "leads", lead(email), content_id="1"),
        request_part("POST", API_PATH + "leads", lead(email), content_id="2"),
    ])])
    parts = parts_of(response)
    assert response.status_code == 200
    assert [part["content_id"] for part in parts] == ["1", "2"]
    assert len(leads_with(sandbox, email)) == 2


def test_change_set_response_wrapper(sales_api, email):
    response = send_batch(sales_api, [change_set([
        request_part("POST", API_PATH + "leads", lead(email), content_id="1"),
    ])])
    assert "Content-Type: multipart/mixed; boundary=changesetresponse_" in response.text


def test_change_set_rolls_back(sales_api, sandbox, email):
    response = send_batch(sales_api, [change_set([
        request_part("POST", API_PATH + "leads", lead(email), content_id="1"),
        request_part("POST", API_PATH + "leads", lead(email, firstname="x" * 51), content_id="2"),
    ])])
    parts = parts_of(response)
    assert response.status_code == 400
    assert len(parts) == 1
    assert parts[0]["status"] == 400
    assert parts[0]["content_id"] == "2"
    assert json.loads(parts[0]["body"])["error"]["code"] == "0x80044331"
    assert leads_with(sandbox, email) == []


def test_change_set_rejects_get(sales_api):
    response = send_batch(sales_api, [change_set([
        request_part("GET", API_PATH + "WhoAmI", content_id="1"),
    ])])
    assert response.status_code == 400
    assert "GET" in response.json()["error"]["message"]


def test_change_set_needs_content_id(sales_api, email):
    response = send_batch(sales_api, [change_set([
        request_part("POST", API_PATH + "leads", lead(email)),
    ])])
    assert response.status_code == 400
    assert "Content-ID" in response.json()["error"]["message"]


def test_reference_in_bind(sales_api, sandbox, email):
    response = send_batch(sales_api, [change_set([
        request_part("POST", API_PATH + "accounts", {"name": "Contoso"}, content_id="1"),
        request_part("POST", API_PATH + "leads",
                     lead(email, **{"parentaccountid@odata.bind": "$1"}), content_id="2"),
    ])])
    parts = parts_of(response)
    account_id = re.search(r"accounts\((.+)\)", parts[0]["headers"]["OData-EntityId"]).group(1)
    assert response.status_code == 200
    assert leads_with(sandbox, email)[0]["_parentaccountid_value"] == account_id


def test_reference_in_url(sales_api, sandbox, email):
    response = send_batch(sales_api, [change_set([
        request_part("POST", API_PATH + "leads", lead(email), content_id="1"),
        request_part("PATCH", "$1", {"firstname": "Ann"}, content_id="2"),
    ])])
    assert response.status_code == 200
    assert leads_with(sandbox, email)[0]["fullname"] == "Ann Lee"


def test_reference_undeclared(sales_api, sandbox, email):
    response = send_batch(sales_api, [change_set([
        request_part("POST", API_PATH + "leads",
                     lead(email, **{"parentaccountid@odata.bind": "$1"}), content_id="2"),
        request_part("POST", API_PATH + "accounts", {"name": "Contoso"}, content_id="1"),
    ])])
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "Content-ID Reference: '$1' does not exist in the batch context."
    )
    assert leads_with(sandbox, email) == []


def test_reference_outside_change_set(sales_api):
    response = send_batch(sales_api, [request_part("PATCH", "$1", {"firstname": "Ann"})])
    assert response.status_code == 400
    assert "'$1' does not exist" in response.json()["error"]["message"]


def test_reference_other_change_set(sales_api, email):
    response = send_batch(sales_api, [
        change_set([request_part("POST", API_PATH + "leads", lead(email), content_id="1")]),
        change_set([request_part("PATCH", "$1", {"firstname": "Ann"}, content_id="2")],
                   boundary="changeset_2"),
    ])
    assert response.status_code == 400


def test_duplicate_content_id(sales_api, email):
    response = send_batch(sales_api, [change_set([
        request_part("POST", API_PATH + "leads", lead(email), content_id="1"),
        request_part("POST", API_PATH + "leads", lead(email), content_id="1"),
    ])])
    assert response.status_code == 400


def test_batch_stops_at_failure(sales_api, sandbox, email):
    response = send_batch(sales_api, [
        request_part("POST", API_PATH + "leads", lead(email)),
        request_part("POST", API_PATH + "leads", lead(email, firstname="x" * 51)),
        request_part("POST", API_PATH + "leads", lead(email)),
    ])
    parts = parts_of(response)
    assert response.status_code == 400
    assert len(parts) == 1
    assert parts[0]["status"] == 400
    assert len(leads_with(sandbox, email)) == 1


def test_batch_continue_on_error(sales_api, sandbox, email):
    response = send_batch(sales_api, [
        request_part("POST", API_PATH + "leads", lead(email, firstname="x" * 51)),
        request_part("POST", API_PATH + "leads", lead(email)),
    ], headers={"Prefer": "odata.continue-on-error"})
    parts = parts_of(response)
    assert response.status_code == 200
    assert [part["status"] for part in parts] == [400, 204]
    assert response.headers["Preference-Applied"] == "odata.continue-on-error"
    assert len(leads_with(sandbox, email)) == 1


def test_batch_continue_after_change_set(sales_api, sandbox, email):
    response = send_batch(sales_api, [
        change_set([
            request_part("POST", API_PATH + "leads", lead(email), content_id="1"),
            request_part("POST", API_PATH + "leads", lead(email, firstname="x" * 51),
                         content_id="2"),
        ]),
        request_part("POST", API_PATH + "leads", lead(email)),
    ], headers={"Prefer": "odata.continue-on-error"})
    parts = parts_of(response)
    assert response.status_code == 200
    assert [part["status"] for part in parts] == [400, 204]
    assert len(leads_with(sandbox, email)) == 1


def test_batch_lf_rejected(sales_api, email):
    body = batch_body([request_part("POST", API_PATH + "leads", lead(email))])
    response = sales_api.post(
        "$batch", data=body.replace("\r\n", "\n").encode("utf-8"),
        headers={"Content-Type": "multipart/mixed; boundary=batch_1"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Stream was not readable."


def test_batch_needs_multipart(sales_api):
    response = sales_api.post("$batch", json={"requests": []})
    assert response.status_code == 400


def test_batch_needs_batch_boundary(sales_api):
    response = send_batch(sales_api, [request_part("GET", "WhoAmI")], boundary="other_1")
    assert response.status_code == 400


def test_batch_needs_binary_encoding(sales_api):
    part = request_part("GET", "WhoAmI").replace("binary", "base64")
    response = send_batch(sales_api, [part])
    assert response.status_code == 400


def test_batch_needs_closing_delimiter(sales_api):
    body = batch_body([request_part("GET", "WhoAmI")]).replace("--batch_1--", "")
    response = sales_api.post(
        "$batch", data=body.encode("utf-8"),
        headers={"Content-Type": "multipart/mixed; boundary=batch_1"},
    )
    assert response.status_code == 400


def test_batch_nested_rejected(sales_api):
    response = send_batch(sales_api, [request_part("POST", API_PATH + "$batch", {})])
    assert response.status_code == 400


def test_batch_max_requests(sales_api, email):
    parts = [request_part("GET", "WhoAmI")] * 1001
    response = send_batch(sales_api, parts)
    assert response.status_code == 400
    assert "1000" in response.json()["error"]["message"]


def test_batch_privileges_per_part(reader_api, sandbox, email):
    response = send_batch(reader_api, [request_part("POST", API_PATH + "leads", lead(email))])
    parts = parts_of(response)
    assert response.status_code == 400
    assert parts[0]["status"] == 403
    assert leads_with(sandbox, email) == []


def test_batch_get_only_method(sales_api):
    response = sales_api.get("$batch")
    assert response.status_code == 405


def test_batch_log_counts(sales_api, sandbox, email):
    before = sandbox.store.request_counts()
    send_batch(sales_api, [
        request_part("POST", API_PATH + "leads", lead(email)) for _ in range(3)
    ])
    after = sandbox.store.request_counts()
    assert after["http_requests"] == before["http_requests"] + 1
    assert after["operations"] == before["operations"] + 3


def test_batch_log_parent(sales_api, sandbox, email):
    send_batch(sales_api, [request_part("POST", API_PATH + "leads", lead(email))])
    batch = sandbox.store.requests(path_prefix=API_PATH + "$batch")[-1]
    operation = sandbox.store.requests(kind="operation")[-1]
    assert operation["parent_id"] == batch["id"]
    assert operation["path"] == API_PATH + "leads"
    assert operation["status"] == 204


def test_batch_client_chosen_ids(sales_api, sandbox, email):
    lead_id = str(uuid.uuid4())
    parts = parts_of(send_batch(sales_api, [
        request_part("POST", API_PATH + "leads", lead(email, leadid=lead_id)),
    ]))
    assert parts[0]["headers"]["OData-EntityId"].endswith(f"leads({lead_id})")
