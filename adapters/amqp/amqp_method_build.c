/* Builders for the methods busgate itself sends (see amqp_method.h). Each
 * fills a rabbitmq-c struct and goes through bg_amqp_method_encode, so what
 * busgate sends is exactly what rabbitmq-c (and tests) decode back. */
#include "adapters/amqp/amqp_method.h"

#include <stdlib.h>
#include <string.h>

#define BG_AMQP__NCAPS 9
#define BG_AMQP__SHORTSTR_MAX 255

/* Bit i of the BG_AMQP_CAP_* mask is named bg_amqp__cap_names[i]. */
static const char *const bg_amqp__cap_names[BG_AMQP__NCAPS] = {
    "publisher_confirms",
    "exchange_exchange_bindings",
    "basic.nack",
    "consumer_cancel_notify",
    "connection.blocked",
    "consumer_priorities",
    "authentication_failure_close",
    "per_consumer_qos",
    "direct_reply_to",
};

static amqp_bytes_t bg_amqp__cstr(const char *s)
{
    amqp_bytes_t b;
    b.len = strlen(s);
    b.bytes = (void *)(uintptr_t)s;
    return b;
}

static int bg_amqp__key_is(amqp_bytes_t key, const char *s)
{
    size_t n = strlen(s);
    return key.len == n && (n == 0 || memcmp(key.bytes, s, n) == 0);
}

/* Fills caps_entries (BG_AMQP__NCAPS of them) with the set capabilities as
 * booleans; returns the table over them. */
static amqp_table_t bg_amqp__caps_table(uint32_t caps, amqp_table_entry_t *caps_entries)
{
    amqp_table_t t = {0, caps_entries};
    for (int i = 0; i < BG_AMQP__NCAPS; i++) {
        if (!(caps & (1u << i)))
            continue;
        amqp_table_entry_t *e = &caps_entries[t.num_entries++];
        e->key = bg_amqp__cstr(bg_amqp__cap_names[i]);
        e->value.kind = AMQP_FIELD_KIND_BOOLEAN;
        e->value.value.boolean = 1;
    }
    return t;
}

static void bg_amqp__entry_str(amqp_table_entry_t *e, const char *key, const char *val)
{
    e->key = bg_amqp__cstr(key);
    e->value.kind = AMQP_FIELD_KIND_UTF8;
    e->value.value.bytes = bg_amqp__cstr(val);
}

static void bg_amqp__entry_table(amqp_table_entry_t *e, const char *key, amqp_table_t t)
{
    e->key = bg_amqp__cstr(key);
    e->value.kind = AMQP_FIELD_KIND_TABLE;
    e->value.value.table = t;
}

uint32_t bg_amqp_caps_from_properties(const amqp_table_t *props)
{
    const amqp_table_t *caps = NULL;
    for (int i = 0; props && i < props->num_entries; i++) {
        const amqp_table_entry_t *e = &props->entries[i];
        if (e->value.kind == AMQP_FIELD_KIND_TABLE && bg_amqp__key_is(e->key, "capabilities"))
            caps = &e->value.value.table;
    }
    uint32_t mask = 0;
    for (int i = 0; caps && i < caps->num_entries; i++) {
        const amqp_table_entry_t *e = &caps->entries[i];
        if (e->value.kind != AMQP_FIELD_KIND_BOOLEAN || !e->value.value.boolean)
            continue;
        for (int c = 0; c < BG_AMQP__NCAPS; c++) {
            if (bg_amqp__key_is(e->key, bg_amqp__cap_names[c]))
                mask |= 1u << c;
        }
    }
    return mask;
}

int bg_amqp_start_offers(const amqp_bytes_t *mechanisms, const char *mech)
{
    const char *p = mechanisms->bytes, *end = p ? p + mechanisms->len : p;
    size_t ml = strlen(mech);
    while (p && p < end) {
        const char *sp = memchr(p, ' ', (size_t)(end - p)), *w = sp ? sp : end;
        if ((size_t)(w - p) == ml && memcmp(p, mech, ml) == 0)
            return 1;
        p = w + 1;
    }
    return 0;
}

int bg_amqp_write_connection_start(bg_wr_t *wr, uint32_t caps, const char *product,
                                   const char *version, const char *cluster_name)
{
    amqp_table_entry_t cap_entries[BG_AMQP__NCAPS];
    amqp_table_entry_t props[5];
    int n = 0;
    bg_amqp__entry_table(&props[n++], "capabilities", bg_amqp__caps_table(caps, cap_entries));
    if (cluster_name)
        bg_amqp__entry_str(&props[n++], "cluster_name", cluster_name);
    bg_amqp__entry_str(&props[n++], "platform", "busgate");
    bg_amqp__entry_str(&props[n++], "product", product ? product : "busgate");
    bg_amqp__entry_str(&props[n++], "version", version ? version : "0");
    amqp_connection_start_t m = {
        .version_major = 0,
        .version_minor = 9,
        .server_properties = {n, props},
        .mechanisms = bg_amqp__cstr("PLAIN AMQPLAIN"),
        .locales = bg_amqp__cstr("en_US"),
    };
    return bg_amqp_method_encode(wr, 0, AMQP_CONNECTION_START_METHOD, &m, NULL);
}

int bg_amqp_write_connection_tune(bg_wr_t *wr, uint16_t channel_max, uint32_t frame_max,
                                  uint16_t heartbeat)
{
    amqp_connection_tune_t m = {channel_max, frame_max, heartbeat};
    return bg_amqp_method_encode(wr, 0, AMQP_CONNECTION_TUNE_METHOD, &m, NULL);
}

int bg_amqp_write_connection_tune_ok(bg_wr_t *wr, uint16_t channel_max, uint32_t frame_max,
                                     uint16_t heartbeat)
{
    amqp_connection_tune_ok_t m = {channel_max, frame_max, heartbeat};
    return bg_amqp_method_encode(wr, 0, AMQP_CONNECTION_TUNE_OK_METHOD, &m, NULL);
}

int bg_amqp_write_connection_open(bg_wr_t *wr, const char *vhost)
{
    amqp_connection_open_t m = {bg_amqp__cstr(vhost), bg_amqp__cstr(""), 0};
    return bg_amqp_method_encode(wr, 0, AMQP_CONNECTION_OPEN_METHOD, &m, NULL);
}

int bg_amqp_write_connection_open_ok(bg_wr_t *wr)
{
    amqp_connection_open_ok_t m = {bg_amqp__cstr("")};
    return bg_amqp_method_encode(wr, 0, AMQP_CONNECTION_OPEN_OK_METHOD, &m, NULL);
}

/* A reply text as a shortstr: at most 255 bytes, cut before a UTF-8
 * continuation byte so the peer never sees half a character. */
static amqp_bytes_t bg_amqp__reply_text(const char *text)
{
    amqp_bytes_t b = bg_amqp__cstr(text ? text : "");
    if (b.len > BG_AMQP__SHORTSTR_MAX) {
        const uint8_t *s = b.bytes;
        size_t cut = BG_AMQP__SHORTSTR_MAX;
        while (cut > 0 && (s[cut] & 0xC0) == 0x80)
            cut--;
        b.len = cut;
    }
    return b;
}

int bg_amqp_write_connection_close(bg_wr_t *wr, uint16_t code, const char *text,
                                   uint16_t class_id, uint16_t method_id)
{
    amqp_connection_close_t m = {code, bg_amqp__reply_text(text), class_id, method_id};
    return bg_amqp_method_encode(wr, 0, AMQP_CONNECTION_CLOSE_METHOD, &m, NULL);
}

int bg_amqp_write_channel_close(bg_wr_t *wr, uint16_t channel, uint16_t code, const char *text,
                                uint16_t class_id, uint16_t method_id)
{
    amqp_channel_close_t m = {code, bg_amqp__reply_text(text), class_id, method_id};
    return bg_amqp_method_encode(wr, channel, AMQP_CHANNEL_CLOSE_METHOD, &m, NULL);
}

int bg_amqp_write_connection_close_ok(bg_wr_t *wr)
{
    return bg_amqp_method_encode(wr, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, NULL, NULL);
}

int bg_amqp_write_channel_close_ok(bg_wr_t *wr, uint16_t channel)
{
    return bg_amqp_method_encode(wr, channel, AMQP_CHANNEL_CLOSE_OK_METHOD, NULL, NULL);
}

int bg_amqp_write_update_secret_ok(bg_wr_t *wr)
{
    return bg_amqp_method_encode(wr, 0, BG_AMQP_CONNECTION_UPDATE_SECRET_OK, NULL, NULL);
}

int bg_amqp_write_connection_start_ok(bg_wr_t *wr, uint32_t caps, const char *user,
                                      const char *password)
{
    size_t ulen = strlen(user), plen = strlen(password);
    size_t rlen = ulen + plen + 2;
    uint8_t *resp = malloc(rlen);
    if (!resp)
        return BG_AMQP_ERR_ENCODE;
    resp[0] = 0;
    memcpy(resp + 1, user, ulen);
    resp[1 + ulen] = 0;
    memcpy(resp + 2 + ulen, password, plen);

    amqp_table_entry_t cap_entries[BG_AMQP__NCAPS];
    amqp_table_entry_t props[2];
    bg_amqp__entry_str(&props[0], "product", "busgate");
    /* authentication_failure_close whatever the client said: this login is
     * busgate's own, and a refusal should come as connection.close 403
     * (which busgate logs) rather than a dropped socket. */
    bg_amqp__entry_table(&props[1], "capabilities",
                         bg_amqp__caps_table(caps | BG_AMQP_CAP_AUTHENTICATION_FAILURE_CLOSE,
                                             cap_entries));
    amqp_connection_start_ok_t m = {
        .client_properties = {2, props},
        .mechanism = bg_amqp__cstr("PLAIN"),
        .response = {rlen, resp},
        .locale = bg_amqp__cstr("en_US"),
    };
    int rc = bg_amqp_method_encode(wr, 0, AMQP_CONNECTION_START_OK_METHOD, &m, NULL);
    explicit_bzero(resp, rlen); /* the upstream password lives in wr only */
    free(resp);
    return rc;
}
