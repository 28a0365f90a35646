"""Signature vectors for imsreg's OBS signer, made with Huawei's official `esdk-obs-python`.

Two kinds, both written to tests/data/obs-vectors.json (read by tests/obs_signer_vectors.rs):

* "wire": the SDK's own ObsClient sends real requests (HEAD bucket, GET ?location and
  ?storageClass, HEAD object, ranged GET; keys with spaces, `+`, unicode and reserved
  characters; with and without a security token) to a capture server on 127.0.0.1, which
  records each request exactly as it arrived and answers like OBS would. Two client set-ups:
    - native OBS signing, virtual-hosted: server `http://obs.test:PORT`, with `*.obs.test`
      resolved to 127.0.0.1 inside this process, and signature negotiation off (with it on,
      the SDK first asks `HEAD /?apiversion`);
    - server `http://127.0.0.1:PORT`: the SDK forces path-style there and then signs AWS-V2
      style (`AWS AK:sig`, `x-amz-*` headers), which is what a loopback simulator receives.
  For each captured request the expected string to sign is recomputed with the SDK's
  `obs.auth.Authentication` from the captured headers, and the script insists that it gives
  the same Authorization header as the one on the wire.
* "auth": `obs.auth.Authentication(...).getSignature()` called directly (no network) for
  what the SDK never sends on its own: native OBS signing with path-style addressing, an
  `x-obs-date` header, sub-resources mixed with ignored query parameters, metadata trimming,
  plus the vectors V1-V5 of shared/obs-api.md section 4.4.

All credentials are fake. Usage: tests/sdk_compat/obs_vectors.sh (creates a throw-away venv).
"""

import http.server
import json
import socket
import sys
import threading

import obs
from obs import auth, convertor
from obs.model import GetObjectHeader

SDK_VERSION = "3.26.6"
AK = "OBSVECTORTESTAK00001"
SK = "obs-vector-secret-key/+="
TOKEN = "sts-token+/=Secret-0123456789abcdef"
FAKE_DOMAIN = "obs.test"

# ---------------------------------------------------------------------------------------------
# Capture server.

captured = []


class Capture(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _record(self):
        captured.append(
            {
                "method": self.command,
                "target": self.path,
                "headers": [[k, v] for k, v in self.headers.items()],
            }
        )

    def _answer(self, status, headers, body=b""):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _prefix(self):
        auth_header = self.headers.get("Authorization", "")
        return "x-amz-" if auth_header.startswith("AWS") else "x-obs-"

    def do_HEAD(self):
        self._record()
        p = self._prefix()
        self._answer(
            200,
            [
                (p + "request-id", "0000000000000001"),
                (p + "bucket-location", "ap-southeast-1"),
                (p + "storage-class", "STANDARD"),
            ],
        )

    def do_GET(self):
        self._record()
        p = self._prefix()
        if "location" in self.path:
            body = b'<?xml version="1.0" encoding="UTF-8"?><Location>ap-southeast-1</Location>'
            self._answer(200, [("Content-Type", "application/xml")], body)
            return
        if "storageClass" in self.path or "storagePolicy" in self.path:
            body = b'<?xml version="1.0" encoding="UTF-8"?><StorageClass>STANDARD</StorageClass>'
            self._answer(200, [("Content-Type", "application/xml")], body)
            return
        body = b"QFI\xfb\x00\x00\x00\x03"
        self._answer(
            206,
            [
                (p + "request-id", "0000000000000002"),
                ("Content-Range", "bytes 0-7/8"),
                ("Content-Type", "binary/octet-stream"),
            ],
            body,
        )


def start_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Capture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# Resolve the fake OBS domain (and its bucket subdomains) to the capture server.
_real_getaddrinfo = socket.getaddrinfo


def _getaddrinfo(host, *args, **kwargs):
    if isinstance(host, str) and (host == FAKE_DOMAIN or host.endswith("." + FAKE_DOMAIN)):
        host = "127.0.0.1"
    return _real_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _getaddrinfo

# ---------------------------------------------------------------------------------------------
# Vectors.


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def sdk_signature(dialect, path_style, method, bucket, key, query, headers, sk=SK, ak=AK):
    """The SDK's own string to sign and Authorization for these inputs."""
    adapter = convertor.Adapter("obs" if dialect == "obs" else "v2")
    authentication = auth.Authentication(ak, sk, path_style, adapter, "unused", False)
    # The SDK signs from a dict of the headers it is about to send.
    result = authentication.doAuth(method, bucket, key, dict(query) if query else {}, dict(headers))
    return result["CanonicalString"], result["Authorization"]


def wire_case(vector_id, client, dialect, addressing, token, bucket, key, query, call):
    """Runs `call(client)`, takes the one request it sent, and turns it into a vector."""
    before = len(captured)
    response = call(client)
    check(response.status < 300, f"{vector_id}: the SDK call failed: {response}")
    sent = captured[before:]
    check(len(sent) == 1, f"{vector_id}: expected one request, saw {len(sent)}")
    request = sent[0]
    # The SDK signs lower-cased names with the values it sends.
    signed = [[k.lower(), v] for k, v in request["headers"] if k.lower() != "authorization"]
    sts, authorization = sdk_signature(
        dialect, addressing == "path-style", request["method"], bucket, key, query, signed
    )
    on_wire = dict((k.lower(), v) for k, v in request["headers"]).get("authorization")
    check(
        on_wire == authorization,
        f"{vector_id}: recomputed {authorization!r}, the wire had {on_wire!r}",
    )
    return {
        "id": vector_id,
        "source": "wire",
        "dialect": dialect,
        "addressing": addressing,
        "credentials": {"ak": AK, "sk": SK, "security_token": token},
        "request": {
            "method": request["method"],
            "bucket": bucket,
            "key": key,
            "query": query,
            "headers": signed,
        },
        "wire": request,
        "expected": {"string_to_sign": sts, "authorization": authorization},
    }


def auth_case(vector_id, dialect, addressing, method, bucket, key, query, headers, ak=AK, sk=SK):
    sts, authorization = sdk_signature(
        dialect, addressing == "path-style", method, bucket, key, query, headers, sk=sk, ak=ak
    )
    token = next((v for k, v in headers if k.lower().endswith("-security-token")), None)
    return {
        "id": vector_id,
        "source": "auth",
        "dialect": dialect,
        "addressing": addressing,
        "credentials": {"ak": ak, "sk": sk, "security_token": token},
        "request": {
            "method": method,
            "bucket": bucket,
            "key": key,
            "query": query,
            "headers": headers,
        },
        "expected": {"string_to_sign": sts, "authorization": authorization},
    }


KEYS = {
    "plain": "images/centos-7.qcow2",
    "space-plus": "dir/disk image+1~.qcow2",
    "unicode": "镜像/系统盘 v2.qcow2",
    "reserved": "a+b=c&d?e#f%g;h,i@j!k*l'm(n)o.vmdk",
}

BUCKET = "my-bucket"
DATE = "Sat, 12 Oct 2015 08:12:38 GMT"


def wire_vectors(port):
    vectors = []
    setups = [
        # (id prefix, server, dialect, addressing)
        ("obs-vh", f"http://{FAKE_DOMAIN}:{port}", "obs", "virtual-hosted"),
        ("aws-ps", f"http://127.0.0.1:{port}", "aws-v2", "path-style"),
    ]
    for prefix, server, dialect, addressing in setups:
        for token in (None, TOKEN):
            client = obs.ObsClient(
                access_key_id=AK,
                secret_access_key=SK,
                security_token=token,
                server=server,
                is_signature_negotiation=False,
                max_retry_count=0,
            )
            suffix = "-token" if token else ""

            def case(name, key, query, call):
                vectors.append(
                    wire_case(
                        f"{prefix}-{name}{suffix}",
                        client,
                        dialect,
                        addressing,
                        token,
                        BUCKET,
                        key,
                        query,
                        call,
                    )
                )

            case("head-bucket", None, [], lambda c: c.headBucket(BUCKET))
            for name, key in KEYS.items():
                case(
                    f"head-object-{name}",
                    key,
                    [],
                    lambda c, key=key: c.getObjectMetadata(BUCKET, key),
                )
            case(
                "get-range-head",
                KEYS["space-plus"],
                [],
                lambda c: c.getObject(
                    BUCKET,
                    KEYS["space-plus"],
                    headers=GetObjectHeader(range="0-36863"),
                    loadStreamInMemory=True,
                ),
            )
            case(
                "get-range-tail",
                KEYS["unicode"],
                [],
                lambda c: c.getObject(
                    BUCKET,
                    KEYS["unicode"],
                    headers=GetObjectHeader(range="bytes=4096-4607"),
                    loadStreamInMemory=True,
                ),
            )
            if not token:
                case(
                    "get-bucket-location",
                    None,
                    [["location", None]],
                    lambda c: c.getBucketLocation(BUCKET),
                )
                case(
                    "get-bucket-storage-class",
                    None,
                    [["storageClass", None]] if dialect == "obs" else [["storagePolicy", None]],
                    lambda c: c.getBucketStoragePolicy(BUCKET),
                )
            client.close()
    return vectors


def auth_vectors():
    date = [["date", DATE]]
    vectors = [
        # shared/obs-api.md section 4.4, V1-V5.
        auth_case(
            "doc-v1",
            "obs",
            "virtual-hosted",
            "GET",
            "bucket",
            "object.txt",
            [],
            [
                ["content-md5", "abc"],
                ["content-type", "text/plain"],
                ["date", "Mon, 15 Aug 2022 16:50:12 GMT"],
            ],
            ak="access_key",
            sk="123456",
        ),
        auth_case(
            "doc-v2", "obs", "virtual-hosted", "HEAD", "my-bucket", KEYS["space-plus"], [], date,
            ak="AKEXAMPLE", sk="SKEXAMPLE",
        ),
        auth_case(
            "doc-v3", "obs", "virtual-hosted", "HEAD", "my-bucket", None, [], date,
            ak="AKEXAMPLE", sk="SKEXAMPLE",
        ),
        auth_case(
            "doc-v3p", "obs", "path-style", "HEAD", "my-bucket", None, [], date,
            ak="AKEXAMPLE", sk="SKEXAMPLE",
        ),
        auth_case(
            "doc-v4",
            "obs",
            "virtual-hosted",
            "GET",
            "my-bucket",
            "k",
            [["versionId", "v1"], ["acl", None], ["foo", "bar"]],
            [
                ["date", DATE],
                ["x-obs-date", DATE],
                ["x-obs-security-token", "T"],
                ["range", "bytes=0-9"],
                ["x-obs-meta-a", "  v  "],
            ],
            ak="AKEXAMPLE",
            sk="SKEXAMPLE",
        ),
        auth_case(
            "doc-v5", "obs", "virtual-hosted", "HEAD", "bucket", "镜像/a b.qcow2", [], date,
            ak="AKEXAMPLE", sk="SKEXAMPLE",
        ),
    ]
    # Native OBS signing, path-style: what imsreg sends to a loopback endpoint.
    for name, key in KEYS.items():
        vectors.append(
            auth_case(f"obs-ps-head-object-{name}", "obs", "path-style", "HEAD", BUCKET, key, [], date)
        )
    vectors += [
        auth_case("obs-ps-head-bucket", "obs", "path-style", "HEAD", BUCKET, None, [], date),
        auth_case(
            "obs-ps-get-range-token",
            "obs",
            "path-style",
            "GET",
            BUCKET,
            KEYS["unicode"],
            [],
            [["date", DATE], ["range", "bytes=0-36863"], ["x-obs-security-token", TOKEN]],
        ),
        auth_case(
            "obs-vh-get-range-token",
            "obs",
            "virtual-hosted",
            "GET",
            BUCKET,
            KEYS["reserved"],
            [],
            [["date", DATE], ["range", "bytes=0-36863"], ["x-obs-security-token", TOKEN]],
        ),
        auth_case(
            "obs-vh-x-obs-date-over-date",
            "obs",
            "virtual-hosted",
            "HEAD",
            BUCKET,
            KEYS["plain"],
            [],
            [["date", DATE], ["x-obs-date", "Sun, 13 Oct 2015 00:00:00 GMT"]],
        ),
        auth_case(
            "obs-ps-subresources",
            "obs",
            "path-style",
            "GET",
            BUCKET,
            KEYS["plain"],
            [
                ["versionId", "v 1+2"],
                ["partNumber", "3"],
                ["uploads", None],
                ["x-obs-extra", "e"],
                ["X-Obs-Upper", "u"],
                ["response-content-type", "text/plain"],
                ["prefix", "ignored"],
                ["apiversion", None],
            ],
            [["date", DATE]],
        ),
        auth_case(
            "obs-vh-location",
            "obs",
            "virtual-hosted",
            "GET",
            BUCKET,
            None,
            [["location", None]],
            [["date", DATE]],
        ),
        auth_case(
            "obs-vh-headers-mixed",
            "obs",
            "virtual-hosted",
            "HEAD",
            BUCKET,
            KEYS["plain"],
            [],
            [
                ["date", DATE],
                ["x-obs-meta-name", "  padded value  "],
                ["x-obs-acl", " private "],
                ["x-obs-server-side-encryption-customer-algorithm", "AES256"],
                ["x-amz-ignored", "1"],
                ["user-agent", "not signed"],
            ],
        ),
        auth_case(
            "aws-ps-head-object-token",
            "aws-v2",
            "path-style",
            "HEAD",
            BUCKET,
            KEYS["space-plus"],
            [],
            [["date", DATE], ["x-amz-security-token", TOKEN], ["x-obs-ignored", "1"]],
        ),
        auth_case(
            "no-bucket",
            "obs",
            "virtual-hosted",
            "GET",
            None,
            None,
            [],
            [["date", DATE]],
        ),
    ]
    return vectors


def main(out_path):
    check(obs.__version__ if hasattr(obs, "__version__") else True, "obs imported")
    server = start_server()
    try:
        vectors = wire_vectors(server.server_address[1]) + auth_vectors()
    finally:
        server.shutdown()
    document = {
        "description": "OBS signature vectors from the official Python SDK "
        f"(esdk-obs-python {SDK_VERSION}); made by tests/sdk_compat/obs_vectors.py. "
        "Credentials are fake.",
        "sdk": f"esdk-obs-python {SDK_VERSION}",
        "vectors": vectors,
    }
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(document, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{len(vectors)} vectors written to {out_path}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/obs-vectors.json")
