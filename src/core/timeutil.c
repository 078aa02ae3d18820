/* timeutil.c -- clocks and ISO 8601. */
#include "core/timeutil.h"

#include <stdio.h>
#include <time.h>

int64_t time_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t time_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Reads exactly n digits at s[*i]. */
static int digits(const char *s, size_t len, size_t *i, int n, int *out)
{
    int v = 0;
    for (int k = 0; k < n; k++) {
        if (*i >= len || s[*i] < '0' || s[*i] > '9')
            return -1;
        v = v * 10 + (s[(*i)++] - '0');
    }
    *out = v;
    return 0;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
    static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return dm[m - 1];
}

int time_parse_iso8601_us(const char *s, size_t len, int64_t *us)
{
    size_t i = 0;
    int y, mo, d, h, mi, se, frac_us = 0;
    if (digits(s, len, &i, 4, &y) || i >= len || s[i++] != '-' || digits(s, len, &i, 2, &mo) ||
        i >= len || s[i++] != '-' || digits(s, len, &i, 2, &d))
        return -1;
    if (i >= len || (s[i] != 'T' && s[i] != 't' && s[i] != ' '))
        return -1;
    i++;
    if (digits(s, len, &i, 2, &h) || i >= len || s[i++] != ':' || digits(s, len, &i, 2, &mi) ||
        i >= len || s[i++] != ':' || digits(s, len, &i, 2, &se))
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || se > 59)
        return -1;
    if (i < len && (s[i] == '.' || s[i] == ',')) {
        i++;
        int n = 0, scale = 100000;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            if (n < 6) {
                frac_us += (s[i] - '0') * scale;
                scale /= 10;
            }
            n++;
            i++;
        }
        if (n == 0 || n > 9)
            return -1;
    }
    int64_t offset_min = 0;
    if (i < len && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i < len && (s[i] == '+' || s[i] == '-')) {
        int sign = s[i++] == '-' ? -1 : 1, oh, om = 0;
        if (digits(s, len, &i, 2, &oh))
            return -1;
        if (i < len && s[i] == ':')
            i++;
        if (i < len && digits(s, len, &i, 2, &om))
            return -1;
        if (oh > 23 || om > 59)
            return -1;
        offset_min = sign * (oh * 60 + om);
    }
    if (i != len)
        return -1;
    int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - offset_min * 60;
    *us = secs * 1000000 + frac_us;
    return 0;
}

int time_parse_iso8601(const char *s, size_t len, int64_t *ms)
{
    int64_t us;
    if (time_parse_iso8601_us(s, len, &us) != 0)
        return -1;
    /* Floor, as the seconds are: the milliseconds digits, also before 1970. */
    *ms = us / 1000 - (us % 1000 < 0);
    return 0;
}

void time_format_now(char *out, size_t outlen)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000L);
}
