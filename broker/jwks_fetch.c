/* JWKS download over http(s) with libcurl: bounded in time and size. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "broker/jwks.h"

typedef struct bg_jwks__buf_s {
    char *data;
    size_t len, cap;
    int too_big;
} bg_jwks__buf_t;

static size_t bg_jwks__write(char *ptr, size_t size, size_t nmemb, void *arg)
{
    bg_jwks__buf_t *b = arg;
    size_t n = size * nmemb;
    if (n > BG_JWKS_MAX_BYTES - b->len) {
        b->too_big = 1;
        return 0; /* makes curl fail with CURLE_WRITE_ERROR */
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 16384;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p)
            return 0;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = 0;
    return n;
}

/* Lets bg_identity_free cancel a transfer instead of waiting for its timeout. */
static int bg_jwks__progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    const atomic_int *abort_flag = arg;
    return abort_flag && atomic_load(abort_flag) ? 1 : 0;
}

static void bg_jwks__setopts(CURL *c, const char *url, const char *ca_file, long timeout_ms,
                             const atomic_int *abort_flag, bg_jwks__buf_t *b)
{
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    /* A redirect never leaves TLS: plain http is for a loopback URL as
     * configured, never for where it points. */
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 3L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* we run in a thread */
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < 5000 ? timeout_ms : 5000L);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)BG_JWKS_MAX_BYTES);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    if (ca_file) { /* this file's CAs instead of the system's store (bundle and directory) */
        curl_easy_setopt(c, CURLOPT_CAINFO, ca_file);
        curl_easy_setopt(c, CURLOPT_CAPATH, NULL);
    }
    curl_easy_setopt(c, CURLOPT_USERAGENT, "busgate-jwks");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, bg_jwks__write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, bg_jwks__progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, (void *)abort_flag);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
}

int bg_jwks_fetch(const char *url, const char *ca_file, long timeout_ms,
                  const atomic_int *abort_flag, char **body, size_t *len, char *err, size_t errlen)
{
    bg_jwks__buf_t b = {0};
    long status = 0;
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(err, errlen, "curl_easy_init failed");
        return -1;
    }
    bg_jwks__setopts(c, url, ca_file, timeout_ms, abort_flag, &b);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK || status != 200 || !b.data) {
        if (b.too_big || rc == CURLE_FILESIZE_EXCEEDED)
            snprintf(err, errlen, "JWKS larger than %d bytes", BG_JWKS_MAX_BYTES);
        else if (rc != CURLE_OK)
            snprintf(err, errlen, "fetch failed: %s", curl_easy_strerror(rc));
        else
            snprintf(err, errlen, "fetch failed: HTTP status %ld", status);
        free(b.data);
        return -1;
    }
    *body = b.data;
    *len = b.len;
    return 0;
}
