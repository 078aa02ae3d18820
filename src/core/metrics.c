/* metrics.c -- Prometheus text format. */
#include "core/metrics.h"

const double metrics_latency_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                         0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
const size_t metrics_latency_nbounds =
    sizeof(metrics_latency_bounds) / sizeof(metrics_latency_bounds[0]);

void mhist_init(mhist *h, const double *bounds, size_t n)
{
    *h = (mhist){0};
    h->bounds = bounds;
    h->n = n > MHIST_MAX_BUCKETS ? MHIST_MAX_BUCKETS : n;
}

void mhist_observe(mhist *h, double v)
{
    size_t i = 0;
    while (i < h->n && v > h->bounds[i])
        i++;
    h->counts[i]++;
    h->sum += v;
    h->count++;
}

int metrics_header(buf *b, const char *name, const char *type, const char *help)
{
    return buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

int metrics_sample(buf *b, const char *name, const char *labels, double value)
{
    if (labels && *labels)
        return buf_printf(b, "%s{%s} %.17g\n", name, labels, value);
    return buf_printf(b, "%s %.17g\n", name, value);
}

int metrics_single(buf *b, const char *name, const char *type, const char *help, double value)
{
    if (metrics_header(b, name, type, help) != 0)
        return -1;
    return metrics_sample(b, name, NULL, value);
}

int metrics_histogram(buf *b, const char *name, const char *help, const mhist *h)
{
    int rc = metrics_header(b, name, "histogram", help);
    uint64_t cum = 0;
    for (size_t i = 0; i < h->n; i++) {
        cum += h->counts[i];
        rc |= buf_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i],
                         (unsigned long long)cum);
    }
    cum += h->counts[h->n];
    rc |= buf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    rc |= buf_printf(b, "%s_sum %.9g\n%s_count %llu\n", name, h->sum, name,
                     (unsigned long long)h->count);
    return rc;
}
