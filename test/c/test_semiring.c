/* The semiring C ABI: folds, accumulation (plain and masked) over caller
 * buffers in place, properties and identities, and accumulate deltas applied
 * through a store; each result against a plain C loop (the oracle), and every
 * bad code, length, alignment or overlap rejected with a clear error. */
#include "harness.h"

#include <math.h>

static void test_folds(void) {
    Rng r = {0x5e41};
    for (int round = 0; round < 20; round++) {
        uint64_t n = rng_below(&r, 3000);
        int64_t *x = malloc((n + 1) * sizeof *x);
        REQUIRE(x != NULL);
        int64_t sum = 0, mn = INT64_MAX;
        for (uint64_t i = 0; i < n; i++) {
            x[i] = (int64_t)rng_below(&r, 2001) - 1000;
            sum += x[i];
            if (x[i] < mn) mn = x[i];
        }
        int64_t got = 0;
        EXPECT_OK(mmsb_semiring_fold_add(MMSB_SEMIRING_PLUS_TIMES, MMSB_DTYPE_I64, x, n, &got));
        CHECK(got == sum);
        EXPECT_OK(mmsb_semiring_fold_add(MMSB_SEMIRING_MIN_PLUS, MMSB_DTYPE_I64, x, n, &got));
        CHECK(got == mn);
        /* min-plus fold_mul is the (saturating) sum */
        EXPECT_OK(mmsb_semiring_fold_mul(MMSB_SEMIRING_MIN_PLUS, MMSB_DTYPE_I64, x, n, &got));
        CHECK(got == sum);
        free(x);
    }
    /* f64 sums within the documented tolerance; products exact on powers of two */
    double xs[1000], ax = 0, want = 0;
    Rng r2 = {77};
    for (int i = 0; i < 1000; i++) {
        xs[i] = (double)rng_below(&r2, 1000000) / 1000.0 - 500.0;
        want += xs[i];
        ax += fabs(xs[i]);
    }
    double got = 0;
    EXPECT_OK(mmsb_semiring_fold_add(MMSB_SEMIRING_PLUS_TIMES, MMSB_DTYPE_F64, xs, 1000, &got));
    CHECK(fabs(got - want) <= 2.0 * 1000 * 2.220446049250313e-16 * ax);
    double twos[10] = {2, 2, 2, 2, 2, 0.5, 2, 2, 2, 2};
    EXPECT_OK(mmsb_semiring_fold_mul(MMSB_SEMIRING_PLUS_TIMES, MMSB_DTYPE_F64, twos, 10, &got));
    CHECK(got == 256.0);
    /* empty folds are the identities */
    EXPECT_OK(mmsb_semiring_fold_add(MMSB_SEMIRING_MIN_PLUS, MMSB_DTYPE_F64, NULL, 0, &got));
    CHECK(isinf(got) && got > 0);
    float gf = -1;
    EXPECT_OK(mmsb_semiring_fold_mul(MMSB_SEMIRING_MAX_TIMES, MMSB_DTYPE_F32, NULL, 0, &gf));
    CHECK(gf == 1.0f);
    /* or-and over bool bytes: any non-zero byte is true, the result is 0 or 1 */
    uint8_t flags[100] = {0};
    uint8_t b = 9;
    EXPECT_OK(mmsb_semiring_fold_add(MMSB_SEMIRING_OR_AND, MMSB_DTYPE_BOOL, flags, 100, &b));
    CHECK(b == 0);
    flags[63] = 0x40;
    EXPECT_OK(mmsb_semiring_fold_add(MMSB_SEMIRING_OR_AND, MMSB_DTYPE_BOOL, flags, 100, &b));
    CHECK(b == 1);
}

static void test_accumulate(void) {
    Rng r = {0xacc};
    for (int round = 0; round < 20; round++) {
        uint64_t n = 1 + rng_below(&r, 500);
        int32_t *c = malloc(n * sizeof *c), *t = malloc(n * sizeof *t), *want = malloc(n * sizeof *want);
        uint64_t words = (n + 63) / 64;
        uint64_t *m = calloc(words, sizeof *m);
        REQUIRE(c && t && want && m);
        for (uint64_t i = 0; i < n; i++) {
            c[i] = (int32_t)rng_below(&r, 1000);
            t[i] = (int32_t)rng_below(&r, 1000);
            if (rng_below(&r, 2)) m[i / 64] |= 1ULL << (i % 64);
        }
        for (uint64_t i = 0; i < n; i++) want[i] = mask_bit(m, i) && t[i] < c[i] ? t[i] : c[i];
        EXPECT_OK(mmsb_semiring_accumulate_masked(MMSB_SEMIRING_MIN_PLUS, MMSB_DTYPE_I32, c, t, n, m, words));
        CHECK(memcmp(c, want, n * sizeof *c) == 0);
        for (uint64_t i = 0; i < n; i++) want[i] = c[i] + t[i];
        EXPECT_OK(mmsb_semiring_accumulate(MMSB_SEMIRING_PLUS_TIMES, MMSB_DTYPE_I32, c, t, n));
        CHECK(memcmp(c, want, n * sizeof *c) == 0);
        free(c);
        free(t);
        free(want);
        free(m);
    }
}

static void test_bad_arguments(void) {
    double x[4] = {1, 2, 3, 4}, y[4] = {0}, out = 0;
    EXPECT_ERR(mmsb_semiring_fold_add(0, MMSB_DTYPE_F64, x, 4, &out), MMSB_ERR_INVALID_ARGUMENT, "semiring kind 0");
    EXPECT_ERR(mmsb_semiring_fold_add(9, MMSB_DTYPE_F64, x, 4, &out), MMSB_ERR_INVALID_ARGUMENT, "semiring kind 9");
    EXPECT_ERR(mmsb_semiring_fold_add(MMSB_SEMIRING_PLUS_TIMES, 42, x, 4, &out), MMSB_ERR_INVALID_ARGUMENT, "dtype 42");
    EXPECT_ERR(mmsb_semiring_fold_add(MMSB_SEMIRING_MAX_PLUS, MMSB_DTYPE_U8, x, 4, &out), MMSB_ERR_UNSUPPORTED,
               "max_plus");
    EXPECT_ERR(mmsb_semiring_fold_add(MMSB_SEMIRING_PLUS_TIMES, MMSB_DTYPE_F64, NULL, 4, &out),
               MMSB_ERR_INVALID_ARGUMENT, "null");
    EXPECT_ERR(mmsb_semiring_fold_add(MMSB_SEMIRING_PLUS_TIMES, MMSB_DTYPE_F64, x, 4, NULL), MMSB_ERR_INVALID_ARGUMENT,
               "out_value");
    EXPECT_ERR(mmsb_semiring_fold_add(MMSB_SEMIRING_PLUS_TIMES, MMSB_DTYPE_F64, (const uint8_t *)x + 1, 2, &out),
               MMSB_ERR_INVALID_ARGUMENT, "aligned");
    EXPECT_ERR(mmsb_semiring_fold_add(MMSB_SEMIRING_PLUS_TIMES, MMSB_DTYPE_F64, x, UINT64_MAX, &out),
               MMSB_ERR_INVALID_ARGUMENT, "impossibly large");
    EXPECT_ERR(mmsb_semiring_accumulate(MMSB_SEMIRING_PLUS_TIMES, MMSB_DTYPE_F64, x, x + 1, 3),
               MMSB_ERR_INVALID_ARGUMENT, "overlap");
    uint64_t m[2] = {0xF, 0};
    EXPECT_ERR(mmsb_semiring_accumulate_masked(MMSB_SEMIRING_PLUS_TIMES, MMSB_DTYPE_F64, y, x, 4, m, 2),
               MMSB_ERR_INVALID_ARGUMENT, "mask");
    m[0] = 0x1F;
    EXPECT_ERR(mmsb_semiring_accumulate_masked(MMSB_SEMIRING_PLUS_TIMES, MMSB_DTYPE_F64, y, x, 4, m, 1),
               MMSB_ERR_INVALID_ARGUMENT, "mask");
    CHECK(y[0] == 0 && y[3] == 0);
    uint32_t flags = 0;
    EXPECT_OK(mmsb_semiring_properties(MMSB_SEMIRING_PLUS_TIMES, MMSB_DTYPE_F64, &flags));
    CHECK(flags == (MMSB_SEMIRING_FLAG_COMMUTATIVE_ADD | MMSB_SEMIRING_FLAG_COMMUTATIVE_MUL |
                    MMSB_SEMIRING_FLAG_HAS_SUBTRACTION));
    EXPECT_OK(mmsb_semiring_properties(MMSB_SEMIRING_MIN_PLUS, MMSB_DTYPE_I32, &flags));
    CHECK(flags == (MMSB_SEMIRING_FLAG_COMMUTATIVE_ADD | MMSB_SEMIRING_FLAG_COMMUTATIVE_MUL |
                    MMSB_SEMIRING_FLAG_IDEMPOTENT_ADD |
                    MMSB_SEMIRING_FLAG_EXACT | MMSB_SEMIRING_FLAG_HAS_TERMINAL));
    int32_t z = 0, o = 0;
    EXPECT_OK(mmsb_semiring_identities(MMSB_SEMIRING_MIN_PLUS, MMSB_DTYPE_I32, &z, &o));
    CHECK(z == INT32_MAX && o == 0);
    EXPECT_ERR(mmsb_semiring_identities(MMSB_SEMIRING_MIN_PLUS, MMSB_DTYPE_I32, NULL, &o), MMSB_ERR_INVALID_ARGUMENT,
               "out_zero");
}

static void test_accumulate_deltas(void) {
    MmsbStore s = 0;
    REQUIRE(mmsb_store_open_memory(&s) == MMSB_OK);
    MmsbPageId p = 0;
    REQUIRE(mmsb_page_create(s, 8 * 16, MMSB_LOCATION_CPU, &p) == MMSB_OK);
    EXPECT_OK(mmsb_page_set_view(s, p, MMSB_DTYPE_I64, 16));
    /* Two writers add to overlapping counters; either order gives the sums. */
    int64_t a[4] = {1, 2, 3, 4}, b[4] = {10, 20, 30, 40};
    MmsbDelta da = 0, db = 0;
    REQUIRE(mmsb_delta_new_dense(p, 8 * 2, (const uint8_t *)a, sizeof a, NULL, 0, &da) == MMSB_OK);
    REQUIRE(mmsb_delta_new_dense(p, 8 * 4, (const uint8_t *)b, sizeof b, NULL, 0, &db) == MMSB_OK);
    EXPECT_OK(mmsb_delta_set_accumulator(da, MMSB_SEMIRING_PLUS_TIMES, MMSB_DTYPE_I64));
    EXPECT_OK(mmsb_delta_set_accumulator(db, MMSB_SEMIRING_PLUS_TIMES, MMSB_DTYPE_I64));
    bool changed = false;
    uint64_t epoch = 0;
    EXPECT_OK(mmsb_store_apply_delta(s, db, &changed, &epoch));
    EXPECT_OK(mmsb_store_apply_delta(s, da, &changed, &epoch));
    EXPECT_OK(mmsb_store_apply_delta(s, da, &changed, &epoch));
    int64_t page[16];
    EXPECT_OK(mmsb_page_read(s, p, 0, (uint8_t *)page, sizeof page));
    int64_t want[16] = {0, 0, 2, 4, 16, 28, 30, 40};
    CHECK(memcmp(page, want, sizeof want) == 0);
    /* A misaligned range, a dtype the view does not have, bad codes: rejected. */
    MmsbDelta bad = 0;
    REQUIRE(mmsb_delta_new_dense(p, 3, (const uint8_t *)a, 8, NULL, 0, &bad) == MMSB_OK);
    EXPECT_ERR(mmsb_delta_set_accumulator(bad, MMSB_SEMIRING_PLUS_TIMES, MMSB_DTYPE_I64), MMSB_ERR_INVALID_ARGUMENT,
               "aligned");
    EXPECT_ERR(mmsb_delta_set_accumulator(bad, 7, MMSB_DTYPE_I64), MMSB_ERR_INVALID_ARGUMENT, "semiring kind 7");
    EXPECT_ERR(mmsb_delta_set_accumulator(bad, MMSB_SEMIRING_MAX_PLUS, MMSB_DTYPE_U8), MMSB_ERR_INVALID_ARGUMENT,
               "max_plus");
    EXPECT_OK(mmsb_delta_free(bad));
    REQUIRE(mmsb_delta_new_dense(p, 0, (const uint8_t *)a, 8, NULL, 0, &bad) == MMSB_OK);
    EXPECT_OK(mmsb_delta_set_accumulator(bad, MMSB_SEMIRING_PLUS_TIMES, MMSB_DTYPE_F64));
    EXPECT_ERR(mmsb_store_apply_delta(s, bad, &changed, &epoch), MMSB_ERR_INVALID_ARGUMENT, "view");
    EXPECT_OK(mmsb_delta_set_accumulator(bad, 0, 0));
    EXPECT_OK(mmsb_store_apply_delta(s, bad, &changed, &epoch));
    EXPECT_OK(mmsb_delta_free(bad));
    EXPECT_OK(mmsb_delta_free(da));
    EXPECT_OK(mmsb_delta_free(db));
    EXPECT_OK(mmsb_store_close(s));
}

/* A user semiring: (max, +) over int64 via C callbacks; user_data counts calls. */
static void user_max(void *ud, const uint8_t *a, const uint8_t *b, uint8_t *out) {
    int64_t x, y;
    memcpy(&x, a, 8);
    memcpy(&y, b, 8);
    int64_t r = x > y ? x : y;
    memcpy(out, &r, 8);
    (*(uint64_t *)ud)++;
}

static void user_plus(void *ud, const uint8_t *a, const uint8_t *b, uint8_t *out) {
    int64_t x, y;
    memcpy(&x, a, 8);
    memcpy(&y, b, 8);
    int64_t r = (x == INT64_MIN || y == INT64_MIN) ? INT64_MIN : x + y;
    memcpy(out, &r, 8);
    (*(uint64_t *)ud)++;
}

/* 2x2 matrices of uint8 (wrapping): a non-commutative product, folded in order. */
static void mat_add(void *ud, const uint8_t *a, const uint8_t *b, uint8_t *out) {
    (void)ud;
    for (int i = 0; i < 4; i++) out[i] = (uint8_t)(a[i] + b[i]);
}

static void mat_mul(void *ud, const uint8_t *a, const uint8_t *b, uint8_t *out) {
    (void)ud;
    uint8_t r[4] = {(uint8_t)(a[0] * b[0] + a[1] * b[2]), (uint8_t)(a[0] * b[1] + a[1] * b[3]),
                    (uint8_t)(a[2] * b[0] + a[3] * b[2]), (uint8_t)(a[2] * b[1] + a[3] * b[3])};
    memcpy(out, r, 4);
}

static void test_user_semirings(void) {
    uint64_t calls = 0;
    int64_t zero = INT64_MIN, one = 0;
    MmsbUserSemiring s = {8, user_max, user_plus, &zero, &one, &calls,
                          MMSB_SEMIRING_FLAG_COMMUTATIVE_ADD | MMSB_SEMIRING_FLAG_COMMUTATIVE_MUL |
                              MMSB_SEMIRING_FLAG_IDEMPOTENT_ADD | MMSB_SEMIRING_FLAG_EXACT};
    int64_t x[300], mx = INT64_MIN, sum = 0;
    for (int i = 0; i < 300; i++) {
        x[i] = (i * 7919) % 1000 - 500;
        if (x[i] > mx) mx = x[i];
        sum += x[i];
    }
    int64_t got = 0;
    EXPECT_OK(mmsb_user_semiring_fold_add(&s, x, 300, &got));
    CHECK(got == mx);
    CHECK(calls >= 299);
    EXPECT_OK(mmsb_user_semiring_fold_mul(&s, x, 300, &got));
    CHECK(got == sum);
    /* the same as the built-in max-plus */
    int64_t b = 0;
    EXPECT_OK(mmsb_semiring_fold_add(MMSB_SEMIRING_MAX_PLUS, MMSB_DTYPE_I64, x, 300, &b));
    CHECK(b == mx);
    int64_t c[300];
    memcpy(c, x, sizeof c);
    int64_t t[300];
    for (int i = 0; i < 300; i++) t[i] = 10;
    uint64_t m[5] = {0};
    m[0] = 0x5;
    EXPECT_OK(mmsb_user_semiring_accumulate_masked(&s, c, t, 300, m, 5));
    CHECK(c[0] == (x[0] > 10 ? x[0] : 10) && c[1] == x[1] && c[2] == (x[2] > 10 ? x[2] : 10));
    EXPECT_OK(mmsb_user_semiring_accumulate(&s, c, t, 300));
    CHECK(c[299] == (x[299] > 10 ? x[299] : 10));
    EXPECT_OK(mmsb_user_semiring_fold_add(&s, NULL, 0, &got));
    CHECK(got == INT64_MIN);

    /* non-commutative product: fold_mul keeps the order */
    uint8_t gens[2][4] = {{1, 1, 0, 1}, {1, 0, 1, 1}};
    uint8_t mats[100][4], want[4] = {1, 0, 0, 1}, mzero[4] = {0}, mone[4] = {1, 0, 0, 1};
    MmsbUserSemiring ms = {4, mat_add, mat_mul, mzero, mone, NULL, MMSB_SEMIRING_FLAG_COMMUTATIVE_ADD};
    Rng r = {99};
    for (int i = 0; i < 100; i++) {
        memcpy(mats[i], gens[rng_below(&r, 2)], 4);
        uint8_t tmp[4];
        mat_mul(NULL, want, mats[i], tmp);
        memcpy(want, tmp, 4);
    }
    uint8_t prod[4];
    EXPECT_OK(mmsb_user_semiring_fold_mul(&ms, mats, 100, prod));
    CHECK(memcmp(prod, want, 4) == 0);

    /* bad descriptions */
    MmsbUserSemiring bad = s;
    bad.elem_size = 3;
    EXPECT_ERR(mmsb_user_semiring_fold_add(&bad, x, 1, &got), MMSB_ERR_INVALID_ARGUMENT, "3 bytes");
    bad = s;
    bad.add = NULL;
    EXPECT_ERR(mmsb_user_semiring_fold_add(&bad, x, 1, &got), MMSB_ERR_INVALID_ARGUMENT, "add");
    bad = s;
    bad.one = NULL;
    EXPECT_ERR(mmsb_user_semiring_fold_mul(&bad, x, 1, &got), MMSB_ERR_INVALID_ARGUMENT, "one");
    EXPECT_ERR(mmsb_user_semiring_fold_add(NULL, x, 1, &got), MMSB_ERR_INVALID_ARGUMENT, "semiring");
    EXPECT_ERR(mmsb_user_semiring_accumulate(&s, c, c + 1, 2), MMSB_ERR_INVALID_ARGUMENT, "overlap");
}

int main(void) {
    /* harness.h's delta-spec helpers serve the other test programs. */
    (void)gen_spec;
    (void)make_delta;
    (void)model_apply;
    (void)spec_written;
    (void)page_equals;
    uint64_t live_start = live_handles();
    test_folds();
    test_accumulate();
    test_bad_arguments();
    test_accumulate_deltas();
    test_user_semirings();
    CHECK(live_handles() == live_start);
    int pass = atomic_load(&g_pass), fail = atomic_load(&g_fail);
    printf("%d passed, %d failed\n", pass, fail);
    return fail == 0 ? 0 : 1;
}
