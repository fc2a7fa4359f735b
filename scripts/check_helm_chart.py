#!/usr/bin/env python3
"""Renders the Helm chart deploy/helm/ballast with several value sets and checks what it installs: every object
valid for the oldest and newest Kubernetes versions Ballast supports (kubernetes-validate, strict), the defaults
equal to the kustomize base deploy/base, the Prometheus credentials mounted where the flags point, the lease in the
release namespace, the monitoring toggles, and clear errors for missing required values. Prints one line per failure
and a closing 'helm chart: N passed, N failed'.

helm cannot be installed on the CI machines (no Go module proxy, no package), so the chart is rendered by
tests/helm-render: Go's text/template, the engine Helm uses, with Helm's objects and the functions the chart uses.
Values go to it as JSON: values.yaml merged here with each set's overrides, as `helm --values` merges them."""

import copy
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "ballast"
BASE = ROOT / "deploy" / "base"
MONITORING = ROOT / "deploy" / "components" / "monitoring"
RENDERER = ROOT / "tests" / "helm-render"
KUBERNETES_VERSIONS = ["1.30", "1.37"]
# Kinds from operators whose schemas are not part of Kubernetes; checked only for shape.
OPERATOR_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Namespace"}
# Labels the chart adds (Helm's usual ones) and kustomize's part-of: compared separately, not as part of objects.
ADDED_LABELS = {
    "app.kubernetes.io/instance",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/version",
    "app.kubernetes.io/part-of",
    "helm.sh/chart",
}
# Copies the chart ships, each of which must stay byte-identical to its source.
COPIES = {
    "crds/crd.yaml": "deploy/base/crd.yaml",
    "files/ballast-dashboard.json": "deploy/base/ballast-dashboard.json",
}
PROM_FLAGS = {
    "bearer": "--prometheus-bearer-token-file=",
    "user": "--prometheus-basic-auth-user=",
    "password": "--prometheus-basic-auth-password-file=",
    "ca": "--prometheus-ca-file=",
}


class RenderError(Exception):
    pass


class Results:
    def __init__(self):
        self.passed, self.failed = 0, 0

    def check(self, name, test, *args):
        """Runs one check; an exception (a failed assert, a render error) is its failure, reported in one line."""
        try:
            test(*args)
            self.passed += 1
        except Exception as error:  # every failure is reported, none stops the run
            self.failed += 1
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            print(f"FAIL {name}: {message}")


class Renderer:
    def __init__(self, binary):
        self.binary = binary
        self.defaults = yaml.safe_load((CHART / "values.yaml").read_text())

    def values(self, overrides):
        return merge(self.defaults, overrides or {})

    def run(self, overrides=None, name="ballast", namespace="ballast-system", *flags):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(self.values(overrides), f)
        try:
            command = [self.binary, "-chart", str(CHART), "-values", f.name, "-name", name, "-namespace", namespace]
            done = subprocess.run(command + list(flags), capture_output=True, text=True)
        finally:
            os.unlink(f.name)
        if done.returncode != 0:
            raise RenderError(done.stderr.strip() or f"exit status {done.returncode}")
        return done.stdout

    def render(self, overrides=None, name="ballast", namespace="ballast-system", *flags):
        return [doc for doc in yaml.safe_load_all(self.run(overrides, name, namespace, *flags)) if doc]


def merge(base, overrides):
    """Helm's merge of values: maps merge key by key, anything else replaces, and null deletes the key."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def build_renderer(directory):
    if shutil.which("go") is None:
        raise RenderError("go is not installed (scripts/test.sh installs golang-go)")
    binary = pathlib.Path(directory) / "helm-render"
    # The module has no dependencies: nothing may come from the network.
    env = dict(os.environ, GOPROXY="off", GOFLAGS="", GOTOOLCHAIN="local")
    done = subprocess.run(["go", "build", "-o", str(binary), "."], cwd=RENDERER, env=env, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise RenderError(f"go build tests/helm-render: {done.stderr.strip()}")
    return str(binary)


# ---- what deploy/base installs


def base_objects():
    """What `kubectl apply -k deploy/base` applies: kustomize's own output when kubectl is here, else the
    resources of kustomization.yaml plus the ConfigMap its generator makes. Keyed by (kind, name)."""
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    docs = kustomize(BASE)
    if docs is None:
        docs = []
        for resource in kustomization["resources"]:
            docs += [doc for doc in yaml.safe_load_all((BASE / resource).read_text()) if doc]
        for generator in kustomization.get("configMapGenerator", []):
            options = generator.get("options", {})
            docs.append({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": generator["name"], "namespace": kustomization["namespace"],
                             "labels": options.get("labels", {})},
                "data": {name: (BASE / name).read_text() for name in generator["files"]},
            })
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs}


def kustomize(directory):
    """`kubectl kustomize DIRECTORY` parsed, or None without kubectl."""
    if shutil.which("kubectl") is None:
        return None
    done = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RenderError(f"kubectl kustomize {directory.relative_to(ROOT)}: {done.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def host_lease_defaults():
    """The leader-election flags' defaults in `ballast run` (host/src/cli.rs): the chart passes them explicitly,
    so its defaults must be the host's for the chart to run what deploy/base runs."""
    cli = (ROOT / "host" / "src" / "cli.rs").read_text()
    lease = (ROOT / "host" / "src" / "controller" / "lease.rs").read_text()
    defaults = {}
    for value, field in re.findall(r"#\[arg\(long, default_value = ([^,)]+)[^\n]*\n\s*(?:pub )?(\w+):", cli):
        if field in ("lease_name", "lease_duration", "renew_deadline", "retry_period"):
            if value.startswith('"'):
                defaults[field] = value.strip('"')
            else:  # a constant, e.g. ballast::controller::lease::DEFAULT_LEASE_NAME
                constant = value.rsplit("::", 1)[-1]
                found = re.search(rf"const {constant}: &str = \"([^\"]+)\"", lease)
                assert found, f"host/src/cli.rs: cannot find the value of {value}"
                defaults[field] = found.group(1)
    assert len(defaults) == 4, f"host/src/cli.rs: found defaults only for {sorted(defaults)}"
    return defaults


# ---- helpers over rendered objects


def index(docs):
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs}


def one(docs, kind):
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"{len(found)} objects of kind {kind}, expected 1"
    return found[0]


def container(docs):
    return one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def flag(args, prefix):
    values = [arg[len(prefix):] for arg in args if arg.startswith(prefix)]
    assert len(values) == 1, f"{len(values)} arguments {prefix}..., expected 1: {args}"
    return values[0]


def normalized(doc):
    """The object without the labels the chart or kustomize add, so the chart compares with deploy/base."""
    doc = copy.deepcopy(doc)

    def strip(node, parent_key=None):
        if isinstance(node, dict):
            if parent_key in ("labels", "matchLabels") or (parent_key == "selector" and doc["kind"] == "Service"):
                for key in ADDED_LABELS:
                    node.pop(key, None)
            for key, value in node.items():
                strip(value, key)
        elif isinstance(node, list):
            for item in node:
                strip(item, parent_key)

    strip(doc)
    # The objects' own name label is kustomize's in deploy/base (`labels:`), and checked by `consistent`.
    doc["metadata"].get("labels", {}).pop("app.kubernetes.io/name", None)
    if not doc["metadata"].get("labels"):
        doc["metadata"].pop("labels", None)
    return doc


def differences(expected, actual, path=""):
    """Paths where two parsed objects differ, for a failure message."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        found = []
        for key in sorted(set(expected) | set(actual), key=str):
            if key not in actual:
                found.append(f"{path}.{key} missing")
            elif key not in expected:
                found.append(f"{path}.{key} not in deploy/base")
            else:
                found += differences(expected[key], actual[key], f"{path}.{key}")
        return found
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        found = []
        for i, (e, a) in enumerate(zip(expected, actual)):
            found += differences(e, a, f"{path}[{i}]")
        return found
    return [] if expected == actual else [f"{path}: expected {json.dumps(expected)}, got {json.dumps(actual)}"]


def assert_same(expected, actual, what):
    found = differences(expected, actual)
    assert not found, f"{what} differs: " + "; ".join(found[:3])


def subset(labels, of):
    return all(of.get(key) == value for key, value in labels.items())


# ---- checks on every render


def validate(doc):
    kind = (doc.get("apiVersion"), doc.get("kind"))
    if kind in OPERATOR_KINDS:
        assert isinstance(doc.get("spec"), dict), "spec must be an object"
        return
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(doc, version, strict=True)


def consistent(docs, name, namespace, overrides):
    """What must hold for any values: objects in the release namespace, selectors that select the pods, RBAC bound
    to the account the pods run as, the lease where the Role allows it, every mount backed by a volume."""
    objects = index(docs)
    for doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in doc["metadata"], f"{where} is cluster-scoped but has a namespace"
        else:
            assert doc["metadata"].get("namespace") == namespace, f"{where} is not in namespace {namespace}"
        labels = doc["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/name") == "ballast" and labels.get("app.kubernetes.io/part-of") == \
            "ballast", f"{where} lacks deploy/base's labels (app.kubernetes.io/name and part-of)"
        assert labels.get("app.kubernetes.io/instance") == name, f"{where} lacks the release's instance label"

    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    assert subset(deployment["spec"]["selector"]["matchLabels"], pod_labels), "the Deployment selects no pod"
    assert subset(one(docs, "Service")["spec"]["selector"], pod_labels), "the Service selects no pod"
    for spread in pod["spec"]["topologySpreadConstraints"]:
        assert subset(spread["labelSelector"]["matchLabels"], pod_labels), "the topology spread selects no pod"
    for pdb in (doc for doc in docs if doc["kind"] == "PodDisruptionBudget"):
        assert subset(pdb["spec"]["selector"]["matchLabels"], pod_labels), "the PodDisruptionBudget selects no pod"
    for monitor in (doc for doc in docs if doc["kind"] == "ServiceMonitor"):
        service = one(docs, "Service")
        assert subset(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"]), \
            "the ServiceMonitor selects no Service"
        ports = {port["name"] for port in service["spec"]["ports"]}
        assert all(e["port"] in ports for e in monitor["spec"]["endpoints"]), "a ServiceMonitor port is not served"

    account = pod["spec"]["serviceAccountName"]
    create = merge({"serviceAccount": {"create": True}}, overrides)["serviceAccount"]["create"]
    assert (("ServiceAccount", account) in objects) == bool(create), \
        f"ServiceAccount {account} rendered: {not create}, serviceAccount.create: {create}"
    for kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        binding = one(docs, kind)
        assert (role_kind, binding["roleRef"]["name"]) in objects, f"{kind} names a missing {role_kind}"
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": namespace}], \
            f"{kind} is not bound to {namespace}/{account}: {binding['subjects']}"

    main = container(docs)
    args = main["args"]
    assert args[0] == "run", "the container does not run `ballast run`"
    assert flag(args, "--lease-namespace=") == namespace, "--lease-namespace is not the release namespace"
    role = one(docs, "Role")
    assert role["metadata"]["namespace"] == namespace, "the leader-election Role is not in the release namespace"
    lease = flag(args, "--lease-name=")
    assert any(lease in rule.get("resourceNames", []) and "update" in rule["verbs"] for rule in role["rules"]), \
        f"the Role does not let the host update Lease {lease}"
    volumes = {volume["name"] for volume in pod["spec"]["volumes"]}
    for mount in main.get("volumeMounts", []):
        assert mount["name"] in volumes, f"volumeMount {mount['name']} has no volume"


def mounted_secret_file(docs, path):
    """(Secret name, key) of the file at PATH in the host container, or an assertion error saying what is missing."""
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    directory, _, file = path.rpartition("/")
    mounts = [m for m in container(docs)["volumeMounts"] if m["mountPath"].rstrip("/") == directory]
    assert len(mounts) == 1, f"{path}: {len(mounts)} volumeMounts at {directory}"
    assert mounts[0].get("readOnly") is True, f"{path}: the mount at {directory} is not read-only"
    assert "subPath" not in mounts[0], f"{path}: a subPath mount would not see a rotated Secret"
    volume = next(v for v in pod["volumes"] if v["name"] == mounts[0]["name"])
    assert "secret" in volume, f"{path}: volume {volume['name']} is not a Secret"
    items = [item for item in volume["secret"].get("items", []) if item["path"] == file]
    assert len(items) == 1, f"{path}: Secret volume {volume['name']} has no item at {file}"
    mode = volume["secret"].get("defaultMode", 0o644)
    assert mode & 0o004 == 0, f"{path}: readable by others (mode {oct(mode)})"
    return volume["secret"]["secretName"], items[0]["key"]


# ---- the checks


def check_copies():
    for copy_path, source in COPIES.items():
        assert (CHART / copy_path).read_bytes() == (ROOT / source).read_bytes(), \
            f"deploy/helm/ballast/{copy_path} differs from {source}: cp {source} deploy/helm/ballast/{copy_path}"


def check_chart_metadata():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    expected = {"apiVersion": "v2", "name": "ballast", "version": "0.1.0", "appVersion": "0.1.0"}
    assert {key: chart.get(key) for key in expected} == expected, f"Chart.yaml: {chart}"


def check_values_commented():
    """Every value in values.yaml has a comment on the line above it or above a block that holds it."""
    stack = []  # (indent, commented) of the blocks around the current line
    lines = (CHART / "values.yaml").read_text().splitlines()
    for number, line in enumerate(lines):
        key = re.match(r"^( *)([\w.-]+):(.*)$", line)
        if not key:
            continue
        indent = len(key.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        previous = lines[number - 1].strip() if number else ""
        commented = previous.startswith("#") or any(c for _, c in stack)
        if key.group(3).strip() == "":
            stack.append((indent, commented))
        else:
            assert commented, f"values.yaml:{number + 1}: {line.strip()} has no comment"


def check_defaults_equal_base(renderer, base):
    docs = renderer.render()
    chart = index(docs)
    expected = {key: doc for key, doc in base.items() if key[0] not in ("Namespace", "CustomResourceDefinition")}
    assert set(chart) == set(expected), \
        f"objects differ: only in the chart {sorted(set(chart) - set(expected))}, " \
        f"only in deploy/base {sorted(set(expected) - set(chart))}"
    lease = host_lease_defaults()
    for key, base_doc in expected.items():
        want, got = normalized(base_doc), normalized(chart[key])
        if key[0] == "Deployment":
            # The chart passes the leader-election timings explicitly; with their defaults, as the host's.
            base_args = want["spec"]["template"]["spec"]["containers"][0]["args"]
            base_args += [f"--lease-name={lease['lease_name']}", f"--lease-duration={lease['lease_duration']}",
                          f"--renew-deadline={lease['renew_deadline']}", f"--retry-period={lease['retry_period']}"]
        assert_same(want, got, f"{key[0]}/{key[1]}")


def check_defaults_parts(renderer, base, part):
    """The parts the brief names, each its own check, so a failure says which part drifted."""
    chart = index(renderer.render())
    base_container = base[("Deployment", "ballast")]["spec"]["template"]["spec"]["containers"][0]
    chart_container = chart[("Deployment", "ballast")]["spec"]["template"]["spec"]["containers"][0]
    if part == "args":
        assert chart_container["args"][:len(base_container["args"])] == base_container["args"], \
            f"args {chart_container['args']} do not start with deploy/base's {base_container['args']}"
    elif part in ("env", "livenessProbe", "readinessProbe", "securityContext", "resources", "volumeMounts", "ports"):
        assert_same(base_container[part], chart_container[part], f"container {part}")
    elif part == "podSecurityContext":
        assert_same(base[("Deployment", "ballast")]["spec"]["template"]["spec"]["securityContext"],
                    chart[("Deployment", "ballast")]["spec"]["template"]["spec"]["securityContext"],
                    "pod securityContext")
    elif part in ("ClusterRole", "Role"):
        name = "ballast" if part == "ClusterRole" else "ballast-leader-election"
        assert_same(base[(part, name)]["rules"], chart[(part, name)]["rules"], f"{part} rules")
    elif part == "Service":
        assert_same(normalized(base[("Service", "ballast-metrics")])["spec"],
                    normalized(chart[("Service", "ballast-metrics")])["spec"], "Service spec")
    elif part == "PodDisruptionBudget":
        assert_same(normalized(base[(part, "ballast")])["spec"], normalized(chart[(part, "ballast")])["spec"],
                    "PodDisruptionBudget spec")
    elif part == "dashboard":
        data = chart[("ConfigMap", "ballast-grafana-dashboard")]["data"]
        assert data == {"ballast-dashboard.json": (BASE / "ballast-dashboard.json").read_text()}, \
            "the dashboard ConfigMap's data is not deploy/base/ballast-dashboard.json"
    else:
        raise AssertionError(f"unknown part {part}")


def check_kustomize_cluster_role(renderer):
    built = kustomize(BASE)
    chart_role = one(renderer.render(), "ClusterRole")
    base_role = one(built, "ClusterRole")
    assert_same(base_role["rules"], chart_role["rules"], "ClusterRole rules (kubectl kustomize deploy/base)")


def check_crds(renderer):
    docs = renderer.render(None, "ballast", "ballast-system", "-include-crds")
    crds = [doc for doc in docs if doc["kind"] == "CustomResourceDefinition"]
    assert crds == [yaml.safe_load((BASE / "crd.yaml").read_text())], "the chart's CRD is not deploy/base's"
    validate(crds[0])


def check_notes(renderer):
    notes = renderer.run(None, "ballast", "autoscaling", "-notes")
    assert "autoscaling/ballast-leader" in notes and "autoscaling create secret generic ballast-redis" in notes, \
        "NOTES.txt does not name the release's lease and Redis Secret"


def check_auth(renderer, overrides, wanted):
    """The Prometheus flags of WANTED are present and each file flag points at a file mounted from its Secret."""
    docs = renderer.render(overrides)
    args = container(docs)["args"]
    values = renderer.values(overrides)["prometheus"]
    auth, tls = values["auth"], values["tls"]
    if "bearer" in wanted:
        secret = auth["bearerToken"]["secretName"], auth["bearerToken"]["key"]
        assert mounted_secret_file(docs, flag(args, PROM_FLAGS["bearer"])) == secret, "bearer token file"
    if "basic" in wanted:
        assert flag(args, PROM_FLAGS["user"]) == auth["basicAuth"]["username"], "basic auth user"
        secret = auth["basicAuth"]["passwordSecret"]["name"], auth["basicAuth"]["passwordSecret"]["key"]
        assert mounted_secret_file(docs, flag(args, PROM_FLAGS["password"])) == secret, "basic auth password file"
    if "ca" in wanted:
        secret = tls["caSecret"]["name"], tls["caSecret"]["key"]
        assert mounted_secret_file(docs, flag(args, PROM_FLAGS["ca"])) == secret, "CA file"
    assert ("--prometheus-insecure-skip-verify" in args) == ("skip" in wanted), "--prometheus-insecure-skip-verify"
    for name, prefix in PROM_FLAGS.items():
        present = any(arg.startswith(prefix) for arg in args)
        expected = {"bearer": "bearer", "user": "basic", "password": "basic", "ca": "ca"}[name] in wanted
        assert present == expected, f"{prefix}... present: {present}, expected: {expected}"
    for env in container(docs)["env"]:
        assert "PROMETHEUS" not in env["name"] or env["name"] == "BALLAST_PROMETHEUS_URL", \
            f"a Prometheus credential in env {env['name']}: it belongs in a file"


def check_monitoring(renderer, overrides, added, removed):
    """The toggles add or remove exactly their objects, and what they add is deploy/components/monitoring's."""
    defaults = set(index(renderer.render()))
    docs = renderer.render(overrides)
    rendered = set(index(docs))
    assert rendered - defaults == set(added), f"added {sorted(rendered - defaults)}, expected {added}"
    assert defaults - rendered == set(removed), f"removed {sorted(defaults - rendered)}, expected {removed}"
    component = {(doc["kind"], doc["metadata"]["name"]): doc
                 for path in sorted(MONITORING.glob("*.yaml")) if path.name != "kustomization.yaml"
                 for doc in yaml.safe_load_all(path.read_text()) if doc}
    for key in added:
        assert_same(normalized(component[key]), normalized(index(docs)[key]), f"{key[0]}/{key[1]}")
        if key[0] == "PrometheusRule":
            assert index(docs)[key]["spec"]["groups"] == component[key]["spec"]["groups"], \
                "the PrometheusRule's groups differ from deploy/components/monitoring's"


def check_service_account(renderer):
    docs = renderer.render({"serviceAccount": {"create": False, "name": "platform-ballast"}})
    assert not [doc for doc in docs if doc["kind"] == "ServiceAccount"], "a ServiceAccount is rendered"
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "platform-ballast", f"runs as {pod['serviceAccountName']}"


def check_extras(renderer, overrides):
    docs = renderer.render(overrides)
    main = container(docs)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    args = main["args"]
    assert args[-2:] == overrides["extraArgs"], f"extraArgs are not the last arguments: {args}"
    assert [a for a in args if a.startswith("--plugin-dir=")] == [f"--plugin-dir={d}" for d in
                                                                   overrides["pluginDirs"]], "--plugin-dir"
    assert flag(args, "--plugin-deadline=") == overrides["pluginDeadline"], "--plugin-deadline"
    assert flag(args, "--plugin-memory-mib=") == str(overrides["pluginMemoryMiB"]), "--plugin-memory-mib"
    election = overrides["leaderElection"]
    for key, prefix in (("leaseName", "--lease-name="), ("leaseDuration", "--lease-duration="),
                        ("renewDeadline", "--renew-deadline="), ("retryPeriod", "--retry-period=")):
        assert flag(args, prefix) == election[key], prefix
    assert main["env"][-1] == overrides["extraEnv"][0], "extraEnv is not in the env"
    assert main["volumeMounts"][-1] == overrides["extraVolumeMounts"][0], "extraVolumeMounts"
    assert pod["volumes"][-1] == overrides["extraVolumes"][0], "extraVolumes"
    for key in ("nodeSelector", "tolerations", "affinity"):
        assert pod[key] == overrides[key], key
    assert main["image"] == "registry.example/ballast:0.2.0" and main["imagePullPolicy"] == "Always", main["image"]
    assert one(docs, "Deployment")["spec"]["replicas"] == 3, "replicaCount"
    assert main["resources"] == renderer.values(overrides)["resources"], "resources"
    assert one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 2, "podDisruptionBudget.minAvailable"


def check_release_names(renderer):
    names = {doc["metadata"]["name"] for doc in renderer.render(None, "prod", "autoscaling")}
    expected = {"prod-ballast", "prod-ballast-metrics", "prod-ballast-leader-election", "prod-ballast-grafana-dashboard"}
    assert names == expected, f"release prod names its objects {sorted(names)}"


def fail(error):
    raise error


def check_refused(renderer, overrides, naming):
    try:
        renderer.run(overrides)
    except RenderError as error:
        assert naming in str(error), f"the error does not name {naming}: {error}"
        return
    raise AssertionError(f"rendered without error; expected one naming {naming}")


def main():
    results = Results()
    with tempfile.TemporaryDirectory() as directory:
        try:
            renderer = Renderer(build_renderer(directory))
            base = base_objects()
        except (RenderError, OSError) as error:
            print(f"FAIL setup: {error}")
            print("helm chart: 0 passed, 1 failed")
            return 1

        results.check("copies", check_copies)
        results.check("Chart.yaml", check_chart_metadata)
        results.check("values.yaml comments", check_values_commented)

        auth_bearer = {"prometheus": {
            "auth": {"bearerToken": {"secretName": "prometheus-token", "key": "bearer"}},
            "tls": {"caSecret": {"name": "prometheus-ca", "key": "ca.pem"}, "insecureSkipVerify": True}}}
        auth_basic = {"prometheus": {
            "auth": {"basicAuth": {"username": "ballast: reader #1",
                                   "passwordSecret": {"name": "prometheus-basic", "key": "pass"}}},
            "tls": {"caSecret": {"name": "prometheus-ca"}}}}
        monitoring_on = {"monitoring": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}}
        extras = {
            "image": {"repository": "registry.example/ballast", "tag": "0.2.0", "pullPolicy": "Always"},
            "replicaCount": 3,
            "resources": {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "control", "effect": "NoSchedule"}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}]}}},
            "leaderElection": {"leaseName": "ballast-prod", "leaseDuration": "30s", "renewDeadline": "20s",
                               "retryPeriod": "4s"},
            "pluginDeadline": "25ms",
            "pluginMemoryMiB": 128,
            "pluginDirs": ["/plugins/team-a", "/plugins/team b"],
            "extraArgs": ["--tick=2s", "--status-every=30s"],
            "extraEnv": [{"name": "RUST_LOG", "value": "ballast=debug"}],
            "extraVolumes": [{"name": "plugins", "configMap": {"name": "plugins"}}],
            "extraVolumeMounts": [{"name": "plugins", "mountPath": "/plugins", "readOnly": True}],
            "podDisruptionBudget": {"minAvailable": 2},
        }
        # Every value set: rendered, every object valid, and the invariants of `consistent`.
        value_sets = [
            ("defaults", None, "ballast", "ballast-system"),
            ("bearer token and TLS", auth_bearer, "ballast", "ballast-system"),
            ("basic auth and CA", auth_basic, "ballast", "ballast-system"),
            ("monitoring on", monitoring_on, "ballast", "ballast-system"),
            ("monitoring off", {"monitoring": {"dashboard": {"enabled": False}}}, "ballast", "ballast-system"),
            ("no ServiceAccount", {"serviceAccount": {"create": False, "name": "platform-ballast"}}, "ballast",
             "ballast-system"),
            ("extras", extras, "ballast", "ballast-system"),
            ("another release and namespace", monitoring_on, "prod", "autoscaling"),
        ]
        for label, overrides, name, namespace in value_sets:
            try:
                docs = renderer.render(overrides, name, namespace)
            except Exception as error:  # a render error, or output that is not YAML
                results.check(f"{label}: render", fail, error)
                continue
            for doc in docs:
                results.check(f"{label}: {doc['kind']}/{doc['metadata']['name']} valid", validate, doc)
            results.check(f"{label}: consistent", consistent, docs, name, namespace, overrides or {})

        results.check("defaults: the objects of deploy/base", check_defaults_equal_base, renderer, base)
        for part in ("args", "env", "livenessProbe", "readinessProbe", "securityContext", "podSecurityContext",
                     "resources", "volumeMounts", "ports", "ClusterRole", "Role", "Service", "PodDisruptionBudget",
                     "dashboard"):
            results.check(f"defaults: {part} as deploy/base", check_defaults_parts, renderer, base, part)
        if shutil.which("kubectl"):
            results.check("kubectl kustomize deploy/base: ClusterRole rules", check_kustomize_cluster_role, renderer)
        else:
            print("note: no kubectl, so deploy/base is read file by file instead of through kubectl kustomize")
        results.check("crds/ is deploy/base's CRD", check_crds, renderer)
        results.check("NOTES.txt", check_notes, renderer)
        results.check("another release: names", check_release_names, renderer)

        results.check("auth: bearer token, CA, insecure", check_auth, renderer, auth_bearer, {"bearer", "ca", "skip"})
        results.check("auth: basic, CA", check_auth, renderer, auth_basic, {"basic", "ca"})
        results.check("auth: none by default", check_auth, renderer, None, set())

        dashboard = ("ConfigMap", "ballast-grafana-dashboard")
        results.check("monitoring: serviceMonitor", check_monitoring, renderer,
                      {"monitoring": {"serviceMonitor": {"enabled": True}}}, [("ServiceMonitor", "ballast")], [])
        results.check("monitoring: prometheusRule", check_monitoring, renderer,
                      {"monitoring": {"prometheusRule": {"enabled": True}}}, [("PrometheusRule", "ballast")], [])
        results.check("monitoring: dashboard off", check_monitoring, renderer,
                      {"monitoring": {"dashboard": {"enabled": False}}}, [], [dashboard])
        results.check("podDisruptionBudget off", check_monitoring, renderer,
                      {"podDisruptionBudget": {"enabled": False}}, [], [("PodDisruptionBudget", "ballast")])

        results.check("serviceAccount.create false", check_service_account, renderer)
        results.check("extras", check_extras, renderer, extras)

        for overrides, naming in [
            ({"prometheus": {"auth": {"basicAuth": {"username": "reader"}}}},
             "prometheus.auth.basicAuth.passwordSecret.name"),
            ({"prometheus": {"auth": {"basicAuth": {"passwordSecret": {"name": "prometheus-basic"}}}}},
             "prometheus.auth.basicAuth.username"),
            ({"prometheus": {"auth": {"basicAuth": {"username": "reader", "passwordSecret": {
                "name": "prometheus-basic", "key": ""}}}}}, "prometheus.auth.basicAuth.passwordSecret.key"),
            ({"prometheus": {"auth": {"bearerToken": {"secretName": "t"}, "basicAuth": {
                "username": "reader", "passwordSecret": {"name": "prometheus-basic"}}}}}, "not both"),
            ({"prometheus": {"auth": {"bearerToken": {"secretName": "t", "key": ""}}}},
             "prometheus.auth.bearerToken.key"),
            ({"prometheus": {"tls": {"caSecret": {"name": "ca", "key": None}}}}, "prometheus.tls.caSecret.key"),
            ({"serviceAccount": {"create": False}}, "serviceAccount.name"),
            ({"image": {"repository": ""}}, "image.repository"),
            ({"leaderElection": {"leaseDuration": ""}}, "leaderElection.leaseDuration"),
            ({"redis": {"existingSecret": ""}}, "redis.existingSecret"),
        ]:
            results.check(f"refused without {naming}", check_refused, renderer, overrides, naming)

    print(f"helm chart: {results.passed} passed, {results.failed} failed")
    return 1 if results.failed else 0


if __name__ == "__main__":
    sys.exit(main())
