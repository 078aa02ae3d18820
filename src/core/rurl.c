/* rurl.c -- Redis URL parsing. */
#include "core/rurl.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>

#include "core/text.h"

/* Percent-decodes n bytes into a new string; NULL on a bad escape or NUL. */
static char *pct_decode(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    size_t o = 0;
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi = i + 2 < n ? text_hexval(s[i + 1]) : -1;
            int lo = i + 2 < n ? text_hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                free(out);
                return NULL;
            }
            out[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

static int parse_int(const char *s, size_t n, int min, int max, int *out)
{
    long v = 0;
    if (n == 0 || n > 9)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < min || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

static int parse_db_query(const char *q, rurl *out, char *err, size_t errlen)
{
    /* Only db=N is understood; anything else is an error, not ignored. */
    if (strncmp(q, "db=", 3) != 0 || parse_int(q + 3, strlen(q + 3), 0, 1 << 20, &out->db) != 0) {
        snprintf(err, errlen, "unsupported query (only ?db=N)");
        return -1;
    }
    return 0;
}

int rurl_parse(const char *url, rurl *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    out->port = 6379;
    if (strncmp(url, "unix://", 7) == 0) {
        const char *p = url + 7;
        const char *q = strchr(p, '?');
        size_t n = q ? (size_t)(q - p) : strlen(p);
        if (n == 0 || p[0] != '/' || n >= sizeof(out->path)) {
            snprintf(err, errlen, "expected unix:///absolute/path.sock[?db=N]");
            return -1;
        }
        memcpy(out->path, p, n);
        out->path[n] = '\0';
        out->is_unix = 1;
        if (q && parse_db_query(q + 1, out, err, errlen) != 0)
            return -1;
        return 0;
    }
    if (strncmp(url, "redis-sentinel://", 17) == 0) {
        snprintf(err, errlen, "redis-sentinel:// is not supported by this version");
        return -1;
    }
    if (strncmp(url, "redis://", 8) != 0) {
        snprintf(err, errlen, "expected redis://host:port/db or unix:///path.sock");
        return -1;
    }
    const char *p = url + 8;
    const char *end = p + strcspn(p, "/?");
    const char *at = NULL;
    for (const char *s = p; s < end; s++)
        if (*s == '@')
            at = s;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            if (colon > p) {
                out->user = pct_decode(p, (size_t)(colon - p));
                if (out->user == NULL)
                    goto bad_auth;
            }
            out->password = pct_decode(colon + 1, (size_t)(at - colon - 1));
        } else {
            out->password = pct_decode(p, (size_t)(at - p));
        }
        if (out->password == NULL)
            goto bad_auth;
        p = at + 1;
    }
    const char *hend;
    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t)(end - p));
        if (rb == NULL) {
            snprintf(err, errlen, "unclosed [ in host");
            goto err;
        }
        if ((size_t)(rb - p - 1) >= sizeof(out->host) || rb == p + 1) {
            snprintf(err, errlen, "bad host");
            goto err;
        }
        memcpy(out->host, p + 1, (size_t)(rb - p - 1));
        hend = rb + 1;
    } else {
        hend = p;
        while (hend < end && *hend != ':')
            hend++;
        if (hend == p || (size_t)(hend - p) >= sizeof(out->host)) {
            snprintf(err, errlen, "missing host");
            goto err;
        }
        memcpy(out->host, p, (size_t)(hend - p));
    }
    if (hend < end) {
        if (*hend != ':' || parse_int(hend + 1, (size_t)(end - hend - 1), 1, 65535, &out->port)) {
            snprintf(err, errlen, "port must be a number from 1 to 65535");
            goto err;
        }
    }
    if (*end == '/') {
        const char *dbs = end + 1;
        const char *q = strchr(dbs, '?');
        size_t n = q ? (size_t)(q - dbs) : strlen(dbs);
        if (n > 0 && parse_int(dbs, n, 0, 1 << 20, &out->db) != 0) {
            snprintf(err, errlen, "database must be a number");
            goto err;
        }
        end = dbs + n;
    }
    if (*end == '?') {
        if (parse_db_query(end + 1, out, err, errlen) != 0)
            goto err;
    } else if (*end != '\0') {
        snprintf(err, errlen, "unexpected text after the database");
        goto err;
    }
    return 0;
bad_auth:
    snprintf(err, errlen, "bad percent-escape in user or password");
err:
    rurl_free(out);
    return -1;
}

int rurl_resolve(rurl *u, char *err, size_t errlen)
{
    if (u->is_unix)
        return 0;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(u->host, NULL, &hints, &res);
    if (rc != 0 || res == NULL) {
        snprintf(err, errlen, "cannot resolve %s: %s", u->host, gai_strerror(rc));
        return -1;
    }
    char ip[INET6_ADDRSTRLEN] = "";
    const void *addr = res->ai_family == AF_INET6
                           ? (const void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr
                           : (const void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr;
    if (inet_ntop(res->ai_family, addr, ip, sizeof(ip)) == NULL) {
        snprintf(err, errlen, "cannot resolve %s: %s", u->host, strerror(errno));
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    snprintf(u->host, sizeof(u->host), "%s", ip);
    return 0;
}

void rurl_describe(const rurl *u, char *out, size_t outlen)
{
    if (u->is_unix)
        snprintf(out, outlen, "unix:%s?db=%d", u->path, u->db);
    else if (strchr(u->host, ':'))
        snprintf(out, outlen, "[%s]:%d/%d", u->host, u->port, u->db);
    else
        snprintf(out, outlen, "%s:%d/%d", u->host, u->port, u->db);
}

void rurl_free(rurl *u)
{
    free(u->user);
    if (u->password) {
        memset(u->password, 0, strlen(u->password));
        free(u->password);
    }
    u->user = NULL;
    u->password = NULL;
}

int rurl_check(const char *value, char *err, size_t errlen)
{
    rurl u;
    if (rurl_parse(value, &u, err, errlen) != 0)
        return -1;
    rurl_free(&u);
    return 0;
}
