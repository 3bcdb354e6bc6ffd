# Peers on potluck's exports: gguf-py, transformers, peft and llama.cpp (llama-cpp-python).
#
# Run by refs.sh with an empty directory it does nothing. Not a cached reference: its inputs are files potluck wrote a moment before,
# so tests/cli_export.sh runs it directly on that directory (argv[1]) after
# build/san/tests/test_export and build/opt/tests/opt_export have written
# there with POTLUCK_EXPORT_DIR set, and then runs those tests again to compare.
#
# inputs: $POTLUCK_MODEL
#
# Reads from and writes into DIR (argv[1]):
#   roundtrip.gguf        -> gguf_py.json {"fields": {key: value}, "tensors":
#                            {name: {"type": ggml type id, "shape": [ne0, ...],
#                            "sha256": hex of the data bytes gguf-py reads}}}
#   <m>_merged/ (m = llama, qwen2; a Hugging Face directory) -> <m>_tf_logits.f32:
#                            float32 [40, vocab] from AutoModelForCausalLM (fp32,
#                            eager attention) on $POTLUCK_REFS/hf_tiny/<m>/ids.i32
#   <m>_adapter/ (a PEFT adapter of the tiny base) -> <m>_peft_logits.f32: the
#                            same with PeftModel.from_pretrained(base, adapter)
#                            (missing or unexpected keys fail the script)
#   smollm2_f16.gguf, smollm2_q8_0.gguf -> llamacpp_f16.json, llamacpp_q8_0.json,
#                            laid out as smollm2_llamacpp.py's prompts.json: the 8
#                            prompts of _common.SMOLLM2_PROMPTS tokenized by
#                            llama.cpp, 32 greedy tokens each and llama.cpp's top-2
#                            gap at every step (2 threads, n_ctx 512).
import hashlib
import json
import os
import sys
import warnings

import numpy as np

import _common as C

N_GEN = 32


def field_value(f):
    import gguf
    t = f.types[0] if f.types else None
    if t == gguf.GGUFValueType.ARRAY:
        et = f.types[-1]
        vals = [f.parts[i] for i in f.data]
        if et == gguf.GGUFValueType.STRING:
            return [bytes(v).decode("utf-8") for v in vals]
        return [v.tolist()[0] for v in vals]
    v = f.parts[f.data[0]]
    if t == gguf.GGUFValueType.STRING:
        return bytes(v).decode("utf-8")
    return v.tolist()[0]


def gguf_py(d):
    p = os.path.join(d, "roundtrip.gguf")
    if not os.path.exists(p):
        return
    import gguf
    r = gguf.GGUFReader(p)
    fields = {name: field_value(f) for name, f in r.fields.items()
              if not name.startswith("GGUF.")}
    tensors = {}
    for t in r.tensors:
        tensors[t.name] = {"type": int(t.tensor_type), "shape": [int(x) for x in t.shape],
                           "sha256": hashlib.sha256(np.ascontiguousarray(t.data).tobytes()).hexdigest()}
    C.write_json(os.path.join(d, "gguf_py.json"), {"fields": fields, "tensors": tensors})
    print("export_check: gguf-py: %d fields, %d tensors" % (len(fields), len(tensors)), file=sys.stderr)


def transformers_logits(d, refs):
    if not any(os.path.isdir(os.path.join(d, n + s)) for n in ("llama", "qwen2") for s in ("_merged", "_adapter")):
        return
    import torch
    from transformers import AutoModelForCausalLM
    torch.set_num_threads(2)
    for name in ("llama", "qwen2"):
        ids = np.fromfile(os.path.join(refs, "hf_tiny", name, "ids.i32"), dtype="<i4")
        x = torch.from_numpy(ids.astype(np.int64))[None, :]
        merged = os.path.join(d, name + "_merged")
        if os.path.isdir(merged):
            m = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32,
                                                     attn_implementation="eager").eval()
            with torch.no_grad():
                lg = m(x).logits[0].float().numpy()
            C.write_f32(os.path.join(d, name + "_tf_logits.f32"), lg, finite=True)
            print("export_check: transformers %s: logits %s" % (name, lg.shape), file=sys.stderr)
        adapter = os.path.join(d, name + "_adapter")
        if os.path.isdir(adapter):
            from peft import PeftModel
            base = AutoModelForCausalLM.from_pretrained(os.path.join(refs, "hf_tiny", name),
                                                        dtype=torch.float32,
                                                        attn_implementation="eager").eval()
            with warnings.catch_warnings(record=True) as ws:
                warnings.simplefilter("always")
                pm = PeftModel.from_pretrained(base, adapter).eval()
            bad = [str(w.message) for w in ws if "key" in str(w.message).lower()]
            if bad:
                sys.exit("export_check: peft %s: %s" % (name, bad[0]))
            with torch.no_grad():
                lg = pm(x).logits[0].float().numpy()
            C.write_f32(os.path.join(d, name + "_peft_logits.f32"), lg, finite=True)
            print("export_check: peft %s: logits %s" % (name, lg.shape), file=sys.stderr)


def llamacpp(d):
    for tag in ("f16", "q8_0"):
        path = os.path.join(d, "smollm2_%s.gguf" % tag)
        if not os.path.exists(path):
            continue
        from llama_cpp import Llama
        add_bos = C.gguf_add_bos(path)
        if add_bos is None:
            add_bos = True
        llm = Llama(model_path=path, n_threads=2, n_threads_batch=2, n_ctx=512,
                    logits_all=True, verbose=False, seed=0)
        n_vocab = llm.n_vocab()
        prompts = []
        for i, text in enumerate(C.SMOLLM2_PROMPTS):
            ids = [int(t) for t in llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)]
            llm.reset()
            llm.eval(ids)
            gen, gaps, tops = [], [], []
            for _ in range(N_GEN):
                row = np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float32)
                assert row.shape == (n_vocab,)
                if not np.all(np.isfinite(row)):
                    sys.exit("export_check: %s: prompt %d: non-finite logits" % (tag, i))
                tok = int(np.argmax(row))
                top2 = np.partition(row, -2)[-2:]
                gen.append(tok)
                gaps.append(float(top2[1] - top2[0]))
                top = np.argsort(row)[::-1][:16]
                tops.append([[int(t), float(row[t])] for t in top])
                llm.eval([tok])
            prompts.append({"text": text, "prompt_ids": ids, "gen_ids": gen, "top2_gap": gaps, "top": tops,
                            "gen_text": llm.detokenize(gen).decode("utf-8", errors="replace")})
        C.write_json(os.path.join(d, "llamacpp_%s.json" % tag),
                     {"model_sha256": C.sha256_file(path), "add_bos": bool(add_bos), "n_gen": N_GEN,
                      "prompts": prompts})
        print("export_check: llama.cpp %s: %r" % (tag, prompts[4]["gen_text"]), file=sys.stderr)
        del llm


def main():
    d = C.out_dir()
    refs = os.environ.get("POTLUCK_REFS", "")
    gguf_py(d)
    if refs:
        transformers_logits(d, refs)
    llamacpp(d)


if __name__ == "__main__":
    main()
