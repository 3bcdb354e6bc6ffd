"""lm-evaluation-harness on a multiple-choice JSONL file, offline.

usage: python _lmeval_mc.py ITEMS.jsonl MODEL.gguf OUT_DIR [TOKENIZER_DIR [BATCH]]

Runs in the lm-eval venv (make venv-lmeval; tests/requirements-lmeval.txt),
not the peers' venv, so refs.sh (which skips names starting with _) does not
run it. The items are potluck's `eval --write-items` output ({"index",
"context", "choices", "gold"}); a local task of lm-eval's own kind
(output_type multiple_choice, target_delimiter " ", metrics acc and
acc_norm) reads them through lm-eval's "json" dataset path, and lm-eval's
Hugging Face model loads the GGUF file's weights (transformers, gguf_file=,
float32 on the CPU). TOKENIZER_DIR (tokenizer.json, tokenizer_config.json)
is the tokenizer lm-eval uses instead of the one transformers derives from
the GGUF vocabulary: that conversion tokenizes some text differently from
llama.cpp and from the tokenizers library on the same vocabulary (SmolLM2:
" ¼" becomes [3351, 137], not [216, 28151]). Writes OUT_DIR/lmeval_samples.jsonl (per item: index,
gold, every choice's log-likelihood, acc, acc_norm) and
OUT_DIR/lmeval_results.json (acc, acc_norm with their stderr, versions,
seconds).
"""
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_CACHE", tempfile.mkdtemp(prefix="lmeval-ds-"))

TASK_YAML = """task: potluck_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {items}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{context}}}}"
doc_to_choice: choices
doc_to_target: gold
target_delimiter: " "
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""


def main():
    items, gguf, out = sys.argv[1], os.path.abspath(sys.argv[2]), sys.argv[3]
    tok_dir = sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] else None
    batch = int(sys.argv[5]) if len(sys.argv) > 5 else 8
    os.makedirs(out, exist_ok=True)
    import torch
    import lm_eval
    import transformers
    from lm_eval.tasks import TaskManager

    torch.set_num_threads(int(os.environ.get("POTLUCK_PEER_THREADS", "2")))
    inc = tempfile.mkdtemp(prefix="lmeval-task-")
    with open(os.path.join(inc, "potluck_mc.yaml"), "w") as f:
        f.write(TASK_YAML.format(items=json.dumps(os.path.abspath(items))))
    tm = TaskManager(include_path=inc)
    args = "pretrained=%s,gguf_file=%s,dtype=float32" % (os.path.dirname(gguf), os.path.basename(gguf))
    if tok_dir:
        args += ",tokenizer=%s" % os.path.abspath(tok_dir)
    t0 = time.time()
    res = lm_eval.simple_evaluate(model="hf", model_args=args, tasks=["potluck_mc"], task_manager=tm,
                                  batch_size=batch, log_samples=True, device="cpu")
    secs = time.time() - t0
    samples = res["samples"]["potluck_mc"]
    with open(os.path.join(out, "lmeval_samples.jsonl"), "w") as f:
        for s in sorted(samples, key=lambda s: s["doc"]["index"]):
            lls = [float(r[0][0]) for r in s["resps"]]
            f.write(json.dumps({"index": s["doc"]["index"], "gold": s["doc"]["gold"], "ll": lls,
                                "acc": s["acc"], "acc_norm": s["acc_norm"]}) + "\n")
    r = res["results"]["potluck_mc"]
    summary = {"acc": r.get("acc,none"), "acc_stderr": r.get("acc_stderr,none"),
               "acc_norm": r.get("acc_norm,none"), "acc_norm_stderr": r.get("acc_norm_stderr,none"),
               "n": len(samples), "seconds": secs, "batch_size": batch, "tokenizer": "tokenizer.json" if tok_dir else "from the GGUF",
               "threads": torch.get_num_threads(),
               "versions": {"lm_eval": lm_eval.__version__ if hasattr(lm_eval, "__version__") else "?",
                            "torch": torch.__version__, "transformers": transformers.__version__}}
    with open(os.path.join(out, "lmeval_results.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
