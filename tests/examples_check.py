"""The rules the Kubernetes API server applies to Jobs that no OpenAPI schema states, checked
in every Job (and CronJob job template) of the given files: podFailurePolicy exit-code rules
(values sorted, no duplicates, 1 to 255 of them, "Value '0' cannot be used for the In
operator", a container name that exists), restartPolicy Never with podFailurePolicy or
backoffLimitPerIndex, and completionMode Indexed with completions for backoffLimitPerIndex.
Also that every imsreg shard argument counts from 1 (JOB_COMPLETION_INDEX + 1).

Usage: python examples_check.py FILE.yaml...   (exit 1 with one line per problem)
"""

import sys

import yaml


def job_specs(document):
    kind = document.get("kind")
    if kind == "Job":
        yield document["metadata"]["name"], document["spec"]
    elif kind == "CronJob":
        yield document["metadata"]["name"], document["spec"]["jobTemplate"]["spec"]


def check_job(name, spec):
    problems = []
    pod = spec["template"]["spec"]
    containers = {c["name"] for c in pod.get("containers", [])}
    policy = spec.get("podFailurePolicy")
    if policy is not None or "backoffLimitPerIndex" in spec:
        if pod.get("restartPolicy") != "Never":
            problems.append(f"{name}: podFailurePolicy/backoffLimitPerIndex need restartPolicy Never")
    if "backoffLimitPerIndex" in spec:
        if spec.get("completionMode") != "Indexed" or "completions" not in spec:
            problems.append(f"{name}: backoffLimitPerIndex needs completionMode Indexed and completions")
    for index, rule in enumerate((policy or {}).get("rules", [])):
        where = f"{name}: podFailurePolicy.rules[{index}]"
        if ("onExitCodes" in rule) == ("onPodConditions" in rule):
            problems.append(f"{where}: exactly one of onExitCodes, onPodConditions")
        if rule.get("action") == "FailIndex" and "backoffLimitPerIndex" not in spec:
            problems.append(f"{where}: FailIndex needs backoffLimitPerIndex")
        codes = rule.get("onExitCodes")
        if codes is None:
            continue
        values = codes.get("values", [])
        if not 1 <= len(values) <= 255:
            problems.append(f"{where}: 1 to 255 values")
        if values != sorted(set(values)):
            problems.append(f"{where}: values must be sorted, without duplicates")
        if codes.get("operator") == "In" and 0 in values:
            problems.append(f"{where}: Value '0' cannot be used for the In operator")
        if "containerName" in codes and codes["containerName"] not in containers:
            problems.append(f"{where}: no container {codes['containerName']!r}")
    if spec.get("completionMode") == "Indexed":
        text = yaml.safe_dump(pod)
        if "--shard" in text and "JOB_COMPLETION_INDEX + 1" not in text:
            problems.append(f"{name}: --shard counts from 1, JOB_COMPLETION_INDEX from 0")
    return problems


def main(paths):
    problems = []
    jobs = 0
    for path in paths:
        with open(path, encoding="utf-8") as file:
            for document in yaml.safe_load_all(file):
                for name, spec in job_specs(document or {}):
                    jobs += 1
                    problems.extend(f"{path}: {p}" for p in check_job(name, spec))
    for problem in problems:
        print(problem)
    print(f"examples_check: {jobs} job(s), {len(problems)} problem(s)")
    return 1 if problems or jobs == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
