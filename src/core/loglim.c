/* loglim.c -- one log line per interval, and a count of the rest. */
#include "core/loglim.h"

void loglim_init(loglim *l, int64_t interval_ms)
{
    l->interval_ms = interval_ms;
    l->start_ms = INT64_MIN;
    l->suppressed = 0;
}

int loglim_take(loglim *l, int64_t now_ms)
{
    if (l->start_ms == INT64_MIN || now_ms - l->start_ms >= l->interval_ms) {
        l->start_ms = now_ms;
        return 1;
    }
    l->suppressed++;
    return 0;
}

int64_t loglim_due_ms(const loglim *l)
{
    return l->start_ms == INT64_MIN ? INT64_MIN : l->start_ms + l->interval_ms;
}

unsigned long loglim_flush(loglim *l)
{
    unsigned long n = l->suppressed;
    l->suppressed = 0;
    return n;
}
