#!/usr/bin/env bash
# cli_lora_peft.sh: peft loads an adapter potluck trained and saved, and gives potluck's logits.
#  - build/san/tests/test_lora --write-adapter DIR: on the peft_ref base (tiny random
#    LlamaForCausalLM, fp32), potluck initializes its own rsLoRA adapter (r 4, alpha 8, all
#    seven modules), trains it 3 AdamW steps, saves it with pl_lora_save_peft in DIR/adapter
#    and writes the adapted logits of 13 tokens (DIR/logits.f32, DIR/ids.i32);
#  - peft 0.21 (PeftModel.from_pretrained onto transformers' model of the same base) loads
#    it with every warning captured: any missing- or unexpected-key warning fails the test,
#    the saved key set must equal peft's LoRA state-dict keys, use_rslora must be read back,
#    and the logits must match potluck's (rel 1e-5; q/k adapters included, no permutation);
#  - a negative control: the same adapter with one tensor removed must raise peft's
#    missing-key warning (so the capture really sees such warnings).
# The same checks on an adapter trained on the CUDA backend (emulated):
# build/opt/tests/opt_cuda_backend --write-adapter DIR trains it there, and the CPU
# backend writes the logits with it (tests/test_cuda_backend.c).
set -u
cd "$(dirname "$0")/.."
source tests/check.sh
: "${POTLUCK_VENV:?set POTLUCK_VENV (run through make test)}"
: "${POTLUCK_REFS:?set POTLUCK_REFS (run through make test)}"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

one() { # $1 label, $2... the writer command (it gets DIR)
  local lab=$1; shift
  local out=$tmp/$lab
  if "$@" "$out" >"$tmp/$lab.w.out" 2>"$tmp/$lab.w.err" && [ -f "$out/adapter/adapter_config.json" ]; then ok
  else fail "$lab: $* $out: $(tail -5 "$tmp/$lab.w.err") $(tail -3 "$tmp/$lab.w.out")"; return; fi
  grep -h '^note:' "$tmp/$lab.w.out" || true
  "$POTLUCK_VENV/bin/python" - "$out" "$POTLUCK_REFS/peft_ref/base" >"$tmp/$lab.py.out" 2>"$tmp/$lab.py.err" <<'PY'
import json, logging, os, shutil, sys, warnings
import numpy as np
import torch
from safetensors.torch import load_file, save_file

out, base_dir = sys.argv[1], sys.argv[2]
torch.set_num_threads(2)
from transformers import AutoModelForCausalLM
from peft import PeftModel
from peft.utils import get_peft_model_state_dict

def load(adapter):
    """PeftModel on a fresh base; returns (model, key-warning messages)."""
    msgs = []
    class H(logging.Handler):
        def emit(self, rec): msgs.append(rec.getMessage())
    h = H(); logging.getLogger().addHandler(h)
    for n in ("peft", "transformers"): logging.getLogger(n).addHandler(h)
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter("always")
        base = AutoModelForCausalLM.from_pretrained(base_dir, torch_dtype=torch.float32, attn_implementation="eager")
        model = PeftModel.from_pretrained(base, adapter)
    for n in ("", "peft", "transformers"): logging.getLogger(n).removeHandler(h)
    msgs += [str(w.message) for w in ws]
    bad = [m for m in msgs if ("missing" in m.lower() or "unexpected" in m.lower()) and "key" in m.lower()]
    return model, bad

res = {}
adapter = os.path.join(out, "adapter")
model, bad = load(adapter)
res["key_warnings"] = bad
saved = set(load_file(os.path.join(adapter, "adapter_model.safetensors")).keys())
expect = set(get_peft_model_state_dict(model).keys())
res["keys_equal"] = saved == expect
res["n_keys"] = len(saved)
res["keys_diff"] = sorted(saved ^ expect)[:5]
cfg = model.peft_config["default"]
res["rslora"] = bool(cfg.use_rslora)
res["r"] = cfg.r
ids = torch.from_numpy(np.fromfile(os.path.join(out, "ids.i32"), dtype="<i4").astype(np.int64))
model.eval()
with torch.no_grad():
    lg = model(ids[None, :]).logits[0].numpy()
ours = np.fromfile(os.path.join(out, "logits.f32"), dtype="<f4").reshape(lg.shape)
res["logits_rel"] = float(np.linalg.norm(lg - ours) / np.linalg.norm(lg))
base = AutoModelForCausalLM.from_pretrained(base_dir, torch_dtype=torch.float32)
with torch.no_grad():
    lb = base(ids[None, :]).logits[0].numpy()
res["adapter_effect"] = float(np.linalg.norm(lg - lb) / np.linalg.norm(lb))

# negative control: drop one tensor -> peft must warn about a missing key
neg = os.path.join(out, "neg")
shutil.copytree(adapter, neg)
sd = load_file(os.path.join(neg, "adapter_model.safetensors"))
del sd["base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight"]
save_file(sd, os.path.join(neg, "adapter_model.safetensors"), metadata={"format": "pt"})
_, bad_neg = load(neg)
res["neg_warned"] = len(bad_neg) > 0
print(json.dumps(res))
PY

  local rc=$?
  if [ $rc != 0 ]; then fail "$lab: peft script failed (rc=$rc): $(tail -15 "$tmp/$lab.py.err")"; return; fi
  res=$(tail -1 "$tmp/$lab.py.out")
  echo "note: $lab: peft on potluck's adapter: $res"
  j() { "$POTLUCK_VENV/bin/python" -c "import json,sys; r=json.loads(sys.argv[1]); print(eval(sys.argv[2], {}, r))" "$res" "$1"; }
  [ "$(j 'len(key_warnings) == 0')" = True ] && ok || fail "$lab: peft warned about keys: $(j key_warnings)"
  [ "$(j 'keys_equal and n_keys == 28')" = True ] && ok || fail "$lab: saved keys differ from peft's: $(j keys_diff) (n $(j n_keys))"
  [ "$(j 'rslora and r == 4')" = True ] && ok || fail "$lab: peft read use_rslora/r wrong: $(j rslora) $(j r)"
  [ "$(j 'logits_rel <= 1e-5')" = True ] && ok || fail "$lab: logits differ: rel $(j logits_rel)"
  [ "$(j 'adapter_effect > 1e-3')" = True ] && ok || fail "$lab: the adapter barely changes the logits ($(j adapter_effect)): test is vacuous"
  [ "$(j 'neg_warned')" = True ] && ok || fail "$lab: negative control: peft did not warn about a removed tensor (capture broken)"
}

T=build/san/tests/test_lora
if [ -x "$T" ]; then one cpu-trained "$T" --write-adapter; else fail "$T is not built"; fi
C=build/opt/tests/opt_cuda_backend
if [ -x "$C" ]; then one cuda-trained "$C" --write-adapter; else fail "$C is not built"; fi
check_summary cli_lora_peft
