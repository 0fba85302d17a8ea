/*
 * test_txn.c: a plain C11 test of the transaction part of the C ABI
 * (rust/mmsb-capi/src/txn_api.rs): begin, read, write delta, intent, commit,
 * abort, free, counters; a conflict that leaves no trace; bad input (null
 * pointers, stale / wrong-kind handles, a transaction used after it finished
 * or after its store closed); and a bank of accounts on which THREADS threads
 * run transfers as transactions, retrying conflicts, while the total is checked
 * in read-only transactions. At the end the balances are compared with a
 * C model that replays the committed transfers (each thread records its own;
 * addition commutes, so their order does not matter for the final balances).
 *
 * Built and run by test/c/run.sh next to the other C tests (shared, static, valgrind).
 */
#define _XOPEN_SOURCE 700

#include "mmsb.h"

#include <ftw.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_rf(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static char *make_tmpdir(void) {
    const char *base = getenv("TMPDIR");
    char tmpl[512];
    snprintf(tmpl, sizeof tmpl, "%s/mmsb_txn_XXXXXX", base && base[0] ? base : "/tmp");
    char *d = mkdtemp(tmpl);
    REQUIRE(d != NULL);
    char *r = malloc(strlen(d) + 1);
    REQUIRE(r != NULL);
    strcpy(r, d);
    return r;
}

static MmsbStore open_dir(const char *dir) {
    MmsbStoreOptions o;
    REQUIRE(mmsb_store_options_default(&o) == MMSB_OK);
    o.durability = MMSB_DURABILITY_BUFFERED;
    MmsbStore s = 0;
    REQUIRE(mmsb_store_open(dir, &o, &s) == MMSB_OK);
    return s;
}

static MmsbPageId create_page(MmsbStore s, uint64_t size) {
    MmsbPageId p = 0;
    REQUIRE(mmsb_page_create(s, size, MMSB_LOCATION_CPU, &p) == MMSB_OK);
    return p;
}

static MmsbDelta dense(MmsbPageId page, uint64_t offset, const void *bytes, uint64_t len) {
    MmsbDelta d = 0;
    REQUIRE(mmsb_delta_new_dense(page, offset, bytes, len, NULL, 0, &d) == MMSB_OK);
    return d;
}

/* ------------------------------------------------------------------ */

static void test_basics_and_conflict(void) {
    char *dir = make_tmpdir();
    MmsbStore s = open_dir(dir);
    uint64_t live0 = live_handles();
    MmsbPageId a = create_page(s, 16), b = create_page(s, 16);

    /* Read-your-writes, then commit. */
    MmsbTxn t = 0;
    uint64_t lsn = 0, lsn0 = 0, epoch = SENTINEL;
    uint8_t buf[16];
    EXPECT_OK(mmsb_txn_begin(s, &t));
    EXPECT_OK(mmsb_txn_page_epoch(t, a, &epoch));
    CHECK(epoch == 0);
    uint8_t v[4] = {1, 2, 3, 4};
    MmsbDelta d = dense(a, 4, v, 4);
    EXPECT_OK(mmsb_txn_write_delta(t, d));
    EXPECT_OK(mmsb_delta_free(d)); /* the transaction holds a copy */
    EXPECT_OK(mmsb_txn_read(t, a, 0, buf, 16));
    CHECK(buf[4] == 1 && buf[7] == 4 && buf[0] == 0);
    EXPECT_OK(mmsb_page_read(s, a, 4, buf, 1));
    CHECK(buf[0] == 0); /* not visible before commit */
    EXPECT_OK(mmsb_txn_set_intent(t, "{\"why\":\"c test\"}"));
    EXPECT_ERR(mmsb_txn_set_intent(t, "{not json"), MMSB_ERR_INVALID_ARGUMENT, "JSON");
    EXPECT_OK(mmsb_store_lsn(s, &lsn0));
    EXPECT_OK(mmsb_txn_commit(t, &lsn));
    CHECK(lsn == lsn0 + 1);
    EXPECT_OK(mmsb_page_read(s, a, 4, buf, 4));
    CHECK(memcmp(buf, v, 4) == 0);
    /* Finished: every call but free is an error. */
    EXPECT_ERR(mmsb_txn_commit(t, &lsn), MMSB_ERR_INVALID_ARGUMENT, "already");
    EXPECT_ERR(mmsb_txn_read(t, a, 0, buf, 1), MMSB_ERR_INVALID_ARGUMENT, "already");
    EXPECT_OK(mmsb_txn_abort(t)); /* a no-op on a finished transaction */
    EXPECT_OK(mmsb_txn_free(t));
    EXPECT_ERR(mmsb_txn_free(t), MMSB_ERR_INVALID_HANDLE, "stale");

    /* A conflict: the transaction read a, another commit changes a. */
    MmsbDurableStats before, after;
    EXPECT_OK(mmsb_txn_begin(s, &t));
    EXPECT_OK(mmsb_txn_read(t, a, 0, buf, 16));
    d = dense(b, 0, v, 4);
    EXPECT_OK(mmsb_txn_write_delta(t, d));
    EXPECT_OK(mmsb_delta_free(d));
    d = dense(a, 0, v, 1);
    EXPECT_OK(mmsb_store_apply_delta(s, d, NULL, NULL));
    EXPECT_OK(mmsb_delta_free(d));
    EXPECT_OK(mmsb_store_durable_stats(s, &before));
    EXPECT_ERR(mmsb_txn_commit(t, &lsn), MMSB_ERR_TRANSACTION_CONFLICT, "epoch");
    bool retryable = false;
    EXPECT_OK(mmsb_error_is_retryable(MMSB_ERR_TRANSACTION_CONFLICT, &retryable));
    CHECK(retryable);
    EXPECT_OK(mmsb_store_durable_stats(s, &after));
    CHECK(after.lsn == before.lsn && after.log_bytes == before.log_bytes);
    EXPECT_OK(mmsb_page_read(s, b, 0, buf, 4));
    CHECK(buf[0] == 0 && buf[3] == 0); /* no trace */
    EXPECT_OK(mmsb_txn_free(t));

    /* Abort, and free of an open transaction. */
    EXPECT_OK(mmsb_txn_begin(s, &t));
    d = dense(b, 0, v, 4);
    EXPECT_OK(mmsb_txn_write_delta(t, d));
    EXPECT_OK(mmsb_txn_abort(t));
    EXPECT_ERR(mmsb_txn_write_delta(t, d), MMSB_ERR_INVALID_ARGUMENT, "already");
    EXPECT_OK(mmsb_txn_free(t));
    EXPECT_OK(mmsb_txn_begin(s, &t));
    EXPECT_OK(mmsb_txn_write_delta(t, d));
    EXPECT_OK(mmsb_txn_free(t));
    EXPECT_OK(mmsb_delta_free(d));
    EXPECT_OK(mmsb_page_read(s, b, 0, buf, 4));
    CHECK(buf[0] == 0);

    MmsbTxnStats st;
    EXPECT_OK(mmsb_txn_stats(s, &st));
    CHECK(st.begun == 4 && st.committed == 1 && st.conflicts == 1 && st.aborted == 3);

    /* Bad input. */
    EXPECT_ERR(mmsb_txn_begin(s, NULL), MMSB_ERR_INVALID_ARGUMENT, "out_txn");
    EXPECT_ERR(mmsb_txn_begin(0, &t), MMSB_ERR_INVALID_HANDLE, "null");
    EXPECT_ERR(mmsb_txn_commit(s, &lsn), MMSB_ERR_INVALID_HANDLE, "not a transaction");
    EXPECT_OK(mmsb_txn_begin(s, &t));
    EXPECT_ERR(mmsb_txn_read(t, a, 10, buf, 8), MMSB_ERR_INVALID_ARGUMENT, "outside");
    EXPECT_ERR(mmsb_txn_read(t, a, 0, NULL, 8), MMSB_ERR_INVALID_ARGUMENT, "buf");
    EXPECT_ERR(mmsb_txn_read(t, 999, 0, buf, 1), MMSB_ERR_NOT_FOUND, "999");
    EXPECT_ERR(mmsb_txn_commit(t, NULL), MMSB_ERR_INVALID_ARGUMENT, "out_lsn");
    EXPECT_ERR(mmsb_txn_set_intent(t, NULL), MMSB_ERR_INVALID_ARGUMENT, "json");
    EXPECT_ERR(mmsb_txn_stats(s, NULL), MMSB_ERR_INVALID_ARGUMENT, "out_stats");

    /* A transaction that outlives its store fails cleanly. */
    CHECK(live_handles() == live0 + 1);
    EXPECT_OK(mmsb_store_close(s));
    EXPECT_ERR(mmsb_txn_commit(t, &lsn), MMSB_ERR_INVALID_HANDLE, "stale");
    EXPECT_OK(mmsb_txn_free(t));
    rm_rf(dir);
    free(dir);
}

/* ------------------------------------------------------------------ */
/* The bank                                                            */
/* ------------------------------------------------------------------ */

#define ACCOUNTS 64
#define PER_PAGE 16
#define PAGES (ACCOUNTS / PER_PAGE)
#define THREADS 8
#define TRANSFERS_PER_THREAD 300
#define INITIAL 1000

typedef struct {
    MmsbStore store;
    MmsbPageId pages[PAGES];
    int id;
    int64_t delta[ACCOUNTS]; /* this thread's committed effect */
    uint64_t retries, committed, reads;
    int failed;
} Worker;

static int64_t get_i64(const uint8_t *b) {
    int64_t v;
    memcpy(&v, b, 8);
    return v;
}

/* One attempt: returns MMSB_OK, MMSB_ERR_TRANSACTION_CONFLICT, or another error. *moved says
 * whether money moved. */
static int32_t try_transfer(Worker *w, uint64_t from, uint64_t to, int64_t amount, int *moved) {
    MmsbTxn t = 0;
    int32_t rc = mmsb_txn_begin(w->store, &t);
    if (rc != MMSB_OK) return rc;
    uint8_t fb[8], tb[8];
    MmsbPageId fp = w->pages[from / PER_PAGE], tp = w->pages[to / PER_PAGE];
    uint64_t fo = (from % PER_PAGE) * 8, to_off = (to % PER_PAGE) * 8;
    *moved = 0;
    rc = mmsb_txn_read(t, fp, fo, fb, 8);
    if (rc == MMSB_OK) rc = mmsb_txn_read(t, tp, to_off, tb, 8);
    if (rc == MMSB_OK && from != to && get_i64(fb) >= amount) {
        int64_t nf = get_i64(fb) - amount, nt = get_i64(tb) + amount;
        MmsbDelta d1 = 0, d2 = 0;
        rc = mmsb_delta_new_dense(fp, fo, (const uint8_t *)&nf, 8, NULL, 0, &d1);
        if (rc == MMSB_OK) rc = mmsb_txn_write_delta(t, d1);
        if (rc == MMSB_OK) rc = mmsb_delta_new_dense(tp, to_off, (const uint8_t *)&nt, 8, NULL, 0, &d2);
        if (rc == MMSB_OK) rc = mmsb_txn_write_delta(t, d2);
        if (d1) mmsb_delta_free(d1);
        if (d2) mmsb_delta_free(d2);
        *moved = 1;
    }
    uint64_t lsn = 0;
    if (rc == MMSB_OK) rc = mmsb_txn_commit(t, &lsn);
    mmsb_txn_free(t);
    return rc;
}

/* A read-only transaction over every page: the total it sees. */
static int32_t read_total(Worker *w, int64_t *total) {
    MmsbTxn t = 0;
    int32_t rc = mmsb_txn_begin(w->store, &t);
    if (rc != MMSB_OK) return rc;
    int64_t sum = 0;
    uint8_t page[PER_PAGE * 8];
    for (int p = 0; p < PAGES && rc == MMSB_OK; p++) {
        rc = mmsb_txn_read(t, w->pages[p], 0, page, sizeof page);
        for (int i = 0; i < PER_PAGE && rc == MMSB_OK; i++) sum += get_i64(page + 8 * i);
    }
    uint64_t lsn = 0;
    if (rc == MMSB_OK) rc = mmsb_txn_commit(t, &lsn);
    mmsb_txn_free(t);
    *total = sum;
    return rc;
}

static void *worker(void *arg) {
    Worker *w = arg;
    Rng r = {0x9E3779B97F4A7C15ULL * (uint64_t)(w->id + 1)};
    for (int i = 0; i < TRANSFERS_PER_THREAD && !w->failed; i++) {
        uint64_t from = rng_below(&r, ACCOUNTS), to = rng_below(&r, ACCOUNTS);
        int64_t amount = 1 + (int64_t)rng_below(&r, 300);
        for (int attempt = 0;; attempt++) {
            int moved = 0;
            int32_t rc = try_transfer(w, from, to, amount, &moved);
            if (rc == MMSB_OK) {
                if (moved) {
                    w->delta[from] -= amount;
                    w->delta[to] += amount;
                }
                w->committed++;
                break;
            }
            if (rc != MMSB_ERR_TRANSACTION_CONFLICT || attempt > 1000) {
                fprintf(stderr, "transfer failed: %d %s\n", rc, last_error());
                w->failed = 1;
                break;
            }
            w->retries++;
            /* Exponential backoff with jitter: up to 50 us << min(attempt, 6). */
            struct timespec ts = {0, 1000 * (long)(1 + rng_below(&r, 50u << (attempt < 6 ? attempt : 6)))};
            nanosleep(&ts, NULL);
        }
        if (i % 10 == 0) {
            int64_t total = 0;
            int32_t rc = read_total(w, &total);
            if (rc == MMSB_OK) {
                w->reads++;
                if (total != (int64_t)ACCOUNTS * INITIAL) {
                    fprintf(stderr, "a read transaction saw total %lld\n", (long long)total);
                    w->failed = 1;
                }
            } else if (rc != MMSB_ERR_TRANSACTION_CONFLICT) {
                w->failed = 1;
            }
        }
    }
    return NULL;
}

static void test_bank(void) {
    char *dir = make_tmpdir();
    MmsbStore s = open_dir(dir);
    uint64_t live0 = live_handles();
    MmsbPageId pages[PAGES];
    int64_t init[PER_PAGE];
    for (int i = 0; i < PER_PAGE; i++) init[i] = INITIAL;
    for (int p = 0; p < PAGES; p++) {
        pages[p] = create_page(s, PER_PAGE * 8);
        MmsbDelta d = dense(pages[p], 0, init, sizeof init);
        EXPECT_OK(mmsb_store_apply_delta(s, d, NULL, NULL));
        EXPECT_OK(mmsb_delta_free(d));
    }
    static Worker ws[THREADS];
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        memset(&ws[i], 0, sizeof ws[i]);
        ws[i].store = s;
        ws[i].id = i;
        memcpy(ws[i].pages, pages, sizeof pages);
        REQUIRE(pthread_create(&th[i], NULL, worker, &ws[i]) == 0);
    }
    uint64_t retries = 0, committed = 0, reads = 0;
    int64_t model[ACCOUNTS];
    for (int a = 0; a < ACCOUNTS; a++) model[a] = INITIAL;
    for (int i = 0; i < THREADS; i++) {
        REQUIRE(pthread_join(th[i], NULL) == 0);
        CHECK(!ws[i].failed);
        retries += ws[i].retries;
        committed += ws[i].committed;
        reads += ws[i].reads;
        for (int a = 0; a < ACCOUNTS; a++) model[a] += ws[i].delta[a];
    }
    CHECK(committed == (uint64_t)THREADS * TRANSFERS_PER_THREAD);
    int ok = 1;
    uint8_t page[PER_PAGE * 8];
    for (int p = 0; p < PAGES; p++) {
        EXPECT_OK(mmsb_page_read(s, pages[p], 0, page, sizeof page));
        for (int i = 0; i < PER_PAGE; i++)
            if (get_i64(page + 8 * i) != model[p * PER_PAGE + i]) ok = 0;
    }
    CHECK(ok); /* no lost update: the store equals the sum of the committed effects */
    MmsbTxnStats st;
    EXPECT_OK(mmsb_txn_stats(s, &st));
    CHECK(st.begun == st.committed + st.aborted);
    CHECK(st.conflicts >= retries);
    CHECK(live_handles() == live0);
    printf("bank: %d threads, %llu transfers, %llu retries, %llu read transactions, %llu conflicts\n",
           THREADS, (unsigned long long)committed, (unsigned long long)retries,
           (unsigned long long)reads, (unsigned long long)st.conflicts);
    EXPECT_OK(mmsb_store_close(s));
    rm_rf(dir);
    free(dir);
}

int main(void) {
    /* Harness helpers this program does not need. */
    (void)page_equals;
    (void)spec_written;
    (void)model_apply;
    (void)make_delta;
    (void)gen_spec;
    uint64_t live_start = live_handles();
    CHECK(live_start == 0);
    test_basics_and_conflict();
    test_bank();
    CHECK(live_handles() == live_start);
    int pass = atomic_load(&g_pass), fail = atomic_load(&g_fail);
    printf("%d passed, %d failed\n", pass, fail);
    return fail == 0 ? 0 : 1;
}
