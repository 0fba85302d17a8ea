/*
 * test_alloc.c: a plain C11 test of the page-allocator statistics in the C ABI
 * (rust/mmsb-capi/src/alloc_api.rs): mmsb_allocator_stats,
 * mmsb_allocator_large_stats, mmsb_allocator_class_count and
 * mmsb_allocator_class_stats.
 *
 * Oracles: the totals equal the sum over the classes and the large path
 * (recomputed here); creating N pages of a size moves that size's class by
 * exactly N live pages and N allocations, and closing the store gives them all
 * back; the size-class table is increasing multiples of 64 up to 64 KiB.
 * Bad input (null out-pointers, a class index out of range) is an error that
 * writes nothing.
 *
 * Built and run by test/c/run.sh next to the other C tests (shared, static, valgrind).
 */
#include "mmsb.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* The shared harness also carries delta/model helpers this test does not need. */
#pragma GCC diagnostic ignored "-Wunused-function"
#include "harness.h"

static uint64_t class_count(void) {
    uint64_t n = 0;
    EXPECT_OK(mmsb_allocator_class_count(&n));
    return n;
}

/* The smallest class whose slots hold `size` bytes (the allocator's rule). */
static uint64_t class_for(uint64_t size) {
    uint64_t n = class_count();
    for (uint64_t c = 0; c < n; c++) {
        MmsbAllocStats s;
        EXPECT_OK(mmsb_allocator_class_stats(c, &s));
        if (s.slot_size >= size) return c;
    }
    return n;
}

static MmsbAllocStats class_stats(uint64_t c) {
    MmsbAllocStats s;
    memset(&s, 0, sizeof s);
    EXPECT_OK(mmsb_allocator_class_stats(c, &s));
    return s;
}

/* Totals must equal the sum over classes plus the large path (no other thread
 * is allocating while this runs). */
static void check_totals_are_the_sum(void) {
    MmsbAllocStats t, large, sum;
    memset(&sum, 0, sizeof sum);
    EXPECT_OK(mmsb_allocator_large_stats(&large));
    uint64_t n = class_count();
    for (uint64_t c = 0; c < n; c++) {
        MmsbAllocStats s = class_stats(c);
        sum.live_pages += s.live_pages;
        sum.live_bytes += s.live_bytes;
        sum.reserved_bytes += s.reserved_bytes;
        sum.allocations += s.allocations;
        sum.frees += s.frees;
        sum.cas_retries += s.cas_retries;
        sum.slow_path += s.slow_path;
    }
    EXPECT_OK(mmsb_allocator_stats(&t));
    CHECK(t.slot_size == 0);
    CHECK(t.live_pages == sum.live_pages + large.live_pages);
    CHECK(t.live_bytes == sum.live_bytes + large.live_bytes);
    CHECK(t.reserved_bytes == sum.reserved_bytes + large.reserved_bytes);
    CHECK(t.allocations == sum.allocations + large.allocations);
    CHECK(t.frees == sum.frees + large.frees);
    CHECK(t.cas_retries == sum.cas_retries + large.cas_retries);
    CHECK(t.slow_path == sum.slow_path + large.slow_path);
    CHECK(t.live_pages == t.allocations - t.frees);
}

static void test_class_table(void) {
    uint64_t n = class_count();
    REQUIRE(n > 0);
    uint64_t prev = 0;
    for (uint64_t c = 0; c < n; c++) {
        MmsbAllocStats s = class_stats(c);
        CHECK(s.slot_size > prev);
        CHECK(s.slot_size % 64 == 0);
        CHECK(s.live_bytes == s.live_pages * s.slot_size);
        prev = s.slot_size;
    }
    CHECK(prev == 65536);
    CHECK(class_for(1) == 0);
    CHECK(class_for(65) == 1);
}

static void test_pages_move_their_class(void) {
    const uint64_t size = 1000, n = 100;
    uint64_t c = class_for(size);
    REQUIRE(c < class_count());
    MmsbAllocStats before = class_stats(c);

    MmsbStore s = 0;
    EXPECT_OK(mmsb_store_open_memory(&s));
    for (uint64_t i = 0; i < n; i++) {
        MmsbPageId p = 0;
        EXPECT_OK(mmsb_page_create(s, size, MMSB_LOCATION_CPU, &p));
    }
    MmsbAllocStats mid = class_stats(c);
    CHECK(mid.live_pages == before.live_pages + n);
    CHECK(mid.allocations == before.allocations + n);
    CHECK(mid.live_bytes == before.live_bytes + n * mid.slot_size);
    CHECK(mid.reserved_bytes >= mid.live_bytes);
    check_totals_are_the_sum();

    /* A large page takes the mutex path. */
    MmsbAllocStats lb, lm, la;
    EXPECT_OK(mmsb_allocator_large_stats(&lb));
    MmsbPageId big = 0;
    EXPECT_OK(mmsb_page_create(s, 100000, MMSB_LOCATION_CPU, &big));
    EXPECT_OK(mmsb_allocator_large_stats(&lm));
    CHECK(lm.live_pages == lb.live_pages + 1);
    CHECK(lm.live_bytes == lb.live_bytes + 100000);
    CHECK(lm.slow_path == lb.slow_path + 1);

    EXPECT_OK(mmsb_store_close(s));
    MmsbAllocStats after = class_stats(c);
    CHECK(after.live_pages == before.live_pages);
    CHECK(after.frees == before.frees + n);
    EXPECT_OK(mmsb_allocator_large_stats(&la));
    CHECK(la.live_pages == lb.live_pages);
    CHECK(la.live_bytes == lb.live_bytes);
    check_totals_are_the_sum();
}

static void *worker(void *arg) {
    (void)arg;
    MmsbStore s = 0;
    if (mmsb_store_open_memory(&s) != MMSB_OK) return (void *)1;
    for (int i = 0; i < 200; i++) {
        MmsbPageId p = 0;
        if (mmsb_page_create(s, 64, MMSB_LOCATION_CPU, &p) != MMSB_OK) return (void *)1;
    }
    return mmsb_store_close(s) == MMSB_OK ? NULL : (void *)1;
}

static void test_threads_leave_counts_balanced(void) {
    uint64_t c = class_for(64);
    MmsbAllocStats before = class_stats(c);
    pthread_t t[4];
    for (int i = 0; i < 4; i++) REQUIRE(pthread_create(&t[i], NULL, worker, NULL) == 0);
    for (int i = 0; i < 4; i++) {
        void *r = NULL;
        pthread_join(t[i], &r);
        CHECK(r == NULL);
    }
    MmsbAllocStats after = class_stats(c);
    CHECK(after.live_pages == before.live_pages);
    CHECK(after.allocations >= before.allocations + 800);
    CHECK(after.frees - before.frees == after.allocations - before.allocations);
    check_totals_are_the_sum();
}

static void test_bad_input(void) {
    MmsbAllocStats s;
    memset(&s, 0xAB, sizeof s);
    uint64_t n = class_count();
    EXPECT_ERR(mmsb_allocator_class_stats(n, &s), MMSB_ERR_INVALID_ARGUMENT, "does not exist");
    EXPECT_ERR(mmsb_allocator_class_stats(UINT64_MAX, &s), MMSB_ERR_INVALID_ARGUMENT, "does not exist");
    CHECK(s.live_pages == 0xABABABABABABABABull); /* nothing written on failure */
    EXPECT_ERR(mmsb_allocator_class_stats(0, NULL), MMSB_ERR_INVALID_ARGUMENT, "out_stats");
    EXPECT_ERR(mmsb_allocator_stats(NULL), MMSB_ERR_INVALID_ARGUMENT, "out_stats");
    EXPECT_ERR(mmsb_allocator_large_stats(NULL), MMSB_ERR_INVALID_ARGUMENT, "out_stats");
    EXPECT_ERR(mmsb_allocator_class_count(NULL), MMSB_ERR_INVALID_ARGUMENT, "out_count");
}

int main(void) {
    uint64_t live0 = live_handles();
    test_class_table();
    check_totals_are_the_sum();
    test_pages_move_their_class();
    test_threads_leave_counts_balanced();
    test_bad_input();
    CHECK(live_handles() == live0);
    int pass = atomic_load(&g_pass), fail = atomic_load(&g_fail);
    printf("%d passed, %d failed\n", pass, fail);
    return fail == 0 ? 0 : 1;
}
