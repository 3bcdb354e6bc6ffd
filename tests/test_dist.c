/* test_dist.c: core/dist.h in a world of one process (tests/cli_mpi_train.sh
 * and tests/cli_mpi_data.sh run the collectives under mpirun):
 * - the shards of n floats cover [0, n) once;
 * - pl_dist_sum_slices adds the slices left to right (rank order), one
 *   rounding per addition: not the same bits as another order;
 * - the reduce-scatter in pieces (pl_dist_rs_*) gives the whole vector, sent
 *   piece by piece in any order or not at all before the end; refuses pieces
 *   that do not cover the vector, a piece sent twice and a piece that does
 *   not exist, with a message. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "../core/dist.h"

static void test_shards(void) {
    CHECK(pl_dist_size() == 1 && pl_dist_rank() == 0, "one process: size %d rank %d", pl_dist_size(), pl_dist_rank());
    CHECK(pl_dist_shard_lo(1000, 0) == 0 && pl_dist_shard_lo(1000, 1) == 1000, "one shard of everything");
}

static void test_sum_slices(void) {
    /* 1e8 + 1 + 1 - 1e8 in rank order: each 1 is lost in fp32 next to 1e8 */
    float sl[4] = {1e8f, 1.0f, 1.0f, -1e8f}, out = -1;
    pl_dist_sum_slices(&out, sl, 4, 1);
    CHECK(out == 0.0f, "rank order: (((1e8 + 1) + 1) - 1e8) = 0 in fp32, got %g", out);
    float sl2[4] = {1.0f, 1.0f, 1e8f, -1e8f};
    pl_dist_sum_slices(&out, sl2, 4, 1);
    CHECK(out == 0.0f, "(((1 + 1) + 1e8) - 1e8) = 0 in fp32 (2 is lost as well), got %g", out);
    float sl3[3] = {-1e8f, 1e8f, 1.0f};
    pl_dist_sum_slices(&out, sl3, 3, 1);
    CHECK(out == 1.0f, "((-1e8 + 1e8) + 1) = 1, got %g", out);
    /* element by element over a vector of 3 slices of 5 */
    float v[15], o[5];
    for (int i = 0; i < 15; i++) v[i] = (float)(i + 1);
    pl_dist_sum_slices(o, v, 3, 5);
    int ok = 1;
    for (int j = 0; j < 5; j++) ok &= o[j] == v[j] + v[5 + j] + v[10 + j];
    CHECK(ok, "sum of 3 slices of 5 elements");
}

static void test_pieces(void) {
    enum { N = 1000 };
    float *in = malloc(N * sizeof *in), *out = malloc(N * sizeof *out), *scratch = malloc(N * sizeof *scratch);
    for (int i = 0; i < N; i++) in[i] = sinf((float)i);
    const size_t bounds[] = {0, 10, 10, 500, 999, N}; /* an empty piece among them */
    pl_err err = {0};
    /* sent in reverse order, as the backward finishes the layers */
    pl_dist_rs *s = NULL;
    CHECK(pl_dist_rs_begin(&s, in, N, bounds, 5, scratch, &err) == 0 && s, "begin: %s", err.msg);
    int rc = 0;
    for (int b = 4; b >= 0 && !rc; b--) rc = pl_dist_rs_send(s, b, &err);
    CHECK(rc == 0, "send: %s", err.msg);
    memset(out, 0xff, N * sizeof *out);
    CHECK(pl_dist_rs_end(s, out, &err) == 0 && !memcmp(out, in, N * sizeof *in), "end: the whole vector: %s", err.msg);
    /* some pieces sent, the rest by end */
    CHECK(pl_dist_rs_begin(&s, in, N, bounds, 5, scratch, &err) == 0, "begin: %s", err.msg);
    CHECK(pl_dist_rs_send(s, 3, &err) == 0, "send 3: %s", err.msg);
    CHECK(pl_dist_rs_sent(s, 3) && !pl_dist_rs_sent(s, 2) && !pl_dist_rs_sent(s, 5), "which pieces went out");
    CHECK(pl_dist_rs_send(s, 3, &err) != 0 && strstr(err.msg, "piece 3 sent twice"), "twice: %s", err.msg);
    CHECK(pl_dist_rs_send(s, 5, &err) != 0 && strstr(err.msg, "no piece 5 of 5"), "out of range: %s", err.msg);
    memset(out, 0xff, N * sizeof *out);
    CHECK(pl_dist_rs_end(s, out, &err) == 0 && !memcmp(out, in, N * sizeof *in), "end sends the rest: %s", err.msg);
    /* abandoned after an error elsewhere: freed (ASan's leak check) */
    CHECK(pl_dist_rs_begin(&s, in, N, bounds, 5, scratch, &err) == 0, "begin: %s", err.msg);
    pl_dist_rs_abandon(s);
    pl_dist_rs_abandon(NULL);
    /* pieces that do not cover the vector */
    const size_t short_b[] = {0, 10, 999}, back[] = {0, 600, 500, N}, late[] = {1, 500, N};
    s = (pl_dist_rs *)&err;
    CHECK(pl_dist_rs_begin(&s, in, N, short_b, 2, scratch, &err) != 0 && !s && strstr(err.msg, "do not cover"),
          "pieces ending before n: %s", err.msg);
    CHECK(pl_dist_rs_begin(&s, in, N, late, 2, scratch, &err) != 0 && strstr(err.msg, "do not cover"),
          "pieces starting after 0: %s", err.msg);
    CHECK(pl_dist_rs_begin(&s, in, N, back, 3, scratch, &err) != 0 && strstr(err.msg, "piece 1 ends before it begins"),
          "decreasing bounds: %s", err.msg);
    CHECK(pl_dist_rs_begin(&s, in, N, bounds, 0, scratch, &err) != 0, "no pieces: %s", err.msg);
    free(in);
    free(out);
    free(scratch);
}

int main(void) {
    pl_err err = {0};
    REQUIRE(pl_dist_init(&err) == 0, "init: %s", err.msg);
    test_shards();
    test_sum_slices();
    test_pieces();
    return check_summary("test_dist");
}
