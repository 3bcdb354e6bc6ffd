/* cmd_template.c: `potluck template`: render imported examples through a chat template, trained spans marked. */
#include "cmd_template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/mapfile.h"
#include "../datasets/chat.h"
#include "../datasets/import.h"
#include "../datasets/tokenizer.h"
#include "cli.h"

static void help(FILE *f) {
    fprintf(f,
            "usage: potluck template --in FILE [--model PATH] [--template NAME|FILE] [options]\n"
            "\n"
            "Reads a dataset (JSONL, or a JSON array), renders each example the way training\n"
            "will see it, and prints it with the trained part marked: green on a terminal,\n"
            "between [[ and ]] otherwise. Bad records are reported as FILE:LINE: reason and\n"
            "skipped; the totals go to stderr.\n"
            "\n"
            "  --in FILE              the dataset (required)\n"
            "  --model PATH           tokenizer source: a GGUF file, a tokenizer.json or a folder\n"
            "                         with one (its tokenizer_config.json chat_template), a llama2.c\n"
            "                         tokenizer .bin; gives the chat template, BOS/EOS, and token-level\n"
            "                         marking (a token is trained when its bytes overlap a trained span)\n"
            "  --template NAME|FILE   a built-in (chatml, llama2, llama3, mistral, alpaca, vicuna,\n"
            "                         guanaco) or a file holding a Jinja chat template; overrides the\n"
            "                         model's own template. Needed when the model has none.\n"
            "  --format F             auto (default), openai, sharegpt, alpaca, text, io\n"
            "  --mask M               assistant (default: every assistant reply and its end-of-turn\n"
            "                         marker), all (every token), last-assistant (the last reply only)\n"
            "  --strict               the first bad record is fatal (exit 1)\n"
            "  --limit N              show the first N examples (default 3; 0 = all)\n"
            "  --add-generation-prompt  render the generation prompt after the last message\n"
            "  --bos TEXT, --eos TEXT the bos_token/eos_token texts without --model\n"
            "  --color | --no-color   force or disable ANSI colour (default: colour on a terminal)\n"
            "\n"
            "Exit status: 0 when at least one example was read (and none was bad under --strict),\n"
            "1 otherwise. docs/chat-templates.md describes the templates and the masks.\n");
}

/* Print text[0..len) with ranges where mark[i] marked. */
static void print_marked(const char *text, size_t len, const uint8_t *mark, int color) {
    int in = 0;
    for (size_t i = 0; i < len; i++) {
        if (mark[i] && !in) {
            fputs(color ? "\x1b[1;32m" : "[[", stdout);
            in = 1;
        } else if (!mark[i] && in) {
            fputs(color ? "\x1b[0m" : "]]", stdout);
            in = 0;
        }
        fputc(text[i], stdout);
    }
    if (in) fputs(color ? "\x1b[0m" : "]]", stdout);
    fputc('\n', stdout);
}

int cmd_template(int argc, char **argv) {
    const char *in = NULL, *model = NULL, *tname = NULL, *bos = NULL, *eos = NULL;
    pl_import_opts io = {0};
    pl_mask_mode mask = PL_MASK_ASSISTANT;
    long limit = 3;
    int agp = 0, color = isatty(1);
    pl_err err = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            help(stdout);
            return 0;
        } else if (!strcmp(a, "--in")) { if (!v) return cli_fail("--in: expected a file"); in = v; i++; }
        else if (!strcmp(a, "--model")) { if (!v) return cli_fail("--model: expected a path"); model = v; i++; }
        else if (!strcmp(a, "--template")) { if (!v) return cli_fail("--template: expected a name or file"); tname = v; i++; }
        else if (!strcmp(a, "--bos")) { if (!v) return cli_fail("--bos: expected a text"); bos = v; i++; }
        else if (!strcmp(a, "--eos")) { if (!v) return cli_fail("--eos: expected a text"); eos = v; i++; }
        else if (!strcmp(a, "--format")) {
            if (!v) return cli_fail("--format: expected a format");
            if (pl_import_fmt_parse(v, &io.fmt, &err)) return cli_fail_err(&err);
            i++;
        } else if (!strcmp(a, "--mask")) {
            if (!v) return cli_fail("--mask: expected a mode");
            if (pl_mask_mode_parse(v, &mask, &err)) return cli_fail_err(&err);
            i++;
        } else if (!strcmp(a, "--limit")) {
            if (cli_int("--limit", v, 0, 1000000000, &limit)) return 1;
            i++;
        } else if (!strcmp(a, "--strict")) io.strict = 1;
        else if (!strcmp(a, "--add-generation-prompt")) agp = 1;
        else if (!strcmp(a, "--color")) color = 1;
        else if (!strcmp(a, "--no-color")) color = 0;
        else {
            help(stderr);
            return cli_fail("template: unknown option '%s'", a);
        }
    }
    if (!in) {
        help(stderr);
        return cli_fail("template: --in FILE is required");
    }
    pl_tokenizer *tok = NULL;
    if (model && pl_tokenizer_load(&tok, model, &err)) return cli_fail_err(&err);
    /* the template: --template (built-in or file) over the model's own */
    char *tfile = NULL;
    const char *tmpl = NULL;
    if (tname) {
        if (pl_chat_builtin(tname)) tmpl = tname;
        else {
            size_t len;
            if (pl_read_file(tname, 8u << 20, &tfile, &len, &err)) {
                pl_tokenizer_free(tok);
                return cli_fail("--template %s: not a built-in (chatml, llama2, llama3, mistral, alpaca, vicuna, guanaco) "
                                "and not a readable file: %s", tname, err.msg);
            }
            tmpl = tfile;
        }
    } else if (tok) {
        tmpl = pl_tokenizer_chat_template(tok);
    }
    pl_chat_opts o = {0};
    if (tok) pl_chat_opts_from_tokenizer(&o, tok);
    if (bos) o.bos_token = bos;
    if (eos) o.eos_token = eos;
    o.add_generation_prompt = agp;
    o.mask = mask;
    pl_import im;
    int rc = pl_import_file(in, &io, &im, &err);
    int status = 0;
    if (rc) {
        status = cli_fail_err(&err);
        goto out;
    }
    int is_chat = im.fmt == PL_FMT_OPENAI || im.fmt == PL_FMT_SHAREGPT || im.fmt == PL_FMT_ALPACA;
    if (is_chat && im.n > 0 && !tmpl) {
        status = cli_fail("%s: %s records need a chat template: %s; pass --template NAME (chatml, llama2, llama3, mistral, "
                          "alpaca, vicuna, guanaco) or a template file",
                          in, pl_import_fmt_name(im.fmt), model ? "the model has none" : "no --model given");
        goto out;
    }
    if (is_chat && im.n > 0 && tok && pl_chat_check_special(tok, tmpl, &im.ex[0].chat, &o, &err)) {
        status = cli_fail("%s", err.msg);
        goto out;
    }
    size_t shown = 0, render_fail = 0;
    long long tokens = 0, trained = 0;
    for (size_t i = 0; i < im.n; i++) {
        pl_example *e = &im.ex[i];
        pl_chat_text r;
        if (pl_example_render(e, tmpl, &o, &r, &err)) {
            fprintf(stderr, "%s:%d: %s\n", in, e->line, err.msg);
            render_fail++;
            continue;
        }
        uint8_t *mark = calloc(r.len ? r.len : 1, 1);
        if (!mark) {
            pl_chat_text_free(&r);
            status = cli_fail("out of memory");
            goto out;
        }
        char info[128] = "";
        if (tok) {
            pl_chat_tokens t;
            if (pl_chat_tokenize(tok, &r, &t, &err)) {
                fprintf(stderr, "%s:%d: %s\n", in, e->line, err.msg);
                render_fail++;
                free(mark);
                pl_chat_text_free(&r);
                continue;
            }
            int k = 0;
            for (int j = 0; j < t.n; j++) {
                k += t.mask[j];
                if (!t.mask[j]) continue;
                size_t a = (size_t)t.offs[j], b = j + 1 < t.n ? (size_t)t.offs[j + 1] : r.len;
                for (size_t q = a; q < b && q < r.len; q++) mark[q] = 1;
            }
            tokens += t.n;
            trained += k;
            snprintf(info, sizeof info, ", %d tokens, %d trained%s", t.n, k, t.bos_in_text ? ", BOS from the template" : "");
            pl_chat_tokens_free(&t);
        } else {
            for (int s = 0; s < r.n_spans; s++)
                for (size_t q = r.spans[s].start; q < r.spans[s].end && q < r.len; q++) mark[q] = 1;
        }
        if (limit == 0 || (long)shown < limit) {
            printf("== example %zu (%s:%d, %s%s)\n", i + 1, in, e->line, pl_import_fmt_name(e->fmt), info);
            print_marked(r.text, r.len, mark, color);
            shown++;
        }
        free(mark);
        pl_chat_text_free(&r);
    }
    for (size_t i = 0; i < im.n_errors; i++) fprintf(stderr, "%s\n", im.errors[i]);
    if (im.n_bad > im.n_errors) fprintf(stderr, "(%zu more bad records not listed)\n", im.n_bad - im.n_errors);
    fprintf(stderr, "%s: %zu records read as %s: %zu imported, %zu bad (skipped), %zu blank lines", in, im.n_records,
            pl_import_fmt_name(im.fmt), im.n, im.n_bad, im.n_blank);
    if (render_fail) fprintf(stderr, ", %zu failed to render", render_fail);
    if (tok) fprintf(stderr, "; %lld tokens, %lld trained", tokens, trained);
    fputc('\n', stderr);
    if (im.n == render_fail) status = 1;
out:
    pl_import_free(&im);
    free(tfile);
    pl_tokenizer_free(tok);
    return status;
}
