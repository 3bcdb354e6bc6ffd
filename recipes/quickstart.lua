-- quickstart.lua: the default run of `make run`. A small end-to-end
-- fine-tune of SmolLM2-135M-Instruct on the CPU, in a few minutes:
--
--   1. source     12 hand-written seed tasks (recipes/data/seed_tasks.jsonl)
--   2. generate   Self-Instruct: the base model writes 24 new instructions from
--                 few-shot prompts of the seeds and answers them (seeded, so
--                 the same samples come out run after run)
--   3. filter     length limits, a keyword blocklist, language (English)
--   4. dedup      exact duplicates, then MinHash near-duplicates
--   5. decontam.  drop anything sharing a 13-gram with the eval set
--   6. split      20% held out by a hash of the text
--   then shard (HDF5, the model's chat template, assistant turns trained),
--   train (QLoRA: NF4 base, LoRA r 16 on every linear layer), eval (held-out
--   loss, a HellaSwag subset and answers to held-out prompts, base vs
--   fine-tune) and export (PEFT adapter; Q4_K_M GGUF, checked by its KL
--   divergence from the merged model); then RUN/report.html and a summary.
--
-- Run it with `potluck run recipes/quickstart.lua` (or `make run`); change a
-- parameter and run again: only the stages from the changed one on are redone.
local pl = require "potluck"

return pl.recipe {
  name = "quickstart",
  description = "Self-Instruct data from SmolLM2-135M-Instruct itself, filtered, then a QLoRA fine-tune on the CPU",
  license = "Apache-2.0 (the model); the seed tasks are potluck's own",
  seed = 1234,
  base = "SmolLM2-135M-Instruct",   -- found in $POTLUCK_MODELS; `make run` fetches it

  data = pl.pipeline {
    pl.source.jsonl { path = "data/seed_tasks.jsonl" },
    pl.generate.self_instruct {
      seeds = "data/seed_tasks.jsonl",
      n = 24, few_shot = 4, max_tokens = 64, temperature = 0.7, batch = 8,
      on_shortfall = "warn",
    },
    pl.filter.length { min_chars = 20, max_chars = 2000 },
    pl.filter.regex { keywords = { "image", "picture", "graph", "draw", "plot" }, ignore_case = true },
    pl.filter.language { allow = { "en" } },
    pl.dedup.exact {},
    pl.dedup.minhash { threshold = 0.7, ngram = 3 },
    pl.decontaminate.ngram { eval = "data/quickstart_eval.jsonl", n = 13 },
    pl.split { eval = 0.2 },
  },

  lora = { r = 16, alpha = 32, dropout = 0.05, targets = "all-linear" },
  train = { steps = 24, lr = 2e-4, seq_len = 256, batch = 1, grad_accum = 2,
            schedule = "constant", max_grad_norm = 0.3, checkpointing = true, save_every = 12 },
  -- eval: held-out loss of base and fine-tune during training; then 100
  -- HellaSwag items scored on both (found in $POTLUCK_TASKS: `make run` points
  -- it at ../shared/fixtures/eval), and 3 held-out prompts answered by both
  eval = { every = 12, rows = 16, metrics = { "distinct_2", "mean_chars" },
           tasks = { "hellaswag_val_full.txt" }, limit = 100, answers = 3 },
  -- export: the PEFT adapter, and a Q4_K_M GGUF whose KL divergence from the
  -- merged model is measured on the run's samples
  export = { formats = { "peft", "gguf" }, gguf_type = "q4_k_m" },
}
