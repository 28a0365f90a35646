"""Compatibility of `imsreg simulate`'s OBS side with Huawei's official OBS Python SDK.

Starts the simulator with a few buckets and virtual objects (its own config, credentials from
the environment variables it reads), then, with the SDK's own ObsClient pointed at
http://127.0.0.1:PORT (the SDK goes path-style there and signs AWS-V2 style by itself):
  * headBucket and getBucketMetadata: the bucket's region and default storage class;
  * getObjectMetadata: size, ETag, storage class (none for Standard, COLD for an archived one),
    SSE-KMS and SSE-C headers;
  * ranged getObject of the first 36 KiB (206, a real qcow2 head: `QFI\\xfb`) and of the last
    512 bytes of a fixed VHD (`conectix`), never the whole object;
  * 404 NoSuchKey / NoSuchBucket (on HEAD, which has no body, the code travels in the error-code
    header), 403 InvalidObjectState on a COLD object (parsed from the XML body by the SDK), and
    403 SignatureDoesNotMatch for a wrong secret key;
then checks the simulator's counters (every call arrived, no whole-object read). Exits non-zero
on any mismatch and always stops the server.

Usage: python obs_compat.py path/to/imsreg   (run by tests/sdk_compat/obs_compat.sh)
"""

import json
import os
import subprocess
import sys
import tempfile
import urllib.request

import obs
from obs.model import GetObjectHeader

AK = "OBSCOMPATTESTAK00001"
SK = "obs-compat-secret-key"
GIB = 1 << 30

SIM_CONFIG = """seed: 5
obs:
  region: ap-southeast-1
  buckets:
    sdk-images:
      objects:
        web/web-01.qcow2: {size: 10GiB}
        db/fixed.vhd: {size: 2GiB, content: vhd-fixed}
        archive/old.qcow2: {size: 1GiB, storage_class: COLD}
        kms/a.qcow2: {size: 1GiB, encryption: kms}
        secret/a.qcow2: {size: 1GiB, encryption: sse-c}
    sdk-eu-images:
      region: eu-west-101
      storage_class: WARM
"""


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def start_simulator(binary, workdir):
    config = os.path.join(workdir, "sim.yaml")
    with open(config, "w") as f:
        f.write(SIM_CONFIG)
    env = dict(os.environ, HUAWEICLOUD_SDK_AK=AK, HUAWEICLOUD_SDK_SK=SK)
    server = subprocess.Popen(
        [binary, "simulate", "--config", config], stdout=subprocess.PIPE, env=env, text=True
    )
    first = server.stdout.readline().strip()
    prefix = "listening on "
    if not first.startswith(prefix):
        server.kill()
        raise AssertionError(f"unexpected first line from imsreg simulate: {first!r}")
    return server, first[len(prefix):]


def client(endpoint, sk=SK):
    return obs.ObsClient(
        access_key_id=AK,
        secret_access_key=sk,
        server=endpoint,
        max_retry_count=0,
        timeout=10,
    )


def ok(resp, what):
    check(resp.status < 300, f"{what}: HTTP {resp.status} {resp.errorCode} {resp.errorMessage}")
    return resp


def refused(resp, status, code, what):
    """The SDK reads the code from an error body; a HEAD answer has none, so the code is in
    the x-amz-error-code header (which the SDK hands back without its prefix)."""
    headers = dict(resp.header or [])
    found = resp.errorCode or headers.get("error-code") or headers.get("x-amz-error-code")
    check(
        resp.status == status and found == code,
        f"{what}: expected {status} {code}, got {resp.status} {found} ({headers})",
    )


def run(endpoint):
    c = client(endpoint)
    ok(c.headBucket("sdk-images"), "headBucket")
    meta = ok(c.getBucketMetadata("sdk-images"), "getBucketMetadata").body
    check(meta.location == "ap-southeast-1", f"bucket location {meta.location!r}")
    check(meta.storageClass == "STANDARD", f"bucket storage class {meta.storageClass!r}")
    eu = ok(c.getBucketMetadata("sdk-eu-images"), "getBucketMetadata eu").body
    check(eu.location == "eu-west-101" and eu.storageClass == "WARM", f"eu bucket {eu}")

    web = ok(c.getObjectMetadata("sdk-images", "web/web-01.qcow2"), "getObjectMetadata").body
    check(web.contentLength == 10 * GIB, f"size {web.contentLength}")
    check(web.storageClass is None, f"a Standard object names no class: {web.storageClass!r}")
    check(web.etag, "no ETag")
    cold = ok(c.getObjectMetadata("sdk-images", "archive/old.qcow2"), "cold metadata").body
    check(cold.storageClass == "COLD", f"cold storage class {cold.storageClass!r}")
    kms = ok(c.getObjectMetadata("sdk-images", "kms/a.qcow2"), "kms metadata").body
    check(kms.sseKms in ("kms", "aws:kms") and kms.sseKmsKey, f"kms {kms.sseKms!r} {kms.sseKmsKey!r}")
    ssec = ok(c.getObjectMetadata("sdk-images", "secret/a.qcow2"), "sse-c metadata").body
    check(ssec.sseC == "AES256", f"sse-c {ssec.sseC!r}")

    head = ok(
        c.getObject(
            "sdk-images",
            "web/web-01.qcow2",
            headers=GetObjectHeader(range="0-36863"),
            loadStreamInMemory=True,
        ),
        "ranged getObject",
    )
    check(head.status == 206, f"ranged GET answered {head.status}")
    check(len(head.body.buffer) == 36864, f"read {len(head.body.buffer)} bytes")
    check(head.body.buffer[:4] == b"QFI\xfb", f"not a qcow2 head: {head.body.buffer[:8]!r}")
    size = 2 * GIB
    tail = ok(
        c.getObject(
            "sdk-images",
            "db/fixed.vhd",
            headers=GetObjectHeader(range=f"bytes={size - 512}-{size - 1}"),
            loadStreamInMemory=True,
        ),
        "tail getObject",
    )
    check(tail.status == 206 and tail.body.buffer[:8] == b"conectix", f"tail {tail.body.buffer[:8]!r}")

    refused(c.getObjectMetadata("sdk-images", "nope.qcow2"), 404, "NoSuchKey", "missing key")
    refused(c.getObjectMetadata("sdk-nobucket", "a.qcow2"), 404, "NoSuchBucket", "missing bucket")
    refused(
        c.getObject(
            "sdk-images",
            "archive/old.qcow2",
            headers=GetObjectHeader(range="0-99"),
            loadStreamInMemory=True,
        ),
        403,
        "InvalidObjectState",
        "cold read",
    )
    c.close()
    wrong = client(endpoint, sk="not-the-secret")
    refused(wrong.headBucket("sdk-images"), 403, "SignatureDoesNotMatch", "wrong secret")
    wrong.close()

    with urllib.request.urlopen(endpoint + "/_sim/stats", timeout=10) as answer:
        stats = json.load(answer)["obs"]
    check(stats["auth_failures"] == 1, f"auth failures {stats['auth_failures']}")
    check(stats["whole_reads"] == 0, "a whole object was read")
    check(stats["max_range_bytes"] == 36864, f"largest range {stats['max_range_bytes']}")
    check(stats["requests"].get("obs_get_object") == 3, f"GETs {stats['requests']}")
    return stats


def main():
    binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/debug/imsreg")
    with tempfile.TemporaryDirectory() as workdir:
        server, endpoint = start_simulator(binary, workdir)
        try:
            stats = run(endpoint)
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"obs sdk compat: ok (esdk-obs-python {obs.const.OBS_SDK_VERSION}, {stats['requests']})")


if __name__ == "__main__":
    main()
