/*
 * test_capi.c: a plain C11 test of every function in rust/mmsb-capi/include/mmsb.h.
 *
 * Built and run by test/c/run.sh (shared and static library, then under valgrind).
 * No framework: CHECK / EXPECT_OK / EXPECT_ERR count passed and failed checks,
 * print each failure with its line and the library's last error message, and
 * the program ends with the line "N passed, M failed" and exits non-zero if M > 0.
 *
 * Sections: errors and version, stores, pages, metadata, views, page list,
 * delta construction (bad shapes), delta annotation, apply against a C reference
 * model, compare-and-set, ranges outside the page, borrows (snapshot semantics,
 * surviving deletion and store close), encode/decode, merge, forged and stale
 * handles, stats counters, threads (4 writers on one store, a delta freed and a
 * store closed while another thread uses them, thread-local last errors), and
 * finally the live-handle leak check.
 */
#define _POSIX_C_SOURCE 200809L

#include "mmsb.h"

#include <pthread.h>
#include <sched.h>
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
/* Errors, names, retryability, version                                */
/* ------------------------------------------------------------------ */

static void test_errors_and_version(void) {
    static const char *names[20] = {"Ok",
                                    "InvalidArgument",
                                    "NotFound",
                                    "InvalidHandle",
                                    "OutOfMemory",
                                    "Io",
                                    "Corruption",
                                    "ChecksumMismatch",
                                    "Cycle",
                                    "TransactionConflict",
                                    "InvariantViolation",
                                    "GpuUnavailable",
                                    "GpuError",
                                    "MemoryPressure",
                                    "Internal",
                                    "EpochMismatch",
                                    "Unsupported",
                                    "BufferTooSmall",
                                    "NoSpace",
                                    "ReadOnly"};
    static const int32_t codes[20] = {
        MMSB_OK,
        MMSB_ERR_INVALID_ARGUMENT,
        MMSB_ERR_NOT_FOUND,
        MMSB_ERR_INVALID_HANDLE,
        MMSB_ERR_OUT_OF_MEMORY,
        MMSB_ERR_IO,
        MMSB_ERR_CORRUPTION,
        MMSB_ERR_CHECKSUM_MISMATCH,
        MMSB_ERR_CYCLE,
        MMSB_ERR_TRANSACTION_CONFLICT,
        MMSB_ERR_INVARIANT_VIOLATION,
        MMSB_ERR_GPU_UNAVAILABLE,
        MMSB_ERR_GPU_ERROR,
        MMSB_ERR_MEMORY_PRESSURE,
        MMSB_ERR_INTERNAL,
        MMSB_ERR_EPOCH_MISMATCH,
        MMSB_ERR_UNSUPPORTED,
        MMSB_ERR_BUFFER_TOO_SMALL,
        MMSB_ERR_NO_SPACE,
        MMSB_ERR_READ_ONLY,
    };
    for (int i = 0; i < 20; i++) {
        CHECK(codes[i] == i); /* the numbers are stable: 0..19 in this order */
        const char *n = NULL;
        EXPECT_OK(mmsb_error_name(codes[i], &n));
        CHECK(n != NULL && strcmp(n, names[i]) == 0);
        bool retry = true;
        EXPECT_OK(mmsb_error_is_retryable(codes[i], &retry));
        int want = codes[i] == MMSB_ERR_OUT_OF_MEMORY || codes[i] == MMSB_ERR_TRANSACTION_CONFLICT ||
                   codes[i] == MMSB_ERR_GPU_ERROR || codes[i] == MMSB_ERR_MEMORY_PRESSURE ||
                   codes[i] == MMSB_ERR_EPOCH_MISMATCH;
        CHECK((retry ? 1 : 0) == want);
    }
    /* Unknown codes fail and write nothing. */
    const int32_t unknown[] = {-1, 20, 21, 1000, INT32_MAX, INT32_MIN};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *n = "untouched";
        EXPECT_ERR(mmsb_error_name(unknown[i], &n), MMSB_ERR_INVALID_ARGUMENT, "unknown status code");
        CHECK(strcmp(n, "untouched") == 0);
        bool retry = true;
        EXPECT_ERR(mmsb_error_is_retryable(unknown[i], &retry), MMSB_ERR_INVALID_ARGUMENT,
                   "unknown status code");
        CHECK(retry == true);
    }
    /* Null out-pointers. */
    EXPECT_ERR(mmsb_error_name(MMSB_ERR_IO, NULL), MMSB_ERR_INVALID_ARGUMENT, "out_name");
    EXPECT_ERR(mmsb_error_is_retryable(MMSB_ERR_IO, NULL), MMSB_ERR_INVALID_ARGUMENT, "out_retryable");
    EXPECT_ERR(mmsb_last_error_message(NULL), MMSB_ERR_INVALID_ARGUMENT, "out_message");
    EXPECT_ERR(mmsb_live_handles(NULL), MMSB_ERR_INVALID_ARGUMENT, "out_count");

    /* Version. */
    uint32_t ma = 999, mi = 999, pa = 999;
    EXPECT_OK(mmsb_version(&ma, &mi, &pa));
#ifdef MMSB_EXPECTED_VERSION
    {
        char v[64];
        snprintf(v, sizeof v, "%u.%u.%u", ma, mi, pa);
        CHECK(strcmp(v, MMSB_EXPECTED_VERSION) == 0);
    }
#else
    CHECK(ma < 1000 && mi < 1000 && pa < 1000 && !(ma == 0 && mi == 0 && pa == 0));
#endif
    uint32_t x = 7, y = 7, z = 7;
    EXPECT_ERR(mmsb_version(NULL, &y, &z), MMSB_ERR_INVALID_ARGUMENT, "out_major");
    EXPECT_ERR(mmsb_version(&x, NULL, &z), MMSB_ERR_INVALID_ARGUMENT, "out_minor");
    EXPECT_ERR(mmsb_version(&x, &y, NULL), MMSB_ERR_INVALID_ARGUMENT, "out_patch");
    CHECK(x == 7 && y == 7 && z == 7); /* nothing written on failure */

    /* The message pointer stays valid and unchanged across successful calls. */
    EXPECT_ERR(mmsb_error_name(-5, &(const char *){NULL}), MMSB_ERR_INVALID_ARGUMENT, "-5");
    const char *m1 = last_error();
    char copy[256];
    snprintf(copy, sizeof copy, "%s", m1);
    uint64_t n;
    EXPECT_OK(mmsb_live_handles(&n));
    EXPECT_OK(mmsb_version(&x, &y, &z));
    CHECK(strcmp(last_error(), copy) == 0);
}

/* ------------------------------------------------------------------ */
/* Stores                                                              */
/* ------------------------------------------------------------------ */

static void test_stores(void) {
    uint64_t live0 = live_handles();
    MmsbStore s = SENTINEL;
    EXPECT_ERR(mmsb_store_open_memory(NULL), MMSB_ERR_INVALID_ARGUMENT, "out_store");
    CHECK(live_handles() == live0);
    EXPECT_OK(mmsb_store_open_memory(&s));
    CHECK(s != 0 && s != SENTINEL);
    CHECK(live_handles() == live0 + 1);

    MmsbStoreStats st;
    memset(&st, 0xFF, sizeof st);
    EXPECT_OK(mmsb_store_stats(s, &st));
    CHECK(st.pages == 0 && st.page_bytes == 0 && st.deltas_applied == 0 && st.deltas_noop == 0 &&
          st.deltas_rejected == 0 && st.bytes_written == 0);
    EXPECT_ERR(mmsb_store_stats(s, NULL), MMSB_ERR_INVALID_ARGUMENT, "out_stats");
    EXPECT_ERR(mmsb_store_stats(0, &st), MMSB_ERR_INVALID_HANDLE, "null");

    /* Two stores are independent. */
    MmsbStore s2 = 0;
    EXPECT_OK(mmsb_store_open_memory(&s2));
    CHECK(s2 != s);
    MmsbPageId p = 0;
    EXPECT_OK(mmsb_page_create(s, 8, MMSB_LOCATION_CPU, &p));
    MmsbPageInfo info;
    EXPECT_ERR(mmsb_page_info(s2, p, &info), MMSB_ERR_NOT_FOUND, "does not exist");

    EXPECT_OK(mmsb_store_close(s));
    CHECK(live_handles() == live0 + 1);
    /* Use after close, double close. */
    EXPECT_ERR(mmsb_store_stats(s, &st), MMSB_ERR_INVALID_HANDLE, "stale");
    EXPECT_ERR(mmsb_store_close(s), MMSB_ERR_INVALID_HANDLE, "stale");
    EXPECT_ERR(mmsb_page_info(s, p, &info), MMSB_ERR_INVALID_HANDLE, "stale");
    EXPECT_ERR(mmsb_store_close(0), MMSB_ERR_INVALID_HANDLE, "null");
    /* A new store reusing the slot does not revive the old handle. */
    MmsbStore s3 = 0;
    EXPECT_OK(mmsb_store_open_memory(&s3));
    CHECK(s3 != s);
    EXPECT_ERR(mmsb_store_stats(s, &st), MMSB_ERR_INVALID_HANDLE, "stale");
    EXPECT_OK(mmsb_store_stats(s3, &st));
    EXPECT_OK(mmsb_store_close(s3));
    EXPECT_OK(mmsb_store_close(s2));
    CHECK(live_handles() == live0);
}

/* ------------------------------------------------------------------ */
/* Pages: create, info, read, delete, list, view                       */
/* ------------------------------------------------------------------ */

static void test_pages(void) {
    uint64_t live0 = live_handles();
    MmsbStore s = 0;
    REQUIRE(mmsb_store_open_memory(&s) == MMSB_OK);

    MmsbPageId p = SENTINEL;
    EXPECT_ERR(mmsb_page_create(s, 64, MMSB_LOCATION_CPU, NULL), MMSB_ERR_INVALID_ARGUMENT, "out_page");
    EXPECT_ERR(mmsb_page_create(s, 0, MMSB_LOCATION_CPU, &p), MMSB_ERR_INVALID_ARGUMENT, "page size 0");
    EXPECT_ERR(mmsb_page_create(s, (1ULL << 34) + 1, MMSB_LOCATION_CPU, &p), MMSB_ERR_INVALID_ARGUMENT,
               "page size");
    EXPECT_ERR(mmsb_page_create(s, UINT64_MAX, MMSB_LOCATION_CPU, &p), MMSB_ERR_INVALID_ARGUMENT, "page size");
    EXPECT_ERR(mmsb_page_create(s, 64, MMSB_LOCATION_GPU, &p), MMSB_ERR_UNSUPPORTED, "gpu");
    EXPECT_ERR(mmsb_page_create(s, 64, MMSB_LOCATION_UNIFIED, &p), MMSB_ERR_UNSUPPORTED, "unified");
    EXPECT_ERR(mmsb_page_create(s, 64, 3, &p), MMSB_ERR_INVALID_ARGUMENT, "unknown page location 3");
    EXPECT_ERR(mmsb_page_create(s, 64, 255, &p), MMSB_ERR_INVALID_ARGUMENT, "unknown page location 255");
    EXPECT_ERR(mmsb_page_create(0, 64, MMSB_LOCATION_CPU, &p), MMSB_ERR_INVALID_HANDLE, "null");
    CHECK(p == SENTINEL); /* nothing written on failure */

    EXPECT_OK(mmsb_page_create(s, 100, MMSB_LOCATION_CPU, &p));
    CHECK(p != 0 && p != SENTINEL);

    MmsbPageInfo info;
    memset(&info, 0xFF, sizeof info);
    EXPECT_OK(mmsb_page_info(s, p, &info));
    CHECK(info.size == 100 && info.epoch == 0 && info.location == MMSB_LOCATION_CPU &&
          info.dtype == MMSB_DTYPE_NONE && info.view_len == 0);
    EXPECT_ERR(mmsb_page_info(s, p, NULL), MMSB_ERR_INVALID_ARGUMENT, "out_info");
    EXPECT_ERR(mmsb_page_info(s, 0, &info), MMSB_ERR_NOT_FOUND, "does not exist");
    EXPECT_ERR(mmsb_page_info(s, p + 1000, &info), MMSB_ERR_NOT_FOUND, "does not exist");

    /* Read: zeroed, null buf, ranges outside the page, impossible lengths. */
    uint8_t buf[128];
    memset(buf, 0x77, sizeof buf);
    EXPECT_OK(mmsb_page_read(s, p, 0, buf, 100));
    int zero = 1;
    for (int i = 0; i < 100; i++) zero &= buf[i] == 0;
    CHECK(zero);
    CHECK(buf[100] == 0x77);
    EXPECT_ERR(mmsb_page_read(s, p, 0, NULL, 10), MMSB_ERR_INVALID_ARGUMENT, "buf");
    EXPECT_OK(mmsb_page_read(s, p, 0, NULL, 0));
    EXPECT_OK(mmsb_page_read(s, p, 100, buf, 0)); /* empty read at the end */
    EXPECT_OK(mmsb_page_read(s, p, 90, buf, 10));
    EXPECT_ERR(mmsb_page_read(s, p, 91, buf, 10), MMSB_ERR_INVALID_ARGUMENT, "outside");
    EXPECT_ERR(mmsb_page_read(s, p, 101, buf, 0), MMSB_ERR_INVALID_ARGUMENT, "outside");
    EXPECT_ERR(mmsb_page_read(s, p, 0, buf, 101), MMSB_ERR_INVALID_ARGUMENT, "outside");
    EXPECT_ERR(mmsb_page_read(s, p, UINT64_MAX, buf, 4), MMSB_ERR_INVALID_ARGUMENT, "outside");
    EXPECT_ERR(mmsb_page_read(s, p, UINT64_MAX - 1, buf, 2), MMSB_ERR_INVALID_ARGUMENT, "outside");
    EXPECT_ERR(mmsb_page_read(s, p, 0, buf, UINT64_MAX), MMSB_ERR_INVALID_ARGUMENT, "impossibly large");
    EXPECT_ERR(mmsb_page_read(s, p + 1000, 0, buf, 1), MMSB_ERR_NOT_FOUND, "does not exist");
    EXPECT_ERR(mmsb_page_read(0, p, 0, buf, 1), MMSB_ERR_INVALID_HANDLE, "null");

    /* Views: every dtype, too long, unknown dtype, clear. */
    static const struct {
        uint8_t dtype;
        uint64_t size;
    } dts[] = {{MMSB_DTYPE_U8, 1},  {MMSB_DTYPE_I32, 4},  {MMSB_DTYPE_I64, 8},
               {MMSB_DTYPE_F32, 4}, {MMSB_DTYPE_F64, 8},  {MMSB_DTYPE_BOOL, 1},
               {MMSB_DTYPE_U32, 4}, {MMSB_DTYPE_U64, 8}};
    for (size_t i = 0; i < sizeof dts / sizeof dts[0]; i++) {
        uint64_t n = 100 / dts[i].size;
        EXPECT_OK(mmsb_page_set_view(s, p, dts[i].dtype, n));
        EXPECT_OK(mmsb_page_info(s, p, &info));
        CHECK(info.dtype == dts[i].dtype && info.view_len == n);
        EXPECT_ERR(mmsb_page_set_view(s, p, dts[i].dtype, n + 1), MMSB_ERR_INVALID_ARGUMENT, "does not fit");
        EXPECT_ERR(mmsb_page_set_view(s, p, dts[i].dtype, UINT64_MAX), MMSB_ERR_INVALID_ARGUMENT,
                   "does not fit");
    }
    EXPECT_OK(mmsb_page_info(s, p, &info));
    CHECK(info.dtype == MMSB_DTYPE_U64 && info.view_len == 12); /* failed calls changed nothing */
    EXPECT_ERR(mmsb_page_set_view(s, p, 9, 1), MMSB_ERR_INVALID_ARGUMENT, "unknown dtype 9");
    EXPECT_ERR(mmsb_page_set_view(s, p, 255, 1), MMSB_ERR_INVALID_ARGUMENT, "unknown dtype 255");
    EXPECT_ERR(mmsb_page_set_view(s, p + 1000, MMSB_DTYPE_U8, 1), MMSB_ERR_NOT_FOUND, "does not exist");
    EXPECT_ERR(mmsb_page_set_view(0, p, MMSB_DTYPE_U8, 1), MMSB_ERR_INVALID_HANDLE, "null");
    EXPECT_OK(mmsb_page_set_view(s, p, MMSB_DTYPE_NONE, 0));
    EXPECT_OK(mmsb_page_info(s, p, &info));
    CHECK(info.dtype == MMSB_DTYPE_NONE && info.view_len == 0);

    /* Page list: query, too small, exact, larger; ascending, deletions drop out. */
    MmsbPageId q = 0, r = 0;
    EXPECT_OK(mmsb_page_create(s, 10, MMSB_LOCATION_CPU, &q));
    EXPECT_OK(mmsb_page_create(s, 20, MMSB_LOCATION_CPU, &r));
    CHECK(p < q && q < r);
    uint64_t count = SENTINEL;
    EXPECT_OK(mmsb_page_list(s, NULL, 0, &count));
    CHECK(count == 3);
    MmsbPageId ids[8];
    for (int i = 0; i < 8; i++) ids[i] = SENTINEL;
    count = 0;
    EXPECT_ERR(mmsb_page_list(s, ids, 2, &count), MMSB_ERR_BUFFER_TOO_SMALL, "3 needed");
    CHECK(count == 3);              /* the needed count is reported */
    CHECK(ids[0] == SENTINEL && ids[1] == SENTINEL); /* and nothing else written */
    EXPECT_ERR(mmsb_page_list(s, ids, 0, &count), MMSB_ERR_BUFFER_TOO_SMALL, "too small");
    EXPECT_OK(mmsb_page_list(s, ids, 3, &count));
    CHECK(count == 3 && ids[0] == p && ids[1] == q && ids[2] == r);
    for (int i = 0; i < 8; i++) ids[i] = SENTINEL;
    EXPECT_OK(mmsb_page_list(s, ids, 8, &count));
    CHECK(count == 3 && ids[0] == p && ids[1] == q && ids[2] == r && ids[3] == SENTINEL);
    EXPECT_ERR(mmsb_page_list(s, ids, 8, NULL), MMSB_ERR_INVALID_ARGUMENT, "out_count");
    EXPECT_ERR(mmsb_page_list(s, NULL, 8, &count), MMSB_ERR_INVALID_ARGUMENT, "buf");
    EXPECT_ERR(mmsb_page_list(0, ids, 8, &count), MMSB_ERR_INVALID_HANDLE, "null");

    MmsbStoreStats st;
    EXPECT_OK(mmsb_store_stats(s, &st));
    CHECK(st.pages == 3 && st.page_bytes == 130);

    /* Delete: then everything about the page is NotFound; double delete. */
    EXPECT_OK(mmsb_page_delete(s, q));
    EXPECT_ERR(mmsb_page_delete(s, q), MMSB_ERR_NOT_FOUND, "does not exist");
    EXPECT_ERR(mmsb_page_delete(s, 0), MMSB_ERR_NOT_FOUND, "does not exist");
    EXPECT_ERR(mmsb_page_delete(0, q), MMSB_ERR_INVALID_HANDLE, "null");
    EXPECT_ERR(mmsb_page_info(s, q, &info), MMSB_ERR_NOT_FOUND, "does not exist");
    EXPECT_ERR(mmsb_page_read(s, q, 0, buf, 1), MMSB_ERR_NOT_FOUND, "does not exist");
    EXPECT_OK(mmsb_page_list(s, ids, 8, &count));
    CHECK(count == 2 && ids[0] == p && ids[1] == r);
    EXPECT_OK(mmsb_store_stats(s, &st));
    CHECK(st.pages == 2 && st.page_bytes == 120);
    /* Ids are never reused. */
    MmsbPageId t = 0;
    EXPECT_OK(mmsb_page_create(s, 5, MMSB_LOCATION_CPU, &t));
    CHECK(t > r);

    EXPECT_OK(mmsb_store_close(s));
    CHECK(live_handles() == live0);
}

/* ------------------------------------------------------------------ */
/* Metadata                                                            */
/* ------------------------------------------------------------------ */

static void test_metadata(void) {
    MmsbStore s = 0;
    MmsbPageId p = 0;
    REQUIRE(mmsb_store_open_memory(&s) == MMSB_OK);
    REQUIRE(mmsb_page_create(s, 16, MMSB_LOCATION_CPU, &p) == MMSB_OK);
    const uint8_t val[] = "hello, metadata";
    const uint64_t vlen = sizeof val - 1;
    uint8_t buf[64];
    uint64_t len = SENTINEL;

    EXPECT_ERR(mmsb_page_get_metadata(s, p, "k", NULL, 0, &len), MMSB_ERR_NOT_FOUND, "\"k\"");
    EXPECT_OK(mmsb_page_set_metadata(s, p, "k", val, vlen));
    /* Size query, too small, exact, larger. */
    EXPECT_OK(mmsb_page_get_metadata(s, p, "k", NULL, 0, &len));
    CHECK(len == vlen);
    memset(buf, 0x55, sizeof buf);
    len = 0;
    EXPECT_ERR(mmsb_page_get_metadata(s, p, "k", buf, 4, &len), MMSB_ERR_BUFFER_TOO_SMALL, "15 needed");
    CHECK(len == vlen);
    CHECK(buf[0] == 0x55); /* nothing copied */
    EXPECT_ERR(mmsb_page_get_metadata(s, p, "k", buf, 0, &len), MMSB_ERR_BUFFER_TOO_SMALL, "too small");
    len = 0;
    EXPECT_OK(mmsb_page_get_metadata(s, p, "k", buf, vlen, &len));
    CHECK(len == vlen && memcmp(buf, val, vlen) == 0);
    memset(buf, 0x55, sizeof buf);
    EXPECT_OK(mmsb_page_get_metadata(s, p, "k", buf, sizeof buf, &len));
    CHECK(len == vlen && memcmp(buf, val, vlen) == 0 && buf[vlen] == 0x55);
    /* Null pointers, one at a time. */
    EXPECT_ERR(mmsb_page_get_metadata(s, p, NULL, buf, sizeof buf, &len), MMSB_ERR_INVALID_ARGUMENT, "key");
    EXPECT_ERR(mmsb_page_get_metadata(s, p, "k", buf, sizeof buf, NULL), MMSB_ERR_INVALID_ARGUMENT,
               "out_len");
    EXPECT_ERR(mmsb_page_get_metadata(s, p, "k", NULL, sizeof buf, &len), MMSB_ERR_INVALID_ARGUMENT, "buf");
    EXPECT_ERR(mmsb_page_set_metadata(s, p, NULL, val, vlen), MMSB_ERR_INVALID_ARGUMENT, "key");
    EXPECT_ERR(mmsb_page_set_metadata(s, p, "k2", NULL, 3), MMSB_ERR_INVALID_ARGUMENT, "value");
    EXPECT_ERR(mmsb_page_set_metadata(s, p, "k2", val, UINT64_MAX), MMSB_ERR_INVALID_ARGUMENT,
               "impossibly large");
    EXPECT_ERR(mmsb_page_remove_metadata(s, p, NULL), MMSB_ERR_INVALID_ARGUMENT, "key");
    /* Keys: empty, 256 bytes ok, 257 too long, non-UTF-8. */
    char key[300];
    memset(key, 'a', sizeof key);
    key[256] = 0;
    EXPECT_OK(mmsb_page_set_metadata(s, p, key, val, 1));
    key[256] = 'a';
    key[257] = 0;
    EXPECT_ERR(mmsb_page_set_metadata(s, p, key, val, 1), MMSB_ERR_INVALID_ARGUMENT, "metadata key");
    EXPECT_ERR(mmsb_page_set_metadata(s, p, "", val, 1), MMSB_ERR_INVALID_ARGUMENT, "metadata key");
    EXPECT_ERR(mmsb_page_set_metadata(s, p, "bad\xff\xfe", val, 1), MMSB_ERR_INVALID_ARGUMENT, "UTF-8");
    EXPECT_ERR(mmsb_page_get_metadata(s, p, "bad\xc3", buf, sizeof buf, &len), MMSB_ERR_INVALID_ARGUMENT,
               "UTF-8");
    EXPECT_ERR(mmsb_page_remove_metadata(s, p, "\x80"), MMSB_ERR_INVALID_ARGUMENT, "UTF-8");
    /* A UTF-8 key with multibyte characters is fine. */
    EXPECT_OK(mmsb_page_set_metadata(s, p, "cl\xc3\xa9", val, 2));
    EXPECT_OK(mmsb_page_get_metadata(s, p, "cl\xc3\xa9", buf, sizeof buf, &len));
    CHECK(len == 2 && memcmp(buf, val, 2) == 0);
    /* Empty values, overwrite. */
    EXPECT_OK(mmsb_page_set_metadata(s, p, "empty", NULL, 0));
    len = SENTINEL;
    EXPECT_OK(mmsb_page_get_metadata(s, p, "empty", NULL, 0, &len));
    CHECK(len == 0);
    EXPECT_OK(mmsb_page_get_metadata(s, p, "empty", buf, sizeof buf, &len));
    CHECK(len == 0);
    EXPECT_OK(mmsb_page_set_metadata(s, p, "k", (const uint8_t *)"xy", 2));
    EXPECT_OK(mmsb_page_get_metadata(s, p, "k", buf, sizeof buf, &len));
    CHECK(len == 2 && memcmp(buf, "xy", 2) == 0);
    /* Remove; missing keys and pages are NotFound. */
    EXPECT_OK(mmsb_page_remove_metadata(s, p, "k"));
    EXPECT_ERR(mmsb_page_remove_metadata(s, p, "k"), MMSB_ERR_NOT_FOUND, "no metadata key");
    EXPECT_ERR(mmsb_page_get_metadata(s, p, "k", buf, sizeof buf, &len), MMSB_ERR_NOT_FOUND,
               "no metadata key");
    EXPECT_ERR(mmsb_page_set_metadata(s, p + 99, "k", val, 1), MMSB_ERR_NOT_FOUND, "does not exist");
    EXPECT_ERR(mmsb_page_get_metadata(s, p + 99, "k", buf, sizeof buf, &len), MMSB_ERR_NOT_FOUND,
               "does not exist");
    EXPECT_ERR(mmsb_page_remove_metadata(s, p + 99, "k"), MMSB_ERR_NOT_FOUND, "does not exist");
    EXPECT_ERR(mmsb_page_set_metadata(0, p, "k", val, 1), MMSB_ERR_INVALID_HANDLE, "null");
    EXPECT_ERR(mmsb_page_get_metadata(0, p, "k", buf, sizeof buf, &len), MMSB_ERR_INVALID_HANDLE, "null");
    EXPECT_ERR(mmsb_page_remove_metadata(0, p, "k"), MMSB_ERR_INVALID_HANDLE, "null");
    /* Metadata does not touch the bytes or the epoch. */
    MmsbPageInfo info;
    EXPECT_OK(mmsb_page_info(s, p, &info));
    CHECK(info.epoch == 0);
    EXPECT_OK(mmsb_store_close(s));
}

/* ------------------------------------------------------------------ */
/* Delta construction with bad shapes, annotation, info                */
/* ------------------------------------------------------------------ */

static void test_delta_construction(void) {
    uint64_t live0 = live_handles();
    uint8_t pay[130];
    for (int i = 0; i < 130; i++) pay[i] = (uint8_t)(i + 1);
    uint64_t mask2[3] = {0x5555555555555555ULL, 0x3ULL, 0}; /* for a 66-byte range */
    MmsbDelta d = SENTINEL;

    /* Null pointers, one at a time. */
    EXPECT_ERR(mmsb_delta_new_dense(1, 0, pay, 4, NULL, 0, NULL), MMSB_ERR_INVALID_ARGUMENT, "out_delta");
    EXPECT_ERR(mmsb_delta_new_dense(1, 0, NULL, 4, NULL, 0, &d), MMSB_ERR_INVALID_ARGUMENT, "payload");
    EXPECT_ERR(mmsb_delta_new_dense(1, 0, pay, 66, NULL, 2, &d), MMSB_ERR_INVALID_ARGUMENT, "mask");
    EXPECT_ERR(mmsb_delta_new_sparse(1, 0, 66, NULL, 2, pay, 34, &d), MMSB_ERR_INVALID_ARGUMENT, "mask");
    EXPECT_ERR(mmsb_delta_new_sparse(1, 0, 66, mask2, 2, NULL, 34, &d), MMSB_ERR_INVALID_ARGUMENT, "values");
    EXPECT_ERR(mmsb_delta_new_sparse(1, 0, 66, mask2, 2, pay, 34, NULL), MMSB_ERR_INVALID_ARGUMENT,
               "out_delta");
    /* Empty range, page 0. */
    EXPECT_ERR(mmsb_delta_new_dense(1, 0, NULL, 0, NULL, 0, &d), MMSB_ERR_INVALID_ARGUMENT, "empty range");
    EXPECT_ERR(mmsb_delta_new_dense(1, 0, pay, 0, NULL, 0, &d), MMSB_ERR_INVALID_ARGUMENT, "empty range");
    EXPECT_ERR(mmsb_delta_new_sparse(1, 0, 0, mask2, 0, NULL, 0, &d), MMSB_ERR_INVALID_ARGUMENT,
               "empty range");
    EXPECT_ERR(mmsb_delta_new_dense(0, 0, pay, 4, NULL, 0, &d), MMSB_ERR_INVALID_ARGUMENT, "page 0");
    /* Payload / mask mismatch: 100 payload bytes need 2 mask words. */
    EXPECT_ERR(mmsb_delta_new_dense(1, 0, pay, 100, mask2, 1, &d), MMSB_ERR_INVALID_ARGUMENT,
               "mask has 1 words");
    /* Wrong word counts: a non-null mask with 0 words, too many words. */
    EXPECT_ERR(mmsb_delta_new_dense(1, 0, pay, 4, mask2, 0, &d), MMSB_ERR_INVALID_ARGUMENT, "mask has 0 words");
    EXPECT_ERR(mmsb_delta_new_dense(1, 0, pay, 66, mask2, 3, &d), MMSB_ERR_INVALID_ARGUMENT, "mask has 3 words");
    EXPECT_ERR(mmsb_delta_new_sparse(1, 0, 66, mask2, 1, pay, 32, &d), MMSB_ERR_INVALID_ARGUMENT,
               "mask has 1 words");
    /* Stray bits past the end of the range. */
    uint64_t stray[2] = {0x1, 0x4}; /* bit 66 in a 66-byte range */
    EXPECT_ERR(mmsb_delta_new_dense(1, 0, pay, 66, stray, 2, &d), MMSB_ERR_INVALID_ARGUMENT, "past the end");
    EXPECT_ERR(mmsb_delta_new_sparse(1, 0, 66, stray, 2, pay, 2, &d), MMSB_ERR_INVALID_ARGUMENT, "past the end");
    uint64_t stray1 = 1ULL << 5;
    EXPECT_ERR(mmsb_delta_new_dense(1, 0, pay, 5, &stray1, 1, &d), MMSB_ERR_INVALID_ARGUMENT, "past the end");
    /* Sparse value counts: the mask selects 34 bytes. */
    CHECK(popcount_words(mask2, 2) == 34);
    EXPECT_ERR(mmsb_delta_new_sparse(1, 0, 66, mask2, 2, pay, 33, &d), MMSB_ERR_INVALID_ARGUMENT,
               "the mask selects 34");
    EXPECT_ERR(mmsb_delta_new_sparse(1, 0, 66, mask2, 2, pay, 35, &d), MMSB_ERR_INVALID_ARGUMENT,
               "the mask selects 34");
    EXPECT_ERR(mmsb_delta_new_sparse(1, 0, 66, mask2, 2, NULL, 0, &d), MMSB_ERR_INVALID_ARGUMENT,
               "the mask selects 34");
    /* Impossible lengths. */
    EXPECT_ERR(mmsb_delta_new_dense(1, 0, pay, UINT64_MAX, NULL, 0, &d), MMSB_ERR_INVALID_ARGUMENT,
               "impossibly large");
    EXPECT_ERR(mmsb_delta_new_dense(1, 0, pay, 4, mask2, UINT64_MAX, &d), MMSB_ERR_INVALID_ARGUMENT,
               "impossibly large");
    EXPECT_ERR(mmsb_delta_new_dense(1, 0, pay, 4, mask2, (UINT64_MAX / 8) + 1, &d), MMSB_ERR_INVALID_ARGUMENT,
               "impossibly large");
    EXPECT_ERR(mmsb_delta_new_sparse(1, 0, 66, mask2, UINT64_MAX, pay, 34, &d), MMSB_ERR_INVALID_ARGUMENT,
               "impossibly large");
    EXPECT_ERR(mmsb_delta_new_sparse(1, 0, 66, mask2, 2, pay, UINT64_MAX, &d), MMSB_ERR_INVALID_ARGUMENT,
               "impossibly large");
    EXPECT_ERR(mmsb_delta_new_sparse(1, 0, UINT64_MAX, mask2, 2, pay, 34, &d), MMSB_ERR_INVALID_ARGUMENT,
               "largest page");
    EXPECT_ERR(mmsb_delta_new_sparse(1, 0, (1ULL << 34) + 1, mask2, 2, pay, 34, &d), MMSB_ERR_INVALID_ARGUMENT,
               "largest page");
    CHECK(d == SENTINEL); /* nothing written by any failure */
    CHECK(live_handles() == live0);

    /* Good deltas and their info. */
    MmsbDelta dd = 0, dm = 0, ds = 0;
    EXPECT_OK(mmsb_delta_new_dense(7, 3, pay, 10, NULL, 0, &dd));
    EXPECT_OK(mmsb_delta_new_dense(7, 1, pay, 66, mask2, 2, &dm));
    EXPECT_OK(mmsb_delta_new_sparse(7, 2, 66, mask2, 2, pay, 34, &ds));
    CHECK(dd != 0 && dm != 0 && ds != 0 && dd != dm && dm != ds);
    CHECK(live_handles() == live0 + 3);
    /* A sparse delta selecting nothing is valid (and will be a no-op). */
    uint64_t none = 0;
    MmsbDelta dn = 0;
    EXPECT_OK(mmsb_delta_new_sparse(7, 0, 5, &none, 1, NULL, 0, &dn));
    EXPECT_OK(mmsb_delta_free(dn));

    MmsbDeltaInfo di;
    memset(&di, 0xFF, sizeof di);
    EXPECT_OK(mmsb_delta_info(dd, &di));
    CHECK(di.page == 7 && di.offset == 3 && di.len == 10 && !di.has_mask && !di.sparse &&
          !di.has_expected_epoch && di.expected_epoch == 0 && di.payload_len == 10 && di.written_bytes == 10 &&
          di.timestamp_ns > 1500000000ULL * 1000000000ULL);
    EXPECT_OK(mmsb_delta_info(dm, &di));
    CHECK(di.page == 7 && di.offset == 1 && di.len == 66 && di.has_mask && !di.sparse && di.payload_len == 66 &&
          di.written_bytes == 34);
    EXPECT_OK(mmsb_delta_info(ds, &di));
    CHECK(di.page == 7 && di.offset == 2 && di.len == 66 && di.has_mask && di.sparse && di.payload_len == 34 &&
          di.written_bytes == 34);
    EXPECT_ERR(mmsb_delta_info(dd, NULL), MMSB_ERR_INVALID_ARGUMENT, "out_info");
    EXPECT_ERR(mmsb_delta_info(0, &di), MMSB_ERR_INVALID_HANDLE, "null");

    /* The delta copied its inputs: scribbling over them changes nothing. */
    {
        uint8_t tmp[4] = {9, 9, 9, 9};
        uint64_t tm = 0x5;
        MmsbDelta dc = 0;
        EXPECT_OK(mmsb_delta_new_dense(7, 0, tmp, 4, &tm, 1, &dc));
        memset(tmp, 0, sizeof tmp);
        tm = 0xF;
        EXPECT_OK(mmsb_delta_info(dc, &di));
        CHECK(di.written_bytes == 2);
        uint64_t n = 0;
        uint8_t enc[256];
        EXPECT_OK(mmsb_delta_encode(dc, enc, sizeof enc, &n));
        /* mask word then payload follow the 64-byte header */
        CHECK(n >= 64 + 8 + 4 && enc[64] == 0x5 && enc[72] == 9 && enc[75] == 9);
        EXPECT_OK(mmsb_delta_free(dc));
    }

    /* Source labels. */
    EXPECT_OK(mmsb_delta_set_source(dd, "c-test"));
    EXPECT_OK(mmsb_delta_set_source(dd, ""));
    EXPECT_ERR(mmsb_delta_set_source(dd, NULL), MMSB_ERR_INVALID_ARGUMENT, "source");
    EXPECT_ERR(mmsb_delta_set_source(dd, "caf\xe9"), MMSB_ERR_INVALID_ARGUMENT, "UTF-8");
    {
        char *big = malloc(4098);
        REQUIRE(big != NULL);
        memset(big, 's', 4097);
        big[4096] = 0;
        EXPECT_OK(mmsb_delta_set_source(dd, big));
        big[4096] = 's';
        big[4097] = 0;
        EXPECT_ERR(mmsb_delta_set_source(dd, big), MMSB_ERR_INVALID_ARGUMENT, "4096");
        free(big);
    }
    EXPECT_ERR(mmsb_delta_set_source(0, "x"), MMSB_ERR_INVALID_HANDLE, "null");
    EXPECT_OK(mmsb_delta_set_source(dd, "c-test"));

    /* Intents: JSON only. */
    EXPECT_OK(mmsb_delta_set_intent(dd, "{\"why\":\"test\",\"n\":[1,2,3]}"));
    EXPECT_OK(mmsb_delta_set_intent(dd, "42"));
    EXPECT_ERR(mmsb_delta_set_intent(dd, "not json"), MMSB_ERR_INVALID_ARGUMENT, "not valid JSON");
    EXPECT_ERR(mmsb_delta_set_intent(dd, "{\"a\":"), MMSB_ERR_INVALID_ARGUMENT, "not valid JSON");
    EXPECT_ERR(mmsb_delta_set_intent(dd, ""), MMSB_ERR_INVALID_ARGUMENT, "not valid JSON");
    EXPECT_ERR(mmsb_delta_set_intent(dd, "\"\xff\""), MMSB_ERR_INVALID_ARGUMENT, "UTF-8");
    EXPECT_ERR(mmsb_delta_set_intent(dd, NULL), MMSB_ERR_INVALID_ARGUMENT, "json");
    EXPECT_ERR(mmsb_delta_set_intent(0, "{}"), MMSB_ERR_INVALID_HANDLE, "null");
    EXPECT_OK(mmsb_delta_set_intent(dd, "{\"why\":\"test\"}"));

    /* Expected epoch. */
    EXPECT_OK(mmsb_delta_set_expected_epoch(dd, 0));
    EXPECT_OK(mmsb_delta_info(dd, &di));
    CHECK(di.has_expected_epoch && di.expected_epoch == 0);
    EXPECT_OK(mmsb_delta_set_expected_epoch(dd, 42));
    EXPECT_OK(mmsb_delta_info(dd, &di));
    CHECK(di.has_expected_epoch && di.expected_epoch == 42);
    EXPECT_ERR(mmsb_delta_set_expected_epoch(0, 1), MMSB_ERR_INVALID_HANDLE, "null");

    /* Free: use after free and double free. */
    EXPECT_OK(mmsb_delta_free(dd));
    EXPECT_ERR(mmsb_delta_free(dd), MMSB_ERR_INVALID_HANDLE, "stale");
    EXPECT_ERR(mmsb_delta_info(dd, &di), MMSB_ERR_INVALID_HANDLE, "stale");
    EXPECT_ERR(mmsb_delta_set_source(dd, "x"), MMSB_ERR_INVALID_HANDLE, "stale");
    EXPECT_ERR(mmsb_delta_set_intent(dd, "{}"), MMSB_ERR_INVALID_HANDLE, "stale");
    EXPECT_ERR(mmsb_delta_set_expected_epoch(dd, 1), MMSB_ERR_INVALID_HANDLE, "stale");
    EXPECT_ERR(mmsb_delta_encode(dd, NULL, 0, &(uint64_t){0}), MMSB_ERR_INVALID_HANDLE, "stale");
    EXPECT_ERR(mmsb_delta_merge(dd, dm, &d), MMSB_ERR_INVALID_HANDLE, "stale");
    EXPECT_ERR(mmsb_delta_merge(dm, dd, &d), MMSB_ERR_INVALID_HANDLE, "stale");
    EXPECT_ERR(mmsb_delta_free(0), MMSB_ERR_INVALID_HANDLE, "null");
    EXPECT_OK(mmsb_delta_free(dm));
    EXPECT_OK(mmsb_delta_free(ds));
    CHECK(live_handles() == live0);
}

/* ------------------------------------------------------------------ */
/* Apply against the reference model, compare-and-set, ranges, stats   */
/* ------------------------------------------------------------------ */

typedef struct {
    uint64_t applied, noop, rejected, bytes_written;
} StatModel;

/* Applies one random spec to the store and the model, checking everything. */
static void apply_spec_checked(MmsbStore s, MmsbPageId p, uint8_t *model, uint64_t *epoch, StatModel *sm,
                               const Spec *spec) {
    MmsbDelta d = 0;
    int32_t rc = make_delta(p, spec, &d);
    EXPECT_OK(rc);
    if (rc != MMSB_OK) return;
    EXPECT_OK(mmsb_store_check_delta(s, d));
    bool changed = false;
    uint64_t ep = SENTINEL;
    EXPECT_OK(mmsb_store_apply_delta(s, d, &changed, &ep));
    int want = model_apply(model, spec);
    CHECK((changed ? 1 : 0) == want);
    if (want) {
        (*epoch)++;
        sm->applied++;
        sm->bytes_written += spec_written(spec);
    } else {
        sm->noop++;
    }
    CHECK(ep == *epoch);
    /* Applying the same delta again never changes anything. */
    EXPECT_OK(mmsb_store_apply_delta(s, d, &changed, NULL));
    CHECK(!changed);
    sm->noop++;
    EXPECT_OK(mmsb_delta_free(d));
}

static void test_apply(void) {
    uint64_t live0 = live_handles();
    MmsbStore s = 0;
    MmsbPageId p = 0, other = 0;
    const uint64_t SIZE = 300;
    REQUIRE(mmsb_store_open_memory(&s) == MMSB_OK);
    REQUIRE(mmsb_page_create(s, SIZE, MMSB_LOCATION_CPU, &p) == MMSB_OK);
    REQUIRE(mmsb_page_create(s, 8, MMSB_LOCATION_CPU, &other) == MMSB_OK);
    uint8_t model[300] = {0};
    uint64_t epoch = 0;
    StatModel sm = {0, 0, 0, 0};

    /* A fixed dense, masked and sparse delta first, byte-checked by hand. */
    {
        uint8_t a[5] = {1, 2, 3, 4, 5};
        MmsbDelta d = 0;
        bool changed = false;
        uint64_t ep = 0;
        EXPECT_OK(mmsb_delta_new_dense(p, 10, a, 5, NULL, 0, &d));
        EXPECT_OK(mmsb_store_apply_delta(s, d, &changed, &ep));
        CHECK(changed && ep == 1);
        EXPECT_OK(mmsb_delta_free(d));
        uint64_t m = 0x15; /* bytes 0, 2, 4 */
        uint8_t b[5] = {9, 9, 9, 9, 9};
        EXPECT_OK(mmsb_delta_new_dense(p, 10, b, 5, &m, 1, &d));
        EXPECT_OK(mmsb_store_apply_delta(s, d, &changed, &ep));
        CHECK(changed && ep == 2);
        EXPECT_OK(mmsb_delta_free(d));
        uint8_t v[2] = {7, 8};
        uint64_t sm2 = 0x12; /* bytes 1, 4 */
        EXPECT_OK(mmsb_delta_new_sparse(p, 10, 5, &sm2, 1, v, 2, &d));
        EXPECT_OK(mmsb_store_apply_delta(s, d, &changed, &ep));
        CHECK(changed && ep == 3);
        EXPECT_OK(mmsb_delta_free(d));
        uint8_t got[7];
        EXPECT_OK(mmsb_page_read(s, p, 9, got, 7));
        const uint8_t want[7] = {0, 9, 7, 9, 4, 8, 0};
        CHECK(memcmp(got, want, 7) == 0);
        memcpy(model + 10, want + 1, 5);
        epoch = 3;
        sm.applied = 3;
        sm.bytes_written = 5 + 3 + 2;
    }

    /* Random deltas of all three kinds against the model. */
    Rng r = {0x9E3779B97F4A7C15ULL};
    int equal_all = 1;
    for (int i = 0; i < 300; i++) {
        Spec spec;
        gen_spec(&r, SIZE, &spec);
        apply_spec_checked(s, p, model, &epoch, &sm, &spec);
        if (!page_equals(s, p, model, SIZE)) equal_all = 0;
    }
    CHECK(equal_all);
    CHECK(page_equals(s, p, model, SIZE));
    MmsbPageInfo info;
    EXPECT_OK(mmsb_page_info(s, p, &info));
    CHECK(info.epoch == epoch);

    /* Ranges outside the page are rejected at apply and check time; nothing changes. */
    {
        uint8_t a[4] = {0xEE, 0xEE, 0xEE, 0xEE};
        const uint64_t offs[] = {SIZE, SIZE - 2, SIZE + 100, UINT64_MAX - 1, UINT64_MAX};
        for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
            MmsbDelta d = 0;
            EXPECT_OK(mmsb_delta_new_dense(p, offs[i], a, 4, NULL, 0, &d));
            EXPECT_ERR(mmsb_store_check_delta(s, d), MMSB_ERR_INVALID_ARGUMENT, "outside");
            bool changed = true;
            uint64_t ep = SENTINEL;
            EXPECT_ERR(mmsb_store_apply_delta(s, d, &changed, &ep), MMSB_ERR_INVALID_ARGUMENT, "outside");
            CHECK(changed == true && ep == SENTINEL);
            sm.rejected++;
            EXPECT_OK(mmsb_delta_free(d));
        }
        /* Masked and sparse too. */
        uint64_t m = 0x1;
        MmsbDelta d = 0;
        EXPECT_OK(mmsb_delta_new_dense(p, SIZE - 1, a, 2, &m, 1, &d));
        EXPECT_ERR(mmsb_store_apply_delta(s, d, NULL, NULL), MMSB_ERR_INVALID_ARGUMENT, "outside");
        sm.rejected++;
        EXPECT_OK(mmsb_delta_free(d));
        EXPECT_OK(mmsb_delta_new_sparse(p, SIZE - 1, 2, &m, 1, a, 1, &d));
        EXPECT_ERR(mmsb_store_apply_delta(s, d, NULL, NULL), MMSB_ERR_INVALID_ARGUMENT, "outside");
        sm.rejected++;
        EXPECT_OK(mmsb_delta_free(d));
        CHECK(page_equals(s, p, model, SIZE));
        EXPECT_OK(mmsb_page_info(s, p, &info));
        CHECK(info.epoch == epoch);
    }

    /* Missing pages, stale and wrong-kind handles. */
    {
        uint8_t a[1] = {1};
        MmsbDelta d = 0;
        EXPECT_OK(mmsb_delta_new_dense(p + 1000, 0, a, 1, NULL, 0, &d));
        EXPECT_ERR(mmsb_store_check_delta(s, d), MMSB_ERR_NOT_FOUND, "does not exist");
        EXPECT_ERR(mmsb_store_apply_delta(s, d, NULL, NULL), MMSB_ERR_NOT_FOUND, "does not exist");
        sm.rejected++;
        EXPECT_ERR(mmsb_store_apply_delta(d, d, NULL, NULL), MMSB_ERR_INVALID_HANDLE, "not a store handle");
        EXPECT_ERR(mmsb_store_apply_delta(s, s, NULL, NULL), MMSB_ERR_INVALID_HANDLE, "not a delta handle");
        EXPECT_ERR(mmsb_store_check_delta(d, d), MMSB_ERR_INVALID_HANDLE, "not a store handle");
        EXPECT_ERR(mmsb_store_check_delta(s, s), MMSB_ERR_INVALID_HANDLE, "not a delta handle");
        EXPECT_ERR(mmsb_store_apply_delta(s, 0, NULL, NULL), MMSB_ERR_INVALID_HANDLE, "null");
        EXPECT_ERR(mmsb_store_apply_delta(0, d, NULL, NULL), MMSB_ERR_INVALID_HANDLE, "null");
        EXPECT_ERR(mmsb_store_check_delta(s, 0), MMSB_ERR_INVALID_HANDLE, "null");
        EXPECT_ERR(mmsb_store_check_delta(0, d), MMSB_ERR_INVALID_HANDLE, "null");
        EXPECT_OK(mmsb_delta_free(d));
        EXPECT_ERR(mmsb_store_apply_delta(s, d, NULL, NULL), MMSB_ERR_INVALID_HANDLE, "stale");
        EXPECT_ERR(mmsb_store_check_delta(s, d), MMSB_ERR_INVALID_HANDLE, "stale");
        /* A delta for a deleted page is NotFound. */
        EXPECT_OK(mmsb_page_delete(s, other));
        EXPECT_OK(mmsb_delta_new_dense(other, 0, a, 1, NULL, 0, &d));
        EXPECT_ERR(mmsb_store_apply_delta(s, d, NULL, NULL), MMSB_ERR_NOT_FOUND, "does not exist");
        sm.rejected++;
        EXPECT_OK(mmsb_delta_free(d));
    }

    /* Compare-and-set. */
    {
        uint8_t a[2] = {0xC1, 0xC2};
        MmsbDelta d = 0;
        EXPECT_OK(mmsb_delta_new_dense(p, 0, a, 2, NULL, 0, &d));
        EXPECT_OK(mmsb_delta_set_expected_epoch(d, epoch + 1)); /* from the future */
        EXPECT_ERR(mmsb_store_check_delta(s, d), MMSB_ERR_EPOCH_MISMATCH, "expected epoch");
        EXPECT_ERR(mmsb_store_apply_delta(s, d, NULL, NULL), MMSB_ERR_EPOCH_MISMATCH, "expected epoch");
        sm.rejected++;
        bool retry = false;
        EXPECT_OK(mmsb_error_is_retryable(MMSB_ERR_EPOCH_MISMATCH, &retry));
        CHECK(retry);
        EXPECT_OK(mmsb_delta_set_expected_epoch(d, epoch)); /* current: applies */
        bool changed = false;
        uint64_t ep = 0;
        EXPECT_OK(mmsb_store_check_delta(s, d));
        EXPECT_OK(mmsb_store_apply_delta(s, d, &changed, &ep));
        int want = (model[0] != 0xC1 || model[1] != 0xC2);
        model[0] = 0xC1;
        model[1] = 0xC2;
        CHECK((changed ? 1 : 0) == want && want == 1);
        epoch++;
        sm.applied++;
        sm.bytes_written += 2;
        CHECK(ep == epoch);
        /* Now stale: the same delta is rejected, the page is untouched. */
        EXPECT_ERR(mmsb_store_apply_delta(s, d, NULL, NULL), MMSB_ERR_EPOCH_MISMATCH, "expected epoch");
        sm.rejected++;
        EXPECT_OK(mmsb_delta_free(d));
        CHECK(page_equals(s, p, model, SIZE));
    }

    /* Stats counters match the model. */
    MmsbStoreStats st;
    EXPECT_OK(mmsb_store_stats(s, &st));
    CHECK(st.pages == 1 && st.page_bytes == SIZE);
    CHECK(st.deltas_applied == sm.applied);
    CHECK(st.deltas_noop == sm.noop);
    CHECK(st.deltas_rejected == sm.rejected);
    CHECK(st.bytes_written == sm.bytes_written);
    if (st.deltas_applied != sm.applied || st.deltas_noop != sm.noop || st.deltas_rejected != sm.rejected)
        fprintf(stderr, "  stats: applied %llu/%llu noop %llu/%llu rejected %llu/%llu\n",
                (unsigned long long)st.deltas_applied, (unsigned long long)sm.applied,
                (unsigned long long)st.deltas_noop, (unsigned long long)sm.noop,
                (unsigned long long)st.deltas_rejected, (unsigned long long)sm.rejected);

    EXPECT_OK(mmsb_store_close(s));
    CHECK(live_handles() == live0);
}

/* ------------------------------------------------------------------ */
/* Borrows                                                             */
/* ------------------------------------------------------------------ */

static void test_borrows(void) {
    uint64_t live0 = live_handles();
    MmsbStore s = 0;
    MmsbPageId p = 0;
    REQUIRE(mmsb_store_open_memory(&s) == MMSB_OK);
    REQUIRE(mmsb_page_create(s, 256, MMSB_LOCATION_CPU, &p) == MMSB_OK);
    uint8_t model[256];
    for (int i = 0; i < 256; i++) model[i] = (uint8_t)(255 - i);
    MmsbDelta d = 0;
    REQUIRE(mmsb_delta_new_dense(p, 0, model, 256, NULL, 0, &d) == MMSB_OK);
    EXPECT_OK(mmsb_store_apply_delta(s, d, NULL, NULL));
    EXPECT_OK(mmsb_delta_free(d));

    const uint8_t *ptr = NULL;
    uint64_t len = 0;
    MmsbBorrow b = SENTINEL;
    /* Null out-pointers, one at a time: no handle leaks. */
    EXPECT_ERR(mmsb_page_borrow(s, p, NULL, &len, &b), MMSB_ERR_INVALID_ARGUMENT, "out_ptr");
    EXPECT_ERR(mmsb_page_borrow(s, p, &ptr, NULL, &b), MMSB_ERR_INVALID_ARGUMENT, "out_len");
    EXPECT_ERR(mmsb_page_borrow(s, p, &ptr, &len, NULL), MMSB_ERR_INVALID_ARGUMENT, "out_borrow");
    EXPECT_ERR(mmsb_page_borrow(s, p + 1000, &ptr, &len, &b), MMSB_ERR_NOT_FOUND, "does not exist");
    EXPECT_ERR(mmsb_page_borrow(0, p, &ptr, &len, &b), MMSB_ERR_INVALID_HANDLE, "null");
    CHECK(ptr == NULL && len == 0 && b == SENTINEL);
    CHECK(live_handles() == live0 + 1);

    EXPECT_OK(mmsb_page_borrow(s, p, &ptr, &len, &b));
    CHECK(ptr != NULL && len == 256 && b != 0);
    CHECK(((uintptr_t)ptr % 64) == 0);
    CHECK(memcmp(ptr, model, 256) == 0);
    CHECK(live_handles() == live0 + 2);
    MmsbPageId bp = 0;
    uint64_t be = 0;
    EXPECT_OK(mmsb_borrow_info(b, &bp, &be));
    CHECK(bp == p && be == 1);
    EXPECT_ERR(mmsb_borrow_info(b, NULL, &be), MMSB_ERR_INVALID_ARGUMENT, "out_page");
    EXPECT_ERR(mmsb_borrow_info(b, &bp, NULL), MMSB_ERR_INVALID_ARGUMENT, "out_epoch");
    EXPECT_ERR(mmsb_borrow_info(0, &bp, &be), MMSB_ERR_INVALID_HANDLE, "null");
    EXPECT_ERR(mmsb_borrow_info(s, &bp, &be), MMSB_ERR_INVALID_HANDLE, "not a borrow handle");

    /* Snapshot semantics: a write after the borrow is invisible through it. */
    uint8_t snap[256];
    memcpy(snap, ptr, 256);
    uint8_t ones[100];
    memset(ones, 1, sizeof ones);
    EXPECT_OK(mmsb_delta_new_dense(p, 50, ones, 100, NULL, 0, &d));
    bool changed = false;
    EXPECT_OK(mmsb_store_apply_delta(s, d, &changed, NULL));
    CHECK(changed);
    EXPECT_OK(mmsb_delta_free(d));
    memset(model + 50, 1, 100);
    CHECK(memcmp(ptr, snap, 256) == 0);  /* borrowed bytes unchanged */
    CHECK(page_equals(s, p, model, 256)); /* a fresh read sees the write */
    CHECK(memcmp(snap, model, 256) != 0);

    /* A second borrow sees the new bytes at the new epoch; the first still the old. */
    const uint8_t *ptr2 = NULL;
    uint64_t len2 = 0;
    MmsbBorrow b2 = 0;
    EXPECT_OK(mmsb_page_borrow(s, p, &ptr2, &len2, &b2));
    CHECK(len2 == 256 && memcmp(ptr2, model, 256) == 0 && ptr2 != ptr);
    EXPECT_OK(mmsb_borrow_info(b2, &bp, &be));
    CHECK(bp == p && be == 2);
    EXPECT_OK(mmsb_borrow_info(b, &bp, &be));
    CHECK(be == 1);
    /* Two borrows of the same epoch may share bytes; both read the same. */
    const uint8_t *ptr3 = NULL;
    uint64_t len3 = 0;
    MmsbBorrow b3 = 0;
    EXPECT_OK(mmsb_page_borrow(s, p, &ptr3, &len3, &b3));
    CHECK(memcmp(ptr3, ptr2, 256) == 0);

    /* Borrows survive page deletion ... */
    EXPECT_OK(mmsb_page_delete(s, p));
    CHECK(memcmp(ptr, snap, 256) == 0);
    CHECK(memcmp(ptr2, model, 256) == 0);
    EXPECT_OK(mmsb_borrow_info(b2, &bp, &be));
    CHECK(bp == p && be == 2);
    EXPECT_OK(mmsb_borrow_release(b3));

    /* ... and store close, until released. */
    MmsbPageId p2 = 0;
    REQUIRE(mmsb_page_create(s, 64, MMSB_LOCATION_CPU, &p2) == MMSB_OK);
    uint8_t fill[64];
    memset(fill, 0x42, sizeof fill);
    EXPECT_OK(mmsb_delta_new_dense(p2, 0, fill, 64, NULL, 0, &d));
    EXPECT_OK(mmsb_store_apply_delta(s, d, NULL, NULL));
    EXPECT_OK(mmsb_delta_free(d));
    const uint8_t *ptr4 = NULL;
    uint64_t len4 = 0;
    MmsbBorrow b4 = 0;
    EXPECT_OK(mmsb_page_borrow(s, p2, &ptr4, &len4, &b4));
    EXPECT_OK(mmsb_store_close(s));
    CHECK(len4 == 64 && memcmp(ptr4, fill, 64) == 0);
    CHECK(memcmp(ptr, snap, 256) == 0);
    EXPECT_OK(mmsb_borrow_info(b4, &bp, &be));
    CHECK(bp == p2 && be == 1);
    CHECK(live_handles() == live0 + 3); /* b, b2, b4 */

    /* Release; stale and double release; wrong kinds. */
    EXPECT_ERR(mmsb_borrow_release(0), MMSB_ERR_INVALID_HANDLE, "null");
    EXPECT_ERR(mmsb_borrow_release(s), MMSB_ERR_INVALID_HANDLE, "not a borrow handle");
    EXPECT_OK(mmsb_borrow_release(b));
    EXPECT_ERR(mmsb_borrow_release(b), MMSB_ERR_INVALID_HANDLE, "stale");
    EXPECT_ERR(mmsb_borrow_info(b, &bp, &be), MMSB_ERR_INVALID_HANDLE, "stale");
    EXPECT_ERR(mmsb_borrow_release(b3), MMSB_ERR_INVALID_HANDLE, "stale");
    EXPECT_OK(mmsb_borrow_release(b2));
    EXPECT_OK(mmsb_borrow_release(b4));
    EXPECT_ERR(mmsb_borrow_release(b4), MMSB_ERR_INVALID_HANDLE, "stale");
    CHECK(live_handles() == live0);
}

/* ------------------------------------------------------------------ */
/* Encode / decode                                                     */
/* ------------------------------------------------------------------ */

static int infos_equal(const MmsbDeltaInfo *a, const MmsbDeltaInfo *b) {
    return a->page == b->page && a->offset == b->offset && a->len == b->len && a->has_mask == b->has_mask &&
           a->sparse == b->sparse && a->has_expected_epoch == b->has_expected_epoch &&
           a->expected_epoch == b->expected_epoch && a->payload_len == b->payload_len &&
           a->written_bytes == b->written_bytes && a->timestamp_ns == b->timestamp_ns;
}

/* Encodes a delta into a malloc'd buffer (length query first). */
static uint8_t *encode_alloc(MmsbDelta d, uint64_t *out_len) {
    uint64_t n = 0;
    if (mmsb_delta_encode(d, NULL, 0, &n) != MMSB_OK) return NULL;
    uint8_t *buf = malloc(n + 16);
    if (!buf) return NULL;
    uint64_t n2 = 0;
    if (mmsb_delta_encode(d, buf, n, &n2) != MMSB_OK || n2 != n) {
        free(buf);
        return NULL;
    }
    *out_len = n;
    return buf;
}

static void test_codec(void) {
    uint64_t live0 = live_handles();
    MmsbStore s = 0;
    MmsbPageId p1 = 0, p2 = 0;
    REQUIRE(mmsb_store_open_memory(&s) == MMSB_OK);
    REQUIRE(mmsb_page_create(s, 300, MMSB_LOCATION_CPU, &p1) == MMSB_OK);
    REQUIRE(mmsb_page_create(s, 300, MMSB_LOCATION_CPU, &p2) == MMSB_OK);

    /* Buffer conventions on one delta. */
    uint8_t pay[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    MmsbDelta d = 0;
    REQUIRE(mmsb_delta_new_dense(p1, 5, pay, 10, NULL, 0, &d) == MMSB_OK);
    EXPECT_OK(mmsb_delta_set_source(d, "codec"));
    EXPECT_OK(mmsb_delta_set_intent(d, "{\"k\":1}"));
    uint64_t n = SENTINEL;
    EXPECT_OK(mmsb_delta_encode(d, NULL, 0, &n));
    CHECK(n == 64 + 10 + 5 + 7);
    uint8_t small[16];
    memset(small, 0x33, sizeof small);
    uint64_t got = 0;
    EXPECT_ERR(mmsb_delta_encode(d, small, sizeof small, &got), MMSB_ERR_BUFFER_TOO_SMALL, "86 needed");
    CHECK(got == n);
    CHECK(small[0] == 0x33);
    EXPECT_ERR(mmsb_delta_encode(d, small, 0, &got), MMSB_ERR_BUFFER_TOO_SMALL, "too small");
    EXPECT_ERR(mmsb_delta_encode(d, small, sizeof small, NULL), MMSB_ERR_INVALID_ARGUMENT, "out_len");
    EXPECT_ERR(mmsb_delta_encode(d, NULL, 200, &got), MMSB_ERR_INVALID_ARGUMENT, "buf");
    EXPECT_ERR(mmsb_delta_encode(0, small, sizeof small, &got), MMSB_ERR_INVALID_HANDLE, "null");
    uint8_t big[256];
    memset(big, 0x44, sizeof big);
    EXPECT_OK(mmsb_delta_encode(d, big, sizeof big, &got));
    CHECK(got == n && memcmp(big, "MDLT", 4) == 0 && big[n] == 0x44);

    /* Decode: bad input. */
    MmsbDelta e = SENTINEL;
    uint64_t used = SENTINEL;
    EXPECT_ERR(mmsb_delta_decode(NULL, n, &e, &used), MMSB_ERR_INVALID_ARGUMENT, "buf");
    EXPECT_ERR(mmsb_delta_decode(big, n, NULL, &used), MMSB_ERR_INVALID_ARGUMENT, "out_delta");
    EXPECT_ERR(mmsb_delta_decode(big, UINT64_MAX, &e, &used), MMSB_ERR_INVALID_ARGUMENT, "impossibly large");
    EXPECT_ERR(mmsb_delta_decode(NULL, 0, &e, &used), MMSB_ERR_CORRUPTION, "truncated");
    EXPECT_ERR(mmsb_delta_decode(big, n - 1, &e, &used), MMSB_ERR_CORRUPTION, "truncated at byte");
    EXPECT_ERR(mmsb_delta_decode(big, 10, &e, &used), MMSB_ERR_CORRUPTION, "truncated at byte");
    {
        uint8_t bad[256];
        memcpy(bad, big, n);
        bad[0] = 'X';
        EXPECT_ERR(mmsb_delta_decode(bad, n, &e, &used), MMSB_ERR_CORRUPTION, "magic");
        memcpy(bad, big, n);
        bad[4] = 99;
        EXPECT_ERR(mmsb_delta_decode(bad, n, &e, &used), MMSB_ERR_CORRUPTION, "version 99");
        memcpy(bad, big, n);
        bad[5] |= 0x80;
        EXPECT_ERR(mmsb_delta_decode(bad, n, &e, &used), MMSB_ERR_CORRUPTION, "flags");
        memcpy(bad, big, n);
        memset(bad + 56, 0xFF, 8); /* forged payload length */
        EXPECT_ERR(mmsb_delta_decode(bad, n, &e, &used), MMSB_ERR_CORRUPTION, "payload");
        memcpy(bad, big, n);
        memset(bad + 24, 0, 8); /* range length 0 */
        EXPECT_ERR(mmsb_delta_decode(bad, n, &e, &used), MMSB_ERR_CORRUPTION, "malformed");
        memcpy(bad, big, n);
        bad[n - 1] = 0xFF; /* last intent byte: not UTF-8 */
        EXPECT_ERR(mmsb_delta_decode(bad, n, &e, &used), MMSB_ERR_CORRUPTION, "UTF-8");
    }
    CHECK(e == SENTINEL && used == SENTINEL);
    CHECK(live_handles() == live0 + 2); /* the store and d: failed decodes leave no handle */

    /* Decode with trailing bytes: consumed is the delta's length; out_consumed may be null. */
    EXPECT_OK(mmsb_delta_decode(big, sizeof big, &e, &used));
    CHECK(used == n);
    MmsbDeltaInfo ia, ib;
    EXPECT_OK(mmsb_delta_info(d, &ia));
    EXPECT_OK(mmsb_delta_info(e, &ib));
    CHECK(infos_equal(&ia, &ib));
    EXPECT_OK(mmsb_delta_free(e));
    EXPECT_OK(mmsb_delta_decode(big, n, &e, NULL));
    EXPECT_OK(mmsb_delta_free(e));
    EXPECT_OK(mmsb_delta_free(d));

    /* Round trips of random deltas: byte-equal re-encode, same info, same effect. */
    Rng r = {12345};
    uint8_t m1[300] = {0};
    int all_equal = 1, all_info = 1, all_used = 1, all_pages = 1;
    for (int i = 0; i < 60; i++) {
        Spec spec;
        gen_spec(&r, 300, &spec);
        MmsbDelta a = 0, b = 0;
        EXPECT_OK(make_delta(p1, &spec, &a));
        if (i % 3 == 0) EXPECT_OK(mmsb_delta_set_source(a, "round-trip"));
        if (i % 4 == 1) EXPECT_OK(mmsb_delta_set_intent(a, "{\"i\":[1,{\"x\":null}]}"));
        uint64_t la = 0, lb = 0, used2 = 0;
        uint8_t *ea = encode_alloc(a, &la);
        CHECK(ea != NULL);
        if (!ea) {
            mmsb_delta_free(a);
            continue;
        }
        EXPECT_OK(mmsb_delta_decode(ea, la, &b, &used2));
        all_used &= used2 == la;
        uint8_t *eb = encode_alloc(b, &lb);
        all_equal &= eb != NULL && lb == la && memcmp(ea, eb, la) == 0;
        MmsbDeltaInfo x, y;
        EXPECT_OK(mmsb_delta_info(a, &x));
        EXPECT_OK(mmsb_delta_info(b, &y));
        all_info &= infos_equal(&x, &y);
        /* The decoded copy applies exactly like the spec says. */
        model_apply(m1, &spec);
        EXPECT_OK(mmsb_store_apply_delta(s, b, NULL, NULL));
        all_pages &= page_equals(s, p1, m1, 300);
        free(ea);
        free(eb);
        EXPECT_OK(mmsb_delta_free(a));
        EXPECT_OK(mmsb_delta_free(b));
    }
    CHECK(all_equal);
    CHECK(all_info);
    CHECK(all_used);
    CHECK(all_pages);

    /* An expected epoch survives the round trip. */
    REQUIRE(mmsb_delta_new_dense(p2, 0, pay, 3, NULL, 0, &d) == MMSB_OK);
    EXPECT_OK(mmsb_delta_set_expected_epoch(d, 77));
    uint64_t ld = 0;
    uint8_t *ed = encode_alloc(d, &ld);
    CHECK(ed != NULL);
    if (ed) {
        EXPECT_OK(mmsb_delta_decode(ed, ld, &e, NULL));
        EXPECT_OK(mmsb_delta_info(e, &ib));
        CHECK(ib.has_expected_epoch && ib.expected_epoch == 77);
        EXPECT_ERR(mmsb_store_apply_delta(s, e, NULL, NULL), MMSB_ERR_EPOCH_MISMATCH, "expected epoch 77");
        EXPECT_OK(mmsb_delta_free(e));
        free(ed);
    }
    EXPECT_OK(mmsb_delta_free(d));

    EXPECT_OK(mmsb_store_close(s));
    CHECK(live_handles() == live0);
}

/* ------------------------------------------------------------------ */
/* Merge                                                               */
/* ------------------------------------------------------------------ */

static void test_merge(void) {
    uint64_t live0 = live_handles();
    MmsbStore s = 0;
    MmsbPageId pa = 0, pb = 0;
    const uint64_t SIZE = 260;
    REQUIRE(mmsb_store_open_memory(&s) == MMSB_OK);
    REQUIRE(mmsb_page_create(s, SIZE, MMSB_LOCATION_CPU, &pa) == MMSB_OK);
    REQUIRE(mmsb_page_create(s, SIZE, MMSB_LOCATION_CPU, &pb) == MMSB_OK);

    /* Bad merges. */
    uint8_t one[1] = {1};
    MmsbDelta a = 0, b = 0, m = SENTINEL;
    REQUIRE(mmsb_delta_new_dense(pa, 0, one, 1, NULL, 0, &a) == MMSB_OK);
    REQUIRE(mmsb_delta_new_dense(pb, 0, one, 1, NULL, 0, &b) == MMSB_OK);
    EXPECT_ERR(mmsb_delta_merge(a, b, &m), MMSB_ERR_INVALID_ARGUMENT, "different pages");
    EXPECT_ERR(mmsb_delta_merge(a, a, NULL), MMSB_ERR_INVALID_ARGUMENT, "out_delta");
    EXPECT_ERR(mmsb_delta_merge(0, a, &m), MMSB_ERR_INVALID_HANDLE, "null");
    EXPECT_ERR(mmsb_delta_merge(a, 0, &m), MMSB_ERR_INVALID_HANDLE, "null");
    EXPECT_ERR(mmsb_delta_merge(a, s, &m), MMSB_ERR_INVALID_HANDLE, "not a delta handle");
    EXPECT_OK(mmsb_delta_free(b));
    /* Far-apart deltas: the merged range would exceed any page; rejected, not a crash. */
    REQUIRE(mmsb_delta_new_dense(pa, 1ULL << 62, one, 1, NULL, 0, &b) == MMSB_OK);
    EXPECT_ERR(mmsb_delta_merge(a, b, &m), MMSB_ERR_INVALID_ARGUMENT, "largest page");
    EXPECT_ERR(mmsb_delta_merge(b, a, &m), MMSB_ERR_INVALID_ARGUMENT, "largest page");
    EXPECT_OK(mmsb_delta_free(b));
    REQUIRE(mmsb_delta_new_dense(pa, UINT64_MAX - 1, one, 1, NULL, 0, &b) == MMSB_OK);
    EXPECT_ERR(mmsb_delta_merge(a, b, &m), MMSB_ERR_INVALID_ARGUMENT, "largest page");
    EXPECT_OK(mmsb_delta_free(b));
    REQUIRE(mmsb_delta_new_dense(pa, UINT64_MAX, one, 1, NULL, 0, &b) == MMSB_OK);
    EXPECT_ERR(mmsb_delta_merge(a, b, &m), MMSB_ERR_INVALID_ARGUMENT, "overflows");
    EXPECT_OK(mmsb_delta_free(b));
    CHECK(m == SENTINEL);
    /* Merging a delta with itself is itself. */
    EXPECT_OK(mmsb_delta_merge(a, a, &m));
    MmsbDeltaInfo mi;
    EXPECT_OK(mmsb_delta_info(m, &mi));
    CHECK(mi.page == pa && mi.offset == 0 && mi.len == 1 && mi.written_bytes == 1);
    EXPECT_OK(mmsb_delta_free(m));
    EXPECT_OK(mmsb_delta_free(a));

    /* merge(a, b) applied to one page == a then b applied to its twin, over random deltas. */
    Rng r = {777};
    uint8_t model[260] = {0};
    int all_equal = 1, all_model = 1, inputs_valid = 1;
    for (int i = 0; i < 80; i++) {
        Spec sa, sb;
        gen_spec(&r, SIZE, &sa);
        gen_spec(&r, SIZE, &sb);
        EXPECT_OK(make_delta(pa, &sa, &a));
        EXPECT_OK(make_delta(pa, &sb, &b));
        EXPECT_OK(mmsb_delta_merge(a, b, &m));
        /* The merged delta names pa; a copy for pb via encode, page-id patch, decode. */
        MmsbDelta mb = 0;
        {
            uint64_t lm = 0;
            uint8_t *em = encode_alloc(m, &lm);
                if (em) {
                for (int k = 0; k < 8; k++) em[8 + k] = (uint8_t)(pb >> (8 * k));
                EXPECT_OK(mmsb_delta_decode(em, lm, &mb, NULL));
                free(em);
            } else {
                CHECK(em != NULL);
            }
        }
        EXPECT_OK(mmsb_store_apply_delta(s, a, NULL, NULL));
        EXPECT_OK(mmsb_store_apply_delta(s, b, NULL, NULL));
        EXPECT_OK(mmsb_store_apply_delta(s, mb, NULL, NULL));
        model_apply(model, &sa);
        model_apply(model, &sb);
        uint8_t x[260], y[260];
        EXPECT_OK(mmsb_page_read(s, pa, 0, x, SIZE));
        EXPECT_OK(mmsb_page_read(s, pb, 0, y, SIZE));
        all_equal &= memcmp(x, y, SIZE) == 0;
        all_model &= memcmp(x, model, SIZE) == 0;
        /* a and b stay valid after the merge */
        MmsbDeltaInfo ia;
        inputs_valid &= mmsb_delta_info(a, &ia) == MMSB_OK && mmsb_delta_info(b, &ia) == MMSB_OK;
        EXPECT_OK(mmsb_delta_info(m, &mi));
        CHECK(mi.page == pa && mi.offset == (sa.offset < sb.offset ? sa.offset : sb.offset));
        EXPECT_OK(mmsb_delta_free(a));
        EXPECT_OK(mmsb_delta_free(b));
        EXPECT_OK(mmsb_delta_free(m));
        EXPECT_OK(mmsb_delta_free(mb));
    }
    CHECK(all_equal);
    CHECK(all_model);
    CHECK(inputs_valid);
    EXPECT_OK(mmsb_store_close(s));
    CHECK(live_handles() == live0);
}

/* ------------------------------------------------------------------ */
/* Forged handles                                                      */
/* ------------------------------------------------------------------ */

static void test_forged_handles(void) {
    uint64_t live0 = live_handles();
    MmsbStore s = 0;
    MmsbPageId p = 0;
    MmsbDelta d = 0;
    const uint8_t *ptr = NULL;
    uint64_t len = 0;
    MmsbBorrow b = 0;
    uint8_t one[1] = {1};
    REQUIRE(mmsb_store_open_memory(&s) == MMSB_OK);
    REQUIRE(mmsb_page_create(s, 8, MMSB_LOCATION_CPU, &p) == MMSB_OK);
    REQUIRE(mmsb_delta_new_dense(p, 0, one, 1, NULL, 0, &d) == MMSB_OK);
    REQUIRE(mmsb_page_borrow(s, p, &ptr, &len, &b) == MMSB_OK);

    /* Every kind passed as every other kind. */
    MmsbStoreStats st;
    MmsbDeltaInfo di;
    MmsbPageId bp;
    uint64_t be;
    EXPECT_ERR(mmsb_store_stats(d, &st), MMSB_ERR_INVALID_HANDLE, "not a store handle");
    EXPECT_ERR(mmsb_store_stats(b, &st), MMSB_ERR_INVALID_HANDLE, "not a store handle");
    EXPECT_ERR(mmsb_store_close(d), MMSB_ERR_INVALID_HANDLE, "not a store handle");
    EXPECT_ERR(mmsb_store_close(b), MMSB_ERR_INVALID_HANDLE, "not a store handle");
    EXPECT_ERR(mmsb_delta_info(s, &di), MMSB_ERR_INVALID_HANDLE, "not a delta handle");
    EXPECT_ERR(mmsb_delta_info(b, &di), MMSB_ERR_INVALID_HANDLE, "not a delta handle");
    EXPECT_ERR(mmsb_delta_free(s), MMSB_ERR_INVALID_HANDLE, "not a delta handle");
    EXPECT_ERR(mmsb_delta_free(b), MMSB_ERR_INVALID_HANDLE, "not a delta handle");
    EXPECT_ERR(mmsb_borrow_info(d, &bp, &be), MMSB_ERR_INVALID_HANDLE, "not a borrow handle");
    EXPECT_ERR(mmsb_borrow_release(d), MMSB_ERR_INVALID_HANDLE, "not a borrow handle");
    EXPECT_ERR(mmsb_page_create(d, 8, MMSB_LOCATION_CPU, &bp), MMSB_ERR_INVALID_HANDLE, "not a store handle");
    EXPECT_ERR(mmsb_page_borrow(b, p, &ptr, &len, &bp), MMSB_ERR_INVALID_HANDLE, "not a store handle");
    /* Same tag, altered generation or slot. */
    EXPECT_ERR(mmsb_delta_info(d ^ (1ULL << 40), &di), MMSB_ERR_INVALID_HANDLE, "delta handle");
    EXPECT_ERR(mmsb_delta_info((d & ~0xFFFFFFFFULL) | 0xFFFFFFF0ULL, &di), MMSB_ERR_INVALID_HANDLE,
               "never issued");
    EXPECT_ERR(mmsb_delta_info(d & ~0xFFFFFFFFULL, &di), MMSB_ERR_INVALID_HANDLE, "never issued");
    EXPECT_ERR(mmsb_store_stats(s + 0x100000, &st), MMSB_ERR_INVALID_HANDLE, "store handle");

    /* Random 64-bit values, for every handle-taking function. */
    Rng r = {0xDEADBEEFCAFEF00DULL};
    int bad = 0;
    for (int i = 0; i < 2000; i++) {
        uint64_t h = rng_next(&r);
        if (h == s || h == d || h == b) continue;
        uint64_t n = 0;
        bool ch = false;
        MmsbPageInfo pi;
        int32_t rcs[] = {
            mmsb_store_stats(h, &st),
            mmsb_store_close(h),
            mmsb_store_apply_delta(h, d, &ch, NULL),
            mmsb_store_apply_delta(s, h, &ch, NULL),
            mmsb_store_check_delta(h, d),
            mmsb_store_check_delta(s, h),
            mmsb_page_create(h, 8, MMSB_LOCATION_CPU, &bp),
            mmsb_page_delete(h, p),
            mmsb_page_info(h, p, &pi),
            mmsb_page_read(h, p, 0, one, 1),
            mmsb_page_borrow(h, p, &ptr, &len, &bp),
            mmsb_page_set_view(h, p, MMSB_DTYPE_U8, 1),
            mmsb_page_set_metadata(h, p, "k", one, 1),
            mmsb_page_get_metadata(h, p, "k", NULL, 0, &n),
            mmsb_page_remove_metadata(h, p, "k"),
            mmsb_page_list(h, NULL, 0, &n),
            mmsb_borrow_info(h, &bp, &be),
            mmsb_borrow_release(h),
            mmsb_delta_free(h),
            mmsb_delta_set_source(h, "x"),
            mmsb_delta_set_intent(h, "{}"),
            mmsb_delta_set_expected_epoch(h, 1),
            mmsb_delta_info(h, &di),
            mmsb_delta_encode(h, NULL, 0, &n),
            mmsb_delta_merge(h, d, &bp),
            mmsb_delta_merge(d, h, &bp),
        };
        for (size_t k = 0; k < sizeof rcs / sizeof rcs[0]; k++)
            if (rcs[k] != MMSB_ERR_INVALID_HANDLE) {
                if (bad < 5)
                    fprintf(stderr, "  forged handle %#llx: call %zu returned %d\n", (unsigned long long)h, k,
                            rcs[k]);
                bad++;
            }
    }
    CHECK(bad == 0);
    /* The real objects are untouched. */
    EXPECT_OK(mmsb_store_stats(s, &st));
    CHECK(st.pages == 1 && st.deltas_applied == 0 && st.deltas_rejected == 0);
    EXPECT_OK(mmsb_delta_info(d, &di));
    CHECK(di.page == p && di.len == 1);
    EXPECT_OK(mmsb_borrow_release(b));
    EXPECT_OK(mmsb_delta_free(d));
    EXPECT_OK(mmsb_store_close(s));
    CHECK(live_handles() == live0);
}

/* ------------------------------------------------------------------ */
/* Threads                                                             */
/* ------------------------------------------------------------------ */

#define NTHREADS 4
#define THREAD_PAGE 1000
#define THREAD_DELTAS 150

typedef struct {
    MmsbStore store;
    MmsbPageId page;
    int index;
    uint8_t model[THREAD_PAGE];
    uint64_t applied, noop, bytes_written;
    int bad;
} WriterCtx;

static void *writer_thread(void *arg) {
    WriterCtx *c = arg;
    /* A fresh thread has an empty last-error message. */
    const char *m = NULL;
    if (mmsb_last_error_message(&m) != MMSB_OK || m == NULL || m[0] != 0) c->bad++;
    Rng r = {0x1234567ULL * (uint64_t)(c->index + 1)};
    uint64_t epoch = 0;
    for (int i = 0; i < THREAD_DELTAS; i++) {
        Spec spec;
        gen_spec(&r, THREAD_PAGE, &spec);
        MmsbDelta d = 0;
        if (make_delta(c->page, &spec, &d) != MMSB_OK) {
            c->bad++;
            continue;
        }
        if (i % 10 == 0) mmsb_delta_set_expected_epoch(d, epoch); /* we are the only writer of this page */
        bool changed = false;
        uint64_t ep = 0;
        if (mmsb_store_apply_delta(c->store, d, &changed, &ep) != MMSB_OK) c->bad++;
        int want = model_apply(c->model, &spec);
        if ((changed ? 1 : 0) != want) c->bad++;
        if (want) {
            epoch++;
            c->applied++;
            c->bytes_written += spec_written(&spec);
        } else {
            c->noop++;
        }
        if (ep != epoch) c->bad++;
        if (mmsb_delta_free(d) != MMSB_OK) c->bad++;
        /* A thread's own error message is its own. */
        if (i % 50 == 0) {
            uint8_t x;
            if (mmsb_page_read(c->store, c->page, THREAD_PAGE, &x, 1) != MMSB_ERR_INVALID_ARGUMENT) c->bad++;
            char want_msg[64];
            snprintf(want_msg, sizeof want_msg, "page#%llu", (unsigned long long)c->page);
            if (mmsb_last_error_message(&m) != MMSB_OK || strstr(m, "outside") == NULL ||
                strstr(m, want_msg) == NULL)
                c->bad++;
        }
    }
    /* Borrow and compare at the end. */
    const uint8_t *ptr = NULL;
    uint64_t len = 0;
    MmsbBorrow b = 0;
    if (mmsb_page_borrow(c->store, c->page, &ptr, &len, &b) != MMSB_OK || len != THREAD_PAGE ||
        memcmp(ptr, c->model, THREAD_PAGE) != 0)
        c->bad++;
    if (b && mmsb_borrow_release(b) != MMSB_OK) c->bad++;
    return NULL;
}

typedef struct {
    MmsbStore store;
    MmsbDelta delta;
    atomic_int started;
    atomic_int done;
    long ok, invalid, bad;
} RaceCtx;

/* Uses the delta until every call on it reports InvalidHandle. */
static void *race_user(void *arg) {
    RaceCtx *c = arg;
    for (long it = 0; it < 50000000L; it++) {
        bool changed = false;
        MmsbDeltaInfo di;
        uint64_t n = 0;
        int32_t rcs[3] = {mmsb_store_apply_delta(c->store, c->delta, &changed, NULL),
                          mmsb_delta_info(c->delta, &di), mmsb_delta_encode(c->delta, NULL, 0, &n)};
        int all_invalid = 1;
        for (int k = 0; k < 3; k++) {
            if (rcs[k] == MMSB_OK)
                c->ok++;
            else if (rcs[k] == MMSB_ERR_INVALID_HANDLE)
                c->invalid++;
            else
                c->bad++;
            if (rcs[k] != MMSB_ERR_INVALID_HANDLE) all_invalid = 0;
        }
        if (rcs[0] == MMSB_OK) atomic_store(&c->started, 1);
        if (all_invalid) break;
        if (rcs[1] == MMSB_OK && di.len != 16) c->bad++;
    }
    atomic_store(&c->done, 1);
    return NULL;
}

static void *race_freer(void *arg) {
    RaceCtx *c = arg;
    while (!atomic_load(&c->started)) sched_yield();
    for (int i = 0; i < 20; i++) sched_yield();
    if (mmsb_delta_free(c->delta) != MMSB_OK) c->bad++;
    return NULL;
}

/* Uses a store until it reports InvalidHandle. */
static void *store_user(void *arg) {
    RaceCtx *c = arg;
    for (long it = 0; it < 50000000L; it++) {
        MmsbStoreStats st;
        int32_t a = mmsb_store_apply_delta(c->store, c->delta, NULL, NULL);
        int32_t b = mmsb_store_stats(c->store, &st);
        if (a == MMSB_OK)
            c->ok++;
        else if (a == MMSB_ERR_INVALID_HANDLE)
            c->invalid++;
        else
            c->bad++;
        if (b != MMSB_OK && b != MMSB_ERR_INVALID_HANDLE) c->bad++;
        atomic_store(&c->started, 1);
        if (a == MMSB_ERR_INVALID_HANDLE && b == MMSB_ERR_INVALID_HANDLE) break;
    }
    return NULL;
}

static void test_threads(void) {
    uint64_t live0 = live_handles();
    MmsbStore s = 0;
    REQUIRE(mmsb_store_open_memory(&s) == MMSB_OK);

    /* Leave a distinctive message on the main thread; the workers must not disturb it. */
    EXPECT_ERR(mmsb_page_set_view(s, 424242, MMSB_DTYPE_U8, 1), MMSB_ERR_NOT_FOUND, "424242");
    char main_msg[256];
    snprintf(main_msg, sizeof main_msg, "%s", last_error());

    /* 4 writers, one page each, one shared store handle. */
    static WriterCtx ctx[NTHREADS];
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        memset(&ctx[i], 0, sizeof ctx[i]);
        ctx[i].store = s;
        ctx[i].index = i;
        REQUIRE(mmsb_page_create(s, THREAD_PAGE, MMSB_LOCATION_CPU, &ctx[i].page) == MMSB_OK);
    }
    for (int i = 0; i < NTHREADS; i++) REQUIRE(pthread_create(&th[i], NULL, writer_thread, &ctx[i]) == 0);
    for (int i = 0; i < NTHREADS; i++) REQUIRE(pthread_join(th[i], NULL) == 0);
    uint64_t applied = 0, noop = 0, written = 0;
    for (int i = 0; i < NTHREADS; i++) {
        CHECK(ctx[i].bad == 0);
        CHECK(page_equals(s, ctx[i].page, ctx[i].model, THREAD_PAGE));
        MmsbPageInfo info;
        EXPECT_OK(mmsb_page_info(s, ctx[i].page, &info));
        CHECK(info.epoch == ctx[i].applied);
        applied += ctx[i].applied;
        noop += ctx[i].noop;
        written += ctx[i].bytes_written;
    }
    MmsbStoreStats st;
    EXPECT_OK(mmsb_store_stats(s, &st));
    CHECK(st.deltas_applied == applied && st.deltas_noop == noop && st.bytes_written == written);
    CHECK(st.deltas_rejected == 0);
    CHECK(strcmp(last_error(), main_msg) == 0);

    /* A delta freed by one thread while another uses it. */
    MmsbPageId rp = 0;
    REQUIRE(mmsb_page_create(s, 64, MMSB_LOCATION_CPU, &rp) == MMSB_OK);
    uint8_t pay[16];
    for (int i = 0; i < 16; i++) pay[i] = (uint8_t)(0xF0 + i);
    long total_bad = 0, total_ok = 0, total_invalid = 0;
    for (int round = 0; round < 10; round++) {
        RaceCtx rc;
        memset(&rc, 0, sizeof rc);
        rc.store = s;
        REQUIRE(mmsb_delta_new_dense(rp, (uint64_t)round, pay, 16, NULL, 0, &rc.delta) == MMSB_OK);
        pthread_t u, f;
        REQUIRE(pthread_create(&u, NULL, race_user, &rc) == 0);
        REQUIRE(pthread_create(&f, NULL, race_freer, &rc) == 0);
        REQUIRE(pthread_join(u, NULL) == 0);
        REQUIRE(pthread_join(f, NULL) == 0);
        total_bad += rc.bad;
        total_ok += rc.ok;
        total_invalid += rc.invalid;
        EXPECT_ERR(mmsb_delta_free(rc.delta), MMSB_ERR_INVALID_HANDLE, "stale");
        uint8_t got[16];
        EXPECT_OK(mmsb_page_read(s, rp, (uint64_t)round, got, 16));
        CHECK(memcmp(got, pay, 16) == 0); /* the delta applied before it was freed */
    }
    CHECK(total_bad == 0);
    CHECK(total_ok > 0 && total_invalid >= 30);

    /* A store closed by one thread while another uses it. */
    {
        RaceCtx rc;
        memset(&rc, 0, sizeof rc);
        rc.store = s;
        REQUIRE(mmsb_delta_new_dense(rp, 0, pay, 4, NULL, 0, &rc.delta) == MMSB_OK);
        pthread_t u;
        REQUIRE(pthread_create(&u, NULL, store_user, &rc) == 0);
        while (!atomic_load(&rc.started)) sched_yield();
        EXPECT_OK(mmsb_store_close(s));
        REQUIRE(pthread_join(u, NULL) == 0);
        CHECK(rc.bad == 0);
        CHECK(rc.invalid >= 1);
        EXPECT_ERR(mmsb_store_close(s), MMSB_ERR_INVALID_HANDLE, "stale");
        EXPECT_OK(mmsb_delta_free(rc.delta));
    }
    CHECK(live_handles() == live0);
}

/* ------------------------------------------------------------------ */

int main(void) {
    /* Before any failure, the last error message is empty. */
    const char *m = NULL;
    EXPECT_OK(mmsb_last_error_message(&m));
    CHECK(m != NULL && m[0] == 0);
    uint64_t live_start = live_handles();
    CHECK(live_start == 0);

    test_errors_and_version();
    test_stores();
    test_pages();
    test_metadata();
    test_delta_construction();
    test_apply();
    test_borrows();
    test_codec();
    test_merge();
    test_forged_handles();
    test_threads();

    CHECK(live_handles() == live_start);
    int pass = atomic_load(&g_pass), fail = atomic_load(&g_fail);
    printf("%d passed, %d failed\n", pass, fail);
    return fail == 0 ? 0 : 1;
}
