/* api.c -- the read-through GET of one template with libcurl's easy API. */
#include "lib/api.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/pturl.h"
#include "lib/form.h"

struct api {
    CURL *e;
    struct curl_slist *headers;
    char *base;
    long timeout_ms;
    int llm_kwargs;
    char curl_err[CURL_ERROR_SIZE];
};

api *api_new(const char *base, const char *key, int timeout_ms, int llm_kwargs)
{
    api *a = calloc(1, sizeof(*a));
    buf h;
    buf_init(&h, 64 * 1024);
    if (a == NULL)
        goto err;
    a->timeout_ms = timeout_ms;
    a->llm_kwargs = llm_kwargs;
    a->base = strdup(base);
    a->e = curl_easy_init();
    if (a->base == NULL || a->e == NULL || buf_printf(&h, "X-API-KEY: %s", key) != 0)
        goto err;
    struct curl_slist *l = curl_slist_append(NULL, h.data);
    if (l == NULL)
        goto err;
    a->headers = l;
    const char *more[] = {"Cache-Control: no-cache", "Accept: application/json"};
    for (size_t i = 0; i < sizeof(more) / sizeof(more[0]); i++) {
        l = curl_slist_append(a->headers, more[i]);
        if (l == NULL)
            goto err;
        a->headers = l;
    }
    /* The key is in h: wipe it before the memory goes back. */
    if (h.data != NULL)
        memset(h.data, 0, h.len);
    buf_free(&h);
    return a;
err:
    if (h.data != NULL)
        memset(h.data, 0, h.len);
    buf_free(&h);
    api_free(a);
    return NULL;
}

void api_free(api *a)
{
    if (a == NULL)
        return;
    if (a->e != NULL)
        curl_easy_cleanup(a->e);
    curl_slist_free_all(a->headers);
    free(a->base);
    free(a);
}

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    /* A short count makes curl stop with CURLE_WRITE_ERROR. */
    return buf_append(arg, p, size * n) == 0 ? size * n : 0;
}

/* The template id of a parsed answer, as text, into out ("" when absent). */
static void id_of(const json_t *o, char *out, size_t outlen)
{
    const json_t *id = json_object_get(o, "id");
    out[0] = '\0';
    if (json_is_integer(id))
        snprintf(out, outlen, "%" JSON_INTEGER_FORMAT, json_integer_value(id));
    else if (json_is_string(id) && json_string_length(id) > 0 && json_string_length(id) < outlen &&
             strspn(json_string_value(id), "0123456789") == json_string_length(id))
        snprintf(out, outlen, "%s", json_string_value(id));
}

/* One GET of url into body (reset first). Returns PLCACHE_OK with the HTTP
 * status in *status, or PLCACHE_E_API with the reason in err when no answer
 * came. */
static plcache_status transfer(api *a, const char *url, buf *body, long *status, char *err,
                               size_t errlen)
{
    CURL *e = a->e;
    buf_reset(body);
    a->curl_err[0] = '\0';
    int bad = 0;
    bad |= curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HTTPGET, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, a->headers) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, a->timeout_ms) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, a->timeout_ms) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)API_MAX_ANSWER) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "") != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)body) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, a->curl_err) != CURLE_OK;
    if (bad) {
        snprintf(err, errlen, "cannot set up the API request");
        return PLCACHE_E_API;
    }
    CURLcode rc = curl_easy_perform(e);
    /* Drop the body reference so the handle holds nothing of this call. */
    curl_easy_setopt(e, CURLOPT_WRITEDATA, NULL);
    if (rc != CURLE_OK) {
        if (rc == CURLE_WRITE_ERROR || rc == CURLE_FILESIZE_EXCEEDED)
            snprintf(err, errlen, "API answer over %zu bytes", API_MAX_ANSWER);
        else if (rc == CURLE_OPERATION_TIMEDOUT)
            snprintf(err, errlen, "API: no answer within %ld ms", a->timeout_ms);
        else
            snprintf(err, errlen, "API: %s",
                     a->curl_err[0] != '\0' ? a->curl_err : curl_easy_strerror(rc));
        return PLCACHE_E_API;
    }
    *status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, status);
    return PLCACHE_OK;
}

plcache_status api_fetch(api *a, const char *name, plcache_select sel, const char *label,
                         long long version, api_answer *out, char *err, size_t errlen)
{
    plcache_status st = PLCACHE_E_API;
    buf url, body;
    buf_init(&url, 16 * 1024);
    buf_init(&body, API_MAX_ANSWER);
    json_t *doc = NULL;
    long status = 0;
    memset(out, 0, sizeof(out[0]));
    /* With the flag first; without it when the API refuses it (or when it is
     * turned off). */
    for (int flag = a->llm_kwargs; flag >= 0; flag--) {
        buf_reset(&url);
        if (form_api_url(&url, a->base, name, sel, label, version, flag) != 0) {
            snprintf(err, errlen, "cannot build the API URL");
            st = PLCACHE_E_ARG;
            goto done;
        }
        st = transfer(a, url.data, &body, &status, err, errlen);
        if (st != PLCACHE_OK)
            goto done;
        if (!flag || !pturl_flag_refused(status))
            break;
    }
    st = PLCACHE_E_API;
    if (status == 404) {
        snprintf(err, errlen, "not found at the API");
        st = PLCACHE_NOT_FOUND;
        goto done;
    }
    if (status == 401 || status == 403) {
        snprintf(err, errlen, "the API refused the key (%ld)", status);
        st = PLCACHE_E_AUTH;
        goto done;
    }
    if (status != 200) {
        snprintf(err, errlen, "the API answered %ld", status);
        goto done;
    }
    doc = json_loadb(body.data != NULL ? body.data : "", body.len, 0, NULL);
    if (!json_is_object(doc)) {
        snprintf(err, errlen, "the API's answer is not a JSON object");
        st = PLCACHE_E_PROTOCOL;
        goto done;
    }
    id_of(doc, out->id, sizeof(out->id));
    out->json = buf_steal(&body, &out->len);
    if (out->json == NULL) {
        snprintf(err, errlen, "out of memory");
        st = PLCACHE_E_NOMEM;
        goto done;
    }
    st = PLCACHE_OK;
done:
    json_decref(doc);
    buf_free(&url);
    buf_free(&body);
    return st;
}
