/*
 * check.h - the smallest test harness: CHECK(cond) records a failure with file:line and goes
 * on; RUN(fn) runs one test function; check_summary() prints "N passed, N failed" and returns
 * the process exit code.
 */
#ifndef REDRESS_CHECK_H
#define REDRESS_CHECK_H

#include <stdio.h>

static int check_failures, check_tests, check_failed_tests;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            check_failures++;                                                                      \
        }                                                                                          \
    } while (0)

#define RUN(fn)                                                                                    \
    do {                                                                                           \
        int before_ = check_failures;                                                              \
        check_tests++;                                                                             \
        fn();                                                                                      \
        if (check_failures != before_) {                                                           \
            check_failed_tests++;                                                                  \
            fprintf(stderr, "FAIL %s\n", #fn);                                                     \
        }                                                                                          \
    } while (0)

static inline int check_summary(void)
{
    printf("%d passed, %d failed\n", check_tests - check_failed_tests, check_failed_tests);
    return check_failed_tests ? 1 : 0;
}

#endif
