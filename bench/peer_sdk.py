"""The peer of the benchmark: the script a competent user writes around Huawei Cloud's official
Python SDK instead of using imsreg.

Reads the image list of an imsreg manifest (`images:` entries, `image_url` as `bucket:object`),
registers every image with `RegisterImage` from a ThreadPoolExecutor(16), then polls the jobs
with `ShowJob` every 2 s until each is SUCCESS or FAIL, and writes one result per image to a
JSON file. Credentials are AK/SK `BasicCredentials` from the environment variables the SDK
documents (HUAWEICLOUD_SDK_AK, HUAWEICLOUD_SDK_SK, HUAWEICLOUD_SDK_PROJECT_ID).

What a careful user adds to the bare loop, and nothing more:
  * `--rate R` paces the RegisterImage calls (a shared token schedule: one call every 1/R s)
    when the account's quota is known;
  * the SDK's own retry of 429 answers (HttpConfig.retry_times, honouring Retry-After), a
    connection pool as large as the thread pool, and a per-image try/except so one error does
    not stop the run;
  * `--retry-busy S`, for accounts at IMS's limit of running jobs: a RegisterImage answered
    400 IMG.0060 ("too many tasks") is sent again after S seconds (in its worker thread).

Usage: peer_sdk.py MANIFEST --endpoint http://127.0.0.1:PORT --results out.json
                   [--rate 50] [--workers 16] [--poll-interval 2] [--retry-busy 1]
Exit code 0 when every image ended SUCCESS, 1 otherwise.
"""

import argparse
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import yaml
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions import exceptions
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkims.v2 import (
    ImsClient,
    RegisterImageRequest,
    RegisterImageRequestBody,
    ShowJobRequest,
)


class Pacer:
    """At most `rate` calls per second across all threads: each caller takes the next slot."""

    def __init__(self, rate):
        self.interval = 1.0 / rate if rate else 0.0
        self.next_slot = time.monotonic()
        self.lock = threading.Lock()

    def wait(self):
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            slot = max(now, self.next_slot)
            self.next_slot = slot + self.interval
        time.sleep(max(0.0, slot - now))


def make_client(endpoint, workers):
    config = HttpConfig.get_default_config()
    config.timeout = (10, 60)
    config.retry_times = 5  # the SDK retries 429 answers, honouring Retry-After
    config.pool_maxsize = workers
    credentials = BasicCredentials(
        os.environ["HUAWEICLOUD_SDK_AK"],
        os.environ["HUAWEICLOUD_SDK_SK"],
        os.environ["HUAWEICLOUD_SDK_PROJECT_ID"],
    )
    return (
        ImsClient.new_builder()
        .with_http_config(config)
        .with_credentials(credentials)
        .with_endpoint(endpoint)
        .build()
    )


def error_text(err):
    if isinstance(err, exceptions.ServiceResponseException):
        return f"{err.status_code} {err.error_code}: {err.error_msg}"
    return f"{type(err).__name__}: {err}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest")
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--results", required=True)
    parser.add_argument("--rate", type=float, default=0.0, help="RegisterImage calls per second (0: unpaced)")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--poll-interval", type=float, default=2.0)
    parser.add_argument("--retry-busy", type=float, default=0.0,
                        help="seconds before re-sending a register answered IMG.0060 (0: give up)")
    args = parser.parse_args()

    with open(args.manifest) as f:
        images = yaml.safe_load(f)["images"]
    ims = make_client(args.endpoint, args.workers)
    pacer = Pacer(args.rate)
    results = {}

    def register(image):
        image_id = image["image_id"]
        while True:
            pacer.wait()
            try:
                body = RegisterImageRequestBody(image_url=image["image_url"])
                answer = ims.register_image(RegisterImageRequest(image_id=image_id, body=body))
                return image_id, {"job_id": answer.job_id, "status": "SUBMITTED"}
            except exceptions.ServiceResponseException as err:
                if args.retry_busy > 0 and err.error_code == "IMG.0060":
                    time.sleep(args.retry_busy)
                    continue
                return image_id, {"job_id": None, "status": "ERROR", "error": error_text(err)}
            except Exception as err:  # one image's error must not stop the others
                return image_id, {"job_id": None, "status": "ERROR", "error": error_text(err)}

    def show_job(image_id):
        result = results[image_id]
        try:
            job = ims.show_job(ShowJobRequest(job_id=result["job_id"]))
        except Exception as err:
            result["last_poll_error"] = error_text(err)
            return
        if job.status in ("SUCCESS", "FAIL"):
            result["status"] = job.status
            if job.status == "FAIL":
                result["error"] = job.fail_reason or job.error_code

    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        for image_id, result in pool.map(register, images):
            results[image_id] = result
        pending = [i for i, r in results.items() if r["status"] == "SUBMITTED"]
        print(f"submitted {len(pending)} of {len(images)} images", file=sys.stderr)
        while pending:
            time.sleep(args.poll_interval)
            list(pool.map(show_job, pending))
            pending = [i for i in pending if results[i]["status"] == "SUBMITTED"]

    with open(args.results, "w") as f:
        json.dump(results, f, indent=1)
    counts = {}
    for result in results.values():
        counts[result["status"]] = counts.get(result["status"], 0) + 1
    print(json.dumps(counts))
    return 0 if counts.get("SUCCESS", 0) == len(images) else 1


if __name__ == "__main__":
    sys.exit(main())
