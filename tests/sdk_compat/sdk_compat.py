"""Compatibility of `imsreg simulate` with Huawei Cloud's official Python SDK.

Starts the simulator (credentials from the same environment variables the SDK reads), then,
with the SDK's own ImsClient and AK/SK BasicCredentials pointed at it over http:
  * registers a manifest image, polls ShowJob (and ShowJobProgress) to SUCCESS, and lists the
    image as active through ListImages;
  * creates an image with GlanceCreateImageMetadata (201, queued), registers a `corrupt`
    object, and sees the job FAIL with an error code and the image killed;
  * checks that the SDK parses the simulator's error bodies: IMG.0046 on a second register,
    404 on an unknown image, APIG.0301 for a wrong secret key;
  * creates an image the way imsreg does (GlanceCreateImageMetadata with an identity tag
    "imsreg-key=<43 characters a-z2-7>", __os_version, disk_format qcow2, min_disk), finds
    exactly it with ListImages(tag=...), reads ListOsVersions and ShowImageQuota, deletes it
    with GlanceDeleteImage and no longer finds it.
Exits non-zero on any mismatch and always stops the server.

Usage: python sdk_compat.py path/to/imsreg   (run by tests/sdk_compat/run.sh)
"""

import base64
import hashlib
import os
import subprocess
import sys
import tempfile
import time

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions import exceptions
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkims.v2 import (
    GlanceCreateImageMetadataRequest,
    GlanceCreateImageMetadataRequestBody,
    GlanceDeleteImageRequest,
    GlanceDeleteImageRequestBody,
    ImsClient,
    ListImagesRequest,
    ListOsVersionsRequest,
    RegisterImageRequest,
    RegisterImageRequestBody,
    ShowImageQuotaRequest,
    ShowJobProgressRequest,
    ShowJobRequest,
)

AK = "PYCOMPATTESTAK000001"
SK = "py-compat-secret-key"
PROJECT_ID = "fedcba9876543210fedcba9876543210"
IMAGE_ID = "4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba86"

MANIFEST = f"""version: 1
images:
  - image_id: {IMAGE_ID}
    image_url: "sdk-compat-bucket:images/centos-7.qcow2"
"""

SIM_CONFIG = """seed: 3
job_duration: {min: 400ms, max: 900ms}
"""


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def start_simulator(binary, workdir):
    manifest = os.path.join(workdir, "manifest.yaml")
    config = os.path.join(workdir, "sim.yaml")
    with open(manifest, "w") as f:
        f.write(MANIFEST)
    with open(config, "w") as f:
        f.write(SIM_CONFIG)
    env = dict(os.environ)
    env.update(
        HUAWEICLOUD_SDK_AK=AK,
        HUAWEICLOUD_SDK_SK=SK,
        HUAWEICLOUD_SDK_PROJECT_ID=PROJECT_ID,
    )
    server = subprocess.Popen(
        [binary, "simulate", "--images", manifest, "--config", config],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    first = server.stdout.readline().strip()
    prefix = "listening on "
    if not first.startswith(prefix):
        server.kill()
        raise AssertionError(f"unexpected first line from imsreg simulate: {first!r}")
    return server, first[len(prefix):]


def client(endpoint, sk=SK):
    config = HttpConfig.get_default_config()
    config.timeout = (5, 10)
    return (
        ImsClient.new_builder()
        .with_http_config(config)
        .with_credentials(BasicCredentials(AK, sk, PROJECT_ID))
        .with_endpoint(endpoint)
        .build()
    )


def wait_for_job(ims, job_id, deadline_s=15):
    seen = []
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        job = ims.show_job(ShowJobRequest(job_id=job_id))
        seen.append(job.status)
        progress = ims.show_job_progress(ShowJobProgressRequest(job_id=job_id))
        check(progress.status in ("INIT", "RUNNING", "SUCCESS", "FAIL"), f"bad status {progress.status}")
        check(progress.entities.process_percent is not None, "process_percent missing")
        if job.status in ("SUCCESS", "FAIL"):
            return job, seen
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish; statuses seen {seen}")


def list_one(ims, image_id):
    answer = ims.list_images(ListImagesRequest(id=image_id, imagetype="private", limit=10))
    check(len(answer.images) == 1, f"ListImages id={image_id} gave {len(answer.images)} images")
    return answer.images[0]


def expect_error(call, status, code):
    try:
        call()
    except exceptions.ClientRequestException as err:
        check(err.status_code == status, f"expected HTTP {status}, got {err.status_code} ({err})")
        check(err.error_code == code, f"expected {code}, got {err.error_code} ({err.error_msg})")
        return err
    raise AssertionError(f"expected HTTP {status} {code}, the call succeeded")


def run(endpoint):
    ims = client(endpoint)

    # A manifest image: register, ShowJob to SUCCESS, listed active.
    check(list_one(ims, IMAGE_ID).status == "queued", "manifest image should start queued")
    body = RegisterImageRequestBody(image_url="sdk-compat-bucket:images/centos-7.qcow2")
    registered = ims.register_image(RegisterImageRequest(image_id=IMAGE_ID, body=body))
    check(len(registered.job_id) == 32, f"job_id {registered.job_id!r}")
    check(list_one(ims, IMAGE_ID).status == "saving", "image should be saving while the job runs")
    job, seen = wait_for_job(ims, registered.job_id)
    check(job.status == "SUCCESS", f"job ended {job.status}: {job.fail_reason}")
    check(job.job_type == "imsNativeImportImageJob", f"job_type {job.job_type}")
    check(job.entities.image_id == IMAGE_ID, "job entities.image_id")
    check(job.begin_time and job.end_time, "job times")
    image = list_one(ims, IMAGE_ID)
    check(image.status == "active", f"image status {image.status}")
    print(f"ok: registered {IMAGE_ID}, job statuses {sorted(set(seen))}, image active")

    # Registering it again: IMG.0046 in the IMS error body, parsed by the SDK.
    expect_error(
        lambda: ims.register_image(RegisterImageRequest(image_id=IMAGE_ID, body=body)),
        400,
        "IMG.0046",
    )
    # An unknown image: 404 IMG.0027.
    expect_error(
        lambda: ims.register_image(
            RegisterImageRequest(image_id="00000000-0000-4000-8000-000000000000", body=body)
        ),
        404,
        "IMG.0027",
    )
    print("ok: IMG.0046 and 404 IMG.0027 parsed by the SDK")

    # Create metadata, then a corrupt object: the job fails, the image is killed.
    created = ims.glance_create_image_metadata(
        GlanceCreateImageMetadataRequest(
            body=GlanceCreateImageMetadataRequestBody(
                name="sdk-compat", disk_format="vhd", min_disk=40, os_version="CentOS 7.9 64bit"
            )
        )
    )
    check(created.status == "queued", f"created image status {created.status}")
    bad = RegisterImageRequestBody(image_url="sdk-compat-bucket:corrupt-disk.vhd")
    failed = ims.register_image(RegisterImageRequest(image_id=created.id, body=bad))
    job, _ = wait_for_job(ims, failed.job_id)
    check(job.status == "FAIL" and job.error_code and job.fail_reason, "corrupt job should FAIL")
    check(list_one(ims, created.id).status == "killed", "failed image should be killed")
    print(f"ok: created {created.id}, corrupt object -> FAIL {job.error_code}, image killed")

    # Paging: the SDK's marker/limit and page_info.
    page = ims.list_images(ListImagesRequest(imagetype="private", limit=1))
    check(len(page.images) == 1 and page.page_info and page.page_info.next_marker, "page_info")
    rest = ims.list_images(ListImagesRequest(imagetype="private", marker=page.page_info.next_marker))
    check(len(rest.images) == 1, f"second page has {len(rest.images)} images")
    print("ok: paging with marker/limit")

    create_find_and_delete(ims)

    # A wrong secret key: the signature check fails with the gateway's body.
    expect_error(lambda: client(endpoint, sk="wrong-secret").list_images(ListImagesRequest()), 401, "APIG.0301")
    print("ok: wrong SK -> 401 APIG.0301")


def identity_tag_value(name):
    """imsreg's identity tag value: base32 (lower case, no padding) of sha256(name), 43 chars."""
    return base64.b32encode(hashlib.sha256(name.encode()).digest()).decode().lower()[:43]


def create_find_and_delete(ims):
    name = "sdk-compat-created"
    value = identity_tag_value(name)
    check(len(value) == 43 and set(value) <= set("abcdefghijklmnopqrstuvwxyz234567"), value)
    tag = f"imsreg-key={value}"

    versions = ims.list_os_versions(ListOsVersionsRequest())
    platforms = versions.body or []
    known = [v.os_version for p in platforms for v in (p.version_list or [])]
    check("Ubuntu 22.04 server 64bit" in known, f"ListOsVersions gave {known}")
    check(all(p.platform for p in platforms), "every platform has a name")

    def image_quota():
        answer = ims.show_image_quota(ShowImageQuotaRequest())
        images = [r for r in answer.quotas.resources if r.type == "image"]
        check(len(images) == 1, f"quota resources {answer.quotas.resources}")
        return images[0]

    before = image_quota()
    check(before.quota == 1000 and before.used >= 1, f"quota {before}")

    created = ims.glance_create_image_metadata(
        GlanceCreateImageMetadataRequest(
            body=GlanceCreateImageMetadataRequestBody(
                name=name,
                tags=[tag, "team=web"],
                os_version="Ubuntu 22.04 server 64bit",
                disk_format="qcow2",
                min_disk=40,
                min_ram=1024,
            )
        )
    )
    check(created.status == "queued", f"created image status {created.status}")
    check(tag in (created.tags or []), f"created image tags {created.tags}")
    check(created.os_version == "Ubuntu 22.04 server 64bit", f"__os_version {created.os_version}")
    check(created.disk_format == "qcow2" and created.min_disk == 40, "disk_format, min_disk")
    check(image_quota().used == before.used + 1, "the quota counts the created image")

    found = ims.list_images(ListImagesRequest(imagetype="private", tag=tag, limit=1000))
    check([i.id for i in found.images] == [created.id], f"ListImages(tag) gave {found.images}")
    check(tag in (found.images[0].tags or []), "the listed image carries the tag")
    other = ims.list_images(ListImagesRequest(imagetype="private", tag=f"imsreg-key={'a' * 43}"))
    check(other.images == [], f"another tag finds {other.images}")
    print(f"ok: created {created.id} tagged {tag}, ListImages(tag) finds exactly it")

    ims.glance_delete_image(
        GlanceDeleteImageRequest(
            image_id=created.id, body=GlanceDeleteImageRequestBody(delete_backup=False)
        )
    )
    gone = ims.list_images(ListImagesRequest(imagetype="private", tag=tag))
    check(gone.images == [], f"after GlanceDeleteImage ListImages(tag) gives {gone.images}")
    check(image_quota().used == before.used, "the quota no longer counts it")
    expect_error(
        lambda: ims.glance_delete_image(GlanceDeleteImageRequest(image_id=created.id)),
        404,
        "IMG.0144",
    )
    print("ok: ListOsVersions, ShowImageQuota, GlanceDeleteImage (then 404 IMG.0144)")


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/debug/imsreg"
    with tempfile.TemporaryDirectory() as workdir:
        server, endpoint = start_simulator(binary, workdir)
        try:
            run(endpoint)
        finally:
            server.terminate()
            try:
                code = server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                raise AssertionError("imsreg simulate did not stop on SIGTERM")
        check(code == 0, f"imsreg simulate exited {code} on SIGTERM")
    print("sdk compatibility: all checks passed")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as err:
        print(f"sdk compatibility FAILED: {err}", file=sys.stderr)
        sys.exit(1)
