/* The client's credentials from connection.start-ok (see amqp_method.h).
 * Reasons never quote the response: it holds the client's token. */
#include "adapters/amqp/amqp_method.h"

#include <string.h>

static int bg_amqp__auth_fail(const char **why, const char *reason)
{
    if (why)
        *why = reason;
    return BG_AMQP_ERR_AUTH;
}

static int bg_amqp__mech_is(const uint8_t *mech, size_t len, const char *name)
{
    return len == strlen(name) && memcmp(mech, name, len) == 0;
}

static int bg_amqp__check_creds(const bg_amqp_creds_t *c, const char **why)
{
    if (c->user.len > BG_AMQP_SASL_MAX_USER)
        return bg_amqp__auth_fail(why, "user name too long");
    if (c->password.len <= 0)
        return bg_amqp__auth_fail(why, "empty password (the token)");
    if (c->password.len > BG_AMQP_SASL_MAX_PASSWORD)
        return bg_amqp__auth_fail(why, "password (the token) too long");
    if (c->user.len > 0 && memchr(c->user.p, 0, (size_t)c->user.len))
        return bg_amqp__auth_fail(why, "NUL in user name");
    if (memchr(c->password.p, 0, (size_t)c->password.len))
        return bg_amqp__auth_fail(why, "NUL in password");
    return BG_AMQP_OK;
}

/* RFC 4616: [authzid] NUL authcid NUL passwd. The password runs to the end,
 * so a NUL inside it is refused by bg_amqp__check_creds. */
static int bg_amqp__plain(const uint8_t *p, size_t len, bg_amqp_creds_t *c, const char **why)
{
    const uint8_t *nul1 = len ? memchr(p, 0, len) : NULL;
    if (!nul1)
        return bg_amqp__auth_fail(why, "PLAIN response without NUL separators");
    const uint8_t *user = nul1 + 1;
    size_t rest = len - (size_t)(user - p);
    const uint8_t *nul2 = rest ? memchr(user, 0, rest) : NULL;
    if (!nul2)
        return bg_amqp__auth_fail(why, "PLAIN response without a password");
    const uint8_t *pass = nul2 + 1;
    c->user.p = user;
    c->user.len = (int32_t)(nul2 - user);
    c->password.p = pass;
    c->password.len = (int32_t)(len - (size_t)(pass - p));
    return bg_amqp__check_creds(c, why);
}

/* RabbitMQ's AMQPLAIN: a table body (no size prefix) whose LOGIN and
 * PASSWORD entries are longstrs; other entries are ignored. */
static int bg_amqp__amqplain(const uint8_t *p, size_t len, bg_amqp_creds_t *c, const char **why)
{
    if (bg_amqp_validate_table_body(p, len, NULL, NULL) != BG_AMQP_OK)
        return bg_amqp__auth_fail(why, "AMQPLAIN response is not a field table");
    uint8_t ukind = 0, pkind = 0;
    if (!bg_amqp_table_body_find(p, len, "LOGIN", &ukind, &c->user) ||
        !bg_amqp_table_body_find(p, len, "PASSWORD", &pkind, &c->password))
        return bg_amqp__auth_fail(why, "AMQPLAIN response without LOGIN and PASSWORD");
    if (ukind != 'S' || pkind != 'S')
        return bg_amqp__auth_fail(why, "AMQPLAIN LOGIN or PASSWORD is not a longstr");
    return bg_amqp__check_creds(c, why);
}

int bg_amqp_sasl_creds(const uint8_t *mech, size_t mech_len, const uint8_t *resp, size_t resp_len,
                       bg_amqp_creds_t *c, const char **why)
{
    c->user.p = c->password.p = NULL;
    c->user.len = c->password.len = 0;
    if (resp_len > INT32_MAX)
        return bg_amqp__auth_fail(why, "response too long");
    if (bg_amqp__mech_is(mech, mech_len, "PLAIN"))
        return bg_amqp__plain(resp, resp_len, c, why);
    if (bg_amqp__mech_is(mech, mech_len, "AMQPLAIN"))
        return bg_amqp__amqplain(resp, resp_len, c, why);
    return bg_amqp__auth_fail(why, "unsupported SASL mechanism");
}

int bg_amqp_start_ok_creds(const amqp_connection_start_ok_t *m, bg_amqp_creds_t *c,
                           const char **why)
{
    return bg_amqp_sasl_creds(m->mechanism.bytes, m->mechanism.len, m->response.bytes,
                              m->response.len, c, why);
}
