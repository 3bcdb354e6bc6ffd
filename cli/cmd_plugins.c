/* cmd_plugins.c: `potluck plugins list|show NAME`: the registered plugins
 * (built in, the recipe's, the user's) and their parameters. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/atomic.h"
#include "../plugins/confine.h"
#include "../plugins/host.h"
#include "../plugins/pipeline.h"
#include "cli.h"
#include "cmd_run.h"

static const char *plugins_help =
    "usage: potluck plugins list [--recipe RECIPE.lua]\n"
    "       potluck plugins show NAME|KIND.NAME [--recipe RECIPE.lua]\n"
    "\n"
    "Plugins are found in plugins/lib (built in), the recipe's plugins/ folder\n"
    "(with --recipe) and the user's folder ($POTLUCK_PLUGINS, default\n"
    "~/.local/share/potluck/plugins). Plugin API version: 1 (docs/plugins.md).\n";

typedef struct pctx { const char *recipe; pl_lua_limits lim; } pctx;

static int child_list(void *vc, int fd, pl_err *err) {
    pctx *c = vc;
    pl_host_opts ho = {0};
    ho.limits = c->lim;
    ho.quiet = 1;
    /* with --recipe, its plugins/ folder joins (the recipe itself is not run) */
    char *dir = NULL;
    if (c->recipe) {
        dir = strdup(c->recipe);
        char *s = dir ? strrchr(dir, '/') : NULL;
        if (s) *s = 0;
        else { free(dir); dir = strdup("."); }
        ho.recipe_dir = dir;
    }
    /* kernel confinement (confine.h): plugin code reads its folders, writes nothing */
    pl_confine cf = {.require = c->lim.require_confinement};
    char home[PATH_MAX + 32];
    snprintf(home, sizeof home, "%s/plugins", pl_host_home());
    char *user = pl_host_user_plugins();
    int rc = pl_confine_add_read(&cf, home, err);
    if (!rc) rc = pl_confine_add_read(&cf, user, err);
    if (!rc) rc = pl_confine_add_read(&cf, dir, err);
    if (!rc) rc = pl_confine_apply(&cf, err);
    pl_host *h = NULL;
    cJSON *list = NULL;
    if (!rc) rc = pl_host_open(&h, &ho, err);
    free(user);
    free(dir);
    if (!rc) rc = pl_host_plugins(h, &list, err);
    pl_host_free(h);
    if (!rc) {
        char *s = cJSON_PrintUnformatted(list);
        cJSON_Delete(list);
        if (!s) return pl_err_set(err, PL_ENOMEM, "out of memory");
        if (pl_write_all(fd, s, strlen(s))) rc = pl_err_set(err, PL_EIO, "plugins: result pipe: %s", strerror(errno));
        free(s);
    }
    return rc;
}

int cmd_plugins(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(plugins_help, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1], *name = NULL;
    pctx c = {0};
    pl_lua_limits_default(&c.lim);
    if (strcmp(sub, "list") && strcmp(sub, "show")) return cli_fail("plugins: unknown subcommand '%s' (list, show)", sub);
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--recipe")) {
            if (i + 1 >= argc) return cli_fail("--recipe: expected a file");
            c.recipe = argv[++i];
        } else if (!strcmp(argv[i], "--help")) { fputs(plugins_help, stdout); return 0; }
        else if (argv[i][0] == '-') return cli_fail("plugins: unknown option %s", argv[i]);
        else if (!name && !strcmp(sub, "show")) name = argv[i];
        else return cli_fail("plugins %s: unexpected argument '%s'", sub, argv[i]);
    }
    if (!strcmp(sub, "show") && !name) return cli_fail("plugins show: expected a plugin name");
    pl_err err = {0};
    char *buf = NULL;
    size_t n = 0;
    if (pl_child_run(&c.lim, "plugins", child_list, &c, &buf, &n, &err)) { free(buf); return cli_fail_err(&err); }
    cJSON *list = cJSON_ParseWithLength(buf ? buf : "", n);
    free(buf);
    if (!list) return cli_fail("plugins: no result from the plugin host");
    const cJSON *p;
    int found = 0;
    if (!strcmp(sub, "list")) {
        printf("%-14s %-18s %-9s %s\n", "KIND", "NAME", "ORIGIN", "FILE");
        cJSON_ArrayForEach(p, list)
            printf("%-14s %-18s %-9s %s\n", cJSON_GetStringValue(cJSON_GetObjectItem(p, "kind")),
                   cJSON_GetStringValue(cJSON_GetObjectItem(p, "name")), cJSON_GetStringValue(cJSON_GetObjectItem(p, "origin")),
                   cJSON_GetStringValue(cJSON_GetObjectItem(p, "file")));
        cJSON_Delete(list);
        return 0;
    }
    cJSON_ArrayForEach(p, list) {
        const char *k = cJSON_GetStringValue(cJSON_GetObjectItem(p, "kind")), *nm = cJSON_GetStringValue(cJSON_GetObjectItem(p, "name"));
        char full[256];
        snprintf(full, sizeof full, "%s.%s", k, nm);
        if (strcmp(name, nm) && strcmp(name, full)) continue;
        found++;
        printf("%s (%s plugin, %s, %s)\n  %s\n", full, k, cJSON_GetStringValue(cJSON_GetObjectItem(p, "origin")),
               cJSON_GetStringValue(cJSON_GetObjectItem(p, "file")), cJSON_GetStringValue(cJSON_GetObjectItem(p, "doc")));
        printf("  use in a recipe: pl.%s.%s{ ... }\n  parameters:\n", k, nm);
        const cJSON *q;
        int np = 0;
        cJSON_ArrayForEach(q, cJSON_GetObjectItem(p, "params")) {
            const char *def = cJSON_GetStringValue(cJSON_GetObjectItem(q, "default"));
            const char *doc = cJSON_GetStringValue(cJSON_GetObjectItem(q, "doc"));
            const char *ch = cJSON_GetStringValue(cJSON_GetObjectItem(q, "choices"));
            printf("    %-16s %-8s%s%s%s%s%s%s%s\n", cJSON_GetStringValue(cJSON_GetObjectItem(q, "name")),
                   cJSON_GetStringValue(cJSON_GetObjectItem(q, "type")),
                   cJSON_IsTrue(cJSON_GetObjectItem(q, "required")) ? " required" : "", def ? " default " : "",
                   def ? def : "", ch ? " one of: " : "", ch ? ch : "", doc ? "  -- " : "", doc ? doc : "");
            np++;
        }
        if (!np) printf("    (none)\n");
    }
    cJSON_Delete(list);
    if (!found) return cli_fail("plugins show: no plugin named '%s' (see potluck plugins list)", name);
    return 0;
}
