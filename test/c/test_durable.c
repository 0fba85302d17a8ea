/*
 * test_durable.c: a plain C11 test of the durable-store part of the C ABI
 * (rust/mmsb-capi/src/durable_api.rs): open with options, atomic commits through
 * a commit builder, page functions on durable stores and read-only states,
 * checkpoints, replay to an LSN or a time, page history, log summary, recovery
 * report, durable stats, and bad input (null pointers, stale / forged /
 * wrong-kind handles, bad options, a directory that cannot be created, writes
 * to a read-only state, replay to an LSN that is not retained).
 *
 * Every happy path is checked against a C reference model: the bytes of every
 * page after every commit (so a replay to LSN k is compared with the model at
 * k), and which LSNs touched each page (for page history).
 *
 * Built and run by test/c/run.sh next to test_capi.c (shared, static, valgrind).
 */
#define _XOPEN_SOURCE 700

#include "mmsb.h"

#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>
#include <time.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* A tiny test harness                                                 */
/* ------------------------------------------------------------------ */

#include "harness.h"

/* ------------------------------------------------------------------ */
/* Temporary directories                                               */
/* ------------------------------------------------------------------ */

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
    snprintf(tmpl, sizeof tmpl, "%s/mmsb_durable_XXXXXX", base && base[0] ? base : "/tmp");
    char *d = mkdtemp(tmpl);
    REQUIRE(d != NULL);
    char *r = malloc(strlen(d) + 1);
    REQUIRE(r != NULL);
    strcpy(r, d);
    return r;
}

/* A data directory inside a fresh temporary directory (created by the store). */
static char *data_dir(char **parent) {
    *parent = make_tmpdir();
    char *d = malloc(strlen(*parent) + 16);
    REQUIRE(d != NULL);
    sprintf(d, "%s/data", *parent);
    return d;
}

/* ------------------------------------------------------------------ */
/* The reference model: every page's bytes after every commit          */
/* ------------------------------------------------------------------ */

#define NPAGES 4
#define MAX_LSN 64
static const uint64_t PSIZE[NPAGES] = {64, 300, 1024, 4096};

typedef struct {
    MmsbPageId id[NPAGES];
    int exists[NPAGES];
    uint8_t *bytes[NPAGES];
    /* snapshots[lsn][page]: bytes after commit lsn (NULL if the page did not exist) */
    uint8_t *snap[MAX_LSN + 1][NPAGES];
    /* touched[lsn][page]: number of deltas page received in commit lsn */
    int touched[MAX_LSN + 1][NPAGES];
    uint64_t lsn;
} Model;

static void model_init(Model *m) {
    memset(m, 0, sizeof *m);
    for (int i = 0; i < NPAGES; i++) {
        m->bytes[i] = calloc(PSIZE[i], 1);
        REQUIRE(m->bytes[i] != NULL);
    }
}

static void model_snapshot(Model *m, uint64_t lsn) {
    REQUIRE(lsn <= MAX_LSN);
    m->lsn = lsn;
    for (int i = 0; i < NPAGES; i++) {
        free(m->snap[lsn][i]);
        m->snap[lsn][i] = NULL;
        if (m->exists[i]) {
            m->snap[lsn][i] = malloc(PSIZE[i]);
            REQUIRE(m->snap[lsn][i] != NULL);
            memcpy(m->snap[lsn][i], m->bytes[i], PSIZE[i]);
        }
    }
}

static void model_free(Model *m) {
    for (int i = 0; i < NPAGES; i++) {
        free(m->bytes[i]);
        for (int l = 0; l <= MAX_LSN; l++) free(m->snap[l][i]);
    }
}

/* Whether the store (or state) `s` holds exactly the model's pages at `lsn`. */
static int store_matches(MmsbStore s, const Model *m, uint64_t lsn) {
    uint64_t want = 0;
    for (int i = 0; i < NPAGES; i++) {
        if (m->snap[lsn][i] == NULL) {
            MmsbPageInfo info;
            if (m->id[i] != 0 && mmsb_page_info(s, m->id[i], &info) != MMSB_ERR_NOT_FOUND) return 0;
            continue;
        }
        want++;
        if (!page_equals(s, m->id[i], m->snap[lsn][i], PSIZE[i])) return 0;
    }
    uint64_t n = 0;
    if (mmsb_page_list(s, NULL, 0, &n) != MMSB_OK) return 0;
    return n == want;
}

/* One commit of 1..3 random deltas on existing pages, through a builder. */
static void random_commit(MmsbStore s, Model *m, Rng *r) {
    MmsbCommit c = 0;
    REQUIRE(mmsb_commit_begin(s, &c) == MMSB_OK);
    int nd = 1 + (int)rng_below(r, 3);
    Spec specs[3];
    int pages[3];
    for (int k = 0; k < nd; k++) {
        int i;
        do i = (int)rng_below(r, NPAGES);
        while (!m->exists[i]);
        pages[k] = i;
        gen_spec(r, PSIZE[i], &specs[k]);
        MmsbDelta d = 0;
        REQUIRE(make_delta(m->id[i], &specs[k], &d) == MMSB_OK);
        EXPECT_OK(mmsb_commit_add_delta(c, d));
        EXPECT_OK(mmsb_delta_free(d)); /* the commit holds a copy */
    }
    uint64_t n = 0;
    EXPECT_OK(mmsb_commit_op_count(c, &n));
    CHECK(n == (uint64_t)nd);
    uint64_t lsn = 0;
    EXPECT_OK(mmsb_commit_execute(c, &lsn));
    CHECK(lsn == m->lsn + 1);
    EXPECT_OK(mmsb_commit_op_count(c, &n));
    CHECK(n == 0);
    EXPECT_OK(mmsb_commit_free(c));
    for (int k = 0; k < nd; k++) {
        model_apply(m->bytes[pages[k]], &specs[k]);
        m->touched[lsn][pages[k]]++;
    }
    model_snapshot(m, lsn);
}

static MmsbStoreOptions default_options(void) {
    MmsbStoreOptions o;
    memset(&o, 0, sizeof o);
    REQUIRE(mmsb_store_options_default(&o) == MMSB_OK);
    return o;
}

/* ------------------------------------------------------------------ */
/* Options and open                                                    */
/* ------------------------------------------------------------------ */

static void test_options_and_open(void) {
    MmsbStoreOptions o = default_options();
    CHECK(o.durability == MMSB_DURABILITY_IMMEDIATE);
    CHECK(o.segment_bytes == 64ull << 20);
    CHECK(o.checkpoints_kept == 2);
    CHECK(!o.compression && !o.recover_past_corruption);
    CHECK(o.buffered_max_delay_ms >= 1);
    EXPECT_ERR(mmsb_store_options_default(NULL), MMSB_ERR_INVALID_ARGUMENT, "out_options");

    char *parent;
    char *dir = data_dir(&parent);
    MmsbStore s = SENTINEL;
    EXPECT_ERR(mmsb_store_open(NULL, &o, &s), MMSB_ERR_INVALID_ARGUMENT, "dir");
    EXPECT_ERR(mmsb_store_open("", &o, &s), MMSB_ERR_INVALID_ARGUMENT, "empty");
    EXPECT_ERR(mmsb_store_open(dir, NULL, &s), MMSB_ERR_INVALID_ARGUMENT, "options");
    EXPECT_ERR(mmsb_store_open(dir, &o, NULL), MMSB_ERR_INVALID_ARGUMENT, "out_store");
    EXPECT_ERR(mmsb_store_open("\xff\xfe", &o, &s), MMSB_ERR_INVALID_ARGUMENT, "UTF-8");
    MmsbStoreOptions bad = o;
    bad.durability = 7;
    EXPECT_ERR(mmsb_store_open(dir, &bad, &s), MMSB_ERR_INVALID_ARGUMENT, "durability");
    bad = o;
    bad.segment_bytes = 0;
    EXPECT_ERR(mmsb_store_open(dir, &bad, &s), MMSB_ERR_INVALID_ARGUMENT, "segment_bytes");
    bad = o;
    bad.checkpoints_kept = 0;
    EXPECT_ERR(mmsb_store_open(dir, &bad, &s), MMSB_ERR_INVALID_ARGUMENT, "checkpoints_kept");
    bad = o;
    bad.durability = MMSB_DURABILITY_BUFFERED;
    bad.buffered_max_delay_ms = 0;
    EXPECT_ERR(mmsb_store_open(dir, &bad, &s), MMSB_ERR_INVALID_ARGUMENT, "buffered_max_delay_ms");
    CHECK(s == SENTINEL);

    /* A directory below a regular file cannot be created. */
    char *file = malloc(strlen(parent) + 16);
    REQUIRE(file != NULL);
    sprintf(file, "%s/afile", parent);
    FILE *f = fopen(file, "w");
    REQUIRE(f != NULL);
    fputs("x", f);
    fclose(f);
    char *below = malloc(strlen(file) + 16);
    REQUIRE(below != NULL);
    sprintf(below, "%s/sub", file);
    EXPECT_ERR(mmsb_store_open(below, &o, &s), MMSB_ERR_IO, "afile");
    CHECK(s == SENTINEL);

    /* A fresh directory opens empty, at LSN 0. */
    EXPECT_OK(mmsb_store_open(dir, &o, &s));
    uint64_t lsn = SENTINEL;
    EXPECT_OK(mmsb_store_lsn(s, &lsn));
    CHECK(lsn == 0);
    uint64_t n = SENTINEL;
    EXPECT_OK(mmsb_page_list(s, NULL, 0, &n));
    CHECK(n == 0);
    MmsbRecoveryReport rr;
    EXPECT_OK(mmsb_recovery_report(s, &rr));
    CHECK(rr.lsn == 0 && rr.commits_replayed == 0 && !rr.has_checkpoint && rr.torn_tail_bytes == 0);
    EXPECT_OK(mmsb_store_close(s));
    EXPECT_ERR(mmsb_store_close(s), MMSB_ERR_INVALID_HANDLE, "stale");
    EXPECT_ERR(mmsb_store_lsn(s, &lsn), MMSB_ERR_INVALID_HANDLE, "stale");

    rm_rf(parent);
    free(below);
    free(file);
    free(dir);
    free(parent);
}

/* ------------------------------------------------------------------ */
/* Commits, reads, reopen, checkpoints, replay, history                */
/* ------------------------------------------------------------------ */

static void check_history(MmsbStore s, const Model *m, int i, uint64_t from, uint64_t to) {
    MmsbHistory h = 0;
    EXPECT_OK(mmsb_page_history(s, m->id[i], from, to, &h));
    uint64_t n = SENTINEL;
    EXPECT_OK(mmsb_history_count(h, &n));
    uint64_t want = 0;
    for (uint64_t l = from; l <= to && l <= MAX_LSN; l++) want += (uint64_t)m->touched[l][i];
    CHECK(n == want);
    uint64_t k = 0, prev = 0;
    int ok = 1;
    for (uint64_t l = from; l <= to && l <= MAX_LSN; l++) {
        for (int t = 0; t < m->touched[l][i]; t++, k++) {
            uint64_t lsn = 0, ts = 0;
            MmsbDelta d = 0;
            if (mmsb_history_entry(h, k, &lsn, &ts, &d) != MMSB_OK) {
                ok = 0;
                continue;
            }
            MmsbDeltaInfo info;
            if (lsn != l || ts == 0 || ts < prev || mmsb_delta_info(d, &info) != MMSB_OK ||
                info.page != m->id[i])
                ok = 0;
            prev = ts;
            mmsb_delta_free(d);
        }
    }
    CHECK(ok);
    uint64_t lsn = SENTINEL, ts = SENTINEL;
    MmsbDelta d = SENTINEL;
    EXPECT_ERR(mmsb_history_entry(h, n, &lsn, &ts, &d), MMSB_ERR_INVALID_ARGUMENT, "does not exist");
    CHECK(d == SENTINEL && lsn == SENTINEL);
    EXPECT_OK(mmsb_history_free(h));
    EXPECT_ERR(mmsb_history_count(h, &n), MMSB_ERR_INVALID_HANDLE, "stale");
}

/* Every write through the page API on a read-only state is MMSB_ERR_READ_ONLY. */
static void check_read_only(MmsbState st, MmsbPageId p) {
    MmsbPageId np = SENTINEL;
    EXPECT_ERR(mmsb_page_create(st, 16, MMSB_LOCATION_CPU, &np), MMSB_ERR_READ_ONLY, "read-only");
    CHECK(np == SENTINEL);
    EXPECT_ERR(mmsb_page_delete(st, p), MMSB_ERR_READ_ONLY, "read-only");
    EXPECT_ERR(mmsb_page_set_metadata(st, p, "k", (const uint8_t *)"v", 1), MMSB_ERR_READ_ONLY, NULL);
    EXPECT_ERR(mmsb_page_remove_metadata(st, p, "k"), MMSB_ERR_READ_ONLY, NULL);
    EXPECT_ERR(mmsb_page_set_view(st, p, MMSB_DTYPE_U8, 4), MMSB_ERR_READ_ONLY, NULL);
    MmsbDelta d = 0;
    uint8_t one = 1;
    REQUIRE(mmsb_delta_new_dense(p, 0, &one, 1, NULL, 0, &d) == MMSB_OK);
    bool changed = false;
    EXPECT_ERR(mmsb_store_apply_delta(st, d, &changed, NULL), MMSB_ERR_READ_ONLY, NULL);
    EXPECT_ERR(mmsb_store_check_delta(st, d), MMSB_ERR_READ_ONLY, NULL);
    EXPECT_OK(mmsb_delta_free(d));
    /* A state is not a store to close or commit to, nor a history. */
    MmsbCommit c = SENTINEL;
    EXPECT_ERR(mmsb_commit_begin(st, &c), MMSB_ERR_INVALID_HANDLE, "not a durable store");
    CHECK(c == SENTINEL);
    EXPECT_ERR(mmsb_store_close(st), MMSB_ERR_INVALID_HANDLE, "not a store");
    uint64_t n;
    EXPECT_ERR(mmsb_history_count(st, &n), MMSB_ERR_INVALID_HANDLE, "not a page history");
}

static void test_commit_replay_reopen(void) {
    uint64_t live0 = live_handles();
    char *parent;
    char *dir = data_dir(&parent);
    MmsbStoreOptions o = default_options();
    o.segment_bytes = 2048; /* several segments */
    MmsbStore s = 0;
    REQUIRE(mmsb_store_open(dir, &o, &s) == MMSB_OK);
    Model m;
    model_init(&m);
    model_snapshot(&m, 0);
    Rng r = {0x9E3779B97F4A7C15ULL};

    /* LSN 1: create three pages in one commit; the ids come back in op order. */
    MmsbCommit c = 0;
    EXPECT_OK(mmsb_commit_begin(s, &c));
    for (int i = 0; i < 3; i++) EXPECT_OK(mmsb_commit_create_page(c, PSIZE[i], MMSB_LOCATION_CPU));
    EXPECT_ERR(mmsb_commit_create_page(c, 8, 9), MMSB_ERR_INVALID_ARGUMENT, "location");
    uint64_t n = SENTINEL;
    EXPECT_OK(mmsb_commit_created_pages(c, NULL, 0, &n));
    CHECK(n == 0); /* nothing executed yet */
    uint64_t lsn = 0;
    EXPECT_OK(mmsb_commit_execute(c, &lsn));
    CHECK(lsn == 1);
    EXPECT_OK(mmsb_commit_created_pages(c, NULL, 0, &n));
    CHECK(n == 3);
    MmsbPageId ids[3] = {SENTINEL, SENTINEL, SENTINEL};
    EXPECT_ERR(mmsb_commit_created_pages(c, ids, 2, &n), MMSB_ERR_BUFFER_TOO_SMALL, "too small");
    CHECK(n == 3 && ids[0] == SENTINEL);
    EXPECT_ERR(mmsb_commit_created_pages(c, NULL, 3, &n), MMSB_ERR_INVALID_ARGUMENT, "buf");
    EXPECT_OK(mmsb_commit_created_pages(c, ids, 3, &n));
    CHECK(ids[0] != 0 && ids[1] == ids[0] + 1 && ids[2] == ids[1] + 1);
    /* An empty commit is rejected. */
    EXPECT_ERR(mmsb_commit_execute(c, &lsn), MMSB_ERR_INVALID_ARGUMENT, "at least one");
    EXPECT_OK(mmsb_commit_free(c));
    for (int i = 0; i < 3; i++) {
        m.id[i] = ids[i];
        m.exists[i] = 1;
    }
    model_snapshot(&m, 1);
    CHECK(store_matches(s, &m, 1));

    /* LSN 2: the fourth page through the page API (a one-op commit). */
    EXPECT_OK(mmsb_page_create(s, PSIZE[3], MMSB_LOCATION_CPU, &m.id[3]));
    m.exists[3] = 1;
    model_snapshot(&m, 2);
    EXPECT_OK(mmsb_store_lsn(s, &lsn));
    CHECK(lsn == 2);

    /* LSNs 3..12: random commits. */
    for (int k = 0; k < 10; k++) random_commit(s, &m, &r);
    CHECK(store_matches(s, &m, m.lsn));

    /* A commit with one bad op changes nothing, and keeps its ops. */
    {
        uint64_t before = m.lsn;
        EXPECT_OK(mmsb_commit_begin(s, &c));
        uint8_t pay[8] = {9, 9, 9, 9, 9, 9, 9, 9};
        MmsbDelta good = 0, outside = 0;
        REQUIRE(mmsb_delta_new_dense(m.id[0], 0, pay, 8, NULL, 0, &good) == MMSB_OK);
        REQUIRE(mmsb_delta_new_dense(m.id[0], PSIZE[0] - 4, pay, 8, NULL, 0, &outside) == MMSB_OK);
        EXPECT_OK(mmsb_commit_add_delta(c, good));
        EXPECT_OK(mmsb_commit_add_delta(c, outside));
        lsn = SENTINEL;
        EXPECT_ERR(mmsb_commit_execute(c, &lsn), MMSB_ERR_INVALID_ARGUMENT, "operation 1");
        CHECK(lsn == SENTINEL);
        EXPECT_OK(mmsb_commit_op_count(c, &n));
        CHECK(n == 2);
        EXPECT_OK(mmsb_store_lsn(s, &lsn));
        CHECK(lsn == before);
        CHECK(store_matches(s, &m, before));
        /* Compare-and-set on a stale epoch: EPOCH_MISMATCH, nothing changes. */
        MmsbCommit c2 = 0;
        EXPECT_OK(mmsb_commit_begin(s, &c2));
        EXPECT_OK(mmsb_delta_set_expected_epoch(good, 12345));
        EXPECT_OK(mmsb_commit_add_delta(c2, good));
        EXPECT_ERR(mmsb_commit_execute(c2, &lsn), MMSB_ERR_EPOCH_MISMATCH, "expected epoch");
        EXPECT_OK(mmsb_commit_free(c2));
        EXPECT_OK(mmsb_commit_free(c)); /* pending ops are dropped, never committed */
        EXPECT_OK(mmsb_delta_free(good));
        EXPECT_OK(mmsb_delta_free(outside));
        EXPECT_OK(mmsb_store_lsn(s, &lsn));
        CHECK(lsn == before);
    }

    /* Metadata and view through a commit, and through the page API. */
    {
        EXPECT_OK(mmsb_commit_begin(s, &c));
        EXPECT_OK(mmsb_commit_set_metadata(c, m.id[1], "owner", (const uint8_t *)"sim", 3));
        EXPECT_OK(mmsb_commit_set_view(c, m.id[2], MMSB_DTYPE_F64, 128));
        EXPECT_OK(mmsb_commit_set_metadata(c, m.id[1], "gone", NULL, 0));
        EXPECT_OK(mmsb_commit_remove_metadata(c, m.id[1], "gone"));
        EXPECT_ERR(mmsb_commit_set_view(c, m.id[2], 99, 1), MMSB_ERR_INVALID_ARGUMENT, NULL);
        EXPECT_ERR(mmsb_commit_set_metadata(c, m.id[1], NULL, NULL, 0), MMSB_ERR_INVALID_ARGUMENT, "key");
        EXPECT_ERR(mmsb_commit_set_metadata(c, m.id[1], "k", NULL, 3), MMSB_ERR_INVALID_ARGUMENT, "value");
        EXPECT_ERR(mmsb_commit_remove_metadata(c, m.id[1], NULL), MMSB_ERR_INVALID_ARGUMENT, "key");
        EXPECT_OK(mmsb_commit_execute(c, &lsn));
        CHECK(lsn == m.lsn + 1);
        EXPECT_OK(mmsb_commit_free(c));
        model_snapshot(&m, lsn);
        uint8_t buf[8];
        uint64_t len = 0;
        EXPECT_OK(mmsb_page_get_metadata(s, m.id[1], "owner", buf, sizeof buf, &len));
        CHECK(len == 3 && memcmp(buf, "sim", 3) == 0);
        EXPECT_ERR(mmsb_page_get_metadata(s, m.id[1], "gone", buf, sizeof buf, &len), MMSB_ERR_NOT_FOUND, NULL);
        MmsbPageInfo info;
        EXPECT_OK(mmsb_page_info(s, m.id[2], &info));
        CHECK(info.dtype == MMSB_DTYPE_F64 && info.view_len == 128 && info.size == PSIZE[2]);
        /* page API writes on a durable store: each a one-op commit */
        EXPECT_OK(mmsb_page_set_metadata(s, m.id[0], "tag", (const uint8_t *)"x", 1));
        EXPECT_OK(mmsb_page_remove_metadata(s, m.id[0], "tag"));
        EXPECT_ERR(mmsb_page_remove_metadata(s, m.id[0], "tag"), MMSB_ERR_NOT_FOUND, NULL);
        EXPECT_OK(mmsb_page_set_view(s, m.id[2], MMSB_DTYPE_NONE, 0));
        EXPECT_OK(mmsb_store_lsn(s, &lsn));
        CHECK(lsn == m.lsn + 3);
        model_snapshot(&m, m.lsn + 1);
        model_snapshot(&m, m.lsn + 1);
        model_snapshot(&m, m.lsn + 1);
        uint8_t v[3] = {7, 7, 7};
        MmsbDelta d = 0;
        REQUIRE(mmsb_delta_new_dense(m.id[0], 5, v, 3, NULL, 0, &d) == MMSB_OK);
        EXPECT_OK(mmsb_store_check_delta(s, d));
        bool changed = false;
        uint64_t epoch = 0, epoch0;
        EXPECT_OK(mmsb_page_info(s, m.id[0], &info));
        epoch0 = info.epoch;
        EXPECT_OK(mmsb_store_apply_delta(s, d, &changed, &epoch));
        CHECK(changed && epoch == epoch0 + 1);
        memcpy(m.bytes[0] + 5, v, 3);
        m.touched[m.lsn + 1][0]++;
        model_snapshot(&m, m.lsn + 1);
        EXPECT_OK(mmsb_store_apply_delta(s, d, &changed, &epoch)); /* a no-op, still a commit */
        CHECK(!changed && epoch == epoch0 + 1);
        m.touched[m.lsn + 1][0]++;
        model_snapshot(&m, m.lsn + 1);
        EXPECT_OK(mmsb_delta_free(d));
        /* a borrow of a durable store's page */
        const uint8_t *ptr = NULL;
        MmsbBorrow b = 0;
        EXPECT_OK(mmsb_page_borrow(s, m.id[0], &ptr, &len, &b));
        CHECK(len == PSIZE[0] && memcmp(ptr, m.bytes[0], len) == 0);
        EXPECT_OK(mmsb_borrow_release(b));
        MmsbStoreStats ss;
        EXPECT_OK(mmsb_store_stats(s, &ss));
        CHECK(ss.pages == NPAGES);
    }

    for (int k = 0; k < 8; k++) random_commit(s, &m, &r);
    /* LSN of the page deletion */
    EXPECT_OK(mmsb_page_delete(s, m.id[3]));
    m.exists[3] = 0;
    model_snapshot(&m, m.lsn + 1);
    for (int k = 0; k < 4; k++) random_commit(s, &m, &r);
    EXPECT_OK(mmsb_store_lsn(s, &lsn));
    CHECK(lsn == m.lsn);
    CHECK(store_matches(s, &m, m.lsn));

    /* Stats and log summary. */
    MmsbDurableStats ds;
    EXPECT_OK(mmsb_store_durable_stats(s, &ds));
    CHECK(ds.lsn == m.lsn && ds.durable_lsn == m.lsn && ds.commits == m.lsn && ds.log_bytes > 0 &&
          ds.log_syncs >= 1 && ds.log_syncs <= ds.commits);
    MmsbLogSummary ls;
    EXPECT_OK(mmsb_log_summary(s, &ls));
    CHECK(ls.commits == m.lsn && ls.first_lsn == 1 && ls.last_lsn == m.lsn && ls.segments >= 2 &&
          ls.records >= ls.commits && ls.stored_bytes > 0 && ls.compressed_frames == 0 &&
          ls.compression_ratio == 1.0);

    /* Page history lists exactly the LSNs that wrote each page. */
    for (int i = 0; i < NPAGES; i++) check_history(s, &m, i, 1, m.lsn);
    check_history(s, &m, 0, 3, 9);
    check_history(s, &m, 1, m.lsn, m.lsn);
    MmsbHistory h = SENTINEL;
    EXPECT_ERR(mmsb_page_history(s, m.id[0], 5, 4, &h), MMSB_ERR_INVALID_ARGUMENT, "after");
    EXPECT_ERR(mmsb_page_history(s, m.id[0], 1, 4, NULL), MMSB_ERR_INVALID_ARGUMENT, "out_history");
    CHECK(h == SENTINEL);

    /* Replay to every LSN equals the model there; writes to it are read-only. */
    int replay_ok = 1;
    for (uint64_t l = 0; l <= m.lsn; l++) {
        MmsbState st = 0;
        if (mmsb_replay_to_lsn(s, l, &st) != MMSB_OK) {
            replay_ok = 0;
            continue;
        }
        uint64_t sl = SENTINEL, ts = SENTINEL;
        if (mmsb_state_info(st, &sl, &ts) != MMSB_OK || sl != l || (l > 0 && ts == 0)) replay_ok = 0;
        if (!store_matches(st, &m, l)) replay_ok = 0;
        if (mmsb_store_lsn(st, &sl) != MMSB_OK || sl != l) replay_ok = 0;
        if (l == 5) check_read_only(st, m.id[0]);
        if (l == m.lsn / 2) {
            /* a borrow outlives its state */
            const uint8_t *ptr = NULL;
            uint64_t len = 0;
            MmsbBorrow b = 0;
            EXPECT_OK(mmsb_page_borrow(st, m.id[1], &ptr, &len, &b));
            EXPECT_OK(mmsb_state_free(st));
            CHECK(len == PSIZE[1] && memcmp(ptr, m.snap[l][1], len) == 0);
            EXPECT_OK(mmsb_borrow_release(b));
            continue;
        }
        if (mmsb_state_free(st) != MMSB_OK) replay_ok = 0;
    }
    CHECK(replay_ok);
    MmsbState st = SENTINEL;
    EXPECT_ERR(mmsb_replay_to_lsn(s, m.lsn + 1, &st), MMSB_ERR_NOT_FOUND, "not retained");
    EXPECT_ERR(mmsb_replay_to_lsn(s, 1, NULL), MMSB_ERR_INVALID_ARGUMENT, "out_state");
    CHECK(st == SENTINEL);
    /* Replay to a time: now = the latest state; 0 = before the first commit. */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t now_ns = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
    EXPECT_OK(mmsb_replay_to_time(s, now_ns + 1000000000ull, &st));
    CHECK(store_matches(st, &m, m.lsn));
    EXPECT_OK(mmsb_state_free(st));
    EXPECT_ERR(mmsb_state_free(st), MMSB_ERR_INVALID_HANDLE, "stale");
    EXPECT_OK(mmsb_replay_to_time(s, 0, &st));
    EXPECT_OK(mmsb_store_lsn(st, &lsn));
    CHECK(lsn == 0 && store_matches(st, &m, 0));
    EXPECT_OK(mmsb_state_free(st));
    /* the timestamp of commit 7 selects LSN 7 */
    {
        MmsbHistory hh = 0;
        uint64_t l7 = 7, ts7 = 0;
        int pi = 0;
        while (pi < NPAGES && m.touched[l7][pi] == 0) pi++;
        if (pi < NPAGES) {
            EXPECT_OK(mmsb_page_history(s, m.id[pi], l7, l7, &hh));
            MmsbDelta d = 0;
            uint64_t el = 0;
            EXPECT_OK(mmsb_history_entry(hh, 0, &el, &ts7, &d));
            EXPECT_OK(mmsb_delta_free(d));
            EXPECT_OK(mmsb_history_free(hh));
            EXPECT_OK(mmsb_replay_to_time(s, ts7, &st));
            EXPECT_OK(mmsb_store_lsn(st, &lsn));
            /* commits 8.. may share the nanosecond; never earlier than 7 */
            CHECK(lsn >= 7 && store_matches(st, &m, lsn));
            EXPECT_OK(mmsb_state_free(st));
        }
    }

    /* Close, reopen: the same bytes, and recovery replayed every commit. */
    uint64_t final_lsn = m.lsn;
    EXPECT_OK(mmsb_store_close(s));
    EXPECT_OK(mmsb_store_open(dir, &o, &s));
    CHECK(store_matches(s, &m, final_lsn));
    MmsbRecoveryReport rr;
    EXPECT_OK(mmsb_recovery_report(s, &rr));
    CHECK(rr.lsn == final_lsn && rr.commits_replayed == final_lsn && !rr.has_checkpoint &&
          rr.bytes_replayed > 0 && rr.torn_tail_bytes == 0 && rr.corruption_bytes_dropped == 0);
    EXPECT_ERR(mmsb_page_info(s, m.id[1], NULL), MMSB_ERR_INVALID_ARGUMENT, "out_info");

    /* Checkpoint, more commits, reopen: recovery starts from the checkpoint. */
    MmsbCheckpointInfo ci;
    EXPECT_OK(mmsb_checkpoint(s, &ci));
    CHECK(ci.lsn == final_lsn && ci.pages == NPAGES - 1 && ci.file_bytes > 0 && ci.timestamp_ns > 0);
    EXPECT_ERR(mmsb_checkpoint(s, NULL), MMSB_ERR_INVALID_ARGUMENT, "out_info");
    for (int k = 0; k < 5; k++) random_commit(s, &m, &r);
    EXPECT_OK(mmsb_store_close(s));
    EXPECT_OK(mmsb_store_open(dir, &o, &s));
    CHECK(store_matches(s, &m, m.lsn));
    EXPECT_OK(mmsb_recovery_report(s, &rr));
    CHECK(rr.has_checkpoint && rr.checkpoint_lsn == final_lsn && rr.commits_replayed == 5 &&
          rr.lsn == m.lsn && rr.checkpoints_rejected == 0);
    /* The checkpoint made the log before it unnecessary: it was pruned, so the
     * LSNs before the checkpoint are no longer retained. */
    st = SENTINEL;
    EXPECT_ERR(mmsb_replay_to_lsn(s, 3, &st), MMSB_ERR_NOT_FOUND, "not retained");
    CHECK(st == SENTINEL);
    EXPECT_OK(mmsb_replay_to_lsn(s, final_lsn, &st));
    CHECK(store_matches(st, &m, final_lsn));
    EXPECT_OK(mmsb_state_free(st));
    EXPECT_OK(mmsb_replay_to_lsn(s, final_lsn + 2, &st));
    CHECK(store_matches(st, &m, final_lsn + 2));
    EXPECT_OK(mmsb_state_free(st));
    EXPECT_OK(mmsb_store_close(s));

    rm_rf(parent);
    free(dir);
    free(parent);
    model_free(&m);
    CHECK(live_handles() == live0);
}

/* With one checkpoint kept and small segments, old LSNs are pruned: replaying to
 * them (or listing their history) is MMSB_ERR_NOT_FOUND. */
static void test_retention(void) {
    uint64_t live0 = live_handles();
    char *parent;
    char *dir = data_dir(&parent);
    MmsbStoreOptions o = default_options();
    o.segment_bytes = 256;
    o.checkpoints_kept = 1;
    o.compression = true;
    MmsbStore s = 0;
    REQUIRE(mmsb_store_open(dir, &o, &s) == MMSB_OK);
    MmsbPageId p = 0;
    EXPECT_OK(mmsb_page_create(s, 4096, MMSB_LOCATION_CPU, &p));
    uint8_t zeros[512];
    memset(zeros, 0, sizeof zeros);
    for (int k = 0; k < 20; k++) {
        uint8_t pay[512];
        memset(pay, 0, sizeof pay);
        pay[k] = (uint8_t)(k + 1); /* mostly zeros: compresses */
        MmsbDelta d = 0;
        REQUIRE(mmsb_delta_new_dense(p, 0, pay, sizeof pay, NULL, 0, &d) == MMSB_OK);
        EXPECT_OK(mmsb_store_apply_delta(s, d, NULL, NULL));
        EXPECT_OK(mmsb_delta_free(d));
    }
    MmsbLogSummary ls;
    EXPECT_OK(mmsb_log_summary(s, &ls));
    CHECK(ls.commits == 21 && ls.compressed_frames >= 1 && ls.compression_ratio > 1.0);
    MmsbCheckpointInfo ci;
    EXPECT_OK(mmsb_checkpoint(s, &ci));
    CHECK(ci.lsn == 21 && ci.pages == 1);
    for (int k = 0; k < 3; k++) {
        uint8_t v = (uint8_t)(100 + k);
        MmsbDelta d = 0;
        REQUIRE(mmsb_delta_new_dense(p, 0, &v, 1, NULL, 0, &d) == MMSB_OK);
        EXPECT_OK(mmsb_store_apply_delta(s, d, NULL, NULL));
        EXPECT_OK(mmsb_delta_free(d));
    }
    EXPECT_OK(mmsb_checkpoint(s, &ci));
    CHECK(ci.lsn == 24);
    EXPECT_OK(mmsb_log_summary(s, &ls));
    CHECK(ls.first_lsn > 1 && ls.last_lsn == 24);
    MmsbState st = SENTINEL;
    EXPECT_ERR(mmsb_replay_to_lsn(s, 1, &st), MMSB_ERR_NOT_FOUND, "not retained");
    CHECK(st == SENTINEL);
    MmsbHistory h = SENTINEL;
    EXPECT_ERR(mmsb_page_history(s, p, 1, 24, &h), MMSB_ERR_NOT_FOUND, "no longer in the log");
    CHECK(h == SENTINEL);
    EXPECT_OK(mmsb_replay_to_lsn(s, 24, &st));
    uint8_t b = 0;
    EXPECT_OK(mmsb_page_read(st, p, 0, &b, 1));
    CHECK(b == 102);
    EXPECT_OK(mmsb_state_free(st));
    EXPECT_OK(mmsb_store_close(s));
    rm_rf(parent);
    free(dir);
    free(parent);
    CHECK(live_handles() == live0);
}

/* Buffered and no-durability modes. */
static void test_modes(void) {
    uint64_t live0 = live_handles();
    char *parent;
    char *dir = data_dir(&parent);
    MmsbStoreOptions o = default_options();
    o.durability = MMSB_DURABILITY_BUFFERED;
    o.buffered_max_delay_ms = 5;
    MmsbStore s = 0;
    REQUIRE(mmsb_store_open(dir, &o, &s) == MMSB_OK);
    MmsbPageId p = 0;
    EXPECT_OK(mmsb_page_create(s, 32, MMSB_LOCATION_CPU, &p));
    uint8_t v[4] = {1, 2, 3, 4};
    MmsbDelta d = 0;
    REQUIRE(mmsb_delta_new_dense(p, 4, v, 4, NULL, 0, &d) == MMSB_OK);
    EXPECT_OK(mmsb_store_apply_delta(s, d, NULL, NULL));
    EXPECT_OK(mmsb_store_sync(s));
    MmsbDurableStats ds;
    EXPECT_OK(mmsb_store_durable_stats(s, &ds));
    CHECK(ds.durable_lsn == 2 && ds.lsn == 2);
    EXPECT_OK(mmsb_store_close(s));
    o.durability = MMSB_DURABILITY_IMMEDIATE;
    EXPECT_OK(mmsb_store_open(dir, &o, &s));
    uint8_t got[8];
    EXPECT_OK(mmsb_page_read(s, p, 0, got, 8));
    CHECK(memcmp(got + 4, v, 4) == 0 && got[0] == 0);
    EXPECT_OK(mmsb_store_close(s));

    o.durability = MMSB_DURABILITY_NONE;
    EXPECT_OK(mmsb_store_open(dir, &o, &s));
    uint64_t n = SENTINEL;
    EXPECT_OK(mmsb_page_list(s, NULL, 0, &n));
    CHECK(n == 0); /* no files read */
    EXPECT_OK(mmsb_page_create(s, 32, MMSB_LOCATION_CPU, &p));
    EXPECT_OK(mmsb_store_apply_delta(s, d, NULL, NULL));
    MmsbCheckpointInfo ci;
    MmsbState st = SENTINEL;
    MmsbLogSummary ls;
    MmsbHistory h = SENTINEL;
    EXPECT_ERR(mmsb_checkpoint(s, &ci), MMSB_ERR_UNSUPPORTED, "in-memory");
    EXPECT_ERR(mmsb_replay_to_lsn(s, 1, &st), MMSB_ERR_UNSUPPORTED, "in-memory");
    EXPECT_ERR(mmsb_log_summary(s, &ls), MMSB_ERR_UNSUPPORTED, "in-memory");
    EXPECT_ERR(mmsb_page_history(s, p, 1, 2, &h), MMSB_ERR_UNSUPPORTED, "in-memory");
    CHECK(st == SENTINEL && h == SENTINEL);
    EXPECT_OK(mmsb_store_sync(s));
    EXPECT_OK(mmsb_store_close(s));
    EXPECT_OK(mmsb_delta_free(d));
    rm_rf(parent);
    free(dir);
    free(parent);
    CHECK(live_handles() == live0);
}

/* Null, stale, forged and wrong-kind handles; null out-pointers. */
static void test_bad_handles(void) {
    uint64_t live0 = live_handles();
    char *parent;
    char *dir = data_dir(&parent);
    MmsbStoreOptions o = default_options();
    MmsbStore s = 0, mem = 0;
    REQUIRE(mmsb_store_open(dir, &o, &s) == MMSB_OK);
    REQUIRE(mmsb_store_open_memory(&mem) == MMSB_OK);
    MmsbDelta d = 0;
    uint8_t one = 1;
    REQUIRE(mmsb_delta_new_dense(1, 0, &one, 1, NULL, 0, &d) == MMSB_OK);
    MmsbCommit c = 0;
    REQUIRE(mmsb_commit_begin(s, &c) == MMSB_OK);
    uint64_t forged = (s & 0xFF00000000000000ull) | 0x00FFFFFF0000BEEFull;
    uint64_t x = SENTINEL;
    MmsbCommit cx = SENTINEL;
    MmsbCheckpointInfo ci;
    MmsbDurableStats ds;
    MmsbLogSummary ls;
    MmsbRecoveryReport rr;
    MmsbState st = SENTINEL;
    MmsbHistory h = SENTINEL;

    /* null handles */
    EXPECT_ERR(mmsb_commit_begin(0, &cx), MMSB_ERR_INVALID_HANDLE, "null");
    EXPECT_ERR(mmsb_checkpoint(0, &ci), MMSB_ERR_INVALID_HANDLE, "null");
    EXPECT_ERR(mmsb_commit_execute(0, &x), MMSB_ERR_INVALID_HANDLE, "null");
    EXPECT_ERR(mmsb_state_free(0), MMSB_ERR_INVALID_HANDLE, "null");
    EXPECT_ERR(mmsb_history_free(0), MMSB_ERR_INVALID_HANDLE, "null");
    EXPECT_ERR(mmsb_commit_free(0), MMSB_ERR_INVALID_HANDLE, "null");
    /* forged */
    EXPECT_ERR(mmsb_store_lsn(forged, &x), MMSB_ERR_INVALID_HANDLE, "never issued");
    EXPECT_ERR(mmsb_replay_to_lsn(forged, 0, &st), MMSB_ERR_INVALID_HANDLE, "never issued");
    EXPECT_ERR(mmsb_log_summary(s ^ (1ull << 40), &ls), MMSB_ERR_INVALID_HANDLE, NULL);
    EXPECT_ERR(mmsb_commit_add_delta(c + 1000, d), MMSB_ERR_INVALID_HANDLE, NULL);
    /* wrong kinds */
    EXPECT_ERR(mmsb_commit_begin(mem, &cx), MMSB_ERR_INVALID_HANDLE, "not a durable store");
    EXPECT_ERR(mmsb_checkpoint(mem, &ci), MMSB_ERR_INVALID_HANDLE, "not a durable store");
    EXPECT_ERR(mmsb_replay_to_time(mem, 0, &st), MMSB_ERR_INVALID_HANDLE, "not a durable store");
    EXPECT_ERR(mmsb_store_durable_stats(d, &ds), MMSB_ERR_INVALID_HANDLE, "not a durable store");
    EXPECT_ERR(mmsb_recovery_report(c, &rr), MMSB_ERR_INVALID_HANDLE, "not a durable store");
    EXPECT_ERR(mmsb_store_lsn(mem, &x), MMSB_ERR_INVALID_HANDLE, "not a durable store or read-only state");
    EXPECT_ERR(mmsb_commit_add_delta(s, d), MMSB_ERR_INVALID_HANDLE, "not a commit");
    EXPECT_ERR(mmsb_commit_add_delta(c, s), MMSB_ERR_INVALID_HANDLE, "not a delta");
    EXPECT_ERR(mmsb_commit_create_page(d, 8, MMSB_LOCATION_CPU), MMSB_ERR_INVALID_HANDLE, "not a commit");
    EXPECT_ERR(mmsb_commit_free(s), MMSB_ERR_INVALID_HANDLE, "not a commit");
    EXPECT_ERR(mmsb_state_free(s), MMSB_ERR_INVALID_HANDLE, "not a read-only state");
    EXPECT_ERR(mmsb_history_free(c), MMSB_ERR_INVALID_HANDLE, "not a page history");
    EXPECT_ERR(mmsb_delta_free(s), MMSB_ERR_INVALID_HANDLE, "not a delta");
    EXPECT_ERR(mmsb_borrow_release(s), MMSB_ERR_INVALID_HANDLE, "not a borrow");
    EXPECT_ERR(mmsb_page_read(d, 1, 0, &one, 1), MMSB_ERR_INVALID_HANDLE, "not a store");
    /* null out-pointers */
    EXPECT_ERR(mmsb_commit_begin(s, NULL), MMSB_ERR_INVALID_ARGUMENT, "out_commit");
    EXPECT_ERR(mmsb_commit_execute(c, NULL), MMSB_ERR_INVALID_ARGUMENT, "out_lsn");
    EXPECT_ERR(mmsb_commit_op_count(c, NULL), MMSB_ERR_INVALID_ARGUMENT, "out_count");
    EXPECT_ERR(mmsb_commit_created_pages(c, NULL, 0, NULL), MMSB_ERR_INVALID_ARGUMENT, "out_count");
    EXPECT_ERR(mmsb_store_lsn(s, NULL), MMSB_ERR_INVALID_ARGUMENT, "out_lsn");
    EXPECT_ERR(mmsb_store_durable_stats(s, NULL), MMSB_ERR_INVALID_ARGUMENT, "out_stats");
    EXPECT_ERR(mmsb_log_summary(s, NULL), MMSB_ERR_INVALID_ARGUMENT, "out_summary");
    EXPECT_ERR(mmsb_recovery_report(s, NULL), MMSB_ERR_INVALID_ARGUMENT, "out_report");
    EXPECT_ERR(mmsb_replay_to_time(s, 0, NULL), MMSB_ERR_INVALID_ARGUMENT, "out_state");
    EXPECT_ERR(mmsb_state_info(0, NULL, &x), MMSB_ERR_INVALID_ARGUMENT, "out_lsn");
    EXPECT_ERR(mmsb_state_info(0, &x, &x), MMSB_ERR_INVALID_HANDLE, "null");
    EXPECT_ERR(mmsb_history_count(0, NULL), MMSB_ERR_INVALID_ARGUMENT, "out_count");
    EXPECT_ERR(mmsb_history_entry(0, 0, &x, &x, NULL), MMSB_ERR_INVALID_ARGUMENT, "out_delta");
    EXPECT_ERR(mmsb_history_entry(0, 0, &x, &x, &x), MMSB_ERR_INVALID_HANDLE, "null");
    CHECK(x == SENTINEL && cx == SENTINEL && st == SENTINEL && h == SENTINEL);

    /* A builder outliving its store: execute is INVALID_HANDLE, freeing works. */
    EXPECT_OK(mmsb_commit_create_page(c, 8, MMSB_LOCATION_CPU));
    EXPECT_OK(mmsb_store_close(s));
    EXPECT_ERR(mmsb_commit_execute(c, &x), MMSB_ERR_INVALID_HANDLE, "stale");
    EXPECT_OK(mmsb_commit_free(c));
    EXPECT_ERR(mmsb_commit_free(c), MMSB_ERR_INVALID_HANDLE, "stale");
    /* stale durable store */
    EXPECT_ERR(mmsb_checkpoint(s, &ci), MMSB_ERR_INVALID_HANDLE, "stale");
    EXPECT_ERR(mmsb_page_read(s, 1, 0, &one, 1), MMSB_ERR_INVALID_HANDLE, "stale");
    EXPECT_ERR(mmsb_commit_begin(s, &cx), MMSB_ERR_INVALID_HANDLE, "stale");
    CHECK(x == SENTINEL && cx == SENTINEL);

    EXPECT_OK(mmsb_store_close(mem));
    EXPECT_OK(mmsb_delta_free(d));
    rm_rf(parent);
    free(dir);
    free(parent);
    CHECK(live_handles() == live0);
}

/* ------------------------------------------------------------------ */

int main(void) {
    (void)spec_written;
    uint64_t live_start = live_handles();
    CHECK(live_start == 0);

    test_options_and_open();
    test_commit_replay_reopen();
    test_retention();
    test_modes();
    test_bad_handles();

    CHECK(live_handles() == live_start);
    int pass = atomic_load(&g_pass), fail = atomic_load(&g_fail);
    printf("%d passed, %d failed\n", pass, fail);
    return fail == 0 ? 0 : 1;
}
