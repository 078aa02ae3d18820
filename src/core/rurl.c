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
#include "core/wipe.h"

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

/* Reads "[user]:password@" or "password@" at *p (before end), moving *p past
 * it. Returns 0 (also when there is none), or -1 on a bad escape. */
static int parse_userinfo(const char **pp, const char *end, rurl *out)
{
    const char *p = *pp;
    const char *at = NULL;
    for (const char *s = p; s < end; s++)
        if (*s == '@')
            at = s;
    if (at == NULL)
        return 0;
    const char *colon = memchr(p, ':', (size_t)(at - p));
    if (colon) {
        if (colon > p) {
            out->user = pct_decode(p, (size_t)(colon - p));
            if (out->user == NULL)
                return -1;
        }
        out->password = pct_decode(colon + 1, (size_t)(at - colon - 1));
    } else {
        out->password = pct_decode(p, (size_t)(at - p));
    }
    if (out->password == NULL)
        return -1;
    *pp = at + 1;
    return 0;
}

/* The messages of a host[:port] that does not parse: the server's, a
 * sentinel's. */
typedef struct node_msgs {
    const char *unclosed, *bad, *missing, *port;
} node_msgs;

static const node_msgs server_msgs = {
    .unclosed = "unclosed [ in host",
    .bad = "bad host",
    .missing = "missing host",
    .port = "port must be a number from 1 to 65535",
};

static const node_msgs sentinel_msgs = {
    .unclosed = "bad sentinel host",
    .bad = "bad sentinel host",
    .missing = "missing sentinel host",
    .port = "sentinel port must be a number from 1 to 65535",
};

/* Parses "host[:port]" or "[v6][:port]" spanning [p, end) into host (a buffer
 * of hostlen bytes) and *port (defport when none is given). */
static int parse_hostport(const char *p, const char *end, char *host, size_t hostlen, int *port,
                          int defport, const node_msgs *m, char *err, size_t errlen)
{
    const char *hend;
    if (p < end && *p == '[') {
        const char *rb = memchr(p, ']', (size_t)(end - p));
        if (rb == NULL || rb == p + 1 || (size_t)(rb - p - 1) >= hostlen) {
            snprintf(err, errlen, "%s", rb == NULL ? m->unclosed : m->bad);
            return -1;
        }
        memcpy(host, p + 1, (size_t)(rb - p - 1));
        host[rb - p - 1] = '\0';
        hend = rb + 1;
    } else {
        hend = p;
        while (hend < end && *hend != ':')
            hend++;
        if (hend == p || (size_t)(hend - p) >= hostlen) {
            snprintf(err, errlen, "%s", m->missing);
            return -1;
        }
        memcpy(host, p, (size_t)(hend - p));
        host[hend - p] = '\0';
    }
    *port = defport;
    if (hend < end &&
        (*hend != ':' || parse_int(hend + 1, (size_t)(end - hend - 1), 1, 65535, port))) {
        snprintf(err, errlen, "%s", m->port);
        return -1;
    }
    return 0;
}

/* The master's name that ends a sentinel URL, at name, then [?db=N]. */
static int parse_master(const char *name, rurl *out, char *err, size_t errlen)
{
    size_t n = strcspn(name, "?");
    if (n == 0 || n >= sizeof(out->master)) {
        snprintf(err, errlen, "expected the master's name after the sentinels: .../mymaster");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (ch <= ' ' || ch == 0x7f || ch == '/' || ch == '%') {
            snprintf(err, errlen, "bad character in the master's name");
            return -1;
        }
    }
    memcpy(out->master, name, n);
    out->master[n] = '\0';
    if (name[n] == '?' && parse_db_query(name + n + 1, out, err, errlen) != 0)
        return -1;
    return 0;
}

/* redis-sentinel://[auth@]h1[:p1][,h2[:p2]...]/master[?db=N] */
static int parse_sentinel(const char *url, rurl *out, char *err, size_t errlen)
{
    const char *p = url + 17;
    const char *end = p + strcspn(p, "/?");
    out->is_sentinel = 1;
    out->port = 0;
    if (parse_userinfo(&p, end, out) != 0) {
        snprintf(err, errlen, "bad percent-escape in user or password");
        goto err;
    }
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *nend = comma ? comma : end;
        if (out->nsentinels == RURL_MAX_SENTINELS) {
            snprintf(err, errlen, "at most %d sentinels", RURL_MAX_SENTINELS);
            goto err;
        }
        rurl_node *node = &out->sentinels[out->nsentinels];
        if (parse_hostport(p, nend, node->host, sizeof(node->host), &node->port, 26379,
                           &sentinel_msgs, err, errlen) != 0)
            goto err;
        out->nsentinels++;
        p = comma ? comma + 1 : end;
        if (comma && p == end) {
            snprintf(err, errlen, "missing sentinel host");
            goto err;
        }
    }
    if (out->nsentinels == 0) {
        snprintf(err, errlen, "expected redis-sentinel://host:port[,host:port]/master");
        goto err;
    }
    if (parse_master(*end == '/' ? end + 1 : end, out, err, errlen) != 0)
        goto err;
    return 0;
err:
    rurl_free(out);
    return -1;
}

/* unix:///absolute/path.sock[?db=N], p just after "unix://". */
static int parse_unix(const char *p, rurl *out, char *err, size_t errlen)
{
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

/* What follows a redis:// URL's host[:port], at end: "[/db][?db=N]". */
static int parse_db_tail(const char *end, rurl *out, char *err, size_t errlen)
{
    if (*end == '/') {
        const char *dbs = end + 1;
        const char *q = strchr(dbs, '?');
        size_t n = q ? (size_t)(q - dbs) : strlen(dbs);
        if (n > 0 && parse_int(dbs, n, 0, 1 << 20, &out->db) != 0) {
            snprintf(err, errlen, "database must be a number");
            return -1;
        }
        end = dbs + n;
    }
    if (*end == '?')
        return parse_db_query(end + 1, out, err, errlen);
    if (*end != '\0') {
        snprintf(err, errlen, "unexpected text after the database");
        return -1;
    }
    return 0;
}

/* redis://[[user]:password@]host[:port][/db][?db=N] */
static int parse_redis(const char *url, rurl *out, char *err, size_t errlen)
{
    const char *p = url + 8;
    const char *end = p + strcspn(p, "/?");
    if (parse_userinfo(&p, end, out) != 0) {
        snprintf(err, errlen, "bad percent-escape in user or password");
        goto err;
    }
    if (parse_hostport(p, end, out->host, sizeof(out->host), &out->port, 6379, &server_msgs, err,
                       errlen) != 0 ||
        parse_db_tail(end, out, err, errlen) != 0)
        goto err;
    return 0;
err:
    rurl_free(out);
    return -1;
}

int rurl_parse(const char *url, rurl *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    out->port = 6379;
    if (strncmp(url, "unix://", 7) == 0)
        return parse_unix(url + 7, out, err, errlen);
    if (strncmp(url, "redis-sentinel://", 17) == 0)
        return parse_sentinel(url, out, err, errlen);
    if (strncmp(url, "redis://", 8) != 0) {
        snprintf(err, errlen,
                 "expected redis://host:port/db, unix:///path.sock or "
                 "redis-sentinel://host:port[,host:port]/master");
        return -1;
    }
    return parse_redis(url, out, err, errlen);
}

static int resolve_host(char *host, size_t hostlen, char *err, size_t errlen)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0 || res == NULL) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    char ip[INET6_ADDRSTRLEN] = "";
    const void *addr = res->ai_family == AF_INET6
                           ? (const void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr
                           : (const void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr;
    if (inet_ntop(res->ai_family, addr, ip, sizeof(ip)) == NULL) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, strerror(errno));
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    snprintf(host, hostlen, "%s", ip);
    return 0;
}

int rurl_resolve(rurl *u, char *err, size_t errlen)
{
    if (u->is_unix)
        return 0;
    if (u->is_sentinel) {
        for (int i = 0; i < u->nsentinels; i++)
            if (resolve_host(u->sentinels[i].host, sizeof(u->sentinels[i].host), err, errlen) != 0)
                return -1;
        return 0;
    }
    return resolve_host(u->host, sizeof(u->host), err, errlen);
}

void rurl_describe(const rurl *u, char *out, size_t outlen)
{
    if (u->is_unix)
        snprintf(out, outlen, "unix:%s?db=%d", u->path, u->db);
    else if (u->is_sentinel && u->host[0] == '\0')
        snprintf(out, outlen, "sentinel master %s/%d", u->master, u->db);
    else if (u->is_sentinel && strchr(u->host, ':'))
        snprintf(out, outlen, "[%s]:%d/%d (sentinel master %s)", u->host, u->port, u->db,
                 u->master);
    else if (u->is_sentinel)
        snprintf(out, outlen, "%s:%d/%d (sentinel master %s)", u->host, u->port, u->db, u->master);
    else if (strchr(u->host, ':'))
        snprintf(out, outlen, "[%s]:%d/%d", u->host, u->port, u->db);
    else
        snprintf(out, outlen, "%s:%d/%d", u->host, u->port, u->db);
}

void rurl_free(rurl *u)
{
    free(u->user);
    wipe_free(u->password);
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
