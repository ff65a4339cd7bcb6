/* DescribeTopicPartitions cursors that name a topic the principal may not
 * describe.
 *
 * When a client pages through all topics, the broker computes each page and
 * its NextCursor over every topic busgate's credential sees; busgate hides
 * the topics the principal may not describe, but the cursor can still name
 * one of them (the topic where the next page starts). Passing that name on
 * would leak it; dropping or moving the cursor would skip or repeat topics.
 * So busgate seals the name: "~busgate:" + hex(nonce || AES-256-GCM(name) ||
 * tag), with a key drawn at start-up. '~' and ':' cannot occur in a Kafka
 * topic name, so a sealed cursor is never mistaken for a topic. A client
 * hands the cursor back unchanged in its next request, and busgate opens it
 * before forwarding. A sealed cursor from another busgate process (or a
 * forged one) does not open: the request is refused. */
#include "adapters/kafka/kafka_authz-internal.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <string.h>

#define BG_KAFKA_CURSOR_PREFIX "~busgate:"
#define BG_KAFKA_CURSOR_PREFIX_LEN (sizeof BG_KAFKA_CURSOR_PREFIX - 1)
#define BG_KAFKA_CURSOR_NONCE 12
#define BG_KAFKA_CURSOR_TAG 16
#define BG_KAFKA_CURSOR_MAX_NAME 512 /* Kafka topic names: at most 249 */

static uint8_t bg_kafka__cursor_key[32];
static int bg_kafka__cursor_key_ok;
static pthread_once_t bg_kafka__cursor_once = PTHREAD_ONCE_INIT;

static void bg_kafka__cursor_init(void)
{
    bg_kafka__cursor_key_ok = RAND_bytes(bg_kafka__cursor_key, sizeof bg_kafka__cursor_key) == 1;
}

/* AES-256-GCM over in[0..n) into out; enc 1 seals (tag written), 0 opens
 * (tag checked). Returns 0 or -1. */
static int bg_kafka__cursor_gcm(int enc, const uint8_t *nonce, const uint8_t *in, int n,
                                uint8_t *out, uint8_t *tag)
{
    pthread_once(&bg_kafka__cursor_once, bg_kafka__cursor_init);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int len = 0, fin = 0,
        ok = c && bg_kafka__cursor_key_ok &&
             EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) == 1 &&
             EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, BG_KAFKA_CURSOR_NONCE, NULL) == 1 &&
             EVP_CipherInit_ex(c, NULL, NULL, bg_kafka__cursor_key, nonce, enc) == 1 &&
             EVP_CipherUpdate(c, out, &len, in, n) == 1 &&
             (enc || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, BG_KAFKA_CURSOR_TAG, tag) == 1) &&
             EVP_CipherFinal_ex(c, out + len, &fin) == 1 &&
             (!enc || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, BG_KAFKA_CURSOR_TAG, tag) == 1);
    EVP_CIPHER_CTX_free(c);
    return ok && len + fin == n ? 0 : -1;
}

int bg_kafka__cursor_seal(bg_slice_t name, bg_kafka_arena_t *a, bg_slice_t *out)
{
    static const char hex[] = "0123456789abcdef";
    if (name.len <= 0 || name.len > BG_KAFKA_CURSOR_MAX_NAME)
        return -1;
    size_t raw_len = BG_KAFKA_CURSOR_NONCE + (size_t)name.len + BG_KAFKA_CURSOR_TAG;
    uint8_t raw[BG_KAFKA_CURSOR_NONCE + BG_KAFKA_CURSOR_MAX_NAME + BG_KAFKA_CURSOR_TAG];
    char *s = bg_kafka_arena_alloc(a, BG_KAFKA_CURSOR_PREFIX_LEN + 2 * raw_len);
    if (!s || RAND_bytes(raw, BG_KAFKA_CURSOR_NONCE) != 1 ||
        bg_kafka__cursor_gcm(1, raw, name.p, name.len, raw + BG_KAFKA_CURSOR_NONCE,
                             raw + BG_KAFKA_CURSOR_NONCE + name.len) != 0)
        return -1;
    memcpy(s, BG_KAFKA_CURSOR_PREFIX, BG_KAFKA_CURSOR_PREFIX_LEN);
    for (size_t i = 0; i < raw_len; i++) {
        s[BG_KAFKA_CURSOR_PREFIX_LEN + 2 * i] = hex[raw[i] >> 4];
        s[BG_KAFKA_CURSOR_PREFIX_LEN + 2 * i + 1] = hex[raw[i] & 15];
    }
    *out = (bg_slice_t){(const uint8_t *)s, (int32_t)(BG_KAFKA_CURSOR_PREFIX_LEN + 2 * raw_len)};
    return 0;
}

static int bg_kafka__cursor_nibble(uint8_t c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int bg_kafka__cursor_open(bg_slice_t s, bg_kafka_arena_t *a, bg_slice_t *name)
{
    if (s.len < (int32_t)BG_KAFKA_CURSOR_PREFIX_LEN ||
        memcmp(s.p, BG_KAFKA_CURSOR_PREFIX, BG_KAFKA_CURSOR_PREFIX_LEN) != 0)
        return 0;
    size_t hex_len = (size_t)s.len - BG_KAFKA_CURSOR_PREFIX_LEN, raw_len = hex_len / 2;
    uint8_t raw[BG_KAFKA_CURSOR_NONCE + BG_KAFKA_CURSOR_MAX_NAME + BG_KAFKA_CURSOR_TAG];
    if (hex_len % 2 || raw_len <= BG_KAFKA_CURSOR_NONCE + BG_KAFKA_CURSOR_TAG ||
        raw_len > sizeof raw)
        return -1;
    for (size_t i = 0; i < raw_len; i++) {
        int hi = bg_kafka__cursor_nibble(s.p[BG_KAFKA_CURSOR_PREFIX_LEN + 2 * i]);
        int lo = bg_kafka__cursor_nibble(s.p[BG_KAFKA_CURSOR_PREFIX_LEN + 2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        raw[i] = (uint8_t)(hi << 4 | lo);
    }
    int n = (int)(raw_len - BG_KAFKA_CURSOR_NONCE - BG_KAFKA_CURSOR_TAG);
    uint8_t *out = bg_kafka_arena_alloc(a, (size_t)n);
    if (!out || bg_kafka__cursor_gcm(0, raw, raw + BG_KAFKA_CURSOR_NONCE, n, out,
                                     raw + BG_KAFKA_CURSOR_NONCE + n) != 0)
        return -1;
    *name = (bg_slice_t){out, n};
    return 1;
}
