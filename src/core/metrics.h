/* metrics.h -- Prometheus text exposition: counters, gauges, histograms.
 *
 * Programs keep their own counters in plain structs (no registry, no locks:
 * each daemon is one thread) and render them on GET /metrics with these
 * helpers, which write the HELP/TYPE lines and the samples.
 */
#ifndef PLCACHE_METRICS_H
#define PLCACHE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define MHIST_MAX_BUCKETS 24

typedef struct mhist {
    const double *bounds;                   /* upper bounds, increasing */
    size_t n;                               /* <= MHIST_MAX_BUCKETS */
    uint64_t counts[MHIST_MAX_BUCKETS + 1]; /* last one is +Inf */
    double sum;
    uint64_t count;
} mhist;

/* Latency buckets in seconds, 100 us to 10 s. */
extern const double metrics_latency_bounds[];
extern const size_t metrics_latency_nbounds;

void mhist_init(mhist *h, const double *bounds, size_t n);
void mhist_observe(mhist *h, double v);

/* Writes "# HELP" and "# TYPE" lines. type is "counter", "gauge", "histogram". */
int metrics_header(buf *b, const char *name, const char *type, const char *help);

/* Writes one sample: name{labels} value. labels is like `status="200"` or NULL. */
int metrics_sample(buf *b, const char *name, const char *labels, double value);

/* Writes the header and the one unlabelled sample of a metric. */
int metrics_single(buf *b, const char *name, const char *type, const char *help, double value);

/* Writes a whole histogram (buckets, sum, count) with its header. */
int metrics_histogram(buf *b, const char *name, const char *help, const mhist *h);

#endif
