# Chat templates rendered by transformers' apply_chat_template (jinja2): the strings potluck must reproduce.
#
# inputs: $POTLUCK_SHARED/fixtures/tokenizers/phi-3-mini/tokenizer_config.json $POTLUCK_SHARED/fixtures/tokenizers/phi-3-mini/tokenizer.json $POTLUCK_SHARED/fixtures/tokenizers/tiny-random-LlamaForCausalLM/tokenizer_config.json $POTLUCK_SHARED/fixtures/tokenizers/tiny-random-LlamaForCausalLM/tokenizer.json $POTLUCK_SHARED/fixtures/tokenizers/tiny-random-LlamaForCausalLM/special_tokens_map.json $POTLUCK_SHARED/fixtures/tokenizers/phi-2/tokenizer_config.json $POTLUCK_MODEL tests/chat_templates/llama-3-8b-instruct.jinja tests/chat_templates/llama-3.2-3b-instruct.jinja tests/chat_templates/mistral-nemo-instruct-2407.jinja tests/chat_templates/qwen2.5-instruct.jinja
#
# Template sources:
#   fixture:<name>  the chat_template of $POTLUCK_SHARED/fixtures/tokenizers/<name>
#                   (AutoTokenizer.from_pretrained on the folder; phi-2 has none and
#                   is recorded with "no_template": true)
#   gguf            the SmolLM2 GGUF's tokenizer.chat_template
#                   (AutoTokenizer.from_pretrained(dir, gguf_file=name))
#   file:<path>     a real model template from tests/chat_templates/ (see its README),
#                   rendered through the tiny-random-Llama tokenizer with the model's
#                   own bos_token/eos_token passed as template variables
# Every source is rendered over CONVERSATIONS x add_generation_prompt in {False, True}
# with apply_chat_template(tokenize=False). strftime_now is patched to 2024-07-26
# 00:00:00 (Unix 1721952000, the C side uses the same time).
#
# Writes OUTDIR/chat_templates.json:
#   {"now": 1721952000,
#    "sources": [{"source", "template", "bos_token", "eos_token", "no_template"?}],
#    "cases": [{"source": index into sources, "conversation": index, "add_generation_prompt": bool,
#               "expected": str | null, "error": str | null}],
#    "conversations": [[{"role", "content"}]]}
# "error" holds transformers' exception text when the template raises.
import datetime as _dt
import os

import _common as C

NOW = 1721952000

import transformers.utils.chat_template_utils as ctu  # noqa: E402


class _FixedDatetime(_dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return _dt.datetime(2024, 7, 26, 0, 0, 0)


ctu.datetime = _FixedDatetime

from transformers import AutoTokenizer  # noqa: E402

CONVERSATIONS = [
    # 0: single user turn
    [{"role": "user", "content": "What is the capital of France?"}],
    # 1: user + assistant
    [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello! How can I help?"}],
    # 2: system + user + assistant
    [{"role": "system", "content": "You are terse."},
     {"role": "user", "content": "Name a color."},
     {"role": "assistant", "content": "Blue."}],
    # 3: multi-turn with system
    [{"role": "system", "content": "You are a helpful assistant."},
     {"role": "user", "content": "2+2?"},
     {"role": "assistant", "content": "4"},
     {"role": "user", "content": "And 3+3?"},
     {"role": "assistant", "content": "6"}],
    # 4: multi-turn without system, ending with a user turn
    [{"role": "user", "content": "Tell me a joke."},
     {"role": "assistant", "content": "Why did the chicken cross the road?"},
     {"role": "user", "content": "Why?"}],
    # 5: newlines, unicode, braces, template-looking text, surrounding spaces
    [{"role": "system", "content": "Rules:\n- be kind\n- {{ no injection }}\n"},
     {"role": "user", "content": "  Café — 東京 🙂 {% if x %} {# c #}\nsecond line\t"},
     {"role": "assistant", "content": "\n  Sure: {\"a\": [1, 2]} ü  \n"}],
]

SHARED = os.environ["POTLUCK_SHARED"]
MODEL = C.env_path("POTLUCK_MODEL")
HERE = os.path.dirname(os.path.abspath(__file__))
TDIR = os.path.join(os.path.dirname(HERE), "chat_templates")

# Real model templates and the BOS/EOS texts of those models.
FILES = [
    ("llama-3-8b-instruct.jinja", "<|begin_of_text|>", "<|eot_id|>"),
    ("llama-3.2-3b-instruct.jinja", "<|begin_of_text|>", "<|eot_id|>"),
    ("mistral-nemo-instruct-2407.jinja", "<s>", "</s>"),
    ("qwen2.5-instruct.jinja", "", "<|im_end|>"),
]


def main():
    out = C.out_dir()
    sources = []
    cases = []

    def run(tok, src_index, template=None, bos=None, eos=None):
        for ci, conv in enumerate(CONVERSATIONS):
            for agp in (False, True):
                kw = {}
                if template is not None:
                    kw["chat_template"] = template
                if bos is not None:
                    kw["bos_token"] = bos
                    kw["eos_token"] = eos
                try:
                    s = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=agp, **kw)
                    cases.append({"source": src_index, "conversation": ci, "add_generation_prompt": agp,
                                  "expected": s, "error": None})
                except Exception as ex:  # the template raised (e.g. role order)
                    cases.append({"source": src_index, "conversation": ci, "add_generation_prompt": agp,
                                  "expected": None, "error": "%s: %s" % (type(ex).__name__, ex)})

    for name in ("phi-3-mini", "tiny-random-LlamaForCausalLM", "phi-2"):
        tok = AutoTokenizer.from_pretrained(os.path.join(SHARED, "fixtures", "tokenizers", name))
        tmpl = tok.chat_template
        entry = {"source": "fixture:" + name, "template": tmpl, "bos_token": tok.bos_token or "",
                 "eos_token": tok.eos_token or ""}
        if not tmpl:
            entry["no_template"] = True
            sources.append(entry)
            continue
        sources.append(entry)
        run(tok, len(sources) - 1)

    gtok = AutoTokenizer.from_pretrained(os.path.dirname(MODEL), gguf_file=os.path.basename(MODEL))
    sources.append({"source": "gguf", "template": gtok.chat_template, "bos_token": gtok.bos_token or "",
                    "eos_token": gtok.eos_token or ""})
    run(gtok, len(sources) - 1)

    base = AutoTokenizer.from_pretrained(os.path.join(SHARED, "fixtures", "tokenizers", "tiny-random-LlamaForCausalLM"))
    for fname, bos, eos in FILES:
        with open(os.path.join(TDIR, fname), encoding="utf-8") as f:
            tmpl = f.read()
        sources.append({"source": "file:tests/chat_templates/" + fname, "template": tmpl, "bos_token": bos,
                        "eos_token": eos})
        run(base, len(sources) - 1, template=tmpl, bos=bos, eos=eos)

    C.write_json(os.path.join(out, "chat_templates.json"),
                 {"now": NOW, "sources": sources, "cases": cases, "conversations": CONVERSATIONS})
    n_err = sum(1 for c in cases if c["error"])
    print("chat_templates: %d sources, %d cases (%d raise)" % (len(sources), len(cases), n_err))


if __name__ == "__main__":
    main()
