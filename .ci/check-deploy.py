#!/usr/bin/env python3
"""Checks deploy/ (dashboard, alert rules, Kubernetes manifests) without Grafana,
Prometheus or a cluster.

Usage: python3 .ci/check-deploy.py [METRICS_FILE]

* Every JSON and YAML file under deploy/ parses (YAML as multi-document streams).
* The metric table in deploy/README.md (section "Metrics") is the contract: every
  `kafka_transit_*` name in a deploy/ JSON or YAML file must be a series of a metric in it
  (a counter's `_total`, a histogram's `_bucket`/`_sum`/`_count`, an info metric's
  `_info`; outside PromQL expressions a histogram's own name is accepted too), and every
  label a PromQL selector, grouping, legend or alert template uses must be one of the
  metric's labels, a target label (job, instance) or `le`.
* With METRICS_FILE (a scraped /metrics, OpenMetrics or Prometheus text), the same names
  must exist in it, and the table and the exposition must agree both ways: every
  kafka_transit family exposed is in the table, every metric in the table is exposed,
  with the same label names. A family with no samples yet (a labelled counter nothing
  has touched) counts as exposed through its `# TYPE` line.
* Grafana: a `datasource` variable of type datasource (prometheus), `job` and `instance`
  variables, no hard-coded data source uids, unique panel ids, a query in every panel.
* Alert rules: expr, for, labels.severity, annotations summary, description and
  runbook_url whose #anchor is a heading of deploy/README.md; balanced brackets;
  `promtool check rules` when promtool is installed.
* Kubernetes: the Deployment's container has a port named "admin", a liveness probe on
  /health/live and a readiness probe on /health/ready on that port; the ConfigMap the
  --config path is mounted from holds a pipeline.toml that parses (tomllib), has
  [admin] listen on all interfaces and on the admin port, one token source and one
  policy source, and whose absolute file paths are inside the container's mounts; a
  read-only root filesystem comes with KAFKA_TRANSIT_CACHE_DIR on a writable mount;
  runAsNonRoot comes with a numeric runAsUser (the image names its user); the image is
  kafka-transit:<the workspace's version> (or REGISTRY/kafka-transit:<version>) and
  deploy/README.md says how to build it; a serviceAccountName names a ServiceAccount here.
  The Vault login alternatives left commented out in pipeline.toml (`# [vault.approle]`,
  `# [vault.kubernetes]`, ...) are checked as if they were the one in force: their files
  inside the mounts, and a [vault.kubernetes] JWT that is a projected service account
  token of a mounted volume (not the default path when the API token is not mounted).
  Services,
  PodMonitors and ServiceMonitors use the port "admin" and give the job the rules
  select.

Exits non-zero listing every problem found.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib

try:
    import yaml
except ImportError:
    sys.exit("check-deploy: PyYAML is missing: python3 -m pip install pyyaml")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(REPO, "deploy")
CONTRACT = os.path.join(DEPLOY, "README.md")
TYPES = {"counter", "gauge", "histogram", "info"}
TARGET_LABELS = {"job", "instance"}
NAME = re.compile(r"kafka_transit_[A-Za-z0-9_]+")
VAULT_LOGINS = ("token_env", "token_file", "approle", "jwt", "kubernetes")
KUBERNETES_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # host/src/vault/settings.rs
TOML_TABLES = {"source", "sink", "vault", "policy", "errors", "pipeline", "admin"}
problems: list[str] = []


def problem(message: str) -> None:
    problems.append(message)


def rel(path: str) -> str:
    return os.path.relpath(path, REPO)


# --- the contract: deploy/README.md's metric table ----------------------------------

def read_contract(path: str) -> dict:
    """{name: {"type": ..., "labels": set}} from the table under the heading "## Metrics"."""
    if not os.path.isfile(path):
        sys.exit(f"check-deploy: {rel(path)} does not exist (it holds the metric table)")
    metrics, in_section, header_seen = {}, False, False
    for number, line in enumerate(open(path, encoding="utf-8"), 1):
        if line.startswith("## "):
            in_section = line[3:].strip().lower() == "metrics"
            continue
        if not in_section or not line.lstrip().startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not header_seen:
            header_seen = [c.lower() for c in cells[:3]] == ["metric", "type", "labels"]
            if not header_seen:
                problem(f"{rel(path)}:{number}: the metric table's header must be | metric | type | labels | meaning |")
            continue
        if set(cells[0]) <= set("-: "):
            continue
        where = f"{rel(path)}:{number}"
        match = re.fullmatch(r"`(kafka_transit_[a-z0-9_]+)`", cells[0])
        if not match or len(cells) < 3:
            problem(f"{where}: a metric row starts with `kafka_transit_...` and has type and labels columns")
            continue
        name, kind = match.group(1), cells[1].lower()
        labels = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", cells[2]))
        if kind not in TYPES:
            problem(f"{where}: {name}: type {cells[1]!r} is not one of {sorted(TYPES)}")
        elif kind == "counter" and not name.endswith("_total"):
            problem(f"{where}: counter {name} must be listed as exposed, ending in _total")
        elif kind == "info" and not name.endswith("_info"):
            problem(f"{where}: info metric {name} must be listed as exposed, ending in _info")
        elif kind == "histogram" and name.endswith(("_bucket", "_sum", "_count", "_total")):
            problem(f"{where}: histogram {name} must be listed by its own name (without _bucket/_sum/_count)")
        if name in metrics:
            problem(f"{where}: {name} is listed twice")
        metrics[name] = {"type": kind, "labels": labels}
    if not metrics:
        sys.exit(f"check-deploy: no metric table under '## Metrics' in {rel(path)}")
    return metrics


def contract_series(metrics: dict) -> dict:
    """{series name as stored by Prometheus: metric name} for the documented metrics."""
    series = {}
    for name, metric in metrics.items():
        kind = metric["type"]
        if kind == "histogram":
            names = [name + suffix for suffix in ("_bucket", "_sum", "_count", "_created")]
        elif kind == "counter":
            names = [name, name.removesuffix("_total") + "_created"]
        else:
            names = [name]
        for n in names:
            series[n] = name
    return series


# --- a scraped exposition --------------------------------------------------------------

LABEL_PAIR = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def read_exposition(path: str):
    """(families {name: type}, samples {sample name: set of label-name tuples})."""
    families, samples = {}, {}
    for number, line in enumerate(open(path, encoding="utf-8", errors="replace"), 1):
        line = line.rstrip("\n")
        if not line.strip():
            continue
        if line.startswith("#"):
            words = line.split()
            if len(words) >= 4 and words[1] == "TYPE":
                families[words[2]] = words[3].lower()
            continue
        match = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)", line)
        if not match:
            problem(f"{path}:{number}: not a sample line: {line[:80]!r}")
            continue
        name, position, labels = match.group(1), match.end(), []
        if line[position:position + 1] == "{":
            position += 1
            while True:
                pair = LABEL_PAIR.match(line, position)
                if not pair:
                    break
                labels.append(pair.group(1))
                position = pair.end()
            if line[position:position + 1] != "}":
                problem(f"{path}:{number}: cannot read the labels of {name}")
                continue
        samples.setdefault(name, set()).add(tuple(sorted(labels)))
    return families, samples


def family_series(family: str, kind: str) -> list[str]:
    """The sample names a family of this type exposes (OpenMetrics and Prometheus text)."""
    if kind == "counter":
        if family.endswith("_total"):  # Prometheus text: the TYPE line names the sample
            return [family, family.removesuffix("_total") + "_created"]
        return [family + "_total", family + "_created"]
    if kind == "histogram":
        return [family + s for s in ("_bucket", "_sum", "_count", "_created")]
    if kind == "gaugehistogram":
        return [family + s for s in ("_bucket", "_gsum", "_gcount")]
    if kind == "summary":
        return [family] + [family + s for s in ("_sum", "_count", "_created")]
    if kind == "info":
        return [family + "_info"]
    return [family]


def check_against_exposition(path: str, metrics: dict, references: dict) -> None:
    families, samples = read_exposition(path)
    exposed = {}  # series name -> (family, type)
    for family, kind in families.items():
        for series in family_series(family, kind):
            exposed[series] = (family, kind)
    for series in samples:
        exposed.setdefault(series, (series, "untyped"))
    ours = {s for s in exposed if s.startswith("kafka_transit_")}
    if not ours:
        problem(f"{path}: no kafka_transit_ metric in it: is it a scrape of kafka-transit's /metrics?")
        return
    histograms = {f for f, k in families.items() if k == "histogram"}

    for name, places in sorted(references.items()):
        in_expr = any(in_promql for _, in_promql in places)
        if name in exposed or (name in histograms and not in_expr):
            continue
        where = ", ".join(sorted({p for p, _ in places}))
        problem(f"{name} (used in {where}) is not in the exposition {path}")

    # The table against the exposition, both ways.
    for name, metric in sorted(metrics.items()):
        probe = name + "_bucket" if metric["type"] == "histogram" else name
        if probe not in exposed:
            problem(f"deploy/README.md lists {name} ({metric['type']}), which {path} does not expose")
    documented = contract_series(metrics)
    for family, kind in sorted(families.items()):
        if not family.startswith("kafka_transit_"):
            continue
        series = family_series(family, kind)
        if not any(s in documented for s in series):
            problem(f"{path} exposes {family} ({kind}), which deploy/README.md's metric table does not list")
    for sample, label_sets in sorted(samples.items()):
        name = documented.get(sample)
        if not name:
            if sample.startswith("kafka_transit_"):
                problem(f"{path} has samples {sample}, which deploy/README.md's metric table does not list")
            continue
        seen = {label for labels in label_sets for label in labels} - {"le", "quantile"}
        if seen != metrics[name]["labels"]:
            problem(f"{name}: {path} has labels {sorted(seen) or 'none'}, deploy/README.md lists "
                    f"{sorted(metrics[name]['labels']) or 'none'}")


# --- reading deploy/ ---------------------------------------------------------------------

def load_files() -> dict:
    """{path: (raw text, [parsed documents])} for every JSON and YAML file under deploy/."""
    loaded = {}
    for root, _, files in os.walk(DEPLOY):
        for file in sorted(files):
            path = os.path.join(root, file)
            if not file.endswith((".json", ".yml", ".yaml")):
                continue
            text = open(path, encoding="utf-8").read()
            try:
                if file.endswith(".json"):
                    documents = [json.loads(text)]
                else:
                    documents = [d for d in yaml.safe_load_all(text) if d is not None]
            except (ValueError, yaml.YAMLError) as error:
                problem(f"{rel(path)} does not parse: {error}")
                continue
            loaded[path] = (text, documents)
    if not loaded:
        sys.exit("check-deploy: no JSON or YAML file under deploy/")
    return loaded


def strip_strings(expr: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)


def balanced(expr: str) -> bool:
    stack, pairs = [], {")": "(", "]": "[", "}": "{"}
    for c in strip_strings(expr):
        if c in "([{":
            stack.append(c)
        elif c in pairs:
            if not stack or stack.pop() != pairs[c]:
                return False
    return not stack


def check_promql(where: str, expr: str, metrics: dict, series: dict, templates: list[str]) -> None:
    """Names and labels one PromQL expression (and its legend or alert templates) uses."""
    if not balanced(expr):
        problem(f"{where}: unbalanced brackets in {expr!r}")
    used = set(NAME.findall(expr))
    allowed = set(TARGET_LABELS)
    for name in used:
        if name in series:
            allowed |= metrics[series[name]]["labels"]
            if name.endswith("_bucket"):
                allowed.add("le")
    plain = strip_strings(expr)
    for match in re.finditer(r"(kafka_transit_[A-Za-z0-9_]+)\s*\{([^}]*)\}", plain):
        name = match.group(1)
        if name not in series:
            continue  # reported as an unknown name
        own = metrics[series[name]]["labels"] | TARGET_LABELS | ({"le"} if name.endswith("_bucket") else set())
        for label in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", match.group(2)):
            if label not in own:
                problem(f"{where}: {name} has no label {label!r} (deploy/README.md lists {sorted(own)})")
    for match in re.finditer(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", plain):
        for label in filter(None, (l.strip() for l in match.group(1).split(","))):
            if label not in allowed:
                problem(f"{where}: groups by {label!r}, a label none of {sorted(used)} has")
    for match in re.finditer(r"label_values\(\s*(kafka_transit_[A-Za-z0-9_]+)[^,]*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)", expr):
        if match.group(1) in series and match.group(2) not in allowed:
            problem(f"{where}: label_values of {match.group(1)} by {match.group(2)!r}, a label it does not have")
    for template in templates:
        for label in re.findall(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", template):
            if label not in allowed:
                problem(f"{where}: template {template!r} uses {label!r}, a label the query does not have")
        for label in re.findall(r"\$labels\.([A-Za-z_][A-Za-z0-9_]*)", template):
            if label not in allowed:
                problem(f"{where}: template uses $labels.{label}, a label the query does not have")


# --- Grafana ---------------------------------------------------------------------------

def walk(node, path=()):
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from walk(value, path + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, path + (index,))


def check_dashboard(path: str, dashboard, metrics: dict, series: dict) -> list[str]:
    where, exprs = rel(path), []
    if not isinstance(dashboard, dict) or not isinstance(dashboard.get("panels"), list):
        problem(f"{where}: not a Grafana dashboard (no panels)")
        return exprs
    if not isinstance(dashboard.get("schemaVersion"), int):
        problem(f"{where}: no schemaVersion")
    if not dashboard.get("uid") or not dashboard.get("title"):
        problem(f"{where}: needs a uid and a title")
    variables = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
    datasource = variables.get("datasource", {})
    if datasource.get("type") != "datasource" or datasource.get("query") != "prometheus":
        problem(f"{where}: needs a template variable 'datasource' of type datasource, query prometheus")
    for name in ("job", "instance"):
        if name not in variables:
            problem(f"{where}: needs a template variable {name!r}")
    ids = [p.get("id") for p in dashboard["panels"]]
    if len(ids) != len(set(ids)):
        problem(f"{where}: panel ids are not unique")
    for _, node in walk(dashboard):
        ds = node.get("datasource")
        if isinstance(ds, dict) and ds.get("type") == "prometheus" and ds.get("uid") not in ("${datasource}", "$datasource"):
            problem(f"{where}: a Prometheus data source is hard-coded ({ds.get('uid')!r}); use ${{datasource}}")
    for panel in dashboard["panels"]:
        if panel.get("type") == "row":
            continue
        title = panel.get("title", "?")
        targets = panel.get("targets") or []
        if not any(t.get("expr") for t in targets):
            problem(f"{where}: panel {title!r} has no query")
        for target in targets:
            if target.get("expr"):
                exprs.append(target["expr"])
                check_promql(f"{where}: panel {title!r}", target["expr"], metrics, series,
                             [target.get("legendFormat", "")])
    for name, variable in variables.items():
        if variable.get("type") == "query":
            query = variable.get("query")
            query = query.get("query", "") if isinstance(query, dict) else query or ""
            exprs.append(query)
            check_promql(f"{where}: variable {name!r}", query, metrics, series, [])
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if annotation.get("expr"):
            exprs.append(annotation["expr"])
            check_promql(f"{where}: annotation {annotation.get('name')!r}", annotation["expr"], metrics, series,
                         [annotation.get("titleFormat", ""), annotation.get("textFormat", "")])
    return exprs


# --- Prometheus rules ------------------------------------------------------------------

def github_anchors(path: str) -> set[str]:
    anchors = set()
    for line in open(path, encoding="utf-8"):
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match:
            text = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def check_rules(path: str, document, metrics: dict, series: dict) -> tuple[list[str], set[str]]:
    where, exprs, jobs = rel(path), [], set()
    groups = document.get("groups") if isinstance(document, dict) else None
    if not isinstance(groups, list) or not groups:
        problem(f"{where}: a rules file has a non-empty list 'groups'")
        return exprs, jobs
    anchors, alerts = github_anchors(CONTRACT), set()
    for group in groups:
        if not group.get("name") or not isinstance(group.get("rules"), list):
            problem(f"{where}: every group has a name and a list of rules")
            continue
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record") or "?"
            at = f"{where}: {name}"
            expr = rule.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                problem(f"{at}: no expr")
                continue
            exprs.append(expr)
            jobs |= set(re.findall(r'\bjob\s*=\s*"([^"]+)"', expr))
            if "record" in rule:
                check_promql(at, expr, metrics, series, [])
                continue
            if name in alerts:
                problem(f"{at}: alert name used twice")
            alerts.add(name)
            if not re.fullmatch(r"(\d+(ms|s|m|h|d|w|y))+", str(rule.get("for", ""))):
                problem(f"{at}: needs for: (a duration like 5m)")
            if (rule.get("labels") or {}).get("severity") not in ("critical", "warning", "info"):
                problem(f"{at}: labels.severity is critical, warning or info")
            annotations = rule.get("annotations") or {}
            for key in ("summary", "description", "runbook_url"):
                if not annotations.get(key):
                    problem(f"{at}: needs annotations.{key}")
            anchor = str(annotations.get("runbook_url", "")).partition("#")[2]
            if "deploy/README.md" in str(annotations.get("runbook_url", "")) and anchor not in anchors:
                problem(f"{at}: runbook_url anchor #{anchor} is not a heading of deploy/README.md")
            check_promql(at, expr, metrics, series, [str(v) for v in annotations.values()])
    promtool = shutil.which("promtool")
    if promtool:
        result = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True)
        if result.returncode != 0:
            problem(f"promtool check rules {where}: {(result.stderr or result.stdout).strip()}")
    return exprs, jobs


# --- Kubernetes ------------------------------------------------------------------------

def port_of(listen: str):
    match = re.fullmatch(r"(.*):(\d+)", listen or "")
    return (match.group(1).strip("[]"), int(match.group(2))) if match else (None, None)


def toml_paths(table, prefix=""):
    """(field, value) for every absolute path in the parsed TOML."""
    for key, value in table.items():
        field = f"{prefix}{key}"
        if field == "policy.config":
            continue  # the policy's own settings (JSON Pointers look like paths)
        if isinstance(value, dict):
            yield from toml_paths(value, field + ".")
        elif isinstance(value, str) and value.startswith("/"):
            yield field, value


def workspace_version() -> str:
    with open(os.path.join(REPO, "Cargo.toml"), "rb") as file:
        return tomllib.load(file)["workspace"]["package"]["version"]


def commented_vault_logins(at: str, text: str) -> dict:
    """{name: table} for each `# [vault.NAME]` block of `# key = value` lines in text."""
    found, lines = {}, text.splitlines()
    for index, line in enumerate(lines):
        header = re.fullmatch(r"\s*#\s*\[vault\.(\w+)\]\s*", line)
        if not header:
            continue
        body = []
        for following in lines[index + 1:]:
            entry = re.fullmatch(r"\s*#\s*(\w+\s*=\s*\S.*)", following)
            if not entry:
                break
            body.append(entry.group(1))
        try:
            found[header.group(1)] = tomllib.loads("\n".join(body))
        except tomllib.TOMLDecodeError as error:
            problem(f"{at}: the commented-out [vault.{header.group(1)}] does not parse: {error}")
    return found


def check_kubernetes_login(at: str, login: dict, pod: dict) -> None:
    """A [vault.kubernetes] login needs a service account token where it looks for one."""
    spec, jwt_file = pod["spec"], login.get("jwt_file", KUBERNETES_TOKEN_PATH)
    if jwt_file == KUBERNETES_TOKEN_PATH:
        if spec.get("automountServiceAccountToken") is False:
            problem(f"{at}: [vault.kubernetes] reads {jwt_file}, but automountServiceAccountToken is false: "
                    "mount a projected serviceAccountToken and set jwt_file")
        return
    directory, name = os.path.split(jwt_file)
    mount = pod["mounts"].get(directory)
    volume = pod["volumes"].get((mount or {}).get("name"), {})
    sources = (volume.get("projected") or {}).get("sources") or []
    tokens = [s["serviceAccountToken"] for s in sources if "serviceAccountToken" in s]
    if not any(t.get("path") == name for t in tokens):
        problem(f"{at}: [vault.kubernetes] jwt_file {jwt_file} is not a projected serviceAccountToken "
                f"(a volume mounted at {directory} with path {name!r})")
    elif not all(t.get("audience") for t in tokens):
        problem(f"{at}: the projected token for Vault has no audience: it would be an API token "
                "(give it its own, e.g. vault, and bind the role to it)")


def check_pipeline_toml(at: str, text: str, admin_port, mounts: dict, pod: dict = None) -> None:
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        problem(f"{at}: pipeline.toml does not parse: {error}")
        return
    check_pipeline_config(at, config, admin_port, mounts, pod)
    vault = config.get("vault") or {}
    for name, table in commented_vault_logins(at, text).items():
        in_force = {k: v for k, v in vault.items() if k not in VAULT_LOGINS}
        variant = dict(config, vault=dict(in_force, **{name: table}))
        check_pipeline_config(f"{at} (with the commented-out [vault.{name}])", variant, admin_port, mounts, pod)


def check_pipeline_config(at: str, config: dict, admin_port, mounts: dict, pod: dict = None) -> None:
    for table in sorted(set(config) - TOML_TABLES):
        problem(f"{at}: pipeline.toml has an unknown table [{table}]")
    listen = (config.get("admin") or {}).get("listen")
    host, port = port_of(listen)
    if not listen:
        problem(f"{at}: pipeline.toml has no [admin] listen: no probes, no /metrics")
    elif port is None:
        problem(f"{at}: [admin] listen {listen!r} is not HOST:PORT")
    else:
        if host not in ("0.0.0.0", "::", ""):
            problem(f"{at}: [admin] listen {listen!r}: the kubelet and Prometheus connect to the pod IP; listen on 0.0.0.0")
        if admin_port is not None and port != admin_port:
            problem(f"{at}: [admin] listen port {port} is not the container's admin port {admin_port}")
    vault = config.get("vault") or {}
    sources = [k for k in VAULT_LOGINS if k in vault]
    if len(sources) != 1:
        problem(f"{at}: [vault] needs exactly one of token_env, token_file, [vault.approle], [vault.jwt], [vault.kubernetes] (has {sources})")
    if "kubernetes" in vault and pod is not None:
        check_kubernetes_login(at, vault["kubernetes"], pod)
    policy = config.get("policy") or {}
    if ("builtin" in policy) == ("path" in policy):
        problem(f"{at}: [policy] needs exactly one of builtin and path")
    for field, value in toml_paths(config):
        if mounts and not any(value == m or value.startswith(m.rstrip("/") + "/") for m in mounts):
            problem(f"{at}: {field} = {value!r} is not inside any of the container's volume mounts")


def check_kubernetes(documents: list, rule_jobs: set) -> None:
    by_kind = {}
    for path, document in documents:
        if not isinstance(document, dict) or not document.get("kind") or not document.get("apiVersion"):
            problem(f"{rel(path)}: a document without apiVersion and kind")
            continue
        if not (document.get("metadata") or {}).get("name"):
            problem(f"{rel(path)}: {document['kind']} without metadata.name")
            continue
        by_kind.setdefault(document["kind"], []).append((path, document))
    config_maps = {d["metadata"]["name"]: d for _, d in by_kind.get("ConfigMap", [])}
    service_accounts = {d["metadata"]["name"] for _, d in by_kind.get("ServiceAccount", [])}
    version = workspace_version()
    with open(CONTRACT, encoding="utf-8") as file:
        deploy_readme = file.read()
    deployments = by_kind.get("Deployment", [])
    if not deployments:
        problem("deploy/kubernetes: no Deployment")
    admin_ports, pod_labels = set(), []
    for path, deployment in deployments:
        at = f"{rel(path)}: Deployment {deployment['metadata']['name']}"
        pod = ((deployment.get("spec") or {}).get("template") or {})
        pod_labels.append((pod.get("metadata") or {}).get("labels") or {})
        spec = pod.get("spec") or {}
        volumes = {v.get("name"): v for v in spec.get("volumes") or []}
        pod_security = spec.get("securityContext") or {}
        account = spec.get("serviceAccountName")
        if account and account not in service_accounts:
            problem(f"{at}: serviceAccountName {account} is not a ServiceAccount in deploy/kubernetes/")
        for container in spec.get("containers") or []:
            cat = f"{at}, container {container.get('name')}"
            ports = {p.get("name"): p.get("containerPort") for p in container.get("ports") or []}
            admin = ports.get("admin")
            if admin is None:
                problem(f"{cat}: no port named 'admin'")
            else:
                admin_ports.add(admin)
            for probe, wanted in (("livenessProbe", "/health/live"), ("readinessProbe", "/health/ready"),
                                  ("startupProbe", "/health/live")):
                get = ((container.get(probe) or {}).get("httpGet")) or {}
                if not container.get(probe):
                    if probe != "startupProbe":
                        problem(f"{cat}: no {probe}")
                    continue
                if get.get("path") != wanted:
                    problem(f"{cat}: {probe} is on {get.get('path')!r}, not {wanted}")
                if get.get("port") not in ("admin", admin):
                    problem(f"{cat}: {probe} is on port {get.get('port')!r}, not the admin port")
            mounts = {m.get("mountPath"): m for m in container.get("volumeMounts") or []}
            image = container.get("image") or ""
            if not re.fullmatch(rf"(\S+/)?kafka-transit:{re.escape(version)}", image):
                problem(f"{cat}: image {image!r} is not kafka-transit:{version} (the Dockerfile's build of "
                        "this version), with or without a registry")
            elif f"docker build -t {image.rsplit('/', 1)[-1]} ." not in deploy_readme:
                problem(f"{cat}: deploy/README.md does not say how to build {image} (docker build -t ... .)")
            args = [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]
            config_path = args[args.index("--config") + 1] if "--config" in args[:-1] else None
            if not config_path:
                problem(f"{cat}: no --config argument")
            else:
                directory, key = os.path.split(config_path)
                mount = mounts.get(directory)
                volume = volumes.get((mount or {}).get("name"), {})
                name = (volume.get("configMap") or {}).get("name")
                if not mount or not name:
                    problem(f"{cat}: --config {config_path}: {directory} is not a ConfigMap volume mount "
                            "(mount the directory: files mounted with subPath are never updated)")
                elif name not in config_maps:
                    problem(f"{cat}: ConfigMap {name} is not in deploy/kubernetes/")
                elif key not in (config_maps[name].get("data") or {}):
                    problem(f"{cat}: ConfigMap {name} has no key {key}")
                else:
                    check_pipeline_toml(f"{rel(path)}: ConfigMap {name}", config_maps[name]["data"][key], admin,
                                        set(mounts), {"spec": spec, "mounts": mounts, "volumes": volumes})
            security = container.get("securityContext") or {}
            if security.get("readOnlyRootFilesystem"):
                env = {e.get("name"): e.get("value") for e in container.get("env") or []}
                cache = env.get("KAFKA_TRANSIT_CACHE_DIR")
                writable = [m for m, spec_ in mounts.items() if not spec_.get("readOnly")]
                if not cache:
                    problem(f"{cat}: read-only root filesystem without KAFKA_TRANSIT_CACHE_DIR: compiled policies are not cached")
                elif not any(cache == m or cache.startswith(m.rstrip("/") + "/") for m in writable):
                    problem(f"{cat}: KAFKA_TRANSIT_CACHE_DIR {cache} is not on a writable volume mount")
            non_root = security.get("runAsNonRoot", pod_security.get("runAsNonRoot"))
            user = security.get("runAsUser", pod_security.get("runAsUser"))
            if non_root and not isinstance(user, int):
                problem(f"{cat}: runAsNonRoot needs a numeric runAsUser (the image's USER is a name)")
            if non_root and user == 0:
                problem(f"{cat}: runAsNonRoot with runAsUser 0")
    for path, service in by_kind.get("Service", []):
        at = f"{rel(path)}: Service {service['metadata']['name']}"
        spec = service.get("spec") or {}
        selector = spec.get("selector") or {}
        if not any(selector.items() <= labels.items() for labels in pod_labels):
            problem(f"{at}: its selector matches no Deployment's pods")
        for port in spec.get("ports") or []:
            if port.get("name") == "admin":
                if port.get("targetPort") not in ("admin", *admin_ports):
                    problem(f"{at}: port admin targets {port.get('targetPort')!r}, not the container's admin port")
                break
        else:
            problem(f"{at}: no port named 'admin'")
    services = [d for _, d in by_kind.get("Service", [])]
    for kind, endpoints_key, targets in (("PodMonitor", "podMetricsEndpoints", pod_labels),
                                         ("ServiceMonitor", "endpoints",
                                          [(s.get("metadata") or {}).get("labels") or {} for s in services])):
        for path, monitor in by_kind.get(kind, []):
            at = f"{rel(path)}: {kind} {monitor['metadata']['name']}"
            spec = monitor.get("spec") or {}
            selected = [labels for labels in targets
                        if ((spec.get("selector") or {}).get("matchLabels") or {}).items() <= labels.items()]
            if not selected:
                problem(f"{at}: its selector matches none of the {'pods' if kind == 'PodMonitor' else 'Services'} here")
            endpoints = spec.get(endpoints_key) or []
            if not any(e.get("port") == "admin" and e.get("path", "/metrics") == "/metrics" for e in endpoints):
                problem(f"{at}: needs an endpoint on port 'admin', path /metrics")
            job_label = spec.get("jobLabel")
            jobs = {labels.get(job_label) for labels in selected} if job_label else set()
            if rule_jobs and not job_label:
                problem(f"{at}: no jobLabel: the job would be the operator's default, not {sorted(rule_jobs)} the rules select")
            elif rule_jobs and jobs and not jobs <= rule_jobs:
                problem(f"{at}: the job would be {sorted(map(str, jobs))}, the rules select {sorted(rule_jobs)}")


# --- main ------------------------------------------------------------------------------

def main() -> None:
    if len(sys.argv) > 2 or (len(sys.argv) == 2 and sys.argv[1].startswith("-")):
        sys.exit(__doc__.split("\n\n")[1])
    metrics = read_contract(CONTRACT)
    series = contract_series(metrics)
    histograms = {n for n, m in metrics.items() if m["type"] == "histogram"}
    loaded = load_files()

    references = {}  # name -> {(file, in a PromQL expression)}
    rule_jobs, kubernetes = set(), []
    counts = {"dashboards": 0, "rule files": 0, "Kubernetes documents": 0}
    for path, (text, documents) in sorted(loaded.items()):
        exprs = []
        relative = rel(path)
        if relative.startswith("deploy/grafana/"):
            counts["dashboards"] += 1
            for document in documents:
                exprs += check_dashboard(path, document, metrics, series)
        elif relative.startswith("deploy/prometheus/"):
            counts["rule files"] += 1
            for document in documents:
                found, jobs = check_rules(path, document, metrics, series)
                exprs += found
                rule_jobs |= jobs
        elif relative.startswith("deploy/kubernetes/"):
            counts["Kubernetes documents"] += len(documents)
            kubernetes += [(path, d) for d in documents]
        in_promql = {n for e in exprs for n in NAME.findall(e)}
        for name in NAME.findall(text):
            references.setdefault(name, set()).add((relative, name in in_promql))
    check_kubernetes(kubernetes, rule_jobs)

    for name, places in sorted(references.items()):
        in_expr = any(p for _, p in places)
        if name in series or (name in histograms and not in_expr):
            continue
        hint = " (a histogram: query _bucket, _sum or _count)" if name in histograms else ""
        files = ", ".join(sorted({f for f, _ in places}))
        problem(f"{name} (used in {files}) is not in deploy/README.md's metric table{hint}")

    exposition = sys.argv[1] if len(sys.argv) == 2 else None
    if exposition:
        if not os.path.isfile(exposition):
            sys.exit(f"check-deploy: {exposition} does not exist")
        check_against_exposition(exposition, metrics, references)

    if problems:
        print("check-deploy: problems in deploy/:", file=sys.stderr)
        for message in problems:
            print(f"  - {message}", file=sys.stderr)
        sys.exit(1)
    print(f"check-deploy: {len(loaded)} files OK ("
          + ", ".join(f"{n} {k}" for k, n in counts.items())
          + f"); {len(references)} metric names used, all in the table of {len(metrics)} metrics"
          + (f" and in {exposition}" if exposition else "")
          + ("; promtool check rules OK" if shutil.which("promtool") else "; promtool not installed, skipped"))


if __name__ == "__main__":
    main()
