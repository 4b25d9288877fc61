/* `imgsearch keys`: API keys made, listed and revoked in a store, also while servers use it. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "engine/engine.h"

static void usage(FILE *f) {
    fputs("usage: imgsearch keys create --scope read|write|admin [--name NAME] [STORE]\n"
          "       imgsearch keys list [STORE]\n"
          "       imgsearch keys revoke NAME [STORE]\n"
          "STORE: --data DIR (default ./data, the embedded store) or --store URL (PostgreSQL; default\n"
          "$IMGSEARCH_STORE). `create` prints the new key alone on standard output, once: only its\n"
          "SHA-256 is stored. Scopes: read (search, read images and metadata, health, status), write\n"
          "(read + add, delete one, set metadata), admin (write + delete all, reindex). Servers see a\n"
          "new or revoked key within a second, without a restart. NAME: 1 to 64 of A-Z a-z 0-9 . _ -\n",
          f);
}

static void when_text(int64_t ms, char *out, size_t outlen) {
    if (!ms) {
        snprintf(out, outlen, "never");
        return;
    }
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int list(const char *data, const char *url) {
    store_key *keys;
    int n;
    char err[512];
    if (engine_key_list(data, url, &keys, &n, err, sizeof err)) {
        fprintf(stderr, "imgsearch keys: %s\n", err);
        return 2;
    }
    printf("%-30s %-6s %-21s %s\n", "NAME", "SCOPE", "CREATED", "LAST USED");
    for (int i = 0; i < n; i++) {
        char made[32], used[32];
        when_text(keys[i].created_at, made, sizeof made);
        when_text(keys[i].last_used, used, sizeof used);
        printf("%-30s %-6s %-21s %s\n", keys[i].name, keys[i].scope, made, used);
    }
    free(keys);
    return 0;
}

int cli_keys(int argc, char **argv) {
    static const struct option longopts[] = {{"data", required_argument, 0, 'd'}, {"store", required_argument, 0, 'P'},
                                             {"scope", required_argument, 0, 's'}, {"name", required_argument, 0, 'n'},
                                             {"help", no_argument, 0, 'h'},        {0, 0, 0, 0}};
    const char *data = "./data", *url = getenv("IMGSEARCH_STORE"), *scope_text = NULL, *name = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'd': data = optarg; break;
        case 'P': url = optarg; break;
        case 's': scope_text = optarg; break;
        case 'n': name = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (url && !*url) url = NULL;
    const char *verb = optind < argc ? argv[optind] : NULL;
    int rest = argc - optind - 1;
    char err[512];
    if (verb && !strcmp(verb, "list") && rest == 0) return list(data, url);
    if (verb && !strcmp(verb, "revoke") && rest == 1) {
        if (engine_key_revoke(data, url, argv[optind + 1], err, sizeof err)) {
            fprintf(stderr, "imgsearch keys: %s\n", err);
            return 2;
        }
        fprintf(stderr, "revoked key '%s'\n", argv[optind + 1]);
        return 0;
    }
    if (verb && !strcmp(verb, "create") && rest == 0) {
        auth_scope scope;
        if (!scope_text || !auth_scope_parse(scope_text, &scope)) {
            fprintf(stderr, "imgsearch keys: create needs --scope read, write or admin\n");
            return 2;
        }
        char made[AUTH_NAME_MAX + 1], key[AUTH_KEY_LEN + 1];
        if (engine_key_create(data, url, name, scope, made, key, err, sizeof err)) {
            fprintf(stderr, "imgsearch keys: %s\n", err);
            return 2;
        }
        fprintf(stderr, "created key '%s' (scope %s); it is shown once, here:\n", made, scope_text);
        printf("%s\n", key);
        return 0;
    }
    usage(stderr);
    return 2;
}
