/*
 * test_gpu.c: the GPU-store functions of mmsb.h (mmsb_gpu_*), in plain C11.
 *
 * Built and run by test/c/run.sh (shared and static library, then under valgrind).
 * Runs on machines without a GPU: the probe answers, a store opened there runs on
 * the CPU (GPU pages land in host memory, migration to the GPU is
 * MMSB_ERR_GPU_UNAVAILABLE), and an emulated-device store exercises the device
 * paths, including a forced kernel failure mid-batch, against a C reference model.
 * Ends with "N passed, M failed" and the live-handle leak check.
 */
#define _POSIX_C_SOURCE 200809L

#include "mmsb.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static void test_probe_and_cpu_store(void) {
    bool available = true;
    EXPECT_OK(mmsb_gpu_available(&available));
    EXPECT_ERR(mmsb_gpu_available(NULL), MMSB_ERR_INVALID_ARGUMENT, "out_available");

    MmsbGpuStore s = 0;
    EXPECT_OK(mmsb_gpu_store_open(&s));
    uint8_t at = 99;
    EXPECT_OK(mmsb_gpu_create_page(s, 1, 64, MMSB_LOCATION_GPU, &at));
    CHECK(at == (available ? MMSB_LOCATION_GPU : MMSB_LOCATION_CPU));
    EXPECT_ERR(mmsb_gpu_create_page(s, 1, 64, MMSB_LOCATION_CPU, &at), MMSB_ERR_INVALID_ARGUMENT,
               "already exists");
    EXPECT_ERR(mmsb_gpu_create_page(s, 2, 64, 7, &at), MMSB_ERR_INVALID_ARGUMENT, "location");
    if (!available) {
        EXPECT_ERR(mmsb_gpu_migrate_page(s, 1, MMSB_LOCATION_UNIFIED), MMSB_ERR_GPU_UNAVAILABLE, NULL);
        MmsbGpuStats st;
        EXPECT_OK(mmsb_gpu_stats(s, &st));
        CHECK(!st.has_device && st.placement_fallbacks == 1);
    }
    EXPECT_OK(mmsb_gpu_store_close(s));
    EXPECT_ERR(mmsb_gpu_store_close(s), MMSB_ERR_INVALID_HANDLE, "stale");
    MmsbGpuStats none;
    EXPECT_ERR(mmsb_gpu_stats(0, &none), MMSB_ERR_INVALID_HANDLE, "null");
}

/* Dense deltas at random offsets on 3 emulated device pages, a forced kernel
 * failure in the middle of the run: the bytes equal a C model throughout. */
static void test_emulated_fallback(int host_copy) {
    enum { PAGES = 3, SIZE = 200 };
    uint8_t model[PAGES][SIZE];
    memset(model, 0, sizeof model);
    MmsbGpuStore s = 0;
    EXPECT_OK(mmsb_gpu_store_open_emulated(&s));
    EXPECT_OK(mmsb_gpu_set_host_copy(s, host_copy != 0));
    for (int p = 0; p < PAGES; p++) {
        uint8_t at = 99;
        EXPECT_OK(mmsb_gpu_create_page(s, (uint64_t)p + 1, SIZE,
                                       p == 1 ? MMSB_LOCATION_UNIFIED : MMSB_LOCATION_GPU, &at));
        CHECK(at == (p == 1 ? MMSB_LOCATION_UNIFIED : MMSB_LOCATION_GPU));
    }
    uint32_t seed = 12345u + (uint32_t)host_copy;
    for (int batch = 0; batch < 12; batch++) {
        if (batch == 6) EXPECT_OK(mmsb_gpu_set_forced_failure(s, MMSB_GPU_FAIL_KERNEL));
        MmsbDelta ds[8];
        int n = 1 + (int)(seed % 8);
        for (int i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            int p = (int)(seed >> 8) % PAGES;
            int off = (int)(seed >> 12) % (SIZE - 32);
            uint8_t bytes[32];
            for (int k = 0; k < 32; k++) bytes[k] = (uint8_t)(seed >> (k % 24));
            EXPECT_OK(mmsb_delta_new_dense((uint64_t)p + 1, (uint64_t)off, bytes, 32, NULL, 0, &ds[i]));
            memcpy(&model[p][off], bytes, 32);
        }
        EXPECT_OK(mmsb_gpu_apply_deltas(s, ds, (uint64_t)n));
        for (int i = 0; i < n; i++) EXPECT_OK(mmsb_delta_free(ds[i]));
    }
    for (int p = 0; p < PAGES; p++) {
        uint8_t buf[SIZE];
        uint64_t len = 0;
        EXPECT_OK(mmsb_gpu_read_page(s, (uint64_t)p + 1, buf, SIZE, &len));
        CHECK(len == SIZE && memcmp(buf, model[p], SIZE) == 0);
    }
    MmsbGpuStats st;
    EXPECT_OK(mmsb_gpu_stats(s, &st));
    CHECK(st.has_device && st.batches_finished_on_cpu >= 1 && st.kernel_failures >= 1);
    uint8_t buf[4];
    uint64_t len = 0;
    EXPECT_ERR(mmsb_gpu_read_page(s, 1, buf, 4, &len), MMSB_ERR_BUFFER_TOO_SMALL, NULL);
    CHECK(len == SIZE);
    EXPECT_ERR(mmsb_gpu_set_forced_failure(s, 42), MMSB_ERR_INVALID_ARGUMENT, "failure point");
    EXPECT_OK(mmsb_gpu_remove_page(s, 3));
    EXPECT_ERR(mmsb_gpu_page_info(s, 3, NULL, NULL, NULL), MMSB_ERR_NOT_FOUND, NULL);
    EXPECT_OK(mmsb_gpu_store_close(s));
}

static void test_migration_keeps_bytes_and_epoch(void) {
    MmsbGpuStore s = 0;
    EXPECT_OK(mmsb_gpu_store_open_emulated(&s));
    uint8_t at = 0;
    EXPECT_OK(mmsb_gpu_create_page(s, 5, 100, MMSB_LOCATION_CPU, &at));
    uint8_t bytes[100];
    for (int i = 0; i < 100; i++) bytes[i] = (uint8_t)(i * 7);
    MmsbDelta d = 0;
    EXPECT_OK(mmsb_delta_new_dense(5, 0, bytes, 100, NULL, 0, &d));
    EXPECT_OK(mmsb_gpu_apply_deltas(s, &d, 1));
    EXPECT_OK(mmsb_delta_free(d));
    const uint8_t locs[3] = {MMSB_LOCATION_GPU, MMSB_LOCATION_UNIFIED, MMSB_LOCATION_CPU};
    for (int i = 0; i < 3; i++) {
        EXPECT_OK(mmsb_gpu_migrate_page(s, 5, locs[i]));
        uint8_t loc = 99;
        uint64_t epoch = 0, size = 0;
        EXPECT_OK(mmsb_gpu_page_info(s, 5, &loc, &epoch, &size));
        CHECK(loc == locs[i] && epoch == 1 && size == 100);
        uint8_t buf[100];
        uint64_t len = 0;
        EXPECT_OK(mmsb_gpu_read_page(s, 5, buf, 100, &len));
        CHECK(memcmp(buf, bytes, 100) == 0);
    }
    EXPECT_OK(mmsb_gpu_store_close(s));
}

/* Graph replay on: waves of the same shape (one dense delta per page, same
 * ranges) are captured once and replayed; the bytes equal a C model; turning
 * replay off returns to the stream path. */
static void test_graph_replay_toggle(void) {
    enum { PAGES = 2, SIZE = 64 };
    uint8_t model[PAGES][SIZE];
    memset(model, 0, sizeof model);
    MmsbGpuStore s = 0;
    EXPECT_OK(mmsb_gpu_store_open_emulated(&s));
    for (int p = 0; p < PAGES; p++) {
        uint8_t at = 99;
        EXPECT_OK(mmsb_gpu_create_page(s, (uint64_t)p + 1, SIZE, MMSB_LOCATION_GPU, &at));
    }
    EXPECT_OK(mmsb_gpu_set_graph_replay(s, true));
    for (int wave = 0; wave < 6; wave++) {
        if (wave == 4) EXPECT_OK(mmsb_gpu_set_graph_replay(s, false));
        MmsbDelta ds[PAGES];
        for (int p = 0; p < PAGES; p++) {
            uint8_t bytes[16];
            for (int k = 0; k < 16; k++) bytes[k] = (uint8_t)(wave * 31 + p * 7 + k);
            EXPECT_OK(mmsb_delta_new_dense((uint64_t)p + 1, 8, bytes, 16, NULL, 0, &ds[p]));
            memcpy(&model[p][8], bytes, 16);
        }
        EXPECT_OK(mmsb_gpu_apply_deltas(s, ds, PAGES));
        for (int p = 0; p < PAGES; p++) EXPECT_OK(mmsb_delta_free(ds[p]));
    }
    for (int p = 0; p < PAGES; p++) {
        uint8_t buf[SIZE];
        uint64_t len = 0;
        EXPECT_OK(mmsb_gpu_read_page(s, (uint64_t)p + 1, buf, SIZE, &len));
        CHECK(len == SIZE && memcmp(buf, model[p], SIZE) == 0);
    }
    MmsbGpuStats st;
    EXPECT_OK(mmsb_gpu_stats(s, &st));
    CHECK(st.graph_captures == 1 && st.graph_replays == 3);
    EXPECT_ERR(mmsb_gpu_set_graph_replay(0, true), MMSB_ERR_INVALID_HANDLE, NULL);
    EXPECT_OK(mmsb_gpu_store_close(s));
}

/* A GPU mirror of an in-memory durable store: after each commit that writes a
 * gpu-sync parent, the child's device copy equals the store's page. */
static void commit_delta(MmsbStore s, MmsbPageId page, uint64_t off, const uint8_t *bytes, uint64_t len) {
    MmsbDelta d = 0;
    EXPECT_OK(mmsb_delta_new_dense(page, off, bytes, len, NULL, 0, &d));
    MmsbCommit k = 0;
    EXPECT_OK(mmsb_commit_begin(s, &k));
    EXPECT_OK(mmsb_commit_add_delta(k, d));
    uint64_t lsn = 0;
    EXPECT_OK(mmsb_commit_execute(k, &lsn));
    EXPECT_OK(mmsb_commit_free(k));
    EXPECT_OK(mmsb_delta_free(d));
}

static void test_gpu_mirror_follows_commits(void) {
    enum { SIZE = 48 };
    MmsbStoreOptions o;
    EXPECT_OK(mmsb_store_options_default(&o));
    o.durability = MMSB_DURABILITY_NONE;
    MmsbStore s = 0;
    EXPECT_OK(mmsb_store_open("unused-in-memory", &o, &s));
    MmsbCommit k = 0;
    EXPECT_OK(mmsb_commit_begin(s, &k));
    EXPECT_OK(mmsb_commit_create_page(k, SIZE, MMSB_LOCATION_CPU));
    EXPECT_OK(mmsb_commit_create_page(k, SIZE, MMSB_LOCATION_CPU));
    uint64_t lsn = 0, n = 0;
    EXPECT_OK(mmsb_commit_execute(k, &lsn));
    MmsbPageId ids[2] = {0, 0};
    EXPECT_OK(mmsb_commit_created_pages(k, ids, 2, &n));
    EXPECT_OK(mmsb_commit_free(k));
    MmsbPageId a = ids[0], b = ids[1];
    EXPECT_OK(mmsb_add_dependency(s, a, b, MMSB_EDGE_GPU_SYNC, false, 0.0, &lsn));

    MmsbGpuStore g = 0;
    EXPECT_OK(mmsb_gpu_store_open_emulated(&g));
    MmsbGpuMirror m = 0;
    EXPECT_ERR(mmsb_gpu_mirror_attach(g, s, 9, &m), MMSB_ERR_INVALID_ARGUMENT, "location");
    EXPECT_OK(mmsb_gpu_mirror_attach(g, s, MMSB_LOCATION_GPU, &m));
    for (int round = 0; round < 5; round++) {
        uint8_t bytes[8];
        for (int i = 0; i < 8; i++) bytes[i] = (uint8_t)(round * 17 + i);
        commit_delta(s, b, (uint64_t)round * 8, bytes, 8); /* the child, directly */
        commit_delta(s, a, 0, bytes, 4);                   /* its gpu-sync parent */
        uint8_t want[SIZE], got[SIZE];
        uint64_t len = 0;
        EXPECT_OK(mmsb_page_read(s, b, 0, want, SIZE));
        EXPECT_OK(mmsb_gpu_read_page(g, b, got, SIZE, &len));
        CHECK(len == SIZE && memcmp(want, got, SIZE) == 0);
        uint8_t loc = 99;
        EXPECT_OK(mmsb_gpu_page_info(g, b, &loc, NULL, NULL));
        CHECK(loc == MMSB_LOCATION_GPU);
    }
    MmsbGpuMirrorStats ms;
    EXPECT_OK(mmsb_gpu_mirror_stats(m, &ms));
    CHECK(ms.refreshes == 5 && ms.pages_refreshed == 5 && ms.errors == 0);
    EXPECT_OK(mmsb_gpu_mirror_detach(m));
    EXPECT_ERR(mmsb_gpu_mirror_detach(m), MMSB_ERR_INVALID_HANDLE, NULL);
    EXPECT_OK(mmsb_gpu_store_close(g));
    EXPECT_OK(mmsb_store_close(s));
}

/* mmsb_gpu_page_device_ptr's error paths (CPU CI has no GPU): unknown page,
 * no device, emulated device, host page, null out-pointers; nothing is written
 * on an error. On a machine with a GPU the store-on-device case checks that a
 * GPU page gets a non-zero address and its length. */
static void test_device_ptr_errors(void) {
    bool available = false;
    EXPECT_OK(mmsb_gpu_available(&available));
    uint64_t ptr = 0, len = 0;
    uint8_t at = 99;

    MmsbGpuStore s = 0;
    EXPECT_OK(mmsb_gpu_store_open(&s));
    EXPECT_OK(mmsb_gpu_create_page(s, 1, 64, MMSB_LOCATION_GPU, &at));
    EXPECT_OK(mmsb_gpu_create_page(s, 2, 32, MMSB_LOCATION_CPU, &at));
    EXPECT_ERR(mmsb_gpu_page_device_ptr(s, 9, &ptr, &len), MMSB_ERR_NOT_FOUND, "no page");
    if (available) {
        EXPECT_OK(mmsb_gpu_page_device_ptr(s, 1, &ptr, &len));
        CHECK(ptr != 0 && len == 64);
        ptr = len = 0;
        EXPECT_ERR(mmsb_gpu_page_device_ptr(s, 2, &ptr, &len), MMSB_ERR_INVALID_ARGUMENT,
                   "host memory");
    } else {
        EXPECT_ERR(mmsb_gpu_page_device_ptr(s, 1, &ptr, &len), MMSB_ERR_GPU_UNAVAILABLE, "CPU");
        EXPECT_ERR(mmsb_gpu_page_device_ptr(s, 2, &ptr, &len), MMSB_ERR_GPU_UNAVAILABLE, "CPU");
    }
    EXPECT_ERR(mmsb_gpu_page_device_ptr(s, 1, NULL, &len), MMSB_ERR_INVALID_ARGUMENT, "out_ptr");
    EXPECT_ERR(mmsb_gpu_page_device_ptr(s, 1, &ptr, NULL), MMSB_ERR_INVALID_ARGUMENT, "out_len");
    CHECK(ptr == 0 && len == 0);
    EXPECT_OK(mmsb_gpu_store_close(s));
    EXPECT_ERR(mmsb_gpu_page_device_ptr(s, 1, &ptr, &len), MMSB_ERR_INVALID_HANDLE, NULL);

    EXPECT_OK(mmsb_gpu_store_open_emulated(&s));
    EXPECT_OK(mmsb_gpu_create_page(s, 1, 64, MMSB_LOCATION_GPU, &at));
    CHECK(at == MMSB_LOCATION_GPU);
    EXPECT_OK(mmsb_gpu_create_page(s, 2, 64, MMSB_LOCATION_UNIFIED, &at));
    EXPECT_OK(mmsb_gpu_create_page(s, 3, 64, MMSB_LOCATION_CPU, &at));
    EXPECT_ERR(mmsb_gpu_page_device_ptr(s, 1, &ptr, &len), MMSB_ERR_GPU_UNAVAILABLE, "emulated");
    EXPECT_ERR(mmsb_gpu_page_device_ptr(s, 2, &ptr, &len), MMSB_ERR_GPU_UNAVAILABLE, "emulated");
    EXPECT_ERR(mmsb_gpu_page_device_ptr(s, 3, &ptr, &len), MMSB_ERR_INVALID_ARGUMENT, "host memory");
    EXPECT_ERR(mmsb_gpu_page_device_ptr(s, 4, &ptr, &len), MMSB_ERR_NOT_FOUND, NULL);
    CHECK(ptr == 0 && len == 0);
    EXPECT_OK(mmsb_gpu_store_close(s));
}

int main(void) {
    /* Helpers of the shared harness this program does not need. */
    (void)page_equals;
    (void)spec_written;
    (void)model_apply;
    (void)make_delta;
    (void)gen_spec;
    uint64_t live_start = live_handles();
    test_probe_and_cpu_store();
    test_emulated_fallback(0);
    test_emulated_fallback(1);
    test_migration_keeps_bytes_and_epoch();
    test_graph_replay_toggle();
    test_gpu_mirror_follows_commits();
    test_device_ptr_errors();
    CHECK(live_handles() == live_start);
    int pass = atomic_load(&g_pass), fail = atomic_load(&g_fail);
    printf("%d passed, %d failed\n", pass, fail);
    return fail == 0 ? 0 : 1;
}
