#!/usr/bin/env bash
# tests/layering.sh [ROOT]: the house rule (README "Layout"): the source
# folders form a stack, bottom to top
#
#   core -> datasets -> lora -> trainer (with trainer/cpu) -> plugins -> cli
#
# and a file may include only headers of its own layer or of layers below it.
# Every quoted #include of every .c/.h under ROOT's layer folders is resolved
# (relative to the including file, then to ROOT, as the compiler's -I. does);
# an include of a file in a higher layer, or one that resolves to nothing, is
# printed as "FILE:LINE: ..." and makes the exit status 1.
#
# tests/layering.sh --objects BUILD_DIR: the same rule for symbols: every
# undefined pl_/cli_/cmd_ symbol of the object BUILD_DIR/<layer>/X.o of each
# source <layer>/X.c (run from the repository root) must be
# defined by an object of its own layer or a lower one (nm).
set -uo pipefail
# One python3 pass (the system's): spawning dirname/realpath per include made
# the shell version take seconds per run.
exec python3 - "$@" <<'PY'
import os, re, subprocess, sys
LAYERS = ["core", "datasets", "lora", "trainer", "plugins", "cli"]
def layer_of(rel):
    top = rel.split("/", 1)[0]
    return LAYERS.index(top) if top in LAYERS else -1
bad = 0
if len(sys.argv) > 1 and sys.argv[1] == "--objects":
    d = sys.argv[2] if len(sys.argv) > 2 else sys.exit("--objects BUILD_DIR")
    objs = []  # (layer, object) of each layer's current sources (not stale objects of moved files)
    for i, l in enumerate(LAYERS):
        for root, _, files in os.walk(l):
            for f in sorted(files):
                if f.endswith(".c"):
                    o = os.path.join(d, root, f[:-2] + ".o")
                    if os.path.isfile(o):
                        objs.append((i, o))
    objs.sort(key=lambda x: (x[0], x[1]))
    def nm_all(flag):  # {object: [lines]} from one nm run over every object (one run per object took seconds)
        out = {}
        if objs:
            res = subprocess.run(["nm", "-A", flag] + [o for _, o in objs], capture_output=True, text=True)
            for line in res.stdout.splitlines():
                o, _, rest = line.partition(":")  # "OBJECT:VALUE TYPE SYMBOL"; object paths here hold no ':'
                out.setdefault(o, []).append(rest)
        return out
    defined, undefined = nm_all("--defined-only"), nm_all("--undefined-only")
    defs = {}
    for i, o in objs:
        for line in defined.get(o, []):
            f = line.split()
            if len(f) == 3 and f[1] in "TDBRV":
                defs.setdefault(f[2], i)
    for i, o in objs:
        for line in undefined.get(o, []):
            sym = line.split()[-1]
            if re.match(r"(pl_|cli_|cmd_)", sym) and sym in defs and defs[sym] > i:
                print(f"{o[len(d) + 1:] if o.startswith(d + '/') else o}: uses {sym}, defined in {LAYERS[defs[sym]]}/ (above {LAYERS[i]}/)")
                bad = 1
    sys.exit(bad)
root = os.path.realpath(sys.argv[1] if len(sys.argv) > 1 else ".")
inc_re = re.compile(r'^\s*#\s*include\s*"([^"]+)"')
files = []
for l in LAYERS:
    if os.path.isdir(os.path.join(root, l)):
        for r, _, fs in os.walk(os.path.join(root, l)):
            files += [os.path.join(r, f) for f in fs if f.endswith((".c", ".h"))]
for f in sorted(files):
    rel = os.path.relpath(f, root)
    me = layer_of(rel)
    with open(f, errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            m = inc_re.match(line)
            if not m:
                continue
            inc = m.group(1)
            d = os.path.dirname(f)
            if os.path.exists(os.path.join(d, inc)):
                t = os.path.realpath(os.path.join(d, inc))
            elif os.path.exists(os.path.join(root, inc)):
                t = os.path.realpath(os.path.join(root, inc))
            else:
                print(f'{rel}:{n}: #include "{inc}" resolves to no file')
                bad = 1
                continue
            them = layer_of(os.path.relpath(t, root))
            if them > me:
                print(f'{rel}:{n}: #include "{inc}": {LAYERS[them]}/ is above {LAYERS[me]}/')
                bad = 1
sys.exit(bad)
PY
