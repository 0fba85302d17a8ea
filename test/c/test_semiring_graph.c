/*
 * test_semiring_graph.c: semiring nodes and edges on a durable store through
 * the C ABI (rust/mmsb-capi/src/semiring_graph_api.rs).
 *
 * Shortest paths (min-plus, i64): a fixed pseudo-random digraph of N vertices
 * unrolled into N layer nodes (CSR edges holding A^T plus a zero diagonal);
 * commits rewrite the input page (start offsets, sometimes "infinity"); the
 * last layer must equal a Bellman-Ford oracle in plain C after every commit
 * and after close/reopen. Plus-times (f64): a scalar edge (y = 2x) and a
 * diagonal edge (z = d*x) from a node fed by an input page; small integers, so
 * the oracle is exact. Then bad arguments: a direct write to a node page,
 * the wrong dtype, a short buffer, null pointers, unknown codes, non-nodes.
 *
 * Built and run by test/c/run.sh next to the other C tests (shared, static, valgrind).
 */
#define _XOPEN_SOURCE 700

#include "mmsb.h"

#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "harness.h"
#pragma GCC diagnostic pop

#define N 6
#define INF INT64_MAX

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_rf(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static MmsbStore open_store(const char *dir) {
    MmsbStoreOptions o;
    REQUIRE(mmsb_store_options_default(&o) == MMSB_OK);
    o.durability = MMSB_DURABILITY_BUFFERED;
    MmsbStore s = 0;
    REQUIRE(mmsb_store_open(dir, &o, &s) == MMSB_OK);
    return s;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t next_rand(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return rng_state >> 33;
}

static void write_bytes(MmsbStore s, MmsbPageId p, uint64_t at, const void *v, uint64_t len) {
    MmsbDelta d = 0;
    REQUIRE(mmsb_delta_new_dense(p, at, (const uint8_t *)v, len, NULL, 0, &d) == MMSB_OK);
    EXPECT_OK(mmsb_store_apply_delta(s, d, NULL, NULL));
    EXPECT_OK(mmsb_delta_free(d));
}

/* w[u][v] > 0: an edge u -> v of that length. */
static int64_t w[N][N];

static int64_t sat_add(int64_t a, int64_t b) { return (a == INF || b == INF) ? INF : a + b; }

/* dist[v] = min_s b[s] + d(s, v), by Bellman-Ford. */
static void bellman_ford(const int64_t *b, int64_t *dist) {
    for (int v = 0; v < N; v++) dist[v] = b[v];
    for (int round = 0; round < N; round++) {
        for (int u = 0; u < N; u++) {
            for (int v = 0; v < N; v++) {
                if (w[u][v] > 0) {
                    int64_t c = sat_add(dist[u], w[u][v]);
                    if (c < dist[v]) dist[v] = c;
                }
            }
        }
    }
}

static void check_sssp(MmsbStore s, MmsbPageId last, const int64_t *b, int line) {
    int64_t want[N], got[N];
    bellman_ford(b, want);
    uint64_t len = 0;
    memset(got, 0x55, sizeof got);
    int rc = mmsb_semiring_read_node(s, last, MMSB_DTYPE_I64, got, N, &len);
    check_at(__FILE__, line, "read the last layer", rc == MMSB_OK && len == N);
    check_at(__FILE__, line, "last layer equals Bellman-Ford", memcmp(got, want, sizeof got) == 0);
}

static void test_shortest_paths(const char *data) {
    MmsbStore s = open_store(data);
    MmsbCommit k = 0;
    REQUIRE(mmsb_commit_begin(s, &k) == MMSB_OK);
    for (int i = 0; i < N + 1; i++) EXPECT_OK(mmsb_commit_create_page(k, N * 8, MMSB_LOCATION_CPU));
    uint64_t lsn = 0, n = 0;
    REQUIRE(mmsb_commit_execute(k, &lsn) == MMSB_OK);
    MmsbPageId ids[N + 1];
    REQUIRE(mmsb_commit_created_pages(k, ids, N + 1, &n) == MMSB_OK && n == N + 1);
    EXPECT_OK(mmsb_commit_free(k));
    MmsbPageId input = ids[0];
    const MmsbPageId *layer = ids + 1;

    /* A^T with a zero diagonal, row by row (row v: the parents u of v, and v). */
    uint64_t indptr[N + 1];
    uint32_t indices[N * N];
    int64_t values[N * N];
    uint64_t nnz = 0;
    for (int u = 0; u < N; u++)
        for (int v = 0; v < N; v++) w[u][v] = (u != v && next_rand() % 3 == 0) ? (int64_t)(1 + next_rand() % 9) : 0;
    indptr[0] = 0;
    for (int v = 0; v < N; v++) {
        for (int u = 0; u < N; u++) {
            if (u == v || w[u][v] > 0) {
                indices[nnz] = (uint32_t)u;
                values[nnz] = u == v ? 0 : w[u][v];
                nnz++;
            }
        }
        indptr[v + 1] = nnz;
    }
    int64_t b[N];
    for (int i = 0; i < N; i++) b[i] = i == 0 ? 0 : INF;
    write_bytes(s, input, 0, b, sizeof b);
    for (int i = 0; i < N; i++)
        EXPECT_OK(mmsb_semiring_declare_node(s, layer[i], MMSB_SEMIRING_MIN_PLUS, MMSB_DTYPE_I64, N,
                                             i == 0 ? input : 0, &lsn));
    for (int i = 0; i + 1 < N; i++)
        EXPECT_OK(mmsb_semiring_add_edge_csr(s, layer[i], layer[i + 1], N, N, indptr, indices, nnz, values,
                                             nnz * sizeof(int64_t), NULL));
    uint8_t kind = 0, dtype = 0;
    uint64_t len = 0;
    MmsbPageId in = 0;
    EXPECT_OK(mmsb_semiring_node_info(s, layer[0], &kind, &dtype, &len, &in));
    CHECK(kind == MMSB_SEMIRING_MIN_PLUS && dtype == MMSB_DTYPE_I64 && len == N && in == input);
    MmsbPageId last = layer[N - 1];
    check_sssp(s, last, b, __LINE__);
    for (int round = 0; round < 20; round++) {
        if (round == 10) {
            EXPECT_OK(mmsb_store_close(s));
            s = open_store(data);
            check_sssp(s, last, b, __LINE__);
        }
        int i = (int)(next_rand() % N);
        b[i] = next_rand() % 3 == 0 ? INF : (int64_t)(next_rand() % 20);
        write_bytes(s, input, (uint64_t)i * 8, &b[i], 8);
        check_sssp(s, last, b, __LINE__);
    }
    /* A node page cannot be written directly; nothing changes. */
    int64_t one = 1;
    MmsbDelta d = 0;
    REQUIRE(mmsb_delta_new_dense(last, 0, (const uint8_t *)&one, 8, NULL, 0, &d) == MMSB_OK);
    EXPECT_ERR(mmsb_store_apply_delta(s, d, NULL, NULL), MMSB_ERR_INVALID_ARGUMENT, "semiring node");
    EXPECT_OK(mmsb_delta_free(d));
    check_sssp(s, last, b, __LINE__);
    /* A cycle is refused. */
    EXPECT_ERR(mmsb_semiring_add_edge_scalar(s, last, layer[0], &one, 8, NULL), MMSB_ERR_CYCLE, NULL);
    EXPECT_OK(mmsb_store_close(s));
}

static void test_plus_times_and_errors(const char *data) {
    MmsbStore s = open_store(data);
    MmsbCommit k = 0;
    REQUIRE(mmsb_commit_begin(s, &k) == MMSB_OK);
    for (int i = 0; i < 5; i++) EXPECT_OK(mmsb_commit_create_page(k, 32, MMSB_LOCATION_CPU));
    uint64_t lsn = 0, n = 0;
    REQUIRE(mmsb_commit_execute(k, &lsn) == MMSB_OK);
    MmsbPageId p[5];
    REQUIRE(mmsb_commit_created_pages(k, p, 5, &n) == MMSB_OK && n == 5);
    EXPECT_OK(mmsb_commit_free(k));
    MmsbPageId in = p[0], x = p[1], y = p[2], z = p[3], other = p[4];
    double bx[4] = {1, 2, 3, 4};
    write_bytes(s, in, 0, bx, sizeof bx);
    EXPECT_OK(mmsb_semiring_declare_node(s, x, MMSB_SEMIRING_PLUS_TIMES, MMSB_DTYPE_F64, 4, in, NULL));
    EXPECT_OK(mmsb_semiring_declare_node(s, y, MMSB_SEMIRING_PLUS_TIMES, MMSB_DTYPE_F64, 4, 0, NULL));
    EXPECT_OK(mmsb_semiring_declare_node(s, z, MMSB_SEMIRING_PLUS_TIMES, MMSB_DTYPE_F64, 4, 0, NULL));
    double two = 2, diag[4] = {1, -1, 0.5, 3};
    EXPECT_OK(mmsb_semiring_add_edge_scalar(s, x, y, &two, sizeof two, NULL));
    EXPECT_OK(mmsb_semiring_add_edge_diagonal(s, x, z, diag, sizeof diag, NULL));
    for (int round = 0; round < 6; round++) {
        if (round == 3) {
            EXPECT_OK(mmsb_store_close(s));
            s = open_store(data);
        }
        int i = round % 4;
        bx[i] = (double)(round * 7 % 11) - 5;
        write_bytes(s, in, (uint64_t)i * 8, &bx[i], 8);
        double gy[4], gz[4];
        uint64_t len = 0;
        EXPECT_OK(mmsb_semiring_read_node(s, y, MMSB_DTYPE_F64, gy, 4, &len));
        EXPECT_OK(mmsb_semiring_read_node(s, z, MMSB_DTYPE_F64, gz, 4, &len));
        for (int j = 0; j < 4; j++) {
            CHECK(gy[j] == 2 * bx[j]);
            CHECK(gz[j] == diag[j] * bx[j]);
        }
    }
    /* Changing edges: a new scalar, a CSR weight, removal; then reopen. */
    double three = 3;
    EXPECT_OK(mmsb_semiring_set_edge_scalar(s, x, y, &three, sizeof three, NULL));
    uint64_t ip[5] = {0, 1, 2, 2, 3};
    uint32_t ix[3] = {3, 0, 1};
    double av[3] = {2, -1, 4}; /* y0 = 2 x3, y1 = -x0, y2 = 0, y3 = 4 x1 */
    EXPECT_OK(mmsb_semiring_set_edge_csr(s, x, z, 4, 4, ip, ix, 3, av, sizeof av, NULL));
    EXPECT_ERR(mmsb_semiring_set_edge_diagonal(s, x, y, diag, 3 * sizeof(double), NULL),
               MMSB_ERR_INVALID_ARGUMENT, NULL);
    EXPECT_ERR(mmsb_semiring_set_edge_scalar(s, y, z, &three, sizeof three, NULL), MMSB_ERR_NOT_FOUND, NULL);
    for (int pass = 0; pass < 2; pass++) {
        double gy[4], gz[4];
        uint64_t n4 = 0;
        EXPECT_OK(mmsb_semiring_read_node(s, y, MMSB_DTYPE_F64, gy, 4, &n4));
        EXPECT_OK(mmsb_semiring_read_node(s, z, MMSB_DTYPE_F64, gz, 4, &n4));
        for (int j = 0; j < 4; j++) CHECK(gy[j] == 3 * bx[j]);
        CHECK(gz[0] == 2 * bx[3] && gz[1] == -bx[0] && gz[2] == 0 && gz[3] == 4 * bx[1]);
        EXPECT_OK(mmsb_store_close(s));
        s = open_store(data);
    }
    EXPECT_OK(mmsb_semiring_remove_edge(s, x, y, NULL));
    EXPECT_ERR(mmsb_semiring_remove_edge(s, x, y, NULL), MMSB_ERR_NOT_FOUND, NULL);
    {
        double gy[4];
        uint64_t n4 = 0;
        EXPECT_OK(mmsb_semiring_read_node(s, y, MMSB_DTYPE_F64, gy, 4, &n4));
        for (int j = 0; j < 4; j++) CHECK(gy[j] == 0);
    }
    /* Bad arguments. */
    double buf[4];
    uint64_t len = 0;
    EXPECT_OK(mmsb_semiring_read_node(s, y, MMSB_DTYPE_F64, NULL, 0, &len));
    CHECK(len == 4);
    EXPECT_ERR(mmsb_semiring_read_node(s, y, MMSB_DTYPE_F64, buf, 3, &len), MMSB_ERR_BUFFER_TOO_SMALL, "too small");
    EXPECT_ERR(mmsb_semiring_read_node(s, y, MMSB_DTYPE_I64, buf, 4, &len), MMSB_ERR_INVALID_ARGUMENT, "holds");
    EXPECT_ERR(mmsb_semiring_read_node(s, y, MMSB_DTYPE_F64, buf, 4, NULL), MMSB_ERR_INVALID_ARGUMENT, "out_len");
    EXPECT_ERR(mmsb_semiring_read_node(s, in, MMSB_DTYPE_F64, buf, 4, &len), MMSB_ERR_NOT_FOUND, NULL);
    EXPECT_ERR(mmsb_semiring_declare_node(s, other, 99, MMSB_DTYPE_F64, 4, 0, NULL), MMSB_ERR_INVALID_ARGUMENT, NULL);
    EXPECT_ERR(mmsb_semiring_declare_node(s, other, MMSB_SEMIRING_OR_AND, MMSB_DTYPE_F64, 4, 0, NULL),
               MMSB_ERR_UNSUPPORTED, NULL);
    EXPECT_ERR(mmsb_semiring_declare_node(s, other, MMSB_SEMIRING_PLUS_TIMES, MMSB_DTYPE_F64, 5, 0, NULL),
               MMSB_ERR_INVALID_ARGUMENT, NULL);
    EXPECT_ERR(mmsb_semiring_add_edge_diagonal(s, x, other, diag, sizeof diag, NULL), MMSB_ERR_NOT_FOUND, NULL);
    EXPECT_ERR(mmsb_semiring_add_edge_scalar(s, x, y, NULL, 8, NULL), MMSB_ERR_INVALID_ARGUMENT, "null");
    EXPECT_ERR(mmsb_semiring_add_edge_csr(s, x, y, 4, 4, NULL, NULL, 0, NULL, 0, NULL), MMSB_ERR_INVALID_ARGUMENT,
               NULL);
    uint8_t kind;
    EXPECT_ERR(mmsb_semiring_node_info(s, x, &kind, NULL, &len, NULL), MMSB_ERR_INVALID_ARGUMENT, NULL);
    EXPECT_ERR(mmsb_semiring_node_info(0, x, &kind, &kind, &len, &len), MMSB_ERR_INVALID_HANDLE, NULL);
    EXPECT_OK(mmsb_store_close(s));
}

int main(void) {
    (void)gen_spec;
    (void)make_delta;
    (void)model_apply;
    (void)spec_written;
    (void)page_equals;
    uint64_t live_start = live_handles();
    const char *base = getenv("TMPDIR");
    char tmpl[512];
    snprintf(tmpl, sizeof tmpl, "%s/mmsb_semgraph_XXXXXX", base && base[0] ? base : "/tmp");
    char *dir = mkdtemp(tmpl);
    REQUIRE(dir != NULL);
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/sssp", dir);
    snprintf(b, sizeof b, "%s/plus", dir);
    test_shortest_paths(a);
    test_plus_times_and_errors(b);
    rm_rf(dir);
    CHECK(live_handles() == live_start);
    int pass = atomic_load(&g_pass), fail = atomic_load(&g_fail);
    printf("%d passed, %d failed\n", pass, fail);
    return fail == 0 ? 0 : 1;
}
