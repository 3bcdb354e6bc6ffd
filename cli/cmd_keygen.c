/* cmd_keygen.c: `potluck keygen KEY.pem [PUB.pem]`: an EC P-256 key pair
 * for `pack --sign` (the key method of OpenSSF model signing). */
#include <stdio.h>
#include <string.h>

#include "../plugins/bundle.h"
#include "cli.h"
#include "cmd_bundle.h"


int cmd_keygen(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs("usage: potluck keygen KEY.pem [PUB.pem]\n"
              "\n"
              "Writes an EC P-256 private key (PEM, mode 0600, never over an existing\n"
              "file) and its public key (default KEY.pub.pem). Sign with\n"
              "`potluck pack --sign KEY.pem`; peers check with `potluck verify --key\n"
              "PUB.pem` or `model_signing verify key --public_key PUB.pem`.\n",
              argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    char pub[4096];
    if (argc > 2) snprintf(pub, sizeof pub, "%s", argv[2]);
    else {
        snprintf(pub, sizeof pub, "%s", argv[1]);
        size_t n = strlen(pub);
        if (n > 4 && !strcmp(pub + n - 4, ".pem")) pub[n - 4] = 0;
        strncat(pub, ".pub.pem", sizeof pub - strlen(pub) - 1);
    }
    pl_err err = {0};
    if (pl_bundle_keygen(argv[1], pub, &err)) return cli_fail_err(&err);
    printf("wrote %s (private, keep it) and %s (public, share it)\n", argv[1], pub);
    return 0;
}
