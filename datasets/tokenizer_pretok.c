/* tokenizer_pretok.c: tokenizer.ggml.pre names -> pre-tokenizer regexes (PCRE2, UTF + UCP), and their compilation.
 *
 * The patterns are those of the models' tokenizer.json files, as llama.cpp's
 * llm_tokenizer_bpe lists them per tokenizer.ggml.pre. Each regex of a set runs
 * on the pieces the previous one produced (Split(Isolated) semantics, see
 * tok_regex_split in tokenizer.c). */
#include "tokenizer_int.h"

enum { PRE_GPT2, PRE_LLAMA3, PRE_QWEN2, PRE_STARCODER, PRE_FALCON, PRE_DEFAULT, PRE_DEEPSEEK_CODER, PRE_DEEPSEEK_LLM };

#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define RE_CONTRACT_CI "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"

const char tok_re_gpt2[] = RE_GPT2;

/* deepseek-llm: letters of the scripts that are not CJK (the class llama.cpp
 * spells out from DeepSeek's tokenizer.json; written with \x{...} escapes) */
#define RE_DSLLM_LETTERS                                                                                          \
    "\\s?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}"         \
    "\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}\\x{388}-\\x{38A}"       \
    "\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}"               \
    "\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}"            \
    "\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}"            \
    "\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}"    \
    "\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}"   \
    "\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}"             \
    "\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}\\x{212A}-\\x{212D}"              \
    "\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}"              \
    "\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}"             \
    "\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}"            \
    "\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}"          \
    "\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}"  \
    "\\x{1E900}-\\x{1E943}]+"

static const char *const pre_sets[][MAX_RE + 1] = {
    [PRE_GPT2] = { RE_GPT2, NULL },
    [PRE_LLAMA3] = { RE_CONTRACT_CI "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                     "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
                     NULL },
    [PRE_QWEN2] = { RE_CONTRACT_CI "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
                    NULL },
    /* digits one by one first, then GPT-2's pattern (starcoder, smollm, ...) */
    [PRE_STARCODER] = { "\\p{N}", RE_GPT2, NULL },
    [PRE_FALCON] = { "[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]", NULL },
    [PRE_DEFAULT] = { "[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]", NULL },
    [PRE_DEEPSEEK_CODER] = { "[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+",
                             "[\\x{4E00}-\\x{9FA5}\\x{0800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+", "\\p{N}", NULL },
    /* ASCII and fullwidth punctuation, general punctuation quotes, CJK symbols */
    [PRE_DEEPSEEK_LLM] = { "[\\r\\n]", RE_DSLLM_LETTERS,
                           "\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+",
                           "\\s+$", "[\\x{4E00}-\\x{9FA5}\\x{0800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+", "\\p{N}+", NULL },
};

typedef struct { const char *names; int set; } pre_map;

/* names are '|'-separated */
static const pre_map pre_names[] = {
    { "gpt-2|gpt2|phi-2|mpt|olmo|jais|jina-es|jina-de|jina-v1-en|jina-v2-es|jina-v2-de|jina-v2-code|roberta-bpe|"
      "gigachat|exaone4|trillion|a.x-4.0|mellum|modern-bert|granite-docling",
      PRE_GPT2 },
    { "llama3|llama-v3|llama-bpe|falcon3|falcon-h1|pixtral|midm-2.0|lfm2|smaug-bpe|dbrx|chatglm-bpe|glm4", PRE_LLAMA3 },
    { "qwen2|deepseek-r1-qwen|stablelm2|megrez|hunyuan|kormo|f2llmv2|solar-open", PRE_QWEN2 },
    { "starcoder|refact|command-r|smollm|codeshell|exaone|minerva-7b|mellum2", PRE_STARCODER },
    { "falcon", PRE_FALCON },
    { "default", PRE_DEFAULT },
    { "deepseek-coder", PRE_DEEPSEEK_CODER },
    { "deepseek-llm", PRE_DEEPSEEK_LLM },
};

static int name_in(const char *list, const char *name) {
    size_t nl = strlen(name);
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, '|');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == nl && memcmp(p, name, l) == 0) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

/* The regex set for a tokenizer.ggml.pre value (NULL: "default"). *known is 0
 * when the name is not in the table (GPT-2's pattern is returned then).
 * *llama3_flags is 1 for the names llama.cpp gives ignore_merges and add_bos. */
const char *const *tok_pre_patterns(const char *pre, int *known, int *llama3_flags) {
    static const char *const l3[] = { "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral",
                                      "midm-2.0", "lfm2" };
    *known = 1;
    *llama3_flags = 0;
    if (!pre) return pre_sets[PRE_DEFAULT];
    for (size_t i = 0; i < sizeof l3 / sizeof l3[0]; i++)
        if (!strcmp(pre, l3[i])) *llama3_flags = 1;
    for (size_t i = 0; i < sizeof pre_names / sizeof pre_names[0]; i++)
        if (name_in(pre_names[i].names, pre)) return pre_sets[pre_names[i].set];
    /* NOTE: a pre-tokenizer we do not know (tekken, bloom, chameleon,
     * gpt-4o, ...) falls back to GPT-2's pattern: the ids are valid tokens and
     * decode back to the text, but may differ from the model's own tokenizer. */
    *known = 0;
    return pre_sets[PRE_GPT2];
}

void tok_pre_names(char *dst, size_t cap) {
    size_t n = 0;
    if (cap) dst[0] = '\0';
    for (size_t i = 0; i < sizeof pre_names / sizeof pre_names[0]; i++)
        for (const char *p = pre_names[i].names; *p && n + 3 < cap;) {
            const char *e = strchr(p, '|');
            size_t l = e ? (size_t)(e - p) : strlen(p);
            if (n) dst[n++] = ',', dst[n++] = ' ';
            if (l > cap - n - 1) l = cap - n - 1;
            memcpy(dst + n, p, l);
            n += l;
            dst[n] = '\0';
            p += l + (e ? 1 : 0);
        }
}

/* Compile pats (NULL-terminated) into t->re after those already there. */
int tok_compile_regexes(pl_tokenizer *t, const char *const *pats, const char *what, pl_err *err) {
    for (int i = 0; pats[i]; i++) {
        if (t->n_re >= MAX_RE)
            return pl_err_set(err, PL_EUNSUPPORTED, "%s: more than %d pre-tokenizer regexes", what, MAX_RE);
        int ec;
        PCRE2_SIZE eo;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)pats[i], PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec, &eo,
                                       NULL);
        if (!re) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(ec, msg, sizeof msg);
            return pl_err_set(err, PL_EUNSUPPORTED, "%s: pre-tokenizer regex '%.80s' does not compile at %zu: %s",
                              what, pats[i], (size_t)eo, (const char *)msg);
        }
        (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* optional speed-up; the interpreter works too */
        t->re[t->n_re++] = re;
    }
    return PL_OK;
}
