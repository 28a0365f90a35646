#!/usr/bin/env bash
# Cron wrapper for imsreg: re-runs one manifest, keeps a report per run, and tells "busy"
# (another run still holds the state journal) apart from "failed".
#
#   */10 * * * * /opt/imsreg/imsreg-cron.sh /srv/migration/wave-1.yaml >> /var/log/imsreg/cron.log 2>&1
#
# Credentials come from the environment (HUAWEICLOUD_SDK_AK / HUAWEICLOUD_SDK_SK /
# HUAWEICLOUD_SDK_PROJECT_ID) or from ~/.huaweicloud/credentials; cron's environment is
# minimal, so source a file that only the cron user can read.
set -uo pipefail

manifest=${1:?usage: imsreg-cron.sh MANIFEST}
reports=${IMSREG_REPORT_DIR:-/var/lib/imsreg/reports}
state=${IMSREG_STATE:-/var/lib/imsreg/$(basename "${manifest%.*}").imsreg-state.jsonl}
[ -r /etc/imsreg/credentials.env ] && . /etc/imsreg/credentials.env

mkdir -p "$reports"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
imsreg run "$manifest" \
  --state "$state" \
  --no-progress --log-format json \
  --report "$reports/$stamp.json" --report "$reports/$stamp.md"
code=$?

case $code in
  0)   echo "$stamp imsreg: every image registered" ;;
  1)   echo "$stamp imsreg: some images failed or are still pending, see $reports/$stamp.md" ;;
  75)  echo "$stamp imsreg: the previous run is still going; skipped"; exit 0 ;;
  130) echo "$stamp imsreg: interrupted; the next run resumes from $state" ;;
  *)   echo "$stamp imsreg: could not start (exit $code): manifest, configuration or credentials" ;;
esac
# Keep the last 200 reports.
ls -1t "$reports"/*.json 2>/dev/null | tail -n +201 | while read -r old; do rm -f "$old" "${old%.json}.md"; done
exit $code
