/* Unit tests for util/metrics: histogram buckets and their reading, counting from many threads at
 * once, and the text exposition (escaping, number formats, histogram lines, process metrics). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util/metrics.h"

static void test_histogram_buckets(void **state) {
    (void)state;
    static const double bounds[] = {0.001, 0.01, 1};
    metrics_histogram h;
    metrics_histogram_init(&h, bounds, 3);
    metrics_histogram_observe_ns(&h, 0);
    metrics_histogram_observe_ns(&h, 1000000);    /* exactly 1 ms: "le" includes the bound */
    metrics_histogram_observe_ns(&h, 1000001);
    metrics_histogram_observe_ns(&h, 500000000);
    metrics_histogram_observe_ns(&h, 3000000000u); /* above every bound */
    metrics_histogram_value v;
    metrics_histogram_read(&h, &v);
    assert_int_equal(v.nbounds, 3);
    assert_int_equal(v.buckets[0], 2);
    assert_int_equal(v.buckets[1], 3);
    assert_int_equal(v.buckets[2], 4);
    assert_int_equal(v.count, 5);
    assert_true(fabs(v.sum - 3.502000001) < 1e-9);
}

typedef struct {
    metrics_counter *c;
    metrics_histogram *h;
} hammer_args;

static void *hammer(void *arg) {
    hammer_args *a = arg;
    for (int i = 0; i < 100000; i++) {
        metrics_counter_add(a->c, 1);
        metrics_histogram_observe_ns(a->h, (uint64_t)(i % 3) * 1000000);
    }
    return NULL;
}

static void test_counting_from_many_threads(void **state) {
    (void)state;
    static const double bounds[] = {0.0005, 0.0015};
    metrics_counter c = {0};
    metrics_histogram h;
    metrics_histogram_init(&h, bounds, 2);
    hammer_args a = {&c, &h};
    pthread_t t[4];
    for (int i = 0; i < 4; i++) assert_int_equal(pthread_create(&t[i], NULL, hammer, &a), 0);
    metrics_histogram_value mid;
    metrics_histogram_read(&h, &mid); /* while they count: still cumulative */
    assert_true(mid.buckets[0] <= mid.buckets[1] && mid.buckets[1] <= mid.count);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    assert_int_equal(metrics_counter_get(&c), 400000);
    metrics_histogram_value v;
    metrics_histogram_read(&h, &v);
    assert_int_equal(v.count, 400000);
    assert_int_equal(v.buckets[0], 4 * 33334); /* i % 3 == 0 */
    assert_int_equal(v.buckets[1], 4 * (33334 + 33333));
    assert_true(fabs(v.sum - 4 * (33333 * 0.001 + 33333 * 0.002)) < 1e-6);
}

static void test_text_escaping_and_numbers(void **state) {
    (void)state;
    metrics_text t = {0};
    metrics_family(&t, "x_total", "counter", "Says \"hi\" with a \\ and a\nline.");
    metrics_label l[] = {{"path", "a\"b\\c\nd"}, {"empty", ""}};
    metrics_sample_u64(&t, "x_total", l, 2, UINT64_MAX);
    metrics_family(&t, "g", "gauge", "G.");
    metrics_sample(&t, "g", NULL, 0, 10);
    metrics_sample(&t, "g", l + 1, 1, 0.1);
    metrics_sample(&t, "g", l + 1, 1, 1e-7);
    metrics_sample(&t, "g", l + 1, 1, NAN);
    metrics_sample(&t, "g", l + 1, 1, -INFINITY);
    metrics_sample(&t, "g", l + 1, 1, 0.1 + 0.2);
    metrics_sample(&t, "g", l + 1, 1, 123456789);
    size_t len;
    char *s = metrics_text_take(&t, &len);
    assert_non_null(s);
    assert_int_equal(len, strlen(s));
    assert_string_equal(s, "# HELP x_total Says \"hi\" with a \\\\ and a\\nline.\n"
                           "# TYPE x_total counter\n"
                           "x_total{path=\"a\\\"b\\\\c\\nd\",empty=\"\"} 18446744073709551615\n"
                           "# HELP g G.\n"
                           "# TYPE g gauge\n"
                           "g 10\n"
                           "g{empty=\"\"} 0.1\n"
                           "g{empty=\"\"} 1e-07\n"
                           "g{empty=\"\"} NaN\n"
                           "g{empty=\"\"} -Inf\n"
                           "g{empty=\"\"} 0.30000000000000004\n"
                           "g{empty=\"\"} 123456789\n");
    free(s);
    assert_null(t.buf);
}

static void test_histogram_lines(void **state) {
    (void)state;
    metrics_histogram_value v = {.nbounds = 2, .bounds = {0.005, 10}, .buckets = {1, 3}, .count = 4, .sum = 12.5};
    metrics_text t = {0};
    metrics_label l[] = {{"route", "/image/{id}"}};
    metrics_write_histogram(&t, "d_seconds", l, 1, &v);
    metrics_write_histogram(&t, "w_seconds", NULL, 0, &v);
    size_t len;
    char *s = metrics_text_take(&t, &len);
    assert_string_equal(s, "d_seconds_bucket{route=\"/image/{id}\",le=\"0.005\"} 1\n"
                           "d_seconds_bucket{route=\"/image/{id}\",le=\"10\"} 3\n"
                           "d_seconds_bucket{route=\"/image/{id}\",le=\"+Inf\"} 4\n"
                           "d_seconds_sum{route=\"/image/{id}\"} 12.5\n"
                           "d_seconds_count{route=\"/image/{id}\"} 4\n"
                           "w_seconds_bucket{le=\"0.005\"} 1\n"
                           "w_seconds_bucket{le=\"10\"} 3\n"
                           "w_seconds_bucket{le=\"+Inf\"} 4\n"
                           "w_seconds_sum 12.5\n"
                           "w_seconds_count 4\n");
    free(s);
}

static void test_process_metrics(void **state) {
    (void)state;
    metrics_text t = {0};
    metrics_write_process(&t);
    size_t len;
    char *s = metrics_text_take(&t, &len);
    const char *names[] = {"process_cpu_seconds_total ", "process_resident_memory_bytes ",
                           "process_virtual_memory_bytes ", "process_start_time_seconds ", "process_open_fds ",
                           "process_max_fds "};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char *line = strstr(s, names[i]);
        while (line && line > s && line[-1] != '\n') line = strstr(line + 1, names[i]); /* the sample line */
        assert_non_null(line);
        assert_true(strtod(line + strlen(names[i]), NULL) > 0 || !strcmp(names[i], "process_cpu_seconds_total "));
    }
    char *rss = strstr(s, "\nprocess_resident_memory_bytes ");
    assert_true(strtod(rss + 31, NULL) > 1e6); /* a process with cmocka loaded is over a megabyte */
    free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_histogram_buckets),
        cmocka_unit_test(test_counting_from_many_threads),
        cmocka_unit_test(test_text_escaping_and_numbers),
        cmocka_unit_test(test_histogram_lines),
        cmocka_unit_test(test_process_metrics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
