/* Shared by the C ABI tests: a tiny check harness (counts, messages, the
 * "N passed, N failed" summary line). Included once per test program. */
#ifndef MMSB_TEST_HARNESS_H
#define MMSB_TEST_HARNESS_H

#include "mmsb.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_int g_pass;
static atomic_int g_fail;

static const char *last_error(void) {
    const char *m = NULL;
    if (mmsb_last_error_message(&m) != MMSB_OK || m == NULL) return "<mmsb_last_error_message failed>";
    return m;
}

static const char *code_name(int32_t code) {
    const char *n = NULL;
    if (mmsb_error_name(code, &n) != MMSB_OK || n == NULL) return "<unknown code>";
    return n;
}

static void check_at(const char *file, int line, const char *what, int ok) {
    if (ok) {
        atomic_fetch_add(&g_pass, 1);
    } else {
        atomic_fetch_add(&g_fail, 1);
        fprintf(stderr, "FAIL %s:%d: %s (last error: \"%s\")\n", file, line, what, last_error());
    }
}

/* Checks a status code. For an expected error, also checks that this thread's
 * last error message starts with "<CodeName>: " and contains `needle` (if any). */
static void expect_rc_at(const char *file, int line, const char *expr, int32_t rc, int32_t want,
                         const char *needle) {
    if (rc != want) {
        atomic_fetch_add(&g_fail, 1);
        fprintf(stderr, "FAIL %s:%d: %s returned %d (%s), expected %d (%s); last error: \"%s\"\n", file,
                line, expr, rc, code_name(rc), want, code_name(want), last_error());
        return;
    }
    if (want != MMSB_OK) {
        const char *msg = last_error();
        const char *name = code_name(want);
        size_t nl = strlen(name);
        int ok = strlen(msg) > nl + 2 && strncmp(msg, name, nl) == 0 && msg[nl] == ':' &&
                 (needle == NULL || strstr(msg, needle) != NULL);
        if (!ok) {
            atomic_fetch_add(&g_fail, 1);
            fprintf(stderr, "FAIL %s:%d: %s: message \"%s\" should start with \"%s: \" and mention \"%s\"\n",
                    file, line, expr, msg, name, needle ? needle : "");
            return;
        }
    }
    atomic_fetch_add(&g_pass, 1);
}

#define CHECK(cond) check_at(__FILE__, __LINE__, #cond, (cond) ? 1 : 0)
#define EXPECT_OK(expr) expect_rc_at(__FILE__, __LINE__, #expr, (expr), MMSB_OK, NULL)
#define EXPECT_ERR(expr, code, needle) expect_rc_at(__FILE__, __LINE__, #expr, (expr), (code), (needle))

/* Stops the program when a precondition of later checks fails. */
#define REQUIRE(cond)                                                                       \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            fprintf(stderr, "FATAL %s:%d: %s (last error: \"%s\")\n", __FILE__, __LINE__, \
                    #cond, last_error());                                                   \
            printf("%d passed, %d failed\n", atomic_load(&g_pass), atomic_load(&g_fail) + 1); \
            exit(1);                                                                        \
        }                                                                                   \
    } while (0)

/* ------------------------------------------------------------------ */
/* Deterministic random numbers (xorshift64*)                          */
/* ------------------------------------------------------------------ */

typedef struct {
    uint64_t s;
} Rng;

static uint64_t rng_next(Rng *r) {
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static uint64_t rng_below(Rng *r, uint64_t n) { return n ? rng_next(r) % n : 0; }

/* ------------------------------------------------------------------ */
/* Delta specs and the C reference model                               */
/* ------------------------------------------------------------------ */

#define MAX_RANGE 200
#define MAX_WORDS ((MAX_RANGE + 63) / 64)

enum { K_DENSE = 0, K_MASKED = 1, K_SPARSE = 2 };

typedef struct {
    int kind;
    uint64_t offset, len;
    uint8_t payload[MAX_RANGE]; /* dense / masked: len bytes */
    uint64_t mask[MAX_WORDS];   /* masked / sparse */
    uint64_t words;
    uint8_t values[MAX_RANGE]; /* sparse: one per set bit */
    uint64_t nvalues;
} Spec;

static uint64_t words_for(uint64_t len) { return (len + 63) / 64; }

static int mask_bit(const uint64_t *m, uint64_t i) { return (int)((m[i / 64] >> (i % 64)) & 1u); }

static uint64_t popcount_words(const uint64_t *m, uint64_t n) {
    uint64_t c = 0;
    for (uint64_t i = 0; i < n; i++) c += (uint64_t)__builtin_popcountll(m[i]);
    return c;
}

/* A random delta inside a page of `size` bytes. Bytes come from a small
 * alphabet so that some deltas are no-ops. */
static void gen_spec(Rng *r, uint64_t size, Spec *s) {
    memset(s, 0, sizeof *s);
    s->kind = (int)rng_below(r, 3);
    s->offset = rng_below(r, size);
    uint64_t room = size - s->offset;
    if (room > MAX_RANGE) room = MAX_RANGE;
    s->len = 1 + rng_below(r, room);
    s->words = words_for(s->len);
    int density = (int)rng_below(r, 5); /* 0: none, 4: all, else mixed */
    for (uint64_t i = 0; i < s->len; i++) {
        int set = density == 4 || (density != 0 && (int)rng_below(r, 4) < density);
        if (set) s->mask[i / 64] |= 1ULL << (i % 64);
        s->payload[i] = (uint8_t)rng_below(r, 3);
    }
    if (s->kind == K_SPARSE) {
        s->nvalues = popcount_words(s->mask, s->words);
        for (uint64_t k = 0; k < s->nvalues; k++) s->values[k] = (uint8_t)rng_below(r, 3);
    }
    if (s->kind == K_DENSE) s->words = 0;
}

static int32_t make_delta(MmsbPageId page, const Spec *s, MmsbDelta *out) {
    switch (s->kind) {
    case K_DENSE:
        return mmsb_delta_new_dense(page, s->offset, s->payload, s->len, NULL, 0, out);
    case K_MASKED:
        return mmsb_delta_new_dense(page, s->offset, s->payload, s->len, s->mask, s->words, out);
    default:
        return mmsb_delta_new_sparse(page, s->offset, s->len, s->mask, s->words,
                                     s->nvalues ? s->values : NULL, s->nvalues, out);
    }
}

/* Applies the spec to the model; returns whether any byte changed. */
static int model_apply(uint8_t *m, const Spec *s) {
    int changed = 0;
    uint64_t k = 0;
    for (uint64_t i = 0; i < s->len; i++) {
        uint8_t v;
        if (s->kind == K_DENSE) {
            v = s->payload[i];
        } else if (!mask_bit(s->mask, i)) {
            continue;
        } else if (s->kind == K_MASKED) {
            v = s->payload[i];
        } else {
            v = s->values[k++];
        }
        if (m[s->offset + i] != v) changed = 1;
        m[s->offset + i] = v;
    }
    return changed;
}

static uint64_t spec_written(const Spec *s) {
    return s->kind == K_DENSE ? s->len : popcount_words(s->mask, s->words);
}

static int page_equals(MmsbStore st, MmsbPageId p, const uint8_t *model, uint64_t size) {
    uint8_t *buf = malloc(size);
    if (!buf) return 0;
    int ok = mmsb_page_read(st, p, 0, buf, size) == MMSB_OK && memcmp(buf, model, size) == 0;
    free(buf);
    return ok;
}

static uint64_t live_handles(void) {
    uint64_t n = 0;
    REQUIRE(mmsb_live_handles(&n) == MMSB_OK);
    return n;
}

static const uint64_t SENTINEL = 0xA5A5A5A5A5A5A5A5ULL;

#endif /* MMSB_TEST_HARNESS_H */
