#!/usr/bin/env python3
"""check_deploy.py - checks the deployment files under deploy/ (run by tests/deploy/test_deploy.c).

  check_deploy.py knative FILE...          Knative Service manifests: fields, values, coherence
  check_deploy.py args FILE|DIR [NAME=VALUE|/PATH=DIR|--OPT=VALUE]...
                                           the Knative container's serve options, one a line,
                                           $(NAME), paths under /PATH and --OPT's value replaced
  check_deploy.py cluster DIR|FILE         the cluster (a kustomization directory or its rendering):
                                           Service scaling out, registry URL from the operator's
                                           Secret, downward API, cluster secret, RWX shared volume,
                                           per-pod data dir, CloudNativePG Cluster
  check_deploy.py flags HELP SINGLE... CLUSTER
      every option the manifests give thaw serve is listed in HELP (`thaw serve --help` output);
      exit 3 (not 1) when that thaw predates clusters (it knows none of the cluster-only options)
  check_deploy.py yaml FILE...             every YAML file parses (all documents)
  check_deploy.py dockerfile FILE          stages, CUDA bases, make CUDA=1, apt only, thaw serve
  check_deploy.py systemd FILE             unit runs thaw serve, stops with SIGTERM after the drain,
                                           as a dedicated user with the usual hardening
  check_deploy.py promql SCRAPE SRCDIR FILE...
      every PromQL expression in the Grafana dashboards (.json) and rule files (.yml) names only
      metrics thaw exports: families in SCRAPE (a /metrics text) or registered with
      rt_metrics_family() in SRCDIR/*.c; histograms only through _bucket/_sum/_count; label names
      in selectors and by/without clauses exist on the metrics that SCRAPE shows.
  check_deploy.py dashboard FILE           Grafana dashboard structure and required panels
  check_deploy.py alerts FILE              rule severities and the required alerts

Prints one line per problem; exit status 0 when there is none, 1 otherwise (2: usage, no yaml).
"""
import glob
import json
import os
import re
import sys

try:
    import yaml
except ImportError:  # Debian: python3-yaml (scripts/install-deps.sh); only YAML checks need it
    yaml = None

problems = []


def bad(where, msg):
    problems.append(f"{where}: {msg}")


def dig(obj, *path):
    for p in path:
        if isinstance(obj, dict) and p in obj:
            obj = obj[p]
        elif isinstance(obj, list) and isinstance(p, int) and p < len(obj):
            obj = obj[p]
        else:
            return None
    return obj


def load_all(path):
    if yaml is None:
        print("check_deploy: python3-yaml is not installed", file=sys.stderr)
        sys.exit(2)
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def parse_seconds(s):
    m = re.fullmatch(r"(\d+)(s|m|h)?", str(s))
    if not m:
        return None
    return int(m.group(1)) * {"s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)]


def parse_quantity(q):
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti|k|M|G|T)?", str(q)) if q is not None else None
    if not m:
        return None
    mult = {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
            "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}[m.group(2)]
    return int(m.group(1)) * mult


# --- Knative -------------------------------------------------------------------------------

def under(path, mount):
    """path is mount or inside it (whole path components)"""
    path, mount = os.path.normpath(path), os.path.normpath(mount)
    return path == mount or path.startswith(mount.rstrip("/") + "/")


def mount_of(c, vols, path):
    """-> (volumeMount, volume) of the container's mount holding path, or (None, None)"""
    ms = [mt for mt in (c.get("volumeMounts") or []) if under(path, mt.get("mountPath", "/nonexistent"))]
    if not ms:
        return None, None
    mt = max(ms, key=lambda mt: len(mt["mountPath"]))
    return mt, vols.get(mt.get("name"))


def opt_values(args, name):
    """values of every `name VALUE` pair in args"""
    return [args[i + 1] for i in range(len(args) - 1) if args[i] == name]


def check_knative(path, docs=None, cluster=False):
    """checks the one Knative Service in docs (read from path when None). cluster: the Service of
    deploy/knative/cluster (several pods, data directory per pod); else a single-node variant
    (SQLite registry in the data directory on a claimed volume, one pod)."""
    if docs is None:
        docs = load_all(path)
    services = [d for d in docs if d.get("kind") == "Service"
                and str(d.get("apiVersion", "")).startswith("serving.knative.dev/")]
    pvcs = {dig(d, "metadata", "name"): d for d in docs if d.get("kind") == "PersistentVolumeClaim"}
    if len(services) != 1:
        bad(path, f"expected one serving.knative.dev Service, found {len(services)}")
        return None
    svc = services[0]
    w = f"{path}: Service {dig(svc, 'metadata', 'name')}"
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", str(dig(svc, "metadata", "name"))):
        bad(w, "metadata.name must be a DNS label")
    ann = dig(svc, "spec", "template", "metadata", "annotations") or {}
    for k, v in ann.items():
        if not isinstance(v, str):
            bad(w, f"annotation {k} must be a string (quote it), got {v!r}")
    spec = dig(svc, "spec", "template", "spec") or {}
    minscale = ann.get("autoscaling.knative.dev/min-scale")
    if minscale not in ("0", "1"):
        bad(w, f"autoscaling.knative.dev/min-scale must be \"0\" or \"1\", got {minscale!r}")
    maxscale = ann.get("autoscaling.knative.dev/max-scale")
    if maxscale is None or not re.fullmatch(r"[1-9]\d*", str(maxscale)):
        bad(w, f"autoscaling.knative.dev/max-scale must be a positive integer string, got {maxscale!r}")
    elif cluster and int(maxscale) < 2:
        bad(w, f"autoscaling.knative.dev/max-scale is {maxscale}: a cluster has more than one pod")
    elif not cluster and int(maxscale) != 1:
        bad(w, f"autoscaling.knative.dev/max-scale is {maxscale}: a single-node variant keeps its "
               "SQLite registry on a ReadWriteOnce volume, one pod (deploy/knative/cluster scales out)")
    if ann.get("autoscaling.knative.dev/metric", "concurrency") != "concurrency":
        bad(w, "autoscaling.knative.dev/metric must be concurrency")
    cc = spec.get("containerConcurrency")
    target = ann.get("autoscaling.knative.dev/target")
    if not isinstance(cc, int) or not 1 <= cc <= 1024:
        bad(w, f"containerConcurrency must be an integer 1..1024 (thaw's concurrency), got {cc!r}")
    if target is None or not re.fullmatch(r"\d+", str(target)):
        bad(w, f"autoscaling.knative.dev/target must be an integer string, got {target!r}")
    elif isinstance(cc, int) and int(target) != cc:
        bad(w, f"autoscaling.knative.dev/target {target} must match containerConcurrency {cc}")
    ts = spec.get("timeoutSeconds")
    if not isinstance(ts, int) or ts <= 0:
        bad(w, f"timeoutSeconds must be a positive integer, got {ts!r}")
    ctrs = spec.get("containers") or []
    if len(ctrs) != 1:
        bad(w, f"expected one container, found {len(ctrs)}")
        return svc
    c = ctrs[0]
    if not c.get("image"):
        bad(w, "container has no image")
    args = [str(a) for a in (c.get("args") or [])]
    if not args or args[0] != "serve":
        bad(w, f"container args must start with serve, got {args[:1]}")
    if "--port" in args:
        bad(w, "--port given: thaw must listen on $PORT, which Knative sets")
    ports = c.get("ports") or []
    if len(ports) != 1 or not isinstance(dig(ports, 0, "containerPort"), int):
        bad(w, "expected exactly one containerPort (Knative passes it as $PORT)")
    drain = 30
    if "--drain-timeout" in args:
        i = args.index("--drain-timeout")
        drain = float(args[i + 1]) if i + 1 < len(args) else None
    # Knative sets the pod's terminationGracePeriodSeconds from timeoutSeconds
    grace = spec.get("terminationGracePeriodSeconds", ts)
    if drain is None or not isinstance(grace, int) or grace <= drain:
        bad(w, f"termination grace ({grace!r} s) must be above --drain-timeout ({drain!r} s)")
    for kind in ("limits", "requests"):
        g = dig(c, "resources", kind, "nvidia.com/gpu")
        if kind == "limits" and str(g) != "1":
            bad(w, f"resources.limits nvidia.com/gpu must be 1, got {g!r}")
        if g is not None and str(g) != "1":
            bad(w, f"resources.{kind} nvidia.com/gpu must be 1, got {g!r}")
    mem = parse_quantity(dig(c, "resources", "limits", "memory"))
    if mem is None:
        bad(w, "resources.limits.memory missing or not a quantity (host tier + staging live in host RAM)")
    else:
        # thaw sizes --host-cache and --cpu-memory from the node's RAM unless told: in a pod,
        # both must be given and fit under the limit with room for staging and the process
        budget = 0
        for opt in ("--host-cache", "--cpu-memory"):
            if opt not in args or args.index(opt) + 1 >= len(args):
                bad(w, f"{opt} not given: its default follows the node's RAM, not the pod's limit")
                continue
            budget += int(args[args.index(opt) + 1])
        if budget > mem - (2 << 30):
            bad(w, f"--host-cache + --cpu-memory ({budget} bytes) leave under 2 GiB of the {mem}-byte limit")
    if "--cpu-threads" not in args:
        bad(w, "--cpu-threads not given: its default follows the node's cores, not the pod's CPU")
    for probe, path_ in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        got = dig(c, probe, "httpGet", "path")
        if got != path_:
            bad(w, f"{probe}.httpGet.path must be {path_}, got {got!r}")
        port = dig(c, probe, "httpGet", "port")
        if port is not None and ports and port != dig(ports, 0, "containerPort"):
            bad(w, f"{probe} port {port} is not the container port")
    if not cluster and "--registry" in args:
        bad(w, "a single-node variant uses the SQLite registry in its data directory (no "
               "--registry; deploy/knative/cluster is the shared one)")
    if "--data" not in args or args.index("--data") + 1 >= len(args):
        bad(w, "no --data DIR in args")
        return svc
    data = args[args.index("--data") + 1]
    vols = {v.get("name"): v for v in (spec.get("volumes") or [])}
    mt, v = mount_of(c, vols, data)
    if mt is None:
        bad(w, f"the data directory {data} is not on a mounted volume")
        return svc
    if mt.get("readOnly"):
        bad(w, f"the volume holding {data} is mounted read-only")
    if v is None:
        bad(w, f"volumeMount {mt.get('name')} names no volume")
        return svc
    if cluster:
        # the registry is in PostgreSQL and shared files on --shared-dir: the data directory
        # holds only this pod's working files
        if "emptyDir" not in v:
            bad(w, f"the data directory {data} must be on a per-pod emptyDir in a cluster, is "
                   f"on volume {mt.get('name')}")
        return svc
    claim = dig(v, "persistentVolumeClaim", "claimName")
    if claim is None:
        bad(w, f"volume {mt.get('name')} must be a persistentVolumeClaim (snapshots and the "
               "registry outlive pods)")
    elif claim not in pvcs:
        bad(w, f"claim {claim} is not defined in {path}")
    elif not dig(pvcs[claim], "spec", "resources", "requests", "storage"):
        bad(w, f"claim {claim} requests no storage")
    return svc


def cmd_knative(files):
    mins = set()
    for f in files:
        svc = check_knative(f)
        if svc is not None:
            mins.add(dig(svc, "spec", "template", "metadata", "annotations",
                         "autoscaling.knative.dev/min-scale"))
    if "0" not in mins:
        bad("deploy/knative", "no Service scales to zero (min-scale \"0\")")
    if "1" not in mins:
        bad("deploy/knative", "no variant keeps one warm pod (min-scale \"1\")")


# --- the cluster (deploy/knative/cluster) -------------------------------------------------

def load_cluster(where):
    """docs of a kustomization directory (its resources, each file listed once, every YAML file
    of the directory listed) or of one file (e.g. `kubectl kustomize` output)"""
    if not os.path.isdir(where):
        return load_all(where)
    kpath = os.path.join(where, "kustomization.yaml")
    if not os.path.exists(kpath):
        bad(where, "no kustomization.yaml")
        return []
    k = (load_all(kpath) or [{}])[0]
    res = [str(r) for r in (k.get("resources") or [])]
    if not res:
        bad(kpath, "lists no resources")
    if len(set(res)) != len(res):
        bad(kpath, f"a resource is listed twice: {res}")
    here = sorted(f for f in os.listdir(where)
                  if f.endswith((".yaml", ".yml")) and f != "kustomization.yaml")
    for f in here:
        if f not in res:
            bad(kpath, f"{f} is in the directory but not in resources")
    docs = []
    for r in res:
        f = os.path.join(where, r)
        if not os.path.isfile(f):
            bad(kpath, f"resource {r} does not exist")
            continue
        docs += load_all(f)
    return docs


def strings_in(o):
    if isinstance(o, dict):
        for k, v in o.items():
            yield from strings_in(k)
            yield from strings_in(v)
    elif isinstance(o, list):
        for v in o:
            yield from strings_in(v)
    elif isinstance(o, str):
        yield o


def env_var_of(value):
    """VAR of an argument that is exactly $(VAR) (Kubernetes expands it from the env)"""
    m = re.fullmatch(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", str(value))
    return m.group(1) if m else None


def check_cluster(where, docs):
    svc = check_knative(where, docs, cluster=True)
    if svc is None:
        return
    w = f"{where}: Service {dig(svc, 'metadata', 'name')}"
    # no credentials in the files: no inline Secret, no database URL, no literal password
    for d in docs:
        if d.get("kind") == "Secret":
            bad(where, f"Secret {dig(d, 'metadata', 'name')} is written in the manifests: secrets "
                       "are made outside them (the operator's, kubectl create secret)")
        if d.get("kind") in ("StatefulSet", "Deployment") and d is not svc:
            bad(where, f"{d.get('kind')} {dig(d, 'metadata', 'name')}: PostgreSQL comes from the "
                       "operator's Cluster, not a hand-rolled workload")
    for s in (x for d in docs for x in strings_in(d)):
        if re.search(r"postgres(ql)?://(?!\$\()", s) or re.search(r"(?i)password\s*=", s):
            bad(where, f"a database URL or password is written in the manifests: {s[:40]!r}")
    pgs = [d for d in docs if d.get("kind") == "Cluster"
           and str(d.get("apiVersion", "")) == "postgresql.cnpg.io/v1"]
    if len(pgs) != 1:
        bad(where, f"expected one CloudNativePG Cluster (postgresql.cnpg.io/v1), found {len(pgs)}")
    pg = pgs[0] if pgs else {}
    pgw = f"{where}: Cluster {dig(pg, 'metadata', 'name')}"
    inst = dig(pg, "spec", "instances")
    if pg and (not isinstance(inst, int) or inst < 3):
        bad(pgw, f"instances must be at least 3 (a primary and two replicas to fail over to), got {inst!r}")
    if pg and parse_quantity(dig(pg, "spec", "storage", "size")) is None:
        bad(pgw, "spec.storage.size missing or not a quantity")
    db = dig(pg, "spec", "bootstrap", "initdb", "database")
    owner = dig(pg, "spec", "bootstrap", "initdb", "owner")
    if pg and not (db and owner):
        bad(pgw, "spec.bootstrap.initdb needs a database and its owner (whose Secret thaw reads)")
    if pg and dig(pg, "spec", "bootstrap", "initdb", "secret") is not None:
        bad(pgw, "initdb.secret given: the operator's <cluster>-app Secret (with its uri) is the one thaw reads")

    spec = dig(svc, "spec", "template", "spec") or {}
    c = dig(spec, "containers", 0) or {}
    args = [str(a) for a in (c.get("args") or [])]
    env = {e.get("name"): e for e in (c.get("env") or [])}
    vols = {v.get("name"): v for v in (spec.get("volumes") or [])}
    port = dig(c, "ports", 0, "containerPort")
    ann = dig(svc, "spec", "template", "metadata", "annotations") or {}
    for o in ("--registry", "--node-id", "--advertise", "--cluster-secret-file", "--shared-dir"):
        if len(opt_values(args, o)) != 1:
            bad(w, f"{o} must be given once, is given {len(opt_values(args, o))} times")
    for e in env.values():
        if "value" in e and re.search(r"(?i)pass|secret|token|registry|^pg(host|port|user|database)$",
                                      str(e.get("name"))):
            bad(w, f"env {e.get('name')} has a literal value: it must come from a Secret")

    def from_env(opt, what):
        vals = opt_values(args, opt)
        var = env_var_of(vals[0]) if vals else None
        if vals and var is None:
            bad(w, f"{opt} {vals[0]!r} must be $(VAR), {what}")
        elif var and var not in env:
            bad(w, f"{opt} uses $({var}), which the container's env does not define")
        return env.get(var) if var else None

    # the registry: every part of its URL from the operator's Secret, the password in PGPASSWORD
    # (libpq reads it) rather than in the URL on the command line
    app = f"{dig(pg, 'metadata', 'name')}-app" if pg else None

    def operator_ref(name, what):
        ref = dig(env.get(name), "valueFrom", "secretKeyRef") or {}
        if name not in env:
            bad(w, f"{what}: the container's env does not define {name}")
        elif not ref:
            bad(w, f"{what}: env {name} must come from secretKeyRef (the operator's Secret)")
        elif app and ref.get("name") != app:
            bad(w, f"{what}: env {name} reads Secret {ref.get('name')}: the operator's Secret is {app}")
        return ref
    reg = opt_values(args, "--registry")
    if reg:
        url = reg[0]
        names = re.findall(r"\$\(([A-Za-z_]\w*)\)", url)
        rest = re.sub(r"\$\([A-Za-z_]\w*\)", "", url)
        if not names or not re.fullmatch(r"(postgres(ql)?://)?@?:?/?", rest):
            bad(w, f"--registry {url!r}: host, port, database and user must come from the "
                   "operator's Secret as $(VAR)s, with no literal part")
        for n in names:
            ref = operator_ref(n, "--registry")
            if ref.get("key") in ("uri", "jdbc-uri", "password", "pgpass"):
                bad(w, f"--registry: env {n} is the Secret's {ref.get('key')}, which holds the "
                       "password: on the command line it shows in the process list; use PGPASSWORD")
        ref = operator_ref("PGPASSWORD", "the registry password")
        if ref and ref.get("key") != "password":
            bad(w, f"PGPASSWORD reads key {ref.get('key')} of {ref.get('name')}, not password")
    e = from_env("--node-id", "the pod's name from the downward API")
    if e is not None and dig(e, "valueFrom", "fieldRef", "fieldPath") != "metadata.name":
        bad(w, f"--node-id: env {e.get('name')} must be fieldRef metadata.name (the pod's name)")
    adv = opt_values(args, "--advertise")
    m = re.fullmatch(r"http://\$\(([A-Za-z_]\w*)\):(\d+)", adv[0]) if adv else None
    if adv and not m:
        bad(w, f"--advertise {adv[0]!r} must be http://$(POD_IP):PORT")
    elif m:
        e = env.get(m.group(1))
        if e is None or dig(e, "valueFrom", "fieldRef", "fieldPath") != "status.podIP":
            bad(w, f"--advertise: env {m.group(1)} must be fieldRef status.podIP (the downward API)")
        if int(m.group(2)) != port:
            bad(w, f"--advertise port {m.group(2)} is not the container port {port}")
    sec = opt_values(args, "--cluster-secret-file")
    if sec:
        mt, v = mount_of(c, vols, sec[0])
        if v is None or not dig(v, "secret", "secretName"):
            bad(w, f"--cluster-secret-file {sec[0]} is not on a mounted Secret volume")
        else:
            if not mt.get("readOnly"):
                bad(w, f"the Secret volume holding {sec[0]} must be mounted readOnly")
            # a Secret's files are root's: the image's user reads them through the pod's
            # fsGroup (group read) or, failing that, only if they are world-readable
            mode = dig(v, "secret", "defaultMode")
            mode = 0o644 if mode is None else mode
            fsgroup = dig(spec, "securityContext", "fsGroup")
            if not isinstance(mode, int) or mode & 0o333:
                bad(w, f"the cluster secret's defaultMode {mode!r} must be read-only (no write or execute)")
            elif not (mode & 0o004 or (mode & 0o040 and fsgroup is not None)):
                bad(w, f"the cluster secret (mode {mode:o}) is unreadable by the image's user: "
                       "give the pod an fsGroup and the file group read (0440)")
    shared = opt_values(args, "--shared-dir")
    if shared:
        mt, v = mount_of(c, vols, shared[0])
        claim = dig(v, "persistentVolumeClaim", "claimName") if v else None
        pvcs = {dig(d, "metadata", "name"): d for d in docs if d.get("kind") == "PersistentVolumeClaim"}
        if claim is None:
            bad(w, f"--shared-dir {shared[0]} is not on a persistentVolumeClaim")
        elif claim not in pvcs:
            bad(w, f"claim {claim} of --shared-dir is not defined in {where}")
        else:
            if "ReadWriteMany" not in (dig(pvcs[claim], "spec", "accessModes") or []):
                bad(w, f"claim {claim} of --shared-dir must be ReadWriteMany (every pod mounts it)")
            if parse_quantity(dig(pvcs[claim], "spec", "resources", "requests", "storage")) is None:
                bad(w, f"claim {claim} requests no storage")
            if mt.get("readOnly"):
                bad(w, f"the shared volume holding {shared[0]} is mounted read-only")
        if not any(under(shared[0], r) for r in opt_values(args, "--allow-root")):
            bad(w, f"--shared-dir {shared[0]} is not an --allow-root (snapshots there are refused)")
        data = opt_values(args, "--data")
        if data and (under(data[0], shared[0]) or under(shared[0], data[0])):
            bad(w, f"--data {data[0]} and --shared-dir {shared[0]} overlap")
    # the kubelet checks runAsNonRoot against a numeric user only (the image's USER is a name)
    psc, csc = spec.get("securityContext") or {}, c.get("securityContext") or {}
    if (csc.get("runAsNonRoot", psc.get("runAsNonRoot")) and
            not isinstance(csc.get("runAsUser", psc.get("runAsUser")), int)):
        bad(w, "runAsNonRoot needs a numeric runAsUser (the image names its user thaw, uid 10001)")
    lease = opt_values(args, "--node-lease")
    if lease and (not re.fullmatch(r"\d+", lease[0]) or int(lease[0]) < 600):
        bad(w, f"--node-lease {lease[0]!r} must be an integer of milliseconds, at least 600")
    # database connections: a registry connection (with LISTEN) and a job-lease one per pod,
    # plus room for the CLI and the operator
    mc = dig(pg, "spec", "postgresql", "parameters", "max_connections")
    ms = ann.get("autoscaling.knative.dev/max-scale")
    if mc is not None and ms and re.fullmatch(r"\d+", str(ms)):
        if not re.fullmatch(r"\d+", str(mc)) or int(mc) < 2 * int(ms) + 10:
            bad(pgw, f"max_connections {mc!r} is below 2 per pod x max-scale {ms} + 10")


def cmd_cluster(where):
    check_cluster(where, load_cluster(where))


def serve_flags(where):
    """the options (--x) the Service in where (file or kustomization directory) gives thaw serve"""
    docs = load_cluster(where)
    out = []
    for d in docs:
        if d.get("kind") == "Service" and str(d.get("apiVersion", "")).startswith("serving.knative.dev/"):
            for a in dig(d, "spec", "template", "spec", "containers", 0, "args") or []:
                if re.fullmatch(r"--[a-z][a-z0-9-]*", str(a)) and a not in out:
                    out.append(a)
    return out


def secret_fed_option(where):
    """the serve option whose value is an env var from a secretKeyRef (the registry URL)"""
    for d in load_cluster(where):
        if d.get("kind") != "Service":
            continue
        c = dig(d, "spec", "template", "spec", "containers", 0) or {}
        env = {e.get("name"): e for e in (c.get("env") or [])}
        args = [str(a) for a in (c.get("args") or [])]
        for i in range(len(args) - 1):
            var = env_var_of(args[i + 1])
            if var and dig(env.get(var), "valueFrom", "secretKeyRef"):
                return args[i]
    return None


def cmd_flags(helpfile, single, cluster):
    """every option the manifests give thaw serve is one `thaw serve --help` (helpfile) lists.
    Exit 3 instead of 1 when the binary predates clusters: every option it lacks is one only
    the cluster manifest uses, and among them is the option that takes the shared registry's
    URL (the one the manifest feeds from a Secret)."""
    text = open(helpfile).read()
    known = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text))
    if "--data" not in known:
        bad(helpfile, "does not look like `thaw serve --help` (no --data)")
        return 1
    base = [f for w in single for f in serve_flags(w)]
    clus = [f for f in serve_flags(cluster) if f not in base]
    missing = [f for f in base + clus if f not in known]
    for f in dict.fromkeys(missing):
        bad(helpfile, f"{f} is given to thaw serve in deploy/knative but this thaw does not know it")
    reg = secret_fed_option(cluster)
    if missing and all(f in clus for f in missing) and reg is not None and reg in missing:
        return 3
    return 1 if missing else 0


def cmd_args(path, subs):
    """prints the Knative container's args after serve, one per line, without --data DIR.
    path: a manifest or a kustomization directory. subs: NAME=VALUE replaces $(NAME) (an env
    var Kubernetes expands); /PATH=VALUE replaces a leading /PATH (a mount point); --OPT=VALUE
    replaces the value of option --OPT."""
    svc = [d for d in load_cluster(path) if d.get("kind") == "Service"]
    args = [str(a) for a in (dig(svc[0] if svc else {}, "spec", "template", "spec", "containers", 0,
                                 "args") or [])]
    if not args or args[0] != "serve":
        bad(path, "no container args starting with serve")
        return
    out, i = [], 1
    while i < len(args):
        if args[i] == "--data":
            i += 2
            continue
        a = args[i]
        for sub in subs:
            k, _, v = sub.partition("=")
            if k.startswith("--"):
                if args[i - 1] == k:
                    a = v
            elif k.startswith("/"):
                if under(a, k):
                    a = v + a[len(k.rstrip("/")):]
            else:
                a = a.replace(f"$({k})", v)
        if re.search(r"\$\([A-Za-z_]\w*\)", a):
            bad(path, f"argument {a!r} names a variable no substitution gave")
        out.append(a)
        i += 1
    if not problems:
        print("\n".join(out))


def cmd_yaml(files):
    for f in files:
        try:
            if not load_all(f):
                bad(f, "empty YAML")
        except yaml.YAMLError as e:  # noqa: load_all exits 2 first when yaml is missing
            bad(f, f"does not parse: {e}")


# --- Dockerfile ----------------------------------------------------------------------------

def cmd_dockerfile(path):
    lines, cur = [], ""
    for raw in open(path):
        s = raw.rstrip("\n")
        if not cur and (not s.strip() or s.lstrip().startswith("#")):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        lines.append((cur + s).strip())
        cur = ""
    instr = [(l.split(None, 1)[0].upper(), l.split(None, 1)[1] if " " in l else "") for l in lines]
    args = {}
    for op, rest in instr:
        if op == "ARG" and "=" in rest:
            k, v = rest.split("=", 1)
            args.setdefault(k.strip(), v.strip())

    def expand(s):
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), s)

    stages = []  # [name, base, [(op, rest)]]
    for op, rest in instr:
        if op == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append([name, expand(parts[0]), []])
        elif stages:
            stages[-1][2].append((op, rest))
        elif op != "ARG":
            bad(path, f"{op} before the first FROM")
    if len(stages) < 2:
        bad(path, f"expected a multi-stage build (>= 2 FROM), found {len(stages)}")
        return
    names = [s[0] for s in stages]
    for name, base, body in stages:
        if not re.fullmatch(r"nvidia/cuda:[0-9.]+-(devel|runtime|base)-[a-z0-9.]+", base):
            bad(path, f"stage {name}: base {base} is not an nvidia/cuda image")
    final = stages[-1]
    if "-runtime-" not in final[1]:
        bad(path, f"final stage must be on a CUDA runtime base, is {final[1]}")
    build = [s for s in stages[:-1] if any(op == "RUN" and re.search(r"\bmake\b.*\bCUDA=1\b", r)
                                          for op, r in s[2])]
    if not build:
        bad(path, "no stage runs make CUDA=1")
    elif "-devel-" not in build[0][1]:
        bad(path, "the stage running make CUDA=1 needs a CUDA devel base (nvcc)")
    for name, base, body in stages:
        for op, rest in body:
            if op == "RUN" and re.search(r"\b(curl|wget|pip3?|npm|git clone|go get)\b", rest):
                bad(path, f"stage {name}: RUN downloads outside the package manager: {rest[:60]}")
            if op == "ADD" and re.search(r"https?://", rest):
                bad(path, f"stage {name}: ADD from a URL")
    pkgs = " ".join(r for n, b, body in stages for op, r in body if op == "RUN" and "apt-get install" in r)
    need = ["libuv1-dev", "node-llhttp", "libzstd-dev", "liburing-dev", "libxxhash-dev",
            "libsqlite3-dev", "libjansson-dev", "libsodium-dev", "zlib1g-dev"]
    for p in need:
        if p not in pkgs.split():
            bad(path, f"build dependency {p} is not installed with apt-get")
    copies = [r for op, r in final[2] if op == "COPY"]
    if not any(re.search(r"--from=(\S+)", r) and re.search(r"--from=(\S+)", r).group(1) in names
               and "build-cuda/thaw" in r for r in copies):
        bad(path, "final stage does not COPY build-cuda/thaw from the build stage")
    ep = [r for op, r in final[2] if op == "ENTRYPOINT"]
    cmd = [r for op, r in final[2] if op == "CMD"]

    def words(s):
        s = s.strip()
        if s.startswith("["):
            return json.loads(s)
        return s.split()
    argv = (words(ep[-1]) if ep else []) + (words(cmd[-1]) if cmd else [])
    if not argv or os.path.basename(argv[0]) != "thaw" or "serve" not in argv[1:2]:
        bad(path, f"ENTRYPOINT/CMD must run thaw serve, runs {argv}")
    if "--port" in argv:
        bad(path, "ENTRYPOINT/CMD sets --port: thaw must listen on $PORT")
    sig = [r for op, r in final[2] if op == "STOPSIGNAL"]
    if sig and sig[-1].strip() not in ("SIGTERM", "15"):
        bad(path, f"STOPSIGNAL must be SIGTERM (thaw drains on it), is {sig[-1]}")


# --- systemd -------------------------------------------------------------------------------

def cmd_systemd(path):
    kv, multi = {}, {}
    for raw in open(path):
        s = raw.strip()
        if s and not s.startswith(("#", ";", "[")) and "=" in s:
            k, v = s.split("=", 1)
            kv[k.strip()] = v.strip()
            multi.setdefault(k.strip(), []).append(v.strip())
    es = kv.get("ExecStart", "").split()
    if len(es) < 2 or os.path.basename(es[0]) != "thaw" or es[1] != "serve":
        bad(path, f"ExecStart must run thaw serve, is {kv.get('ExecStart')!r}")
    drain = 30.0
    if "--drain-timeout" in es:
        drain = float(es[es.index("--drain-timeout") + 1])
    stop = parse_seconds(kv.get("TimeoutStopSec", "90"))
    if stop is None or stop <= drain:
        bad(path, f"TimeoutStopSec ({kv.get('TimeoutStopSec')}) must be above --drain-timeout ({drain})")
    if kv.get("KillSignal", "SIGTERM") not in ("SIGTERM", "15"):
        bad(path, "KillSignal must be SIGTERM")
    check_systemd_hardening(path, kv, multi, es)


def yes(v):
    return str(v).lower() in ("yes", "true", "1", "on")


def check_systemd_hardening(path, kv, multi, es):
    """the daemon runs unprivileged, in a read-only system, with only its state directory
    writable, no capabilities, a system call filter, and only the devices a GPU needs"""
    user = kv.get("User", "")
    if not yes(kv.get("DynamicUser", "no")) and (not user or user in ("root", "0")):
        bad(path, "must run as a dedicated user (User=thaw or DynamicUser=yes), not root")
    state = kv.get("StateDirectory", "")
    data = es[es.index("--data") + 1] if "--data" in es and es.index("--data") + 1 < len(es) else None
    if not state:
        bad(path, "StateDirectory= must hold the data directory")
    elif data != f"/var/lib/{state}":
        bad(path, f"--data ({data}) must be the StateDirectory /var/lib/{state}")
    if kv.get("StateDirectoryMode", "0700") not in ("0700", "700"):
        bad(path, "StateDirectoryMode must be 0700")
    if kv.get("UMask", "") not in ("0077", "077"):
        bad(path, "UMask must be 0077 (files 0600, directories 0700)")
    for k in ("NoNewPrivileges", "PrivateTmp", "ProtectKernelTunables", "ProtectKernelModules",
              "ProtectControlGroups", "RestrictSUIDSGID", "LockPersonality", "RestrictNamespaces"):
        if not yes(kv.get(k, "no")):
            bad(path, f"{k}=yes is required")
    if kv.get("ProtectSystem") != "strict":
        bad(path, "ProtectSystem=strict is required")
    if kv.get("ProtectHome") not in ("yes", "true", "read-only", "tmpfs"):
        bad(path, "ProtectHome must be yes (or read-only/tmpfs)")
    if "CapabilityBoundingSet" not in kv or kv["CapabilityBoundingSet"] not in ("", "~"):
        bad(path, "CapabilityBoundingSet= must be empty (no capabilities)")
    if kv.get("AmbientCapabilities", ""):
        bad(path, "AmbientCapabilities must be empty")
    filt = " ".join(v for v in multi.get("SystemCallFilter", []) if not v.startswith("~"))
    if "@system-service" not in filt.split():
        bad(path, "SystemCallFilter=@system-service is required")
    fams = kv.get("RestrictAddressFamilies", "").split()
    if not fams or not {"AF_INET", "AF_INET6"} <= set(fams) or set(fams) - {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}:
        bad(path, f"RestrictAddressFamilies must allow AF_INET and AF_INET6 and little else, is {fams}")
    if yes(kv.get("PrivateDevices", "no")):
        bad(path, "PrivateDevices=yes hides /dev/nvidia*: use DevicePolicy=closed with DeviceAllow")
    if kv.get("DevicePolicy") not in ("closed", "strict"):
        bad(path, "DevicePolicy=closed (with DeviceAllow for the NVIDIA devices) is required")
    allow = " ".join(multi.get("DeviceAllow", []))
    for dev in ("char-nvidia-frontend", "char-nvidia-uvm"):
        if dev not in allow:
            bad(path, f"DeviceAllow={dev} rw is needed for the GPUs")
    if yes(kv.get("MemoryDenyWriteExecute", "no")):
        bad(path, "MemoryDenyWriteExecute=yes breaks CUDA initialization (W+X mappings of the driver)")
    nofile = parse_quantity(kv.get("LimitNOFILE", "0").split(":")[0])
    if nofile is None or nofile < 65536:
        bad(path, "LimitNOFILE must be at least 65536")
    if kv.get("LimitMEMLOCK") != "infinity":
        bad(path, "LimitMEMLOCK=infinity is needed for pinned staging buffers")


# --- PromQL --------------------------------------------------------------------------------

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
            "and", "or", "unless", "inf", "nan", "atan2"}
TARGET_LABELS = {"instance", "job", "namespace", "pod", "container", "service", "le",
                 "__name__", "node"}


def parse_scrape(path):
    """family name -> (type, set of label names seen)"""
    fams, types = {}, {}
    for line in open(path):
        line = line.rstrip("\n")
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m:
            types[m.group(1)] = m.group(2)
            fams.setdefault(m.group(1), set())
            continue
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s", line)
        if not m:
            continue
        name = m.group(1)
        fam = name
        for suf in ("_bucket", "_sum", "_count"):
            if name.endswith(suf) and types.get(name[: -len(suf)]) == "histogram":
                fam = name[: -len(suf)]
        labels = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', m.group(3) or ""))
        fams.setdefault(fam, set()).update(labels)
    return fams, types


def source_families(srcdir):
    fams = {}
    for f in glob.glob(os.path.join(srcdir, "**", "*.c"), recursive=True):
        text = open(f).read()
        for m in re.finditer(r'rt_metrics_family\s*\([^,]*,\s*"([a-z_:][a-z0-9_:]*)"\s*,\s*(RT_METRIC_\w+)',
                             text):
            fams[m.group(1)] = m.group(2).replace("RT_METRIC_", "").lower()
    return fams


def strip_strings(e):
    return re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', e)


def promql_refs(expr):
    """-> (metric names, [(metric, label names in its selector)], grouping label names)"""
    e = strip_strings(expr)
    e = re.sub(r"\[[^\]]*\]", "", e)                       # range/subquery durations
    selectors = []
    for m in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}", e):
        labels = re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", m.group(2))
        selectors.append((m.group(1), labels))
    e = re.sub(r"\{[^}]*\}", " ", e)
    grouping = []
    for m in re.finditer(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", e):
        grouping += [x.strip() for x in m.group(2).split(",") if x.strip()]
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = []
    for m in re.finditer(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", e):
        w = m.group(1)
        if m.group(2) or w.lower() in KEYWORDS:
            continue
        names.append(w)
    return names, selectors, grouping


def exprs_in(path):
    out = []
    if path.endswith(".json"):
        d = json.load(open(path))

        def walk(o, where):
            if isinstance(o, dict):
                if isinstance(o.get("expr"), str):
                    out.append((where + "/" + str(o.get("refId", "?")), o["expr"]))
                for k, v in o.items():
                    if k == "query" and isinstance(v, str) and v.startswith("label_values("):
                        m = re.match(r"label_values\(\s*([a-zA-Z_:][\w:]*)", v)
                        if m:
                            out.append((where + "/variable", m.group(1)))
                    walk(v, where + "/" + str(o.get("title") or o.get("name") or k) if k == "targets" else where)
            elif isinstance(o, list):
                for x in o:
                    walk(x, where)
        walk(d, path)
    else:
        for doc in load_all(path):
            for g in doc.get("groups") or []:
                for r in g.get("rules") or []:
                    out.append((f"{path}: {r.get('alert') or r.get('record')}", r.get("expr", "")))
    return out


def cmd_promql(scrape, srcdir, files):
    try:
        scraped, stypes = parse_scrape(scrape)
    except OSError as e:
        bad(scrape, f"cannot read the scrape: {e}")
        return
    known = dict(source_families(srcdir))
    for f, t in stypes.items():
        known.setdefault(f, t)
    if not any(f.startswith("thaw_") for f in scraped):
        bad(scrape, "the scrape holds no thaw_ metric families (not a thaw /metrics answer?)")
    if not known:
        bad(scrape, "no metric families found in the scrape or the sources")
    valid = {}
    for fam, t in known.items():
        if t == "histogram":
            for suf in ("_bucket", "_sum", "_count"):
                valid[fam + suf] = fam
        else:
            valid[fam] = fam
    n = 0
    for f in files:
        for where, expr in exprs_in(f):
            n += 1
            names, selectors, grouping = promql_refs(expr)
            if not names:
                bad(where, f"expression names no metric: {expr}")
            fams = set()
            for name in names:
                if name not in valid:
                    hint = " (a histogram: use _bucket/_sum/_count)" if known.get(name) == "histogram" else ""
                    bad(where, f"metric {name} is not exported by thaw{hint}")
                else:
                    fams.add(valid[name])
            avail = set(TARGET_LABELS)
            for fam in fams:
                avail |= scraped.get(fam, set())
            for metric, labels in selectors:
                fam = valid.get(metric or "")
                if fam is None or fam not in scraped:
                    continue   # not seen in the scrape: labels unknown
                for lab in labels:
                    if lab not in scraped[fam] | TARGET_LABELS:
                        bad(where, f"{metric} has no label {lab} (has {sorted(scraped[fam])})")
            if all(fam in scraped for fam in fams):
                for lab in grouping:
                    if lab not in avail:
                        bad(where, f"groups by {lab}, which none of {sorted(fams)} carries")
    if n == 0:
        bad(" ".join(files), "no PromQL expressions found")


# --- Grafana dashboard and alert coverage ---------------------------------------------------

def cmd_dashboard(path):
    d = json.load(open(path))
    for k in ("title", "uid", "panels", "schemaVersion"):
        if k not in d:
            bad(path, f"missing {k}")
    exprs = " ".join(e for _, e in exprs_in(path))
    need = {
        "calls by function": r"sum by \(function\) \(rate\(thaw_invocations_total",
        "errors by function": r"thaw_invocations_total\{[^}]*code",
        "latency percentiles": r"histogram_quantile\(0\.99, sum by \(function, le\) \(rate\(thaw_invocation_duration_seconds_bucket",
        "cold starts by tier": r"by \([^)]*tier[^)]*\) \(rate\(thaw_cold_starts_total",
        "cold start duration": r"histogram_quantile\([^,]+, sum by \([^)]*le\) \(rate\(thaw_cold_start_duration_seconds_bucket",
        "GPU memory by device": r"by \(device\) \(thaw_device_memory_bytes",
        "lane busy": r"thaw_lane_busy_ratio",
        "jobs": r"thaw_jobs\b",
        "preemptions": r"thaw_job_preemptions_total",
    }
    for what, rx in need.items():
        if not re.search(rx, exprs):
            bad(path, f"no panel shows {what}")
    ids, seen = [], set()

    def walk(ps):
        for p in ps:
            ids.append(p.get("id"))
            if p.get("type") != "row":
                if not p.get("title"):
                    bad(path, f"panel {p.get('id')} has no title")
                if not p.get("targets"):
                    bad(path, f"panel {p.get('title')} has no targets")
                for t in p.get("targets") or []:
                    if not t.get("refId"):
                        bad(path, f"panel {p.get('title')}: target without refId")
            gp = p.get("gridPos") or {}
            if not all(isinstance(gp.get(k), int) for k in ("h", "w", "x", "y")) or gp.get("x", 0) + gp.get("w", 0) > 24:
                bad(path, f"panel {p.get('title')}: bad gridPos {gp}")
            walk(p.get("panels") or [])
    walk(d.get("panels") or [])
    for i in ids:
        if i in seen or not isinstance(i, int):
            bad(path, f"panel id {i!r} duplicated or not an integer")
        seen.add(i)


def cmd_alerts(path):
    rules = [r for doc in load_all(path) for g in doc.get("groups") or [] for r in g.get("rules") or []]
    sev = set()
    for r in rules:
        name = r.get("alert")
        if not name:
            continue
        s = dig(r, "labels", "severity")
        sev.add(s)
        if s not in ("critical", "warning"):
            bad(path, f"{name}: severity must be critical or warning, is {s!r}")
        if not dig(r, "annotations", "summary"):
            bad(path, f"{name}: no summary annotation")
    for s in ("critical", "warning"):
        if s not in sev:
            bad(path, f"no {s} rule")
    text = " ".join(strip_strings(r.get("expr", "")) + " " + r.get("expr", "") for r in rules)
    need = {
        "error ratio > 1%": r'thaw_invocations_total\{code=~"5\.\."\}[\s\S]*> 0\.01\b',
        "p99 latency > 5 s": r"histogram_quantile\(0\.99,[\s\S]*thaw_invocation_duration_seconds_bucket[\s\S]*> 5\b",
        "GPU memory > 90%": r'thaw_device_memory_bytes\{type="used"[\s\S]*> 0\.9\b',
        "cold start p99 over target": r"histogram_quantile\(0\.99,[\s\S]*thaw_cold_start_duration_seconds_bucket",
        "jobs failing": r'thaw_jobs\{state="failed"\}',
    }
    for what, rx in need.items():
        if not re.search(rx, text):
            bad(path, f"no rule for {what}")


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, rest = argv[1], argv[2:]
    if cmd == "knative":
        cmd_knative(rest)
    elif cmd == "cluster":
        cmd_cluster(rest[0])
    elif cmd == "flags" and len(rest) >= 3:
        rc = cmd_flags(rest[0], rest[1:-1], rest[-1])
        for p in problems:
            print(p)
        return rc
    elif cmd == "args":
        cmd_args(rest[0], rest[1:])
    elif cmd == "yaml":
        cmd_yaml(rest)
    elif cmd == "dockerfile":
        cmd_dockerfile(rest[0])
    elif cmd == "systemd":
        cmd_systemd(rest[0])
    elif cmd == "promql" and len(rest) >= 3:
        cmd_promql(rest[0], rest[1], rest[2:])
    elif cmd == "dashboard":
        cmd_dashboard(rest[0])
    elif cmd == "alerts":
        cmd_alerts(rest[0])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
