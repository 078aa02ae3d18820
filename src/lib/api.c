/* api.c -- the read-through GET of one template with libcurl's easy API. */
#include "lib/api.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/wipe.h"
#include "model/pturl.h"
#include "lib/form.h"

struct api {
    CURL *e;
    struct curl_slist *headers;      /* the GETs': key, no-cache, Accept */
    struct curl_slist *post_headers; /* the POSTs': key, JSON body, Accept */
    char *base;
    long timeout_ms;
    int llm_kwargs;
    char curl_err[CURL_ERROR_SIZE];
};

/* The list key_line + more (NULL-terminated), or NULL when memory ran out. */
static struct curl_slist *header_list(const char *key_line, const char *const *more)
{
    struct curl_slist *l = curl_slist_append(NULL, key_line);
    for (size_t i = 0; l != NULL && more[i] != NULL; i++) {
        struct curl_slist *n = curl_slist_append(l, more[i]);
        if (n == NULL) {
            curl_slist_free_all(l);
            return NULL;
        }
        l = n;
    }
    return l;
}

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
    const char *get_more[] = {"Cache-Control: no-cache", "Accept: application/json", NULL};
    const char *post_more[] = {"Content-Type: application/json", "Accept: application/json", NULL};
    a->headers = header_list(h.data, get_more);
    a->post_headers = header_list(h.data, post_more);
    if (a->headers == NULL || a->post_headers == NULL)
        goto err;
    /* The key is in h: wipe it before the memory goes back. */
    wipe_mem(h.data, h.len);
    buf_free(&h);
    return a;
err:
    wipe_mem(h.data, h.len);
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
    curl_slist_free_all(a->post_headers);
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

/* One GET of url into body (reset first), or a POST of post_len bytes at
 * post when post is not NULL. Returns PLCACHE_OK with the HTTP status in
 * *status, or PLCACHE_E_API with the reason in err when no answer came. */
static plcache_status transfer(api *a, const char *url, const char *post, size_t post_len,
                               buf *body, long *status, char *err, size_t errlen)
{
    CURL *e = a->e;
    buf_reset(body);
    a->curl_err[0] = '\0';
    int bad = 0;
    bad |= curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK;
    if (post != NULL) {
        bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)post_len) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, post) != CURLE_OK;
    } else {
        bad |= curl_easy_setopt(e, CURLOPT_HTTPGET, 1L) != CURLE_OK;
    }
    bad |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, post ? a->post_headers : a->headers) != CURLE_OK;
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
    /* Drop the references so the handle holds nothing of this call. */
    curl_easy_setopt(e, CURLOPT_WRITEDATA, NULL);
    if (post != NULL)
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, NULL);
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

/* What an answer means (status, body), as api_fetch documents it; on
 * PLCACHE_OK the body moves into *out. */
static plcache_status answer_of(long status, buf *body, api_answer *out, char *err, size_t errlen)
{
    if (status == 404) {
        snprintf(err, errlen, "not found at the API");
        return PLCACHE_NOT_FOUND;
    }
    if (status == 401 || status == 403) {
        snprintf(err, errlen, "the API refused the key (%ld)", status);
        return PLCACHE_E_AUTH;
    }
    if (status != 200) {
        snprintf(err, errlen, "the API answered %ld", status);
        return PLCACHE_E_API;
    }
    json_t *doc = json_loadb(body->data != NULL ? body->data : "", body->len, 0, NULL);
    int is_object = json_is_object(doc);
    if (is_object)
        id_of(doc, out->id, sizeof(out->id));
    json_decref(doc);
    if (!is_object) {
        snprintf(err, errlen, "the API's answer is not a JSON object");
        return PLCACHE_E_PROTOCOL;
    }
    out->json = buf_steal(body, &out->len);
    if (out->json == NULL) {
        snprintf(err, errlen, "out of memory");
        return PLCACHE_E_NOMEM;
    }
    return PLCACHE_OK;
}

plcache_status api_fetch(api *a, const char *name, plcache_select sel, const char *label,
                         long long version, api_answer *out, char *err, size_t errlen)
{
    plcache_status st = PLCACHE_E_API;
    buf url, body;
    buf_init(&url, 16 * 1024);
    buf_init(&body, API_MAX_ANSWER);
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
        st = transfer(a, url.data, NULL, 0, &body, &status, err, errlen);
        if (st != PLCACHE_OK)
            goto done;
        if (!flag || !pturl_flag_refused(status))
            break;
    }
    st = answer_of(status, &body, out, err, errlen);
done:
    buf_free(&url);
    buf_free(&body);
    return st;
}

plcache_status api_render(api *a, const char *name, plcache_select sel, const char *label,
                          long long version, const char *vars, size_t vars_len, api_answer *out,
                          char *err, size_t errlen)
{
    plcache_status st = PLCACHE_E_NOMEM;
    buf url, body;
    buf_init(&url, 16 * 1024);
    buf_init(&body, API_MAX_ANSWER);
    json_t *req = json_object(), *iv = NULL;
    char *text = NULL;
    long status = 0;
    memset(out, 0, sizeof(out[0]));
    if (vars != NULL) {
        iv = json_loadb(vars, vars_len, 0, NULL);
        if (!json_is_object(iv)) {
            snprintf(err, errlen, "the variables are not a JSON object");
            st = PLCACHE_E_ARG;
            goto done;
        }
    }
    int bad = req == NULL ||
              (sel == PLCACHE_SEL_LABEL && json_object_set_new(req, "label", json_string(label))) ||
              (sel == PLCACHE_SEL_VERSION &&
               json_object_set_new(req, "version", json_integer(version))) ||
              (iv != NULL && json_object_set(req, "input_variables", iv));
    text = bad ? NULL : json_dumps(req, JSON_COMPACT);
    if (text == NULL) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    if (pturl_template(&url, a->base, name, NULL, -1, 0) != 0) {
        snprintf(err, errlen, "cannot build the API URL");
        st = PLCACHE_E_ARG;
        goto done;
    }
    st = transfer(a, url.data, text, strlen(text), &body, &status, err, errlen);
    if (st == PLCACHE_OK)
        st = answer_of(status, &body, out, err, errlen);
done:
    free(text);
    json_decref(req);
    json_decref(iv);
    buf_free(&url);
    buf_free(&body);
    return st;
}
