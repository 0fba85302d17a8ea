/*
 * test_propagation.c: a plain C11 test of the propagation part of the C ABI
 * (rust/mmsb-capi/src/propagation_api.rs) on a durable store: dependencies
 * (with a weight, through the commit builder too), C recompute functions with
 * user data (counting their calls), events through a C callback, stale marks,
 * immediate and deferred modes, propagate, batch routing, graph queries on the
 * store and on a replayed state, a rejected cycle and its path, a failing
 * recompute that leaves no trace, reopening without any recompute (and
 * re-attaching the functions), and bad input.
 *
 * Every value is checked against a C reference: b = a + 3*a2 (bytewise,
 * wrapping), c = b ^ 0x5A.
 *
 * Built and run by test/c/run.sh next to the other C tests (shared, static, valgrind).
 */
#define _XOPEN_SOURCE 700

#include "mmsb.h"

#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The harness also carries the delta-spec helpers of the other tests. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "harness.h"
#pragma GCC diagnostic pop

#define SIZE 8

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_rf(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* ------------------------------------------------------------------ */
/* Recompute functions and an event callback                           */
/* ------------------------------------------------------------------ */

typedef struct {
    atomic_int calls;
} Counter;

/* b = inputs[0] + 3 * inputs[1], bytewise; fails on a first input byte 0xFF. */
static int32_t sum_fn(void *user_data, const uint8_t *const *inputs, const uint64_t *input_lens,
                      uint64_t n, uint8_t *out, uint64_t out_len) {
    Counter *c = (Counter *)user_data;
    atomic_fetch_add(&c->calls, 1);
    if (n >= 1 && input_lens[0] > 0 && inputs[0][0] == 0xFF) return MMSB_ERR_INVARIANT_VIOLATION;
    for (uint64_t j = 0; j < out_len; j++) {
        uint8_t v = 0;
        for (uint64_t i = 0; i < n; i++) {
            if (j < input_lens[i]) v = (uint8_t)(v + inputs[i][j] * (uint8_t)(2 * i + 1));
        }
        out[j] = v;
    }
    return 0;
}

/* c = inputs[0] ^ 0x5A. */
static int32_t xor_fn(void *user_data, const uint8_t *const *inputs, const uint64_t *input_lens,
                      uint64_t n, uint8_t *out, uint64_t out_len) {
    Counter *c = (Counter *)user_data;
    atomic_fetch_add(&c->calls, 1);
    for (uint64_t j = 0; j < out_len; j++) out[j] = (uint8_t)((n > 0 && j < input_lens[0] ? inputs[0][j] : 0) ^ 0x5A);
    return 0;
}

#define MAX_EVENTS 64
typedef struct {
    MmsbEvent ev[MAX_EVENTS];
    int n;
} EventLog;

static void on_event(void *user_data, const MmsbEvent *event) {
    EventLog *log = (EventLog *)user_data;
    if (log->n < MAX_EVENTS) log->ev[log->n] = *event;
    log->n++;
}

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

typedef struct {
    uint8_t a[SIZE], a2[SIZE];
} Model;

static void want_b(const Model *m, uint8_t *b) {
    for (int j = 0; j < SIZE; j++) b[j] = (uint8_t)(m->a[j] + 3 * m->a2[j]);
}

static void want_c(const Model *m, uint8_t *c) {
    want_b(m, c);
    for (int j = 0; j < SIZE; j++) c[j] ^= 0x5A;
}


static void check_derived(MmsbStore s, MmsbPageId b, MmsbPageId c, const Model *m, int line) {
    uint8_t wb[SIZE], wc[SIZE];
    want_b(m, wb);
    want_c(m, wc);
    check_at(__FILE__, line, "b equals a + 3*a2", page_equals(s, b, wb, SIZE));
    check_at(__FILE__, line, "c equals b ^ 0x5A", page_equals(s, c, wc, SIZE));
}

static void write_byte(MmsbStore s, MmsbPageId p, uint64_t at, uint8_t v, uint8_t *model) {
    MmsbDelta d = 0;
    REQUIRE(mmsb_delta_new_dense(p, at, &v, 1, NULL, 0, &d) == MMSB_OK);
    EXPECT_OK(mmsb_store_apply_delta(s, d, NULL, NULL));
    EXPECT_OK(mmsb_delta_free(d));
    model[at] = v;
}

static uint64_t lsn_of(MmsbStore s) {
    uint64_t l = 0;
    EXPECT_OK(mmsb_store_lsn(s, &l));
    return l;
}

static MmsbStore open_store(const char *dir) {
    MmsbStoreOptions o;
    REQUIRE(mmsb_store_options_default(&o) == MMSB_OK);
    o.durability = MMSB_DURABILITY_BUFFERED;
    MmsbStore s = 0;
    REQUIRE(mmsb_store_open(dir, &o, &s) == MMSB_OK);
    return s;
}

/* ------------------------------------------------------------------ */

int main(void) {
    const char *base = getenv("TMPDIR");
    char tmpl[512];
    snprintf(tmpl, sizeof tmpl, "%s/mmsb_prop_XXXXXX", base && base[0] ? base : "/tmp");
    char *dir = mkdtemp(tmpl);
    REQUIRE(dir != NULL);
    char data[600];
    snprintf(data, sizeof data, "%s/data", dir);

    Counter cb = {0}, cc = {0};
    EventLog changed = {0}, stale = {0};
    Model m;
    memset(&m, 0, sizeof m);

    MmsbStore s = open_store(data);

    /* Pages a, a2, b, c, s through one commit. */
    MmsbCommit k = 0;
    REQUIRE(mmsb_commit_begin(s, &k) == MMSB_OK);
    for (int i = 0; i < 5; i++) EXPECT_OK(mmsb_commit_create_page(k, SIZE, MMSB_LOCATION_CPU));
    uint64_t lsn = 0;
    REQUIRE(mmsb_commit_execute(k, &lsn) == MMSB_OK);
    MmsbPageId ids[5];
    uint64_t n = 0;
    REQUIRE(mmsb_commit_created_pages(k, ids, 5, &n) == MMSB_OK && n == 5);
    EXPECT_OK(mmsb_commit_free(k));
    MmsbPageId a = ids[0], a2 = ids[1], b = ids[2], c = ids[3], st = ids[4];

    /* Functions, then edges: b recomputes in the commit that adds its edges. */
    uint64_t fid = 0;
    EXPECT_OK(mmsb_register_recompute(s, b, sum_fn, &cb, true, false, &fid));
    CHECK(fid != 0);
    EXPECT_OK(mmsb_register_recompute(s, c, xor_fn, &cc, false, false, NULL));
    write_byte(s, a, 0, 7, m.a);
    write_byte(s, a2, 1, 2, m.a2);
    /* (The first write ran both new functions once: they were scheduled, with no inputs yet.) */
    CHECK(atomic_load(&cb.calls) == 1 && atomic_load(&cc.calls) == 1);
    atomic_store(&cb.calls, 0);
    atomic_store(&cc.calls, 0);
    REQUIRE(mmsb_commit_begin(s, &k) == MMSB_OK);
    EXPECT_OK(mmsb_commit_add_dependency(k, a, b, MMSB_EDGE_DATA, true, 0.5));
    EXPECT_OK(mmsb_commit_add_dependency(k, a2, b, MMSB_EDGE_DATA, false, 0.0));
    EXPECT_OK(mmsb_commit_add_dependency(k, b, c, MMSB_EDGE_DATA, false, 0.0));
    EXPECT_OK(mmsb_commit_add_dependency(k, a, st, MMSB_EDGE_CONTROL, false, 0.0));
    EXPECT_OK(mmsb_commit_execute(k, &lsn));
    EXPECT_OK(mmsb_commit_free(k));
    check_derived(s, b, c, &m, __LINE__);
    CHECK(atomic_load(&cb.calls) == 1 && atomic_load(&cc.calls) == 1);

    /* Graph queries. */
    MmsbPageId buf[8];
    EXPECT_OK(mmsb_graph_parents(s, b, MMSB_EDGE_DATA, buf, 8, &n));
    CHECK(n == 2 && buf[0] == a && buf[1] == a2);
    EXPECT_OK(mmsb_graph_children(s, a, MMSB_EDGE_ANY, buf, 8, &n));
    CHECK(n == 2 && buf[0] == b && buf[1] == st);
    EXPECT_OK(mmsb_graph_children(s, a, MMSB_EDGE_CONTROL, buf, 8, &n));
    CHECK(n == 1 && buf[0] == st);
    EXPECT_OK(mmsb_graph_topo_order(s, NULL, 0, &n));
    CHECK(n == 5);
    EXPECT_OK(mmsb_graph_topo_order(s, buf, 8, &n));
    int pos[6] = {0};
    for (uint64_t i = 0; i < n; i++) {
        for (int j = 0; j < 5; j++) {
            if (buf[i] == ids[j]) pos[j] = (int)i;
        }
    }
    CHECK(pos[0] < pos[2] && pos[1] < pos[2] && pos[2] < pos[3] && pos[0] < pos[4]);
    EXPECT_ERR(mmsb_graph_children(s, a, MMSB_EDGE_ANY, buf, 1, &n), MMSB_ERR_BUFFER_TOO_SMALL, "too small");

    /* Events and marks: one write of a changes a, b, c and makes s stale. */
    uint64_t sub_changed = 0, sub_stale = 0;
    EXPECT_OK(mmsb_subscribe(s, MMSB_EVENT_PAGE_CHANGED, on_event, &changed, &sub_changed));
    EXPECT_OK(mmsb_subscribe(s, MMSB_EVENT_STALE, on_event, &stale, &sub_stale));
    atomic_store(&cb.calls, 0);
    atomic_store(&cc.calls, 0);
    write_byte(s, a, 3, 40, m.a);
    check_derived(s, b, c, &m, __LINE__);
    CHECK(atomic_load(&cb.calls) == 1 && atomic_load(&cc.calls) == 1);
    CHECK(changed.n == 3 && changed.ev[0].page == a && changed.ev[1].page == b && changed.ev[2].page == c);
    CHECK(changed.ev[0].kind == MMSB_EVENT_PAGE_CHANGED && changed.ev[0].epoch > 0);
    CHECK(stale.n == 1 && stale.ev[0].page == st && stale.ev[0].cause == a && stale.ev[0].kind == MMSB_EVENT_STALE);
    bool flag = false;
    EXPECT_OK(mmsb_is_stale(s, st, &flag));
    CHECK(flag);
    EXPECT_OK(mmsb_is_invalidated(s, st, &flag));
    CHECK(!flag);
    bool existed = false;
    EXPECT_OK(mmsb_unsubscribe(s, sub_stale, &existed));
    CHECK(existed);
    EXPECT_OK(mmsb_unsubscribe(s, sub_stale, &existed));
    CHECK(!existed);

    /* A cycle is refused, changes nothing, and its path can be fetched. */
    uint64_t before = lsn_of(s);
    EXPECT_ERR(mmsb_add_dependency(s, c, a, MMSB_EDGE_CONTROL, false, 0.0, &lsn), MMSB_ERR_CYCLE, "cycle");
    CHECK(lsn_of(s) == before);
    EXPECT_ERR(mmsb_last_cycle_path(buf, 2, &n), MMSB_ERR_BUFFER_TOO_SMALL, "too small");
    EXPECT_OK(mmsb_last_cycle_path(buf, 8, &n));
    CHECK(n == 4 && buf[0] == c && buf[1] == a && buf[2] == b && buf[3] == c);
    EXPECT_ERR(mmsb_remove_dependency(s, c, a, MMSB_EDGE_DATA, NULL), MMSB_ERR_NOT_FOUND, "no data edge");
    EXPECT_OK(mmsb_last_cycle_path(NULL, 0, &n));
    CHECK(n == 0);

    /* A failing recompute fails the commit and leaves no trace. */
    {
        uint8_t ff = 0xFF;
        MmsbDelta d = 0;
        REQUIRE(mmsb_delta_new_dense(a, 0, &ff, 1, NULL, 0, &d) == MMSB_OK);
        changed.n = 0;
        EXPECT_ERR(mmsb_store_apply_delta(s, d, NULL, NULL), MMSB_ERR_INVARIANT_VIOLATION, "recompute");
        EXPECT_ERR(mmsb_batch_route_deltas(s, &d, 1, NULL), MMSB_ERR_INVARIANT_VIOLATION, "recompute");
        EXPECT_OK(mmsb_delta_free(d));
        CHECK(lsn_of(s) == before);
        CHECK(changed.n == 0);
        CHECK(page_equals(s, a, m.a, SIZE));
        check_derived(s, b, c, &m, __LINE__);
    }

    /* Deferred mode: commits run nothing; one batch or propagate runs one wave. */
    EXPECT_OK(mmsb_set_propagation_mode(s, MMSB_PROPAGATION_DEFERRED));
    uint8_t mode = 9;
    EXPECT_OK(mmsb_get_propagation_mode(s, &mode));
    CHECK(mode == MMSB_PROPAGATION_DEFERRED);
    atomic_store(&cb.calls, 0);
    atomic_store(&cc.calls, 0);
    write_byte(s, a, 1, 9, m.a);
    write_byte(s, a2, 2, 5, m.a2);
    CHECK(atomic_load(&cb.calls) == 0 && atomic_load(&cc.calls) == 0);
    {
        Model old = m;
        old.a[1] = 0;
        old.a2[2] = 0;
        check_derived(s, b, c, &old, __LINE__);
    }
    EXPECT_OK(mmsb_propagate(s, &lsn));
    CHECK(atomic_load(&cb.calls) == 1 && atomic_load(&cc.calls) == 1);
    check_derived(s, b, c, &m, __LINE__);
    uint64_t lsn_mid = lsn_of(s);
    EXPECT_OK(mmsb_propagate(s, &lsn));
    CHECK(lsn == lsn_mid); /* nothing pending: nothing logged */
    {
        uint8_t v1 = 11, v2 = 12;
        MmsbDelta ds[2];
        REQUIRE(mmsb_delta_new_dense(a, 5, &v1, 1, NULL, 0, &ds[0]) == MMSB_OK);
        REQUIRE(mmsb_delta_new_dense(a2, 6, &v2, 1, NULL, 0, &ds[1]) == MMSB_OK);
        atomic_store(&cb.calls, 0);
        EXPECT_OK(mmsb_batch_route_deltas(s, ds, 2, &lsn));
        CHECK(lsn == lsn_mid + 1);
        CHECK(atomic_load(&cb.calls) == 1);
        m.a[5] = v1;
        m.a2[6] = v2;
        check_derived(s, b, c, &m, __LINE__);
        EXPECT_OK(mmsb_delta_free(ds[0]));
        EXPECT_OK(mmsb_delta_free(ds[1]));
    }
    EXPECT_OK(mmsb_set_propagation_mode(s, MMSB_PROPAGATION_IMMEDIATE));

    /* Graph edits are logged: remove a2 -> b; the state before has the edge. */
    uint64_t lsn_with_edge = lsn_of(s);
    EXPECT_OK(mmsb_remove_dependency(s, a2, b, MMSB_EDGE_DATA, &lsn));
    CHECK(lsn == lsn_with_edge + 1);
    memset(m.a2, 0, SIZE); /* b no longer reads a2: the model drops it */
    check_derived(s, b, c, &m, __LINE__);
    MmsbState past = 0;
    EXPECT_OK(mmsb_replay_to_lsn(s, lsn_with_edge, &past));
    EXPECT_OK(mmsb_graph_parents(past, b, MMSB_EDGE_DATA, buf, 8, &n));
    CHECK(n == 2 && buf[0] == a && buf[1] == a2);
    EXPECT_OK(mmsb_graph_parents(s, b, MMSB_EDGE_DATA, buf, 8, &n));
    CHECK(n == 1 && buf[0] == a);
    EXPECT_OK(mmsb_state_free(past));

    /* Reopen: derived pages and the graph come back with no recompute. */
    uint64_t last = lsn_of(s);
    EXPECT_OK(mmsb_store_close(s));
    atomic_store(&cb.calls, 0);
    atomic_store(&cc.calls, 0);
    s = open_store(data);
    CHECK(lsn_of(s) == last);
    check_derived(s, b, c, &m, __LINE__);
    EXPECT_OK(mmsb_graph_parents(s, b, MMSB_EDGE_DATA, buf, 8, &n));
    CHECK(n == 1 && buf[0] == a);
    EXPECT_OK(mmsb_is_stale(s, st, &flag));
    CHECK(!flag); /* marks are not durable */
    EXPECT_OK(mmsb_register_recompute(s, b, sum_fn, &cb, true, true, NULL));
    EXPECT_OK(mmsb_register_recompute(s, c, xor_fn, &cc, false, true, NULL));
    EXPECT_OK(mmsb_propagate(s, &lsn));
    CHECK(lsn == last);
    CHECK(atomic_load(&cb.calls) == 0 && atomic_load(&cc.calls) == 0);
    write_byte(s, a, 7, 99, m.a);
    CHECK(atomic_load(&cb.calls) == 1 && atomic_load(&cc.calls) == 1);
    check_derived(s, b, c, &m, __LINE__);
    EXPECT_OK(mmsb_clear_recompute(s, c));
    EXPECT_ERR(mmsb_clear_recompute(s, c), MMSB_ERR_NOT_FOUND, "no recompute");

    /* Bad input. */
    EXPECT_ERR(mmsb_register_recompute(s, b, NULL, NULL, true, false, NULL), MMSB_ERR_INVALID_ARGUMENT, "null");
    EXPECT_ERR(mmsb_register_recompute(s, 9999, sum_fn, &cb, true, false, NULL), MMSB_ERR_NOT_FOUND, NULL);
    EXPECT_ERR(mmsb_add_dependency(s, a, b, 7, false, 0.0, NULL), MMSB_ERR_INVALID_ARGUMENT, "edge kind");
    EXPECT_ERR(mmsb_add_dependency(s, a, b, MMSB_EDGE_DATA, false, 0.0, NULL), MMSB_ERR_INVALID_ARGUMENT,
               "already exists");
    EXPECT_ERR(mmsb_add_dependency(s, a, 9999, MMSB_EDGE_DATA, false, 0.0, NULL), MMSB_ERR_NOT_FOUND, NULL);
    EXPECT_ERR(mmsb_set_propagation_mode(s, 7), MMSB_ERR_INVALID_ARGUMENT, "mode");
    EXPECT_ERR(mmsb_subscribe(s, 9, on_event, &changed, &sub_changed), MMSB_ERR_INVALID_ARGUMENT, "event kind");
    EXPECT_ERR(mmsb_subscribe(s, MMSB_EVENT_STALE, NULL, NULL, &sub_changed), MMSB_ERR_INVALID_ARGUMENT, "null");
    EXPECT_ERR(mmsb_subscribe(s, MMSB_EVENT_STALE, on_event, &stale, NULL), MMSB_ERR_INVALID_ARGUMENT, "null");
    EXPECT_ERR(mmsb_is_stale(s, a, NULL), MMSB_ERR_INVALID_ARGUMENT, "null");
    EXPECT_ERR(mmsb_batch_route_deltas(s, NULL, 0, NULL), MMSB_ERR_INVALID_ARGUMENT, "at least one");
    EXPECT_ERR(mmsb_graph_topo_order(s, buf, 8, NULL), MMSB_ERR_INVALID_ARGUMENT, "null");
    EXPECT_ERR(mmsb_propagate(0, NULL), MMSB_ERR_INVALID_HANDLE, NULL);
    EXPECT_ERR(mmsb_graph_topo_order(12345, buf, 8, &n), MMSB_ERR_INVALID_HANDLE, NULL);
    {
        MmsbStore mem = 0;
        REQUIRE(mmsb_store_open_memory(&mem) == MMSB_OK);
        EXPECT_ERR(mmsb_propagate(mem, NULL), MMSB_ERR_INVALID_HANDLE, NULL);
        EXPECT_OK(mmsb_store_close(mem));
    }
    EXPECT_OK(mmsb_store_close(s));
    EXPECT_ERR(mmsb_propagate(s, NULL), MMSB_ERR_INVALID_HANDLE, "stale");

    CHECK(live_handles() == 0);
    rm_rf(dir);
    printf("%d passed, %d failed\n", atomic_load(&g_pass), atomic_load(&g_fail));
    return atomic_load(&g_fail) == 0 ? 0 : 1;
}
