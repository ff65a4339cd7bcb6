/* SASL server-side parsers (OAUTHBEARER, PLAIN) for the Kafka adapter; see
 * kafka_sasl.h for the grammar and the failure sequence. All input goes
 * through a bg_rd_t; the whole message is bounded before any scanning. */
#include "adapters/kafka/kafka_sasl.h"

#include <string.h>
#include <strings.h> /* strncasecmp */

static const bg_slice_t bg_kafka_sasl__absent = {NULL, -1};

/* Peeks the next byte without consuming it; -1 at the end or after an error. */
static int bg_kafka_sasl__peek(const bg_rd_t *rd)
{
    if (rd->err || rd->p >= rd->end)
        return -1;
    return rd->p[0];
}

/* Consumes one byte that must equal c; otherwise fails rd with why. */
static int bg_kafka_sasl__expect(bg_rd_t *rd, uint8_t c, const char *why)
{
    if (bg_kafka_sasl__peek(rd) != c)
        return bg_rd_fail(rd, why);
    rd->p++;
    return 1;
}

/* Borrows the bytes before the next `stop` and consumes the stop byte too.
 * Fails rd with why when there is no stop byte. The caller bounded the input
 * to BG_KAFKA_SASL_MAX_MSG, so the length fits int32. */
static bg_slice_t bg_kafka_sasl__until(bg_rd_t *rd, uint8_t stop, const char *why)
{
    size_t left = bg_rd_left(rd);
    const uint8_t *q = (!rd->err && left) ? memchr(rd->p, stop, left) : NULL;
    if (!q) {
        bg_rd_fail(rd, why);
        return bg_kafka_sasl__absent;
    }
    bg_slice_t s = bg_rd_bytes(rd, (int32_t)(q - rd->p));
    bg_rd_skip(rd, 1);
    return s;
}

/* Common error exit: clears the outputs, sets *why, returns rc. */
static int bg_kafka_sasl__fail(int rc, const char *reason, const char **why, bg_slice_t *a,
                               bg_slice_t *b, bg_slice_t *c)
{
    bg_slice_t *outs[3] = {a, b, c};
    for (int i = 0; i < 3; i++)
        if (outs[i])
            *outs[i] = bg_kafka_sasl__absent;
    if (why)
        *why = reason;
    return rc;
}

/* RFC 5801 saslname: 1*(UTF8-char-safe / "=2C" / "=3D"); ',' cannot occur
 * here because the caller split at ','. Bytes >= 0x80 are passed through
 * unchecked: the authzid is only ever compared with the token's subject. */
static int bg_kafka_sasl__saslname_ok(bg_slice_t s)
{
    if (s.len <= 0 || s.len > BG_KAFKA_SASL_MAX_NAME)
        return 0;
    for (int32_t i = 0; i < s.len; i++) {
        if (s.p[i] == 0)
            return 0;
        if (s.p[i] != '=')
            continue;
        if (s.len - i < 3 || !((s.p[i + 1] == '2' && s.p[i + 2] == 'C') ||
                               (s.p[i + 1] == '3' && s.p[i + 2] == 'D')))
            return 0;
        i += 2;
    }
    return 1;
}

int bg_kafka_sasl_saslname_decode(bg_slice_t in, char *out, size_t cap)
{
    size_t n = 0;
    if (cap == 0 || in.len < 0 || !bg_kafka_sasl__saslname_ok(in))
        return -1;
    for (int32_t i = 0; i < in.len; i++) {
        char c = (char)in.p[i];
        if (c == '=') {
            c = in.p[i + 1] == '2' ? ',' : '=';
            i += 2;
        }
        if (n + 1 >= cap)
            return -1;
        out[n++] = c;
    }
    out[n] = '\0';
    return (int)n;
}

/* GS2 header "n,[a=authzid]," or "y,[a=authzid],". Returns a status. */
static int bg_kafka_sasl__gs2(bg_rd_t *rd, bg_slice_t *authzid, const char **reason)
{
    int flag = bg_kafka_sasl__peek(rd);
    if (flag == 'p') {
        *reason = "channel binding (p=) not supported";
        return BG_KAFKA_SASL_UNSUPPORTED;
    }
    if (flag != 'n' && flag != 'y') {
        *reason = "gs2 header must start with n, or y,";
        return BG_KAFKA_SASL_MALFORMED;
    }
    rd->p++;
    *authzid = bg_kafka_sasl__absent;
    if (!bg_kafka_sasl__expect(rd, ',', "gs2 header must start with n, or y,")) {
        *reason = rd->why;
        return BG_KAFKA_SASL_MALFORMED;
    }
    if (bg_kafka_sasl__peek(rd) == 'a') {
        rd->p++;
        bg_kafka_sasl__expect(rd, '=', "bad authzid in gs2 header");
        *authzid = bg_kafka_sasl__until(rd, ',', "unterminated gs2 header");
        if (!rd->err && !bg_kafka_sasl__saslname_ok(*authzid))
            bg_rd_fail(rd, "bad authzid in gs2 header");
    } else {
        bg_kafka_sasl__expect(rd, ',', "unterminated gs2 header");
    }
    *reason = rd->why;
    return rd->err ? BG_KAFKA_SASL_MALFORMED : BG_KAFKA_SASL_OK;
}

/* RFC 7628 value = *(VCHAR / SP / HTAB / CR / LF). */
static int bg_kafka_sasl__value_ok(bg_slice_t v)
{
    for (int32_t i = 0; i < v.len; i++) {
        uint8_t c = v.p[i];
        if (!((c >= 0x21 && c <= 0x7e) || c == ' ' || c == '\t' || c == '\r' || c == '\n'))
            return 0;
    }
    return 1;
}

static int bg_kafka_sasl__key_ok(bg_slice_t k)
{
    if (k.len <= 0)
        return 0;
    for (int32_t i = 0; i < k.len; i++) {
        uint8_t c = k.p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
            return 0;
    }
    return 1;
}

/* RFC 6750 b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=" */
static int bg_kafka_sasl__b64token_ok(bg_slice_t t)
{
    int32_t i = 0;
    for (; i < t.len; i++) {
        uint8_t c = t.p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/'))
            break;
    }
    if (i == 0)
        return 0;
    for (; i < t.len; i++)
        if (t.p[i] != '=')
            return 0;
    return 1;
}

/* auth value "Bearer" 1*SP b64token -> *token. Returns a status. */
static int bg_kafka_sasl__auth_value(bg_slice_t v, bg_slice_t *token, const char **reason)
{
    bg_rd_t rd;
    bg_rd_init(&rd, v.p, (size_t)v.len);
    bg_slice_t scheme = bg_kafka_sasl__until(&rd, ' ', "auth value must be: Bearer <token>");
    if (rd.err) {
        *reason = rd.why;
        return BG_KAFKA_SASL_MALFORMED;
    }
    if (scheme.len != 6 || strncasecmp((const char *)scheme.p, "Bearer", 6) != 0) {
        *reason = "auth scheme is not Bearer";
        return BG_KAFKA_SASL_UNSUPPORTED;
    }
    while (bg_kafka_sasl__peek(&rd) == ' ')
        rd.p++;
    size_t n = bg_rd_left(&rd);
    if (n > BG_KAFKA_SASL_MAX_TOKEN) {
        *reason = "token too large";
        return BG_KAFKA_SASL_TOO_LARGE;
    }
    *token = bg_rd_bytes(&rd, (int32_t)n);
    if (!bg_kafka_sasl__b64token_ok(*token)) {
        *reason = "token is empty or not a b64token";
        return BG_KAFKA_SASL_MALFORMED;
    }
    return BG_KAFKA_SASL_OK;
}

/* The %x01-separated key=value pairs up to and including the final %x01,
 * which must end the message. Finds the single auth pair. Returns a status. */
static int bg_kafka_sasl__kvpairs(bg_rd_t *rd, bg_slice_t *auth, const char **reason)
{
    *auth = bg_kafka_sasl__absent;
    while (!rd->err && bg_kafka_sasl__peek(rd) != 0x01) {
        if (bg_kafka_sasl__peek(rd) < 0) {
            bg_rd_fail(rd, "missing \\x01\\x01 terminator");
            break;
        }
        bg_slice_t key = bg_kafka_sasl__until(rd, '=', "key=value pair without =");
        bg_slice_t val = bg_kafka_sasl__until(rd, 0x01, "missing \\x01\\x01 terminator");
        if (rd->err)
            break;
        if (!bg_kafka_sasl__key_ok(key) || !bg_kafka_sasl__value_ok(val)) {
            bg_rd_fail(rd, "bad key=value pair");
            break;
        }
        if (key.len == 4 && memcmp(key.p, "auth", 4) == 0) {
            if (auth->len >= 0) {
                bg_rd_fail(rd, "duplicate auth key");
                break;
            }
            *auth = val;
        }
    }
    if (!rd->err)
        bg_kafka_sasl__expect(rd, 0x01, "missing \\x01\\x01 terminator");
    if (!rd->err && bg_rd_left(rd) != 0)
        bg_rd_fail(rd, "bytes after the \\x01\\x01 terminator");
    if (!rd->err && auth->len < 0)
        bg_rd_fail(rd, "no auth key");
    *reason = rd->why;
    return rd->err ? BG_KAFKA_SASL_MALFORMED : BG_KAFKA_SASL_OK;
}

int bg_kafka_sasl_parse_oauthbearer(const uint8_t *p, size_t len, bg_slice_t *token,
                                    bg_slice_t *authzid, const char **why)
{
    const char *reason = NULL;
    bg_slice_t az, auth, tok;
    bg_rd_t rd;
    int rc;

    if (len > BG_KAFKA_SASL_MAX_MSG)
        return bg_kafka_sasl__fail(BG_KAFKA_SASL_TOO_LARGE, "message too large", why, token,
                                   authzid, NULL);
    bg_rd_init(&rd, p, len);
    rc = bg_kafka_sasl__gs2(&rd, &az, &reason);
    if (rc == BG_KAFKA_SASL_OK && !bg_kafka_sasl__expect(&rd, 0x01, "no \\x01 after gs2 header")) {
        rc = BG_KAFKA_SASL_MALFORMED;
        reason = rd.why;
    }
    if (rc == BG_KAFKA_SASL_OK)
        rc = bg_kafka_sasl__kvpairs(&rd, &auth, &reason);
    if (rc == BG_KAFKA_SASL_OK)
        rc = bg_kafka_sasl__auth_value(auth, &tok, &reason);
    if (rc != BG_KAFKA_SASL_OK)
        return bg_kafka_sasl__fail(rc, reason, why, token, authzid, NULL);
    *token = tok;
    *authzid = az;
    return BG_KAFKA_SASL_OK;
}

int bg_kafka_sasl_oauthbearer_error(char *buf, size_t cap)
{
    static const char msg[] = "{\"status\":\"invalid_token\"}";
    if (cap < sizeof msg) {
        if (cap > 0)
            buf[0] = '\0';
        return -1;
    }
    memcpy(buf, msg, sizeof msg);
    return (int)(sizeof msg - 1);
}

int bg_kafka_sasl_parse_plain(const uint8_t *p, size_t len, bg_slice_t *authzid,
                              bg_slice_t *authcid, bg_slice_t *passwd, const char **why)
{
    bg_rd_t rd;
    bg_slice_t az, ac, pw;

    if (len > BG_KAFKA_SASL_MAX_MSG)
        return bg_kafka_sasl__fail(BG_KAFKA_SASL_TOO_LARGE, "message too large", why, authzid,
                                   authcid, passwd);
    bg_rd_init(&rd, p, len);
    az = bg_kafka_sasl__until(&rd, 0, "PLAIN message needs two NUL separators");
    ac = bg_kafka_sasl__until(&rd, 0, "PLAIN message needs two NUL separators");
    if (rd.err)
        return bg_kafka_sasl__fail(BG_KAFKA_SASL_MALFORMED, rd.why, why, authzid, authcid, passwd);
    pw = bg_rd_bytes(&rd, (int32_t)bg_rd_left(&rd));
    if (memchr(pw.p, 0, (size_t)pw.len) != NULL)
        return bg_kafka_sasl__fail(BG_KAFKA_SASL_MALFORMED, "NUL inside the PLAIN password", why,
                                   authzid, authcid, passwd);
    if (ac.len == 0 || pw.len == 0)
        return bg_kafka_sasl__fail(BG_KAFKA_SASL_MALFORMED, "empty PLAIN username or password",
                                   why, authzid, authcid, passwd);
    if (az.len > BG_KAFKA_SASL_MAX_NAME || ac.len > BG_KAFKA_SASL_MAX_NAME ||
        pw.len > BG_KAFKA_SASL_MAX_TOKEN)
        return bg_kafka_sasl__fail(BG_KAFKA_SASL_TOO_LARGE, "PLAIN field too large", why,
                                   authzid, authcid, passwd);
    *authzid = az.len > 0 ? az : bg_kafka_sasl__absent;
    *authcid = ac;
    *passwd = pw;
    return BG_KAFKA_SASL_OK;
}

int bg_kafka_sasl_plain_client(bg_wr_t *out, const char *user, const char *password)
{
    size_t ul = user ? strlen(user) : 0, pl = password ? strlen(password) : 0;
    if (ul == 0 || pl == 0)
        return -1;
    bg_wr_u8(out, 0);
    bg_wr_bytes(out, user, ul);
    bg_wr_u8(out, 0);
    bg_wr_bytes(out, password, pl);
    return out->failed ? -1 : 0;
}
