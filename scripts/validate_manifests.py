#!/usr/bin/env python3
"""Validates every manifest under deploy/ against the Kubernetes OpenAPI schemas (kubernetes-validate, strict) for
the oldest and newest Kubernetes versions Ballast supports, and every ScalingPolicy against the CRD schema that
`ballast crd` generates (deploy/base/crd.yaml). Prints one line per failure and a closing 'N passed, N failed'."""

import json
import pathlib
import shutil
import subprocess
import sys
import tempfile

import jsonschema
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
# The Helm chart's YAML is templates and values, not manifests: scripts/check_helm_chart.py renders and validates it.
HELM = DEPLOY / "helm"
KUBERNETES_VERSIONS = ["1.30", "1.37"]
# Kinds from operators whose schemas are not part of Kubernetes; checked only for shape.
OPERATOR_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}


def documents():
    for path in sorted(DEPLOY.rglob("*.yaml")):
        if path.name == "kustomization.yaml" or HELM in path.parents:
            continue
        for index, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc:
                yield path.relative_to(ROOT), index, doc


def crd_schema():
    crd = yaml.safe_load((DEPLOY / "base" / "crd.yaml").read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    return version["schema"]["openAPIV3Schema"]


def main():
    passed, failed = 0, 0
    schema = crd_schema()
    for path, index, doc in documents():
        where = f"{path}[{index}] {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            kind = (doc.get("apiVersion"), doc.get("kind"))
            if kind == ("ballast.dev/v1alpha1", "ScalingPolicy"):
                jsonschema.validate(doc, schema)
            elif kind in OPERATOR_KINDS:
                assert isinstance(doc.get("spec"), dict), "spec must be an object"
            else:
                for version in KUBERNETES_VERSIONS:
                    kubernetes_validate.validate(doc, version, strict=True)
            passed += 1
        except Exception as error:  # every failure is reported, none stops the run
            failed += 1
            print(f"FAIL {where}: {str(error).splitlines()[0]}")
    # deploy/base must apply to a bare cluster: kinds of operators belong in deploy/components/.
    base = yaml.safe_load((DEPLOY / "base" / "kustomization.yaml").read_text())
    for resource in base["resources"]:
        for doc in yaml.safe_load_all((DEPLOY / "base" / resource).read_text()):
            kind = (doc.get("apiVersion"), doc.get("kind")) if doc else None
            if kind in OPERATOR_KINDS:
                failed += 1
                print(f"FAIL deploy/base/{resource}: {kind[1]} needs an operator; move it to deploy/components/")
            else:
                passed += 1
    for path in sorted(DEPLOY.rglob("*.json")):
        try:
            json.loads(path.read_text())
            passed += 1
        except ValueError as error:
            failed += 1
            print(f"FAIL {path.relative_to(ROOT)}: {error}")
    ok, bad = check_alerts()
    passed, failed = passed + ok, failed + bad
    print(f"manifests: {passed} passed, {failed} failed")
    return 1 if failed else 0


def check_alerts():
    """The PrometheusRule's groups through `promtool check rules` (PromQL parses, templates render) and the unit tests
    of tests/alerts/ (each alert fires on the series it is for, and only then). Returns (passed, failed)."""
    if shutil.which("promtool") is None:
        print("FAIL alerts: promtool is not on PATH (it comes with the Debian package prometheus)")
        return 0, 1
    rule = yaml.safe_load((DEPLOY / "components" / "monitoring" / "prometheusrule.yaml").read_text())
    passed, failed = 0, 0
    with tempfile.TemporaryDirectory() as work:
        work = pathlib.Path(work)
        (work / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
        for test in sorted((ROOT / "tests" / "alerts").glob("*.test.yaml")):
            shutil.copy(test, work / test.name)
        checks = [["promtool", "check", "rules", "rules.yaml"]]
        checks += [["promtool", "test", "rules", test.name] for test in sorted(work.glob("*.test.yaml"))]
        for command in checks:
            result = subprocess.run(command, cwd=work, capture_output=True, text=True)
            if result.returncode == 0:
                passed += 1
            else:
                failed += 1
                print(f"FAIL {' '.join(command)}:\n{result.stdout}{result.stderr}")
    return passed, failed


if __name__ == "__main__":
    sys.exit(main())
