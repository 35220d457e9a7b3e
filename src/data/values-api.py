#!/usr/bin/env python3
"""Derives, for every Istio minor, the values each chart meshplan writes accepts, and writes
them to src/data/values-api.json, which meshplan embeds to check carried values
(`istio.values`, `istio.baseValues`, `gateways[].values`) against each hop's target.

    python3 src/data/values-api.py /path/to/istio/istio.git /path/to/istio/api.git \
        > src/data/values-api.json

Both arguments are clones (bare is fine) of github.com/istio/istio and github.com/istio/api
with their tags; PyYAML must be installed. For each minor the newest released patch tag of
istio/istio is read, and istio/api at the version its go.mod requires. Sources per chart:

- istiod: the `Values` message of the operator's values_types.proto (types), the chart's
  values.yaml (keys; from 1.24 under `_internal_defaults_do_not_set`, with the `pilot.*`
  fields also at the top level, as the chart flattened them) and every `.Values.x.y` path its
  templates read; `meshConfig` is istio/api's `MeshConfig` (`defaultConfig` is `ProxyConfig`).
- gateway: the chart's values.schema.json (1.12 and later).
- base, cni: the chart's values.yaml and the paths its templates read.

Types come only from the proto messages and the gateway schema; a key known only from a
values.yaml or a template is accepted with any value. Nodes are interned, so what does not
change between minors is stored once.

Node: {"t": [kinds], "f": {key: node}, "c": closed, "v": map value node, "i": list item node,
"e": enum names}; kinds: any, bool, int (JSON Schema: a number), pint (protobuf JSON: a number
or a numeric string), num, pnum, str, dur (a Go duration), obj, list, null. References are
indexes into "nodes". "removalNotes": chart -> minor -> dotted key -> the istio/istio release
note (`releasenotes/notes/<file>@<minor it shipped in>`) that announces the key's removal.
"""
import json
import re
import subprocess
import sys

import yaml

ISTIO = sys.argv[1] if len(sys.argv) > 1 else "."
API = sys.argv[2] if len(sys.argv) > 2 else "../api"
FIRST_MINOR = 8
ISTIOD = "manifests/charts/istio-control/istio-discovery"


def git(repo, *args):
    r = subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else ""


def exists(tag, path):
    return subprocess.run(["git", "-C", ISTIO, "cat-file", "-e", f"{tag}:{path}"], capture_output=True).returncode == 0


def newest_patches():
    best = {}
    for t in git(ISTIO, "tag").split():
        m = re.fullmatch(r"1\.(\d+)\.(\d+)", t)
        if m and int(m.group(1)) >= FIRST_MINOR:
            minor, patch = int(m.group(1)), int(m.group(2))
            if patch >= best.get(minor, (-1, ""))[0]:
                best[minor] = (patch, t)
    return [(f"1.{m}", best[m][1]) for m in sorted(best)]


# ---------------------------------------------------------------------------------------------
# A small proto3 reader: messages, enums, fields, maps, oneofs, nested types, imports.

TOKEN = re.compile(r'\s+|//[^\n]*|/\*.*?\*/|("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')|([A-Za-z_][\w.]*|\.[A-Za-z_][\w.]*)|(-?\d[\w.+-]*)|(.)', re.S)


def tokens(text):
    out = []
    for m in TOKEN.finditer(text):
        s, ident, num, sym = m.groups()
        tok = s or ident or num or sym
        if tok:
            out.append(tok)
    return out


class Proto:
    def __init__(self):
        self.messages = {}  # full name -> [(name, json_name, label, type, scope)] ; label: '', 'repeated', 'map:K'
        self.enums = {}  # full name -> [value names]

    def parse(self, text):
        toks = tokens(text)
        pkg = ""
        imports = []
        i = 0

        def skip_statement(i):
            depth = 0
            while i < len(toks):
                t = toks[i]
                i += 1
                if t == "{":
                    depth += 1
                elif t == "}":
                    depth -= 1
                    if depth == 0:
                        return i
                elif t == ";" and depth == 0:
                    return i
            return i

        def parse_options(i):
            # at '[': returns (options, i after ']')
            opts = {}
            depth = 0
            key = None
            while i < len(toks):
                t = toks[i]
                i += 1
                if t == "[":
                    depth += 1
                elif t == "]":
                    depth -= 1
                    if depth == 0:
                        return opts, i
                elif t == "=" and key is not None and i < len(toks):
                    opts[key] = toks[i].strip("\"'")
                    i += 1
                    key = None
                elif t not in (",", "(", ")"):
                    key = t
            return opts, i

        def body(i, scope, fields):
            # parses until the matching '}' of a message or oneof body
            while i < len(toks) and toks[i] != "}":
                t = toks[i]
                if t in ("message", "enum"):
                    i = decl(i, scope)
                elif t == "oneof":
                    i = body(i + 3, scope, fields) + 1
                elif t in ("option", "reserved", "extensions", "extend"):
                    i = skip_statement(i)
                elif t == ";":
                    i += 1
                else:
                    label = ""
                    if t in ("repeated", "optional", "required"):
                        label = "repeated" if t == "repeated" else ""
                        i += 1
                    if toks[i] == "map":
                        # map < K , V > name = N
                        key_type, value_type = toks[i + 2], toks[i + 4]
                        name = toks[i + 6]
                        label, typ = "map:" + key_type, value_type
                        i += 9
                    else:
                        typ, name = toks[i], toks[i + 1]
                        i += 4
                    opts = {}
                    if i < len(toks) and toks[i] == "[":
                        opts, i = parse_options(i)
                    if i < len(toks) and toks[i] == ";":
                        i += 1
                    fields.append((name, opts.get("json_name", camel(name)), label, typ, scope))
            return i

        def decl(i, scope):
            kind, name = toks[i], toks[i + 1]
            full = f"{scope}.{name}" if scope else name
            i += 3  # kind name {
            if kind == "message":
                fields = []
                i = body(i, full, fields)
                self.messages[full] = fields
                return i + 1
            values = []
            while i < len(toks) and toks[i] != "}":
                if toks[i] in ("option", "reserved"):
                    i = skip_statement(i)
                    continue
                if toks[i] == ";":
                    i += 1
                    continue
                values.append(toks[i])
                i += 3
                if toks[i] == "[":
                    _, i = parse_options(i)
                if toks[i] == ";":
                    i += 1
            self.enums[full] = values
            return i + 1

        while i < len(toks):
            t = toks[i]
            if t == "package":
                pkg = toks[i + 1]
                i += 3
            elif t == "import":
                j = i + 1
                if toks[j] in ("public", "weak"):
                    j += 1
                imports.append(toks[j].strip("\"'"))
                i = skip_statement(i)
            elif t in ("message", "enum"):
                i = decl(i, pkg)
            else:
                i = skip_statement(i)
        return imports

    def resolve(self, typ, scope):
        if typ.startswith("."):
            return typ[1:]
        parts = scope.split(".") if scope else []
        while True:
            cand = ".".join(parts + [typ])
            if cand in self.messages or cand in self.enums:
                return cand
            if not parts:
                return typ
            parts.pop()


def camel(name):
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


SCALARS = {
    "bool": "bool", "string": "str", "bytes": "str",
    "int32": "pint", "int64": "pint", "uint32": "pint", "uint64": "pint",
    "sint32": "pint", "sint64": "pint", "fixed32": "pint", "fixed64": "pint",
    "sfixed32": "pint", "sfixed64": "pint", "double": "pnum", "float": "pnum",
}
WELL_KNOWN = {
    "google.protobuf.BoolValue": "bool", "google.protobuf.StringValue": "str",
    "google.protobuf.BytesValue": "str", "google.protobuf.Int32Value": "pint",
    "google.protobuf.Int64Value": "pint", "google.protobuf.UInt32Value": "pint",
    "google.protobuf.UInt64Value": "pint", "google.protobuf.DoubleValue": "pnum",
    "google.protobuf.FloatValue": "pnum", "google.protobuf.Duration": "dur",
    "google.protobuf.Timestamp": "str", "google.protobuf.FieldMask": "str",
}


class Nodes:
    def __init__(self):
        self.nodes = []
        self.index = {}

    def add(self, node):
        key = json.dumps(node, sort_keys=True, separators=(",", ":"))
        if key not in self.index:
            self.index[key] = len(self.nodes)
            self.nodes.append(node)
        return self.index[key]


def any_node():
    return {"t": ["any"]}


# values_types.proto stands in for Go types it cannot express with empty messages; the
# `// GOTYPE:` comment above each says what the JSON holds.
GO_TYPES = {
    "TypeMapStringInterface": lambda: {"t": ["obj"]},
    "TypeSliceOfMapStringInterface": lambda: {"t": ["list"]},
    "TypeIntOrStringForPB": lambda: {"t": ["pint", "str"]},
    "IntOrString": lambda: {"t": ["pint", "str"]},
    "TypeSliceString": lambda: {"t": ["list"], "i": {"t": ["str"]}},
    "TypeInterface": any_node,
}


def proto_tree(proto, full, stack=(), use_json=True):
    """The node tree of a message, as plain dicts (interned later)."""
    if full in WELL_KNOWN:
        return {"t": [WELL_KNOWN[full]]}
    if full in proto.enums:
        return {"t": ["str", "pint"], "e": proto.enums[full]}
    if full.rsplit(".", 1)[-1] in GO_TYPES and full in proto.messages:
        return GO_TYPES[full.rsplit(".", 1)[-1]]()
    if full not in proto.messages or full in stack or not proto.messages[full]:
        return any_node()  # unknown (Kubernetes types, Struct, Value, Any), recursive or empty
    fields = {}
    for name, json_name, label, typ, scope in proto.messages[full]:
        if typ in SCALARS:
            node = {"t": [SCALARS[typ]]}
        else:
            node = proto_tree(proto, proto.resolve(typ, scope), stack + (full,), use_json)
        if label == "repeated":
            node = {"t": ["list"], "i": node}
        elif label.startswith("map:"):
            node = {"t": ["obj"], "v": node}
        fields[json_name if use_json else name] = node
    return {"t": ["obj"], "f": fields, "c": True}


def load_protos(read, roots):
    proto = Proto()
    seen = set()
    todo = list(roots)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        text = read(path)
        if not text:
            continue
        for imp in proto.parse(text):
            if not imp.startswith(("google/", "gogoproto/", "k8s.io/")):
                todo.append(imp)
    return proto


# ---------------------------------------------------------------------------------------------
# Chart keys: values.yaml and the `.Values.` paths templates read.

VALUES_PATH = re.compile(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
# `($.Values).profile`, `($.Values.global).profile`: a path continued after parentheses (the
# charts' zzz_profile.yaml reads `profile` so, from 1.25).
VALUES_PAREN_PATH = re.compile(
    r"\(\$?\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)*)\)((?:\.[A-Za-z_][A-Za-z0-9_]*)+)"
)


def template_paths(tag, chart):
    paths = set()
    for sub in ("templates", "files"):
        for f in git(ISTIO, "ls-tree", "-r", "--name-only", f"{tag}:{chart}/{sub}").split():
            text = git(ISTIO, "show", f"{tag}:{chart}/{sub}/{f}")
            for m in VALUES_PATH.finditer(text):
                paths.add(tuple(m.group(1)[1:].split(".")))
            for m in VALUES_PAREN_PATH.finditer(text):
                paths.add(tuple((m.group(1) + m.group(2))[1:].split(".")))
    return sorted(paths)


def add_path(node, path):
    """Makes `path` known in `node` (an object whose keys are closed) without changing a type."""
    for i, key in enumerate(path):
        if "obj" not in node["t"] or "f" not in node:
            return
        if key not in node["f"]:
            node["f"][key] = any_node()
            return
        node = node["f"][key]


def add_keys(node, values):
    """Makes every key of a values.yaml mapping known in `node`."""
    if not isinstance(values, dict) or "f" not in node:
        return
    for key, value in values.items():
        key = str(key)
        if key not in node["f"]:
            # Known, with any value; its keys are recorded (not closed), so that a later
            # minor that drops one can say which minor still had it.
            node["f"][key] = {"t": ["any"], "f": {}} if isinstance(value, dict) and value else any_node()
        add_keys(node["f"][key], value)


def add_chart_keys(tree, values):
    """A chart's values.yaml keys: its defaults sit under `defaults` (1.21 to 1.23) or
    `_internal_defaults_do_not_set` (1.24 on) in some versions."""
    for wrapper in ("_internal_defaults_do_not_set", "defaults"):
        if isinstance(values.get(wrapper), dict):
            add_keys(tree, values.pop(wrapper))
    add_keys(tree, values)


def istiod_tree(minor, tag, api_read):
    path = next(
        p for p in ("operator/pkg/apis/values_types.proto", "operator/pkg/apis/istio/v1alpha1/values_types.proto")
        if exists(tag, p)
    )
    proto = Proto()
    proto.parse(git(ISTIO, "show", f"{tag}:{path}"))
    name = next(n for n in proto.messages if n == "Values" or n.endswith(".Values"))
    tree = proto_tree(proto, name, use_json=False)
    mesh = load_protos(api_read, ["mesh/v1alpha1/config.proto"])
    tree["f"]["meshConfig"] = proto_tree(mesh, "istio.mesh.v1alpha1.MeshConfig")
    values = yaml.safe_load(git(ISTIO, "show", f"{tag}:{ISTIOD}/values.yaml")) or {}
    if "_internal_defaults_do_not_set" in values:
        pilot = tree["f"].get("pilot", {})
        for key, node in pilot.get("f", {}).items():
            tree["f"].setdefault(key, node)
    add_chart_keys(tree, values)
    for p in template_paths(tag, ISTIOD):
        add_path(tree, p)
    return tree


def keys_tree(tag, chart):
    """A chart without a typed API: the keys its values.yaml and templates name."""
    tree = {"t": ["obj"], "f": {}, "c": True}
    add_chart_keys(tree, yaml.safe_load(git(ISTIO, "show", f"{tag}:{chart}/values.yaml")) or {})
    for p in template_paths(tag, chart):
        add_path(tree, p)
    return tree


def cni_tree(tag):
    chart = "manifests/charts/istio-cni"
    if not exists(tag, f"{chart}/values.yaml"):
        return None
    tree = keys_tree(tag, chart)
    tree["f"].setdefault("global", any_node())
    # From 1.24 the chart copies everything under `cni` to the top level
    # (templates/zzy_descope_legacy.yaml), so `cni.<key>` takes what the top level takes.
    legacy = git(ISTIO, "show", f"{tag}:{chart}/templates/zzy_descope_legacy.yaml")
    if 'index $.Values "cni"' in legacy:
        tree["f"]["cni"] = {"t": ["obj"], "f": {k: v for k, v in tree["f"].items() if k not in ("cni", "_internal_defaults_do_not_set", "defaults")}, "c": True}
    return tree


def base_tree(tag):
    tree = keys_tree(tag, "manifests/charts/base")
    # Keys every chart accepts: Helm's own, and what meshplan sets.
    for key in ("global", "defaultRevision"):
        tree["f"].setdefault(key, any_node())
    return tree


SCHEMA_KINDS = {"boolean": "bool", "integer": "int", "number": "num", "string": "str",
                "object": "obj", "array": "list", "null": "null"}


def schema_tree(schema, root, depth=0):
    if depth > 20:
        return any_node()
    if "$ref" in schema and schema["$ref"].startswith("#/"):
        target = root
        for part in schema["$ref"][2:].split("/"):
            target = target.get(part, {})
        merged = {k: v for k, v in schema.items() if k != "$ref"}
        # additionalProperties beside $ref is the quirk of istio/istio#57354, not the intent.
        merged.pop("additionalProperties", None)
        return schema_tree({**target, **merged}, root, depth + 1)
    types = schema.get("type")
    if types is None:
        kinds = ["any"]
    else:
        kinds = sorted({SCHEMA_KINDS[t] for t in ([types] if isinstance(types, str) else types)})
    node = {"t": kinds}
    if "enum" in schema:
        node["e"] = schema["enum"]
    if "properties" in schema:
        node["f"] = {k: schema_tree(v, root, depth + 1) for k, v in schema["properties"].items()}
    extra = schema.get("additionalProperties")
    if extra is False:
        node["c"] = True
    elif isinstance(extra, dict):
        node["v"] = schema_tree(extra, root, depth + 1)
    if isinstance(schema.get("items"), dict):
        node["i"] = schema_tree(schema["items"], root, depth + 1)
    return node


def gateway_tree(tag):
    text = git(ISTIO, "show", f"{tag}:manifests/charts/gateway/values.schema.json")
    if not text:
        return None
    schema = json.loads(text)
    tree = schema_tree(schema, schema)
    # Keys Helm's --set of a subchart parent would add; accepted by every version.
    tree.setdefault("f", {}).setdefault("global", any_node())
    return tree


def api_ref(tag):
    gomod = git(ISTIO, "show", f"{tag}:go.mod")
    m = re.search(r"^\s*istio\.io/api (v\S+)", gomod, re.M)
    version = m.group(1)
    h = re.search(r"-([0-9a-f]{12})$", version)
    return h.group(1) if h else version


def without_internal(tree):
    """`_internal_defaults_do_not_set` holds a chart's defaults and `defaults` makes a 1.24+ chart
    fail: neither is for users, though templates read them."""
    for key in ("_internal_defaults_do_not_set", "defaults"):
        tree.get("f", {}).pop(key, None)
    return tree


def intern(nodes, node):
    out = {"t": node["t"]}
    if "e" in node:
        out["e"] = node["e"]
    if "f" in node:
        out["f"] = {k: intern(nodes, v) for k, v in sorted(node["f"].items())}
    if node.get("c"):
        out["c"] = True
    if "v" in node:
        out["v"] = intern(nodes, node["v"])
    if "i" in node:
        out["i"] = intern(nodes, node["i"])
    return nodes.add(out)


def key_paths(nodes, ref, prefix=(), depth=0):
    """Every path of keys under a node, five levels deep."""
    out = set()
    if depth > 5:
        return out
    for key, child in nodes.nodes[ref].get("f", {}).items():
        out.add(prefix + (key,))
        out |= key_paths(nodes, child, prefix + (key,), depth + 1)
    return out


def notes(tag):
    return set(git(ISTIO, "ls-tree", "--name-only", f"{tag}:releasenotes/notes").split())


def removal_notes(nodes, minors, tags):
    """For each key a minor removed, the release note that says so: a note new in that minor
    or the next that names the key (at least its last two segments) and says "remov"."""
    out = {}
    order = list(minors)
    note_sets = {m: notes(tags[m]) for m in order}
    for chart in ("istiod", "base", "gateway", "cni"):
        for i in range(1, len(order)):
            before, now = order[i - 1], order[i]
            if chart not in minors[before] or chart not in minors[now]:
                continue
            gone = key_paths(nodes, minors[before][chart]) - key_paths(nodes, minors[now][chart])
            gone = {p for p in gone if p[:-1] not in gone}  # the outermost removed key only
            later = order[i : i + 2]
            for path in sorted(gone):
                dotted = ".".join(path)
                found = None
                for m in later:
                    new = note_sets[m] - note_sets[before]
                    hits = git(ISTIO, "grep", "-l", "-i", "-F", path[-1], tags[m], "--", "releasenotes/notes").split()
                    for hit in sorted(hits):
                        name = hit.split(":", 1)[1].rsplit("/", 1)[-1]
                        text = git(ISTIO, "show", hit).lower()
                        # The key's last two segments, as notes name them (`stackdriver.logging`).
                        named = len(path) > 1 and ".".join(path[-2:]).lower() in text
                        if name in new and "remov" in text and named:
                            found = f"releasenotes/notes/{name}@{m}"
                            break
                    if found:
                        break
                if found:
                    out.setdefault(chart, {}).setdefault(now, {})[dotted] = found
    return out


def main():
    nodes = Nodes()
    minors = {}
    tags = {}
    for minor, tag in newest_patches():
        tags[minor] = tag
        ref = api_ref(tag)
        commit = git(API, "rev-parse", "--verify", f"{ref}^{{commit}}").strip()
        if not commit:
            sys.exit(f"istio/api has no {ref} (required by istio/istio {tag}'s go.mod)")

        def api_read(path, commit=commit):
            return git(API, "show", f"{commit}:{path}")

        entry = {"from": tag, "api": ref}
        entry["istiod"] = intern(nodes, without_internal(istiod_tree(minor, tag, api_read)))
        entry["base"] = intern(nodes, without_internal(base_tree(tag)))
        gw = gateway_tree(tag)
        if gw is not None:
            entry["gateway"] = intern(nodes, without_internal(gw))
        cni = cni_tree(tag)
        if cni is not None:
            entry["cni"] = intern(nodes, without_internal(cni))
        minors[minor] = entry
        print(f"{minor}: {tag} (istio/api {ref})", file=sys.stderr)
    out = {
        "generated": "by src/data/values-api.py from istio/istio and istio/api; do not edit by hand",
        "minors": minors,
        "removalNotes": removal_notes(nodes, minors, tags),
        "nodes": nodes.nodes,
    }
    json.dump(out, sys.stdout, separators=(",", ":"), sort_keys=False)
    sys.stdout.write("\n")


main()
