/* SCRAM-SHA-256/512 client (RFC 5802 / RFC 7677) for busgate's upstream
 * Kafka connection; see kafka_scram.h for the exchange and the limits. */
#include "adapters/kafka/kafka_scram.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define BG_KAFKA_SCRAM__NONCE_MAX 64
#define BG_KAFKA_SCRAM__RAND_BYTES 24
#define BG_KAFKA_SCRAM__HMAX EVP_MAX_MD_SIZE

typedef enum {
    BG_KAFKA_SCRAM__INIT = 0,
    BG_KAFKA_SCRAM__FIRST_SENT,
    BG_KAFKA_SCRAM__FINAL_SENT,
    BG_KAFKA_SCRAM__DONE,
    BG_KAFKA_SCRAM__FAILED,
} bg_kafka_scram__state_t;

struct bg_kafka_scram_s {
    bg_kafka_scram_mech_t mech;
    bg_kafka_scram__state_t state;
    const EVP_MD *md;
    size_t hlen;
    char *password; /* cleansed and freed once the proof is computed */
    size_t pwlen;
    char *saslname;   /* escaped user name */
    char *first_bare; /* "n=<saslname>,r=<cnonce>", part of AuthMessage */
    size_t first_bare_len;
    char nonce[BG_KAFKA_SCRAM__NONCE_MAX + 1];
    uint8_t server_sig[BG_KAFKA_SCRAM__HMAX]; /* expected ServerSignature */
    char server_error[128];
    int has_server_error;
};

/* Parsed server-first message; views into the caller's buffer. */
typedef struct bg_kafka_scram__first_s {
    bg_slice_t nonce;
    uint8_t salt[BG_KAFKA_SCRAM_MAX_MSG];
    size_t salt_len;
    uint32_t iterations;
} bg_kafka_scram__first_t;

/* ---- base64 (RFC 4648, standard alphabet, padded, strict) ---- */

static const char bg_kafka_scram__b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void bg_kafka_scram__b64_put(bg_wr_t *out, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        char q[4] = {bg_kafka_scram__b64[v >> 18], bg_kafka_scram__b64[(v >> 12) & 63],
                     i + 1 < n ? bg_kafka_scram__b64[(v >> 6) & 63] : '=',
                     i + 2 < n ? bg_kafka_scram__b64[v & 63] : '='};
        bg_wr_bytes(out, q, 4);
    }
}

static int bg_kafka_scram__b64_val(uint8_t c)
{
    const char *q = c ? memchr(bg_kafka_scram__b64, c, 64) : NULL;
    return q ? (int)(q - bg_kafka_scram__b64) : -1;
}

/* Decodes s into out (cap bytes). Returns the decoded length, or -1 unless s
 * is canonical padded base64 (length % 4 == 0, '=' only at the end, unused
 * bits zero) and fits. */
static long bg_kafka_scram__b64_decode(bg_slice_t s, uint8_t *out, size_t cap)
{
    size_t n = 0;
    if (s.len < 0 || s.len % 4 != 0)
        return -1;
    for (int32_t i = 0; i < s.len; i += 4) {
        int last = i + 4 == s.len;
        int pad = (s.p[i + 3] == '=') + (s.p[i + 2] == '=');
        if (pad && (!last || (pad == 1 && s.p[i + 2] == '=')))
            return -1;
        int v[4] = {0, 0, 0, 0};
        for (int k = 0; k < 4 - pad; k++)
            if ((v[k] = bg_kafka_scram__b64_val(s.p[i + k])) < 0)
                return -1;
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        if ((pad == 1 && (w & 0xff)) || (pad == 2 && (w & 0xffff)))
            return -1;
        if (n + 3 - (size_t)pad > cap)
            return -1;
        out[n++] = (uint8_t)(w >> 16);
        if (pad < 2)
            out[n++] = (uint8_t)(w >> 8);
        if (pad < 1)
            out[n++] = (uint8_t)w;
    }
    return (long)n;
}

/* ---- small helpers ---- */

bg_kafka_scram_mech_t bg_kafka_scram_mech_parse(const char *name)
{
    if (name && strcmp(name, "SCRAM-SHA-256") == 0)
        return BG_KAFKA_SCRAM_SHA256;
    if (name && strcmp(name, "SCRAM-SHA-512") == 0)
        return BG_KAFKA_SCRAM_SHA512;
    return 0;
}

const char *bg_kafka_scram_mech_name(bg_kafka_scram_mech_t mech)
{
    switch (mech) {
    case BG_KAFKA_SCRAM_SHA256:
        return "SCRAM-SHA-256";
    case BG_KAFKA_SCRAM_SHA512:
        return "SCRAM-SHA-512";
    }
    return NULL;
}

/* Records a failure: the object refuses every later call. */
static int bg_kafka_scram__fail(bg_kafka_scram_t *s, int rc, const char *reason, const char **why)
{
    s->state = BG_KAFKA_SCRAM__FAILED;
    if (s->password) {
        OPENSSL_cleanse(s->password, s->pwlen);
        free(s->password);
        s->password = NULL;
    }
    OPENSSL_cleanse(s->server_sig, sizeof s->server_sig);
    if (why)
        *why = reason;
    return rc;
}

/* RFC 5802 saslname: ',' -> "=2C", '=' -> "=3D". */
static char *bg_kafka_scram__saslname(const char *user)
{
    size_t n = strlen(user), k = 0;
    char *out = malloc(3 * n + 1);
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (user[i] == ',' || user[i] == '=') {
            memcpy(out + k, user[i] == ',' ? "=2C" : "=3D", 3);
            k += 3;
        } else {
            out[k++] = user[i];
        }
    }
    out[k] = '\0';
    return out;
}

/* RFC 5802 printable = %x21-2B / %x2D-7E (no ','). */
static int bg_kafka_scram__printable(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x21 || p[i] > 0x7e || p[i] == ',')
            return 0;
    return 1;
}

bg_kafka_scram_t *bg_kafka_scram_new(bg_kafka_scram_mech_t mech, const char *user,
                                     const char *password)
{
    const EVP_MD *md = mech == BG_KAFKA_SCRAM_SHA256   ? EVP_sha256()
                       : mech == BG_KAFKA_SCRAM_SHA512 ? EVP_sha512()
                                                       : NULL;
    if (!md || !user || !*user || !password || !*password)
        return NULL;
    bg_kafka_scram_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->mech = mech;
    s->md = md;
    s->hlen = (size_t)EVP_MD_get_size(md);
    s->pwlen = strlen(password);
    s->password = malloc(s->pwlen + 1);
    s->saslname = bg_kafka_scram__saslname(user);
    if (!s->password || !s->saslname) {
        bg_kafka_scram_free(s);
        return NULL;
    }
    memcpy(s->password, password, s->pwlen + 1);
    return s;
}

void bg_kafka_scram_free(bg_kafka_scram_t *s)
{
    if (!s)
        return;
    if (s->password)
        OPENSSL_cleanse(s->password, s->pwlen);
    free(s->password);
    free(s->saslname);
    free(s->first_bare);
    OPENSSL_cleanse(s, sizeof *s);
    free(s);
}

int bg_kafka_scram__set_client_nonce(bg_kafka_scram_t *s, const char *nonce)
{
    size_t n = nonce ? strlen(nonce) : 0;
    if (!s || s->state != BG_KAFKA_SCRAM__INIT || n == 0 || n > BG_KAFKA_SCRAM__NONCE_MAX ||
        !bg_kafka_scram__printable((const uint8_t *)nonce, n))
        return -1;
    memcpy(s->nonce, nonce, n + 1);
    return 0;
}

static int bg_kafka_scram__random_nonce(bg_kafka_scram_t *s)
{
    uint8_t raw[BG_KAFKA_SCRAM__RAND_BYTES];
    bg_wr_t wr;
    int ok = RAND_bytes(raw, sizeof raw) == 1;
    bg_wr_init(&wr, 64, BG_KAFKA_SCRAM__NONCE_MAX);
    if (ok)
        bg_kafka_scram__b64_put(&wr, raw, sizeof raw);
    ok = ok && !wr.failed;
    if (ok) {
        memcpy(s->nonce, wr.buf, wr.len);
        s->nonce[wr.len] = '\0';
    }
    bg_wr_free(&wr);
    return ok ? 0 : -1;
}

int bg_kafka_scram_client_first(bg_kafka_scram_t *s, bg_wr_t *out, const char **why)
{
    if (s->state != BG_KAFKA_SCRAM__INIT)
        return bg_kafka_scram__fail(s, BG_KAFKA_SCRAM_ERR_STATE, "client_first called twice", why);
    if (!s->nonce[0] && bg_kafka_scram__random_nonce(s) != 0)
        return bg_kafka_scram__fail(s, BG_KAFKA_SCRAM_ERR_INTERNAL, "RAND_bytes failed", why);
    size_t n = strlen(s->saslname) + strlen(s->nonce) + 6;
    s->first_bare = malloc(n + 1);
    if (!s->first_bare)
        return bg_kafka_scram__fail(s, BG_KAFKA_SCRAM_ERR_INTERNAL, "out of memory", why);
    s->first_bare_len = (size_t)snprintf(s->first_bare, n + 1, "n=%s,r=%s", s->saslname, s->nonce);
    bg_wr_bytes(out, "n,,", 3);
    bg_wr_bytes(out, s->first_bare, s->first_bare_len);
    if (out->failed)
        return bg_kafka_scram__fail(s, BG_KAFKA_SCRAM_ERR_INTERNAL, "output buffer failed", why);
    s->state = BG_KAFKA_SCRAM__FIRST_SENT;
    return BG_KAFKA_SCRAM_OK;
}

/* ---- message parsing ---- */

/* Reads "<c>=<value>" up to the next ',' or the end; the ',' is consumed.
 * Fails rd when the attribute letter differs. */
static bg_slice_t bg_kafka_scram__attr(bg_rd_t *rd, char c, const char *why)
{
    bg_slice_t v = {NULL, -1};
    if (rd->err)
        return v;
    if (bg_rd_left(rd) < 2 || rd->p[0] != (uint8_t)c || rd->p[1] != '=') {
        bg_rd_fail(rd, why);
        return v;
    }
    bg_rd_skip(rd, 2);
    const uint8_t *comma = memchr(rd->p, ',', bg_rd_left(rd));
    v = bg_rd_bytes(rd, (int32_t)(comma ? comma - rd->p : (long)bg_rd_left(rd)));
    if (comma)
        bg_rd_skip(rd, 1);
    return v;
}

/* What is left must be extensions: 1*(ALPHA "=" 1*value) separated by ','
 * (RFC 5802 attr-val; Kafka ignores them and so do we). rd stands just after
 * a consumed ',' (or at the end). */
static void bg_kafka_scram__extensions(bg_rd_t *rd, int after_comma)
{
    if (!bg_rd_left(rd)) {
        if (after_comma)
            bg_rd_fail(rd, "trailing comma");
        return;
    }
    while (!rd->err && bg_rd_left(rd)) {
        uint8_t c = rd->p[0];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
            bg_rd_fail(rd, "bad extension");
        bg_slice_t v = bg_kafka_scram__attr(rd, (char)c, "bad extension");
        for (int32_t i = 0; !rd->err && i < v.len; i++)
            if (v.p[i] == 0 || v.p[i] > 0x7f)
                bg_rd_fail(rd, "bad extension");
        if (!rd->err && (v.len <= 0 || (!bg_rd_left(rd) && rd->p[-1] == ',')))
            bg_rd_fail(rd, "bad extension");
    }
}

/* Decimal 1..BG_KAFKA_SCRAM_MAX_ITERATIONS-ish; returns 0 when not all digits
 * or longer than 9 digits (so it cannot overflow). */
static uint32_t bg_kafka_scram__count(bg_slice_t v)
{
    uint32_t n = 0;
    if (v.len <= 0 || v.len > 9)
        return 0;
    for (int32_t i = 0; i < v.len; i++) {
        if (v.p[i] < '0' || v.p[i] > '9')
            return 0;
        n = n * 10 + (uint32_t)(v.p[i] - '0');
    }
    return n;
}

/* Parses server-first into *f. Returns a status; *reason static. */
static int bg_kafka_scram__parse_first(const bg_kafka_scram_t *s, const uint8_t *p, size_t len,
                                       bg_kafka_scram__first_t *f, const char **reason)
{
    bg_rd_t rd;
    bg_rd_init(&rd, p, len);
    if (len >= 2 && p[0] == 'm' && p[1] == '=') {
        *reason = "server requires an unsupported mandatory extension (m=)";
        return BG_KAFKA_SCRAM_ERR_REFUSED;
    }
    f->nonce = bg_kafka_scram__attr(&rd, 'r', "server-first: missing r=");
    bg_slice_t salt = bg_kafka_scram__attr(&rd, 's', "server-first: missing s=");
    bg_slice_t iter = bg_kafka_scram__attr(&rd, 'i', "server-first: missing i=");
    if (!rd.err)
        bg_kafka_scram__extensions(&rd, rd.p > p && rd.p[-1] == ',');
    if (rd.err) {
        *reason = rd.why;
        return BG_KAFKA_SCRAM_ERR_MALFORMED;
    }
    long sl = bg_kafka_scram__b64_decode(salt, f->salt, sizeof f->salt);
    f->iterations = bg_kafka_scram__count(iter);
    *reason = sl <= 0                ? "server-first: bad salt (base64)"
              : f->iterations == 0   ? "server-first: bad iteration count"
              : f->nonce.len <= 0    ? "server-first: empty nonce"
              : !bg_kafka_scram__printable(f->nonce.p, (size_t)f->nonce.len) ? "server-first: bad nonce"
                                                                             : NULL;
    if (*reason)
        return BG_KAFKA_SCRAM_ERR_MALFORMED;
    f->salt_len = (size_t)sl;
    size_t cn = strlen(s->nonce);
    *reason = (size_t)f->nonce.len <= cn || memcmp(f->nonce.p, s->nonce, cn) != 0
                  ? "server nonce does not extend the client nonce"
              : f->iterations < BG_KAFKA_SCRAM_MIN_ITERATIONS ? "iteration count below 4096"
              : f->iterations > BG_KAFKA_SCRAM_MAX_ITERATIONS ? "iteration count above 16384"
                                                              : NULL;
    return *reason ? BG_KAFKA_SCRAM_ERR_REFUSED : BG_KAFKA_SCRAM_OK;
}

/* ---- process-wide cache of salted passwords ----
 *
 * PBKDF2 at 4096 iterations costs milliseconds of a worker thread for every
 * upstream connection; after a broker restart every session reconnects at
 * once. The salted password depends only on (hash, password, salt,
 * iterations), so it is memoised here, keyed by all four: the password is
 * part of the key (as a SHA-256 digest, compared in constant time) so a
 * reload that fixes a wrong password never reuses the old derivation while
 * the broker's salt stays the same. A handful of slots: one busgate has one
 * upstream credential, a reload briefly two. Entries are cleansed when
 * replaced and by bg_kafka_scram_cache_clear; nothing here is logged. */

#define BG_KAFKA_SCRAM__CACHE_SLOTS 4
#define BG_KAFKA_SCRAM__CACHE_SALT_MAX 128 /* Kafka's salts are ~26 bytes; longer: not cached */
#define BG_KAFKA_SCRAM__PWD_DIGEST 32

typedef struct bg_kafka_scram__slot_s {
    int used;
    bg_kafka_scram_mech_t mech;
    uint32_t iterations;
    size_t salt_len;
    uint8_t salt[BG_KAFKA_SCRAM__CACHE_SALT_MAX];
    uint8_t pwd[BG_KAFKA_SCRAM__PWD_DIGEST];
    uint8_t salted[BG_KAFKA_SCRAM__HMAX];
    uint64_t last_use;
} bg_kafka_scram__slot_t;

static pthread_mutex_t bg_kafka_scram__lock = PTHREAD_MUTEX_INITIALIZER;
static bg_kafka_scram__slot_t bg_kafka_scram__slots[BG_KAFKA_SCRAM__CACHE_SLOTS];
static uint64_t bg_kafka_scram__tick, bg_kafka_scram__hits, bg_kafka_scram__misses;

/* The lookup key of one derivation (salt borrowed from the parsed message). */
typedef struct bg_kafka_scram__ckey_s {
    bg_kafka_scram_mech_t mech;
    uint32_t iterations;
    const uint8_t *salt;
    size_t salt_len;
    uint8_t pwd[BG_KAFKA_SCRAM__PWD_DIGEST];
} bg_kafka_scram__ckey_t;

static int bg_kafka_scram__slot_match(const bg_kafka_scram__slot_t *e,
                                      const bg_kafka_scram__ckey_t *k)
{
    return e->used && e->mech == k->mech && e->iterations == k->iterations &&
           e->salt_len == k->salt_len && memcmp(e->salt, k->salt, k->salt_len) == 0 &&
           CRYPTO_memcmp(e->pwd, k->pwd, sizeof k->pwd) == 0;
}

/* Copies the cached salted password into out (hlen bytes). 1 on a hit. */
static int bg_kafka_scram__cache_get(const bg_kafka_scram__ckey_t *k, uint8_t *out, size_t hlen)
{
    int hit = 0;
    pthread_mutex_lock(&bg_kafka_scram__lock);
    for (int i = 0; i < BG_KAFKA_SCRAM__CACHE_SLOTS && !hit; i++) {
        bg_kafka_scram__slot_t *e = &bg_kafka_scram__slots[i];
        if (bg_kafka_scram__slot_match(e, k)) {
            memcpy(out, e->salted, hlen);
            e->last_use = ++bg_kafka_scram__tick;
            hit = 1;
        }
    }
    if (hit)
        bg_kafka_scram__hits++;
    else
        bg_kafka_scram__misses++;
    pthread_mutex_unlock(&bg_kafka_scram__lock);
    return hit;
}

/* Stores a derivation, replacing the least recently used slot (cleansed
 * first). A concurrent miss on the same key may store it twice: harmless,
 * the value is the same and the duplicate ages out. */
static void bg_kafka_scram__cache_put(const bg_kafka_scram__ckey_t *k, const uint8_t *salted,
                                      size_t hlen)
{
    if (k->salt_len > BG_KAFKA_SCRAM__CACHE_SALT_MAX)
        return;
    pthread_mutex_lock(&bg_kafka_scram__lock);
    bg_kafka_scram__slot_t *victim = NULL;
    for (int i = 0; i < BG_KAFKA_SCRAM__CACHE_SLOTS; i++) {
        bg_kafka_scram__slot_t *e = &bg_kafka_scram__slots[i];
        if (!e->used || bg_kafka_scram__slot_match(e, k)) {
            victim = e;
            break;
        }
        if (!victim || e->last_use < victim->last_use)
            victim = e;
    }
    OPENSSL_cleanse(victim, sizeof *victim);
    victim->used = 1;
    victim->mech = k->mech;
    victim->iterations = k->iterations;
    victim->salt_len = k->salt_len;
    memcpy(victim->salt, k->salt, k->salt_len);
    memcpy(victim->pwd, k->pwd, sizeof k->pwd);
    memcpy(victim->salted, salted, hlen);
    victim->last_use = ++bg_kafka_scram__tick;
    pthread_mutex_unlock(&bg_kafka_scram__lock);
}

void bg_kafka_scram_cache_clear(void)
{
    pthread_mutex_lock(&bg_kafka_scram__lock);
    OPENSSL_cleanse(bg_kafka_scram__slots, sizeof bg_kafka_scram__slots);
    bg_kafka_scram__hits = bg_kafka_scram__misses = 0;
    pthread_mutex_unlock(&bg_kafka_scram__lock);
}

void bg_kafka_scram__cache_stats(uint64_t *hits, uint64_t *misses)
{
    pthread_mutex_lock(&bg_kafka_scram__lock);
    *hits = bg_kafka_scram__hits;
    *misses = bg_kafka_scram__misses;
    pthread_mutex_unlock(&bg_kafka_scram__lock);
}

/* ---- the proof ---- */

/* Key/signature material of one exchange; cleansed by the caller. */
typedef struct bg_kafka_scram__keys_s {
    uint8_t salted[BG_KAFKA_SCRAM__HMAX], client_key[BG_KAFKA_SCRAM__HMAX];
    uint8_t stored_key[BG_KAFKA_SCRAM__HMAX], client_sig[BG_KAFKA_SCRAM__HMAX];
    uint8_t server_key[BG_KAFKA_SCRAM__HMAX], proof[BG_KAFKA_SCRAM__HMAX];
} bg_kafka_scram__keys_t;

static int bg_kafka_scram__hmac(const bg_kafka_scram_t *s, const uint8_t *key, const void *msg,
                                size_t n, uint8_t *out)
{
    unsigned int olen = 0;
    return HMAC(s->md, key, (int)s->hlen, msg, n, out, &olen) != NULL && olen == s->hlen ? 0 : -1;
}

/* SaltedPassword = PBKDF2(password, salt, i), from the cache when this
 * (mechanism, password, salt, i) was derived before. */
static int bg_kafka_scram__salted(const bg_kafka_scram_t *s, const bg_kafka_scram__first_t *f,
                                  uint8_t *out)
{
    bg_kafka_scram__ckey_t ck = {s->mech, f->iterations, f->salt, f->salt_len, {0}};
    unsigned int dl = 0;
    int rc = -1;
    if (EVP_Digest(s->password, s->pwlen, ck.pwd, &dl, EVP_sha256(), NULL) != 1 ||
        dl != sizeof ck.pwd)
        goto out;
    if (bg_kafka_scram__cache_get(&ck, out, s->hlen)) {
        rc = 0;
        goto out;
    }
    if (PKCS5_PBKDF2_HMAC(s->password, (int)s->pwlen, f->salt, (int)f->salt_len,
                          (int)f->iterations, s->md, (int)s->hlen, out) != 1)
        goto out;
    bg_kafka_scram__cache_put(&ck, out, s->hlen);
    rc = 0;
out:
    OPENSSL_cleanse(ck.pwd, sizeof ck.pwd);
    return rc;
}

/* RFC 5802 §3: fills k->proof and s->server_sig for AuthMessage am. */
static int bg_kafka_scram__compute(bg_kafka_scram_t *s, const bg_kafka_scram__first_t *f,
                                   const bg_wr_t *am, bg_kafka_scram__keys_t *k)
{
    unsigned int dl = 0;
    if (bg_kafka_scram__salted(s, f, k->salted) != 0)
        return -1;
    if (bg_kafka_scram__hmac(s, k->salted, "Client Key", 10, k->client_key) != 0 ||
        EVP_Digest(k->client_key, s->hlen, k->stored_key, &dl, s->md, NULL) != 1 ||
        dl != s->hlen || bg_kafka_scram__hmac(s, k->stored_key, am->buf, am->len, k->client_sig) != 0 ||
        bg_kafka_scram__hmac(s, k->salted, "Server Key", 10, k->server_key) != 0 ||
        bg_kafka_scram__hmac(s, k->server_key, am->buf, am->len, s->server_sig) != 0)
        return -1;
    for (size_t i = 0; i < s->hlen; i++)
        k->proof[i] = k->client_key[i] ^ k->client_sig[i];
    return 0;
}

int bg_kafka_scram_client_final(bg_kafka_scram_t *s, const uint8_t *p, size_t len, bg_wr_t *out,
                                const char **why)
{
    bg_kafka_scram__first_t f;
    bg_kafka_scram__keys_t k;
    bg_wr_t am;
    const char *reason = NULL;
    int rc;

    if (s->state != BG_KAFKA_SCRAM__FIRST_SENT)
        return bg_kafka_scram__fail(s, BG_KAFKA_SCRAM_ERR_STATE, "client_final out of order", why);
    if (len > BG_KAFKA_SCRAM_MAX_MSG)
        return bg_kafka_scram__fail(s, BG_KAFKA_SCRAM_ERR_MALFORMED, "server-first too large", why);
    rc = bg_kafka_scram__parse_first(s, p, len, &f, &reason);
    if (rc != BG_KAFKA_SCRAM_OK)
        return bg_kafka_scram__fail(s, rc, reason, why);

    /* AuthMessage = client-first-bare "," server-first "," client-final-without-proof */
    bg_wr_init(&am, 256, 3 * BG_KAFKA_SCRAM_MAX_MSG);
    bg_wr_bytes(&am, s->first_bare, s->first_bare_len);
    bg_wr_u8(&am, ',');
    bg_wr_bytes(&am, p, len);
    bg_wr_bytes(&am, ",c=biws,r=", 10);
    bg_wr_bytes(&am, f.nonce.p, (size_t)f.nonce.len);
    rc = am.failed ? -1 : bg_kafka_scram__compute(s, &f, &am, &k);
    if (rc == 0) {
        bg_wr_bytes(out, "c=biws,r=", 9);
        bg_wr_bytes(out, f.nonce.p, (size_t)f.nonce.len);
        bg_wr_bytes(out, ",p=", 3);
        bg_kafka_scram__b64_put(out, k.proof, s->hlen);
    }
    OPENSSL_cleanse(&k, sizeof k);
    OPENSSL_cleanse(f.salt, sizeof f.salt);
    bg_wr_free(&am);
    if (rc != 0 || out->failed)
        return bg_kafka_scram__fail(s, BG_KAFKA_SCRAM_ERR_INTERNAL, "proof computation failed", why);
    OPENSSL_cleanse(s->password, s->pwlen);
    free(s->password);
    s->password = NULL;
    s->state = BG_KAFKA_SCRAM__FINAL_SENT;
    return BG_KAFKA_SCRAM_OK;
}

/* Keeps a printable, bounded copy of the server's e= value. */
static void bg_kafka_scram__keep_error(bg_kafka_scram_t *s, bg_slice_t e)
{
    size_t n = e.len < 0 ? 0 : (size_t)e.len;
    if (n > sizeof s->server_error - 1)
        n = sizeof s->server_error - 1;
    for (size_t i = 0; i < n; i++)
        s->server_error[i] = (e.p[i] >= 0x20 && e.p[i] < 0x7f) ? (char)e.p[i] : '?';
    s->server_error[n] = '\0';
    s->has_server_error = 1;
}

int bg_kafka_scram_verify_server_final(bg_kafka_scram_t *s, const uint8_t *p, size_t len,
                                       const char **why)
{
    uint8_t sig[BG_KAFKA_SCRAM_MAX_MSG];
    bg_rd_t rd;

    if (s->state != BG_KAFKA_SCRAM__FINAL_SENT)
        return bg_kafka_scram__fail(s, BG_KAFKA_SCRAM_ERR_STATE, "server-final out of order", why);
    if (len > BG_KAFKA_SCRAM_MAX_MSG)
        return bg_kafka_scram__fail(s, BG_KAFKA_SCRAM_ERR_MALFORMED, "server-final too large", why);
    bg_rd_init(&rd, p, len);
    if (len >= 2 && p[0] == 'e' && p[1] == '=') {
        bg_kafka_scram__keep_error(s, bg_kafka_scram__attr(&rd, 'e', "server-final: bad e="));
        return bg_kafka_scram__fail(s, BG_KAFKA_SCRAM_ERR_SERVER, "server reported an error", why);
    }
    bg_slice_t v = bg_kafka_scram__attr(&rd, 'v', "server-final: missing v=");
    if (!rd.err)
        bg_kafka_scram__extensions(&rd, rd.p > p && rd.p[-1] == ',');
    if (rd.err)
        return bg_kafka_scram__fail(s, BG_KAFKA_SCRAM_ERR_MALFORMED, rd.why, why);
    long n = bg_kafka_scram__b64_decode(v, sig, sizeof sig);
    if (n < 0)
        return bg_kafka_scram__fail(s, BG_KAFKA_SCRAM_ERR_MALFORMED, "server-final: bad base64",
                                    why);
    /* The length is public (fixed by the mechanism); only the bytes need a
     * constant-time compare. */
    if ((size_t)n != s->hlen || CRYPTO_memcmp(sig, s->server_sig, s->hlen) != 0)
        return bg_kafka_scram__fail(s, BG_KAFKA_SCRAM_ERR_REFUSED, "bad server signature", why);
    OPENSSL_cleanse(s->server_sig, sizeof s->server_sig);
    s->state = BG_KAFKA_SCRAM__DONE;
    return BG_KAFKA_SCRAM_OK;
}

const char *bg_kafka_scram_server_error(const bg_kafka_scram_t *s)
{
    return s && s->has_server_error ? s->server_error : NULL;
}

int bg_kafka_scram_done(const bg_kafka_scram_t *s) { return s && s->state == BG_KAFKA_SCRAM__DONE; }
