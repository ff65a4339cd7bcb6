/* amqp_authz.c: which resources and verbs each AMQP method needs (design.md's
 * verb table, RabbitMQ's permission table), decisions and denial texts.
 * Tables: method + arguments -> expected checks; principal + method ->
 * expected decision. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "adapters/amqp/amqp_session-internal.h"
#include "policy_test_util.h"

/* ---- classify ---- */

typedef struct exp_check_s {
    bg_res_type_t type;
    const char *name;
    bg_verb_t verb;
} exp_check_t;

typedef struct classify_case_s {
    const char *what;
    uint32_t id;
    const char *queue, *exchange, *source, *destination;
    int passive;
    const char *last_queue; /* the channel's last declared queue */
    size_t n;
    exp_check_t exp[BG_AMQP_MAX_CHECKS];
} classify_case_t;

#define Q BG_RES_AMQP_QUEUE
#define X BG_RES_AMQP_EXCHANGE

static const classify_case_t classify_cases[] = {
    {"publish", AMQP_BASIC_PUBLISH_METHOD, "", "orders", 0, 0, 0, "", 1,
     {{X, "orders", BG_VERB_WRITE}}},
    {"publish to the default exchange", AMQP_BASIC_PUBLISH_METHOD, "", "", 0, 0, 0, "", 1,
     {{X, "amq.default", BG_VERB_WRITE}}},
    {"consume", AMQP_BASIC_CONSUME_METHOD, "q1", 0, 0, 0, 0, "", 1, {{Q, "q1", BG_VERB_READ}}},
    {"consume from the last declared queue", AMQP_BASIC_CONSUME_METHOD, "", 0, 0, 0, 0,
     "amq.gen-abc", 1, {{Q, "amq.gen-abc", BG_VERB_READ}}},
    {"get", AMQP_BASIC_GET_METHOD, "q2", 0, 0, 0, 0, "", 1, {{Q, "q2", BG_VERB_READ}}},
    {"get from the last declared queue", AMQP_BASIC_GET_METHOD, "", 0, 0, 0, 0, "last", 1,
     {{Q, "last", BG_VERB_READ}}},
    {"queue.declare", AMQP_QUEUE_DECLARE_METHOD, "q3", 0, 0, 0, 0, "", 1,
     {{Q, "q3", BG_VERB_CREATE}}},
    {"passive queue.declare", AMQP_QUEUE_DECLARE_METHOD, "q3", 0, 0, 0, 1, "", 1,
     {{Q, "q3", BG_VERB_DESCRIBE}}},
    {"server-named queue.declare", AMQP_QUEUE_DECLARE_METHOD, "", 0, 0, 0, 0, "old", 1,
     {{Q, "amq.gen-", BG_VERB_CREATE}}},
    {"passive queue.declare of \"\" (literal, never the last queue)",
     AMQP_QUEUE_DECLARE_METHOD, "", 0, 0, 0, 1, "old", 1, {{Q, "", BG_VERB_DESCRIBE}}},
    {"exchange.declare", AMQP_EXCHANGE_DECLARE_METHOD, 0, "x1", 0, 0, 0, "", 1,
     {{X, "x1", BG_VERB_CREATE}}},
    {"passive exchange.declare", AMQP_EXCHANGE_DECLARE_METHOD, 0, "x1", 0, 0, 1, "", 1,
     {{X, "x1", BG_VERB_DESCRIBE}}},
    {"exchange.declare of \"\"", AMQP_EXCHANGE_DECLARE_METHOD, 0, "", 0, 0, 0, "", 1,
     {{X, "amq.default", BG_VERB_CREATE}}},
    {"queue.bind", AMQP_QUEUE_BIND_METHOD, "q4", "x4", 0, 0, 0, "", 2,
     {{Q, "q4", BG_VERB_WRITE}, {X, "x4", BG_VERB_READ}}},
    {"queue.bind of the last queue", AMQP_QUEUE_BIND_METHOD, "", "x4", 0, 0, 0, "lq", 2,
     {{Q, "lq", BG_VERB_WRITE}, {X, "x4", BG_VERB_READ}}},
    {"queue.unbind", AMQP_QUEUE_UNBIND_METHOD, "q5", "x5", 0, 0, 0, "", 2,
     {{Q, "q5", BG_VERB_WRITE}, {X, "x5", BG_VERB_READ}}},
    {"exchange.bind", AMQP_EXCHANGE_BIND_METHOD, 0, 0, "src", "dst", 0, "", 2,
     {{X, "dst", BG_VERB_WRITE}, {X, "src", BG_VERB_READ}}},
    {"exchange.unbind", AMQP_EXCHANGE_UNBIND_METHOD, 0, 0, "src", "dst", 0, "", 2,
     {{X, "dst", BG_VERB_WRITE}, {X, "src", BG_VERB_READ}}},
    {"exchange.bind from the default exchange", AMQP_EXCHANGE_BIND_METHOD, 0, 0, "", "dst", 0,
     "", 2, {{X, "dst", BG_VERB_WRITE}, {X, "amq.default", BG_VERB_READ}}},
    {"queue.purge", AMQP_QUEUE_PURGE_METHOD, "q6", 0, 0, 0, 0, "", 1,
     {{Q, "q6", BG_VERB_DELETE}}},
    {"queue.delete", AMQP_QUEUE_DELETE_METHOD, "q7", 0, 0, 0, 0, "", 1,
     {{Q, "q7", BG_VERB_DELETE}}},
    {"queue.delete of the last queue", AMQP_QUEUE_DELETE_METHOD, "", 0, 0, 0, 0, "lq7", 1,
     {{Q, "lq7", BG_VERB_DELETE}}},
    {"exchange.delete", AMQP_EXCHANGE_DELETE_METHOD, 0, "x8", 0, 0, 0, "", 1,
     {{X, "x8", BG_VERB_DELETE}}},
    /* Methods that name no resource. */
    {"channel.open", AMQP_CHANNEL_OPEN_METHOD, 0, 0, 0, 0, 0, "", 0, {{0}}},
    {"channel.close", AMQP_CHANNEL_CLOSE_METHOD, 0, 0, 0, 0, 0, "", 0, {{0}}},
    {"basic.qos", AMQP_BASIC_QOS_METHOD, 0, 0, 0, 0, 0, "", 0, {{0}}},
    {"basic.ack", AMQP_BASIC_ACK_METHOD, 0, 0, 0, 0, 0, "", 0, {{0}}},
    {"basic.cancel", AMQP_BASIC_CANCEL_METHOD, 0, 0, 0, 0, 0, "", 0, {{0}}},
    {"confirm.select", AMQP_CONFIRM_SELECT_METHOD, 0, 0, 0, 0, 0, "", 0, {{0}}},
    {"tx.select", AMQP_TX_SELECT_METHOD, 0, 0, 0, 0, 0, "", 0, {{0}}},
};

static amqp_bytes_t S(const char *s)
{
    amqp_bytes_t b = {s ? strlen(s) : 0, (void *)(s ? s : "")};
    return b;
}

/* The rabbitmq-c struct for case c (all structs share one union). */
typedef union {
    amqp_basic_publish_t publish;
    amqp_basic_consume_t consume;
    amqp_basic_get_t get;
    amqp_queue_declare_t qdecl;
    amqp_exchange_declare_t xdecl;
    amqp_queue_bind_t qbind;
    amqp_queue_unbind_t qunbind;
    amqp_exchange_bind_t xbind;
    amqp_exchange_unbind_t xunbind;
    amqp_queue_purge_t purge;
    amqp_queue_delete_t qdel;
    amqp_exchange_delete_t xdel;
    uint8_t other[256];
} args_t;

static void build(const classify_case_t *c, args_t *a, bg_amqp_method_t *m)
{
    memset(a, 0, sizeof *a);
    switch (c->id) {
    case AMQP_BASIC_PUBLISH_METHOD: a->publish.exchange = S(c->exchange); break;
    case AMQP_BASIC_CONSUME_METHOD: a->consume.queue = S(c->queue); break;
    case AMQP_BASIC_GET_METHOD: a->get.queue = S(c->queue); break;
    case AMQP_QUEUE_DECLARE_METHOD:
        a->qdecl.queue = S(c->queue);
        a->qdecl.passive = (amqp_boolean_t)c->passive;
        break;
    case AMQP_EXCHANGE_DECLARE_METHOD:
        a->xdecl.exchange = S(c->exchange);
        a->xdecl.passive = (amqp_boolean_t)c->passive;
        break;
    case AMQP_QUEUE_BIND_METHOD:
        a->qbind.queue = S(c->queue);
        a->qbind.exchange = S(c->exchange);
        break;
    case AMQP_QUEUE_UNBIND_METHOD:
        a->qunbind.queue = S(c->queue);
        a->qunbind.exchange = S(c->exchange);
        break;
    case AMQP_EXCHANGE_BIND_METHOD:
        a->xbind.source = S(c->source);
        a->xbind.destination = S(c->destination);
        break;
    case AMQP_EXCHANGE_UNBIND_METHOD:
        a->xunbind.source = S(c->source);
        a->xunbind.destination = S(c->destination);
        break;
    case AMQP_QUEUE_PURGE_METHOD: a->purge.queue = S(c->queue); break;
    case AMQP_QUEUE_DELETE_METHOD: a->qdel.queue = S(c->queue); break;
    case AMQP_EXCHANGE_DELETE_METHOD: a->xdel.exchange = S(c->exchange); break;
    default: break;
    }
    m->id = c->id;
    m->info = bg_amqp_method_info(c->id);
    m->decoded = a;
    assert_non_null(m->info);
}

static void test_classify_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof classify_cases / sizeof classify_cases[0]; i++) {
        const classify_case_t *c = &classify_cases[i];
        bg_amqp_channel_t ch;
        memset(&ch, 0, sizeof ch);
        snprintf(ch.last_queue, sizeof ch.last_queue, "%s", c->last_queue);
        ch.declared = c->last_queue[0] != '\0';
        args_t a;
        bg_amqp_method_t m;
        build(c, &a, &m);
        bg_amqp_verdict_t v;
        memset(&v, 0xAB, sizeof v); /* classify must reset everything */
        bg_amqp_authz_classify(&m, &ch, &v);
        if (v.n != c->n)
            fail_msg("%s: %zu checks, expected %zu", c->what, v.n, c->n);
        assert_int_equal(v.denied, 0);
        for (size_t k = 0; k < c->n; k++) {
            const bg_amqp_check_t *got = &v.checks[k];
            const exp_check_t *e = &c->exp[k];
            if (got->type != e->type || got->verb != e->verb ||
                got->name_len != strlen(e->name) ||
                memcmp(got->name, e->name, got->name_len) != 0)
                fail_msg("%s: check %zu is %s %s '%.*s', expected %s %s '%s'", c->what, k,
                         bg_res_type_name(got->type), bg_verb_name(got->verb),
                         (int)got->name_len, got->name, bg_res_type_name(e->type),
                         bg_verb_name(e->verb), e->name);
            assert_null(got->refusal);
        }
    }
}

/* Names are (ptr, len): a queue name is never read past its length, even
 * when the frame's bytes go on (strings borrow the payload). */
static void test_classify_borrows_length(void **state)
{
    (void)state;
    static const char payload[] = "ok.queueTRAILING";
    amqp_basic_consume_t c;
    memset(&c, 0, sizeof c);
    c.queue.bytes = (void *)payload;
    c.queue.len = 8;
    bg_amqp_method_t m = {AMQP_BASIC_CONSUME_METHOD, bg_amqp_method_info(AMQP_BASIC_CONSUME_METHOD),
                          &c};
    bg_amqp_channel_t ch;
    memset(&ch, 0, sizeof ch);
    bg_amqp_verdict_t v;
    bg_amqp_authz_classify(&m, &ch, &v);
    assert_int_equal(v.n, 1);
    assert_int_equal(v.checks[0].name_len, 8);
    assert_ptr_equal(v.checks[0].name, payload);
}

/* ---- decide + text ---- */

static bg_policy_t *policy;

static const pt_policy_t policy_table = {
    "deny",
    "enforce",
    {
        {"apps-all", "group:apps", "amqp:queue:ok.* amqp:exchange:ok.*", "all", "allow"},
        {"default-exchange", "group:apps", "amqp:exchange:amq.default", "write", "allow"},
        {"server-named", "group:apps", "amqp:queue:amq.gen-*", "create read", "allow"},
        {"look-only", "group:apps", "amqp:queue:look.*", "describe", "allow"},
        {"no-secret", "*", "amqp:queue:ok.secret* amqp:exchange:ok.secret*", "all", "deny"},
        {"held-deletes", "*", "amqp:queue:ok.held*", "delete", "hold", NULL, "group:sre"},
        {"held-deletes-of-long-queue-names-under-a-rule-with-a-long-nm-and-thirty-more-bytes-of-name-x", "*", "amqp:queue:ok.hheld*", "delete", "hold", NULL, "group:sre"},
        {"trial", "group:apps", "amqp:exchange:trial.*", "write", "allow"},
        {"audited", "group:apps", "amqp:exchange:trial.*", "write", "deny", "audit"},
    },
    {
        {"pii", "amqp:queue:ok.pii* amqp:exchange:ok.pii*", "email", "group:fraud"},
    },
};

static int setup(void **state)
{
    (void)state;
    char err[256];
    policy = pt_compile(&policy_table, err, sizeof err);
    if (!policy)
        fail_msg("policy: %s", err);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    bg_policy_free(policy);
    return 0;
}

typedef struct decide_case_s {
    const char *groups; /* of principal "alice" */
    classify_case_t m;
    int denied;          /* expected index + 1 of the refused check, 0 allowed */
    const char *rule;    /* deciding rule of that check (NULL: default) */
    const char *text;    /* expected refusal text prefix, NULL when allowed */
} decide_case_t;

#define M1(id, q, x) {"", id, q, x, 0, 0, 0, "", 0, {{0}}}
#define MB(id, src, dst) {"", id, 0, 0, src, dst, 0, "", 0, {{0}}}
#define MP(id, q, passive) {"", id, q, 0, 0, 0, passive, "", 0, {{0}}}

static const decide_case_t decide_cases[] = {
    {"apps", M1(AMQP_BASIC_PUBLISH_METHOD, 0, "ok.orders"), 0, "apps-all", NULL},
    {"apps", M1(AMQP_BASIC_PUBLISH_METHOD, 0, ""), 0, "default-exchange", NULL},
    {"", M1(AMQP_BASIC_PUBLISH_METHOD, 0, ""), 1, NULL,
     "ACCESS_REFUSED - write access to exchange 'amq.default' in vhost '/' refused for user "
     "'svc' (busgate default policy)"},
    {"apps", M1(AMQP_BASIC_PUBLISH_METHOD, 0, "ok.secret-x"), 1, "no-secret",
     "ACCESS_REFUSED - write access to exchange 'ok.secret-x' in vhost '/' refused for user "
     "'svc' (busgate rule 'no-secret')"},
    {"apps", M1(AMQP_BASIC_CONSUME_METHOD, "ok.secret-q", 0), 1, "no-secret",
     "ACCESS_REFUSED - read access to queue 'ok.secret-q' in vhost '/' refused for user 'svc'"},
    {"apps", MP(AMQP_QUEUE_DECLARE_METHOD, "look.q", 1), 0, "look-only", NULL},
    {"apps", MP(AMQP_QUEUE_DECLARE_METHOD, "look.q", 0), 1, NULL,
     "ACCESS_REFUSED - create access to queue 'look.q'"},
    {"apps", MP(AMQP_QUEUE_DECLARE_METHOD, "", 0), 0, "server-named", NULL},
    {"apps", MB(AMQP_EXCHANGE_BIND_METHOD, "ok.src", "ok.dst"), 0, "apps-all", NULL},
    /* exchange.bind: the destination is written, the source read. */
    {"apps", MB(AMQP_EXCHANGE_BIND_METHOD, "other.src", "ok.dst"), 2, NULL,
     "ACCESS_REFUSED - read access to exchange 'other.src'"},
    {"apps", MB(AMQP_EXCHANGE_BIND_METHOD, "ok.src", "other.dst"), 1, NULL,
     "ACCESS_REFUSED - write access to exchange 'other.dst'"},
    {"apps", M1(AMQP_QUEUE_BIND_METHOD, "ok.q", "ok.secret-x"), 2, "no-secret",
     "ACCESS_REFUSED - read access to exchange 'ok.secret-x'"},
    /* hold: the AMQP adapter cannot hold, so it refuses and says why. */
    {"apps", M1(AMQP_QUEUE_DELETE_METHOD, "ok.held-q", 0), 1, "held-deletes",
     "ACCESS_REFUSED - delete access to queue 'ok.held-q' in vhost '/' refused for user 'svc' "
     "(busgate rule 'held-deletes' requires an approval"},
    {"apps", M1(AMQP_QUEUE_PURGE_METHOD, "ok.held-q", 0), 1, "held-deletes", NULL},
    /* audit mode: the rule would deny, busgate lets it through. */
    {"apps", M1(AMQP_BASIC_PUBLISH_METHOD, 0, "trial.x"), 0, "audited", NULL},
    {"", M1(AMQP_BASIC_PUBLISH_METHOD, 0, "trial.x"), 1, NULL, NULL},
    /* A mask applies and this build cannot mask: bodies crossing busgate
     * (consume, get, publish) are refused, and so are routes along which
     * the broker moves them out of or into a masked exchange (binds; the
     * declare arguments are in test_declare_argument_exchanges_masked);
     * declares, unbinds and the mask's except group are not affected. */
    {"apps", M1(AMQP_BASIC_CONSUME_METHOD, "ok.pii-q", 0), 1, "apps-all",
     "ACCESS_REFUSED - read access to queue 'ok.pii-q' in vhost '/' refused for user 'svc' "
     "(busgate mask 'pii': this build cannot mask message bodies)"},
    {"apps", M1(AMQP_BASIC_GET_METHOD, "ok.pii-q", 0), 1, "apps-all", NULL},
    {"apps", M1(AMQP_BASIC_PUBLISH_METHOD, 0, "ok.pii-x"), 1, "apps-all",
     "ACCESS_REFUSED - write access to exchange 'ok.pii-x'"},
    {"apps", M1(AMQP_QUEUE_BIND_METHOD, "ok.pii-q", "ok.pii-x"), 2, "apps-all",
     "ACCESS_REFUSED - read access to exchange 'ok.pii-x' in vhost '/' refused for user 'svc' "
     "(busgate mask 'pii': this build cannot mask message bodies)"},
    /* The review's bypass: a queue the mask does not cover, bound to the
     * masked exchange, is consumed unmasked. The bind is refused. */
    {"apps", M1(AMQP_QUEUE_BIND_METHOD, "ok.tap-q", "ok.pii-x"), 2, "apps-all",
     "ACCESS_REFUSED - read access to exchange 'ok.pii-x' in vhost '/' refused for user 'svc' "
     "(busgate mask 'pii': this build cannot mask message bodies)"},
    /* exchange.bind: the masked source's bodies would flow on into an
     * unmasked destination; bodies flowing into a masked destination are
     * what a publish to it may not bring in. */
    {"apps", MB(AMQP_EXCHANGE_BIND_METHOD, "ok.pii-x", "ok.tap-x"), 2, "apps-all",
     "ACCESS_REFUSED - read access to exchange 'ok.pii-x' in vhost '/' refused for user 'svc' "
     "(busgate mask 'pii': this build cannot mask message bodies)"},
    {"apps", MB(AMQP_EXCHANGE_BIND_METHOD, "ok.src", "ok.pii-x"), 1, "apps-all",
     "ACCESS_REFUSED - write access to exchange 'ok.pii-x' in vhost '/' refused for user 'svc' "
     "(busgate mask 'pii': this build cannot mask message bodies)"},
    /* Unbinding ends a route and moves nothing: allowed. */
    {"apps", M1(AMQP_QUEUE_UNBIND_METHOD, "ok.tap-q", "ok.pii-x"), 0, "apps-all", NULL},
    {"apps", MB(AMQP_EXCHANGE_UNBIND_METHOD, "ok.pii-x", "ok.pii-y"), 0, "apps-all", NULL},
    {"apps fraud", M1(AMQP_QUEUE_BIND_METHOD, "ok.tap-q", "ok.pii-x"), 0, "apps-all", NULL},
    {"apps fraud", MB(AMQP_EXCHANGE_BIND_METHOD, "ok.pii-x", "ok.pii-y"), 0, "apps-all", NULL},
    {"apps", MP(AMQP_QUEUE_DECLARE_METHOD, "ok.pii-q", 0), 0, "apps-all", NULL},
    {"apps fraud", M1(AMQP_BASIC_CONSUME_METHOD, "ok.pii-q", 0), 0, "apps-all", NULL},
    {"apps fraud", M1(AMQP_BASIC_PUBLISH_METHOD, 0, "ok.pii-x"), 0, "apps-all", NULL},
    /* RabbitMQ strips CR/LF from declared, deleted and bound names: with
     * them, "ok.sec\nret-q" would pass apps-all here and delete
     * ok.secret-q there. Control bytes are refused whatever the rules. */
    {"apps", M1(AMQP_QUEUE_DELETE_METHOD, "ok.sec\nret-q", 0), 1, NULL,
     "ACCESS_REFUSED - delete access to queue 'ok.sec?ret-q' in vhost '/' refused for user "
     "'svc' (busgate: names with control characters are refused)"},
    {"apps", M1(AMQP_QUEUE_BIND_METHOD, "ok.q", "ok.x\r"), 2, NULL,
     "ACCESS_REFUSED - read access to exchange 'ok.x?'"},
    {"apps", MP(AMQP_QUEUE_DECLARE_METHOD, "ok.\x01q", 0), 1, NULL, NULL},
    {"apps", M1(AMQP_BASIC_PUBLISH_METHOD, 0, "ok.x\x7f"), 1, NULL, NULL},
    /* 0x1f is the last control byte, a space the first that is not (Q-A15). */
    {"apps", M1(AMQP_BASIC_CONSUME_METHOD, "ok.\x1fq", 0), 1, NULL, NULL},
    {"apps", M1(AMQP_BASIC_CONSUME_METHOD, "ok. q", 0), 0, "apps-all", NULL},
};

static void test_decide_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof decide_cases / sizeof decide_cases[0]; i++) {
        const decide_case_t *c = &decide_cases[i];
        size_t ng;
        const char *const *groups = pt_split(c->groups, &ng);
        bg_policy_principal_t pr;
        assert_int_equal(bg_policy_principal_prepare(policy, "alice", groups, ng, &pr), 0);
        bg_amqp_channel_t ch;
        memset(&ch, 0, sizeof ch);
        args_t a;
        bg_amqp_method_t m;
        build(&c->m, &a, &m);
        bg_amqp_verdict_t v;
        bg_amqp_authz_classify(&m, &ch, &v);
        bg_amqp_authz_decide(policy, &pr, NULL, &v);
        if (v.denied != c->denied)
            fail_msg("case %zu (%s): denied %d, expected %d", i, m.info->name, v.denied,
                     c->denied);
        if (c->denied) {
            const bg_amqp_check_t *k = &v.checks[c->denied - 1];
            assert_int_equal(k->decision.effect, BG_EFFECT_DENY);
            const char *rule = k->decision.rule ? bg_policy_rule_name(k->decision.rule) : NULL;
            if (c->rule || rule)
                assert_string_equal(rule ? rule : "(default)", c->rule ? c->rule : "(default)");
        } else if (c->rule) {
            assert_non_null(v.checks[0].decision.rule);
            assert_string_equal(bg_policy_rule_name(v.checks[0].decision.rule), c->rule);
        }
        char text[256];
        bg_amqp_authz_text(&v, "/", "svc", text, sizeof text);
        if (c->text && strncmp(text, c->text, strlen(c->text)) != 0)
            fail_msg("case %zu: text\n  %s\nexpected to start with\n  %s", i, text, c->text);
        if (!c->denied)
            assert_string_equal(text, "ok");
        assert_true(strlen(text) <= 255);
        bg_policy_principal_clear(&pr);
    }
}

/* Long names, vhost and user are cut so the text stays a valid shortstr and
 * still names the deciding rule. */
static void test_text_bounds(void **state)
{
    (void)state;
    char longq[256];
    memset(longq, 'q', 255);
    memcpy(longq, "ok.secret-", 10);
    longq[255] = '\0';
    char user[200];
    memset(user, 'u', sizeof user - 1);
    user[sizeof user - 1] = '\0';
    amqp_basic_get_t g;
    memset(&g, 0, sizeof g);
    g.queue = S(longq);
    bg_amqp_method_t m = {AMQP_BASIC_GET_METHOD, bg_amqp_method_info(AMQP_BASIC_GET_METHOD), &g};
    bg_policy_principal_t pr;
    const char *groups[] = {"apps"};
    assert_int_equal(bg_policy_principal_prepare(policy, "alice", groups, 1, &pr), 0);
    bg_amqp_verdict_t v;
    bg_amqp_authz_classify(&m, NULL, &v);
    bg_amqp_authz_decide(policy, &pr, NULL, &v);
    assert_int_equal(v.denied, 1);
    char text[256];
    bg_amqp_authz_text(&v, user, user, text, sizeof text);
    assert_true(strlen(text) <= 255);
    assert_non_null(strstr(text, "(busgate rule 'no-secret')"));
    /* A small buffer is never overrun. */
    char small[32];
    memset(small, 'Z', sizeof small);
    bg_amqp_authz_text(&v, "/", "svc", small, 16);
    assert_int_equal(strlen(small), 15);
    assert_int_equal(small[16], 'Z');
    bg_policy_principal_clear(&pr);
}


/* 1 when s is valid UTF-8. */
static int utf8_ok(const unsigned char *s)
{
    while (*s) {
        int n = *s < 0x80 ? 0 : (*s & 0xE0) == 0xC0 ? 1 : (*s & 0xF0) == 0xE0 ? 2
                          : (*s & 0xF8) == 0xF0 ? 3 : -1;
        if (n < 0)
            return 0;
        for (int i = 1; i <= n; i++)
            if ((s[i] & 0xC0) != 0x80)
                return 0;
        s += n + 1;
    }
    return 1;
}

/* Multi-byte names and a long hold refusal: the text is cut on character
 * boundaries, and the rule's whole name is in it. */
static void test_text_utf8_and_rule_name(void **state)
{
    (void)state;
    char q[256] = "ok.hheld-", user[128] = "";
    for (int i = 0; i < 60; i++)
        strcat(q, "\xc3\xa9"); /* é */
    for (int i = 0; i < 30; i++)
        strcat(user, "\xc3\xbc"); /* ü */
    amqp_queue_delete_t d;
    memset(&d, 0, sizeof d);
    d.queue = S(q);
    bg_amqp_method_t m = {AMQP_QUEUE_DELETE_METHOD, bg_amqp_method_info(AMQP_QUEUE_DELETE_METHOD),
                          &d};
    bg_policy_principal_t pr;
    const char *groups[] = {"apps"};
    assert_int_equal(bg_policy_principal_prepare(policy, "alice", groups, 1, &pr), 0);
    bg_amqp_verdict_t v;
    bg_amqp_authz_classify(&m, NULL, &v);
    bg_amqp_authz_decide(policy, &pr, NULL, &v);
    assert_int_equal(v.denied, 1);
    char text[256];
    bg_amqp_authz_text(&v, user, user, text, sizeof text);
    assert_true(strlen(text) <= 255);
    assert_true(utf8_ok((const unsigned char *)text));
    assert_non_null(strstr(text, "busgate rule 'held-deletes-of-long-queue-names-under-a-rule-with-a-long-nm-and-thirty-more-bytes-of-name-x' requires an approval"));
    /* The names gave way to the rule's name, on character boundaries. */
    assert_non_null(strstr(text, "ACCESS_REFUSED - delete access to queue '"));
    /* A short rule leaves room for 60 bytes of the name: cut before the
     * character that would not fit whole (9 + 25 * 2 bytes). */
    char q2[256] = "ok.secret";
    for (int i = 0; i < 60; i++)
        strcat(q2, "\xc3\xa9");
    d.queue = S(q2);
    bg_amqp_authz_classify(&m, NULL, &v);
    bg_amqp_authz_decide(policy, &pr, NULL, &v);
    assert_int_equal(v.denied, 1);
    bg_amqp_authz_text(&v, "/", user, text, sizeof text);
    assert_true(utf8_ok((const unsigned char *)text));
    assert_non_null(strstr(text, "(busgate rule 'no-secret')"));
    char want[128] = "queue 'ok.secret";
    for (int i = 0; i < 25; i++)
        strcat(want, "\xc3\xa9");
    strcat(want, "' in vhost");
    assert_non_null(strstr(text, want));
    bg_policy_principal_clear(&pr);
}

/* "" names the channel's last declared queue; while busgate does not know it
 * (a server-named queue before its declare-ok) the method is refused. */
static void test_unknown_last_queue_refused(void **state)
{
    (void)state;
    bg_amqp_channel_t ch;
    memset(&ch, 0, sizeof ch); /* last_queue unknown */
    ch.declared = 1;           /* a server-named declare awaits its declare-ok */
    amqp_basic_consume_t c;
    memset(&c, 0, sizeof c);
    bg_amqp_method_t m = {AMQP_BASIC_CONSUME_METHOD, bg_amqp_method_info(AMQP_BASIC_CONSUME_METHOD),
                          &c};
    bg_amqp_verdict_t v;
    bg_amqp_authz_classify(&m, &ch, &v);
    assert_int_equal(v.n, 1);
    assert_int_equal(v.checks[0].name_len, 0);
    bg_policy_principal_t pr;
    const char *groups[] = {"apps"};
    assert_int_equal(bg_policy_principal_prepare(policy, "alice", groups, 1, &pr), 0);
    assert_int_equal(v.answer, BG_AMQP_ANSWER_NONE);
    bg_amqp_authz_decide(policy, &pr, NULL, &v);
    assert_int_equal(v.denied, 1);
    assert_non_null(v.checks[0].refusal);
    bg_policy_principal_clear(&pr);
}

/* What RabbitMQ refuses before any permission is answered as RabbitMQ does,
 * not decided: "" on a channel that declared no queue, a passive declare of
 * "", immediate=true. */
static void test_answered_before_permissions(void **state)
{
    (void)state;
    bg_amqp_channel_t ch;
    memset(&ch, 0, sizeof ch); /* no queue.declare on it */
    char text[256];
    bg_amqp_verdict_t v;

    amqp_basic_get_t g;
    memset(&g, 0, sizeof g);
    bg_amqp_method_t m = {AMQP_BASIC_GET_METHOD, bg_amqp_method_info(AMQP_BASIC_GET_METHOD), &g};
    bg_amqp_authz_classify(&m, &ch, &v);
    assert_int_equal(v.answer, BG_AMQP_ANSWER_NO_LAST_QUEUE);
    assert_int_equal(bg_amqp_authz_answer(&v, "/", text, sizeof text), 404);
    assert_string_equal(text, "NOT_FOUND - no previously declared queue");

    amqp_queue_declare_t d;
    memset(&d, 0, sizeof d);
    d.passive = 1;
    snprintf(ch.last_queue, sizeof ch.last_queue, "old");
    ch.declared = 1;
    m = (bg_amqp_method_t){AMQP_QUEUE_DECLARE_METHOD,
                           bg_amqp_method_info(AMQP_QUEUE_DECLARE_METHOD), &d};
    bg_amqp_authz_classify(&m, &ch, &v);
    assert_int_equal(v.answer, BG_AMQP_ANSWER_PASSIVE_EMPTY);
    assert_int_equal(v.checks[0].name_len, 0);
    assert_int_equal(bg_amqp_authz_answer(&v, "prod", text, sizeof text), 404);
    assert_string_equal(text, "NOT_FOUND - no queue '' in vhost 'prod'");

    amqp_basic_publish_t p;
    memset(&p, 0, sizeof p);
    p.exchange = amqp_cstring_bytes("secret");
    p.immediate = 1;
    m = (bg_amqp_method_t){AMQP_BASIC_PUBLISH_METHOD,
                           bg_amqp_method_info(AMQP_BASIC_PUBLISH_METHOD), &p};
    bg_amqp_authz_classify(&m, &ch, &v);
    assert_int_equal(v.answer, BG_AMQP_ANSWER_IMMEDIATE);
    assert_int_equal(bg_amqp_authz_answer(&v, "/", text, sizeof text), 540);
    assert_string_equal(text, "NOT_IMPLEMENTED - immediate=true");
}

/* Declare arguments that make the broker move messages into another
 * exchange need write on it and read on what is declared, as RabbitMQ
 * checks (alternate-exchange, x-dead-letter-exchange). */
static void test_declare_argument_exchanges(void **state)
{
    (void)state;
    amqp_table_entry_t ae = {amqp_cstring_bytes("alternate-exchange"),
                             {AMQP_FIELD_KIND_UTF8, {.bytes = {6, "secret"}}}};
    amqp_exchange_declare_t x;
    memset(&x, 0, sizeof x);
    x.exchange = amqp_cstring_bytes("ok.x");
    x.arguments.num_entries = 1;
    x.arguments.entries = &ae;
    bg_amqp_method_t m = {AMQP_EXCHANGE_DECLARE_METHOD,
                          bg_amqp_method_info(AMQP_EXCHANGE_DECLARE_METHOD), &x};
    bg_amqp_verdict_t v;
    bg_amqp_authz_classify(&m, NULL, &v);
    assert_int_equal(v.n, 3);
    assert_int_equal(v.checks[0].verb, BG_VERB_CREATE);
    assert_int_equal(v.checks[1].type, BG_RES_AMQP_EXCHANGE);
    assert_int_equal(v.checks[1].verb, BG_VERB_READ);
    assert_int_equal(v.checks[1].name_len, 4);
    assert_memory_equal(v.checks[1].name, "ok.x", 4);
    assert_int_equal(v.checks[2].type, BG_RES_AMQP_EXCHANGE);
    assert_int_equal(v.checks[2].verb, BG_VERB_WRITE);
    assert_int_equal(v.checks[2].name_len, 6);
    assert_memory_equal(v.checks[2].name, "secret", 6);

    amqp_table_entry_t dlx = {amqp_cstring_bytes("x-dead-letter-exchange"),
                              {AMQP_FIELD_KIND_UTF8, {.bytes = {6, "secret"}}}};
    amqp_queue_declare_t q;
    memset(&q, 0, sizeof q);
    q.queue = amqp_cstring_bytes("ok.q");
    q.arguments.num_entries = 1;
    q.arguments.entries = &dlx;
    m = (bg_amqp_method_t){AMQP_QUEUE_DECLARE_METHOD,
                           bg_amqp_method_info(AMQP_QUEUE_DECLARE_METHOD), &q};
    bg_amqp_authz_classify(&m, NULL, &v);
    assert_int_equal(v.n, 3);
    assert_int_equal(v.checks[1].type, BG_RES_AMQP_QUEUE);
    assert_int_equal(v.checks[1].verb, BG_VERB_READ);
    assert_int_equal(v.checks[1].name_len, 4);
    assert_memory_equal(v.checks[1].name, "ok.q", 4);
    assert_int_equal(v.checks[2].type, BG_RES_AMQP_EXCHANGE);
    assert_int_equal(v.checks[2].verb, BG_VERB_WRITE);
    assert_memory_equal(v.checks[2].name, "secret", 6);

    /* Without an argument naming an exchange, only create. */
    q.arguments.num_entries = 0;
    bg_amqp_authz_classify(&m, NULL, &v);
    assert_int_equal(v.n, 1);
    assert_int_equal(v.checks[0].verb, BG_VERB_CREATE);
}

/* An alternate or dead-letter exchange a mask applies to would take in
 * bodies a publish to it may not bring in: refused on its write, as that
 * publish is, naming the mask. A masked queue or exchange declared with one
 * would send its bodies on to an exchange the mask does not cover: refused
 * on its read, as a consume of it is. The except group is not affected. */
static void test_declare_argument_exchanges_masked(void **state)
{
    (void)state;
    static const char wx[] = "ACCESS_REFUSED - write access to exchange 'ok.pii-x' in vhost '/' "
                             "refused for user 'svc' (busgate mask 'pii': this build cannot mask "
                             "message bodies)";
    static const struct {
        uint32_t id;
        const char *name, *key, *target, *groups;
        int denied;
        const char *text;
    } cases[] = {
        {AMQP_EXCHANGE_DECLARE_METHOD, "ok.x", "alternate-exchange", "ok.pii-x", "apps", 3, wx},
        {AMQP_QUEUE_DECLARE_METHOD, "ok.q", "x-dead-letter-exchange", "ok.pii-x", "apps", 3, wx},
        {AMQP_EXCHANGE_DECLARE_METHOD, "ok.pii-y", "alternate-exchange", "ok.other-x", "apps", 2,
         "ACCESS_REFUSED - read access to exchange 'ok.pii-y' in vhost '/' refused for user 'svc' "
         "(busgate mask 'pii': this build cannot mask message bodies)"},
        {AMQP_QUEUE_DECLARE_METHOD, "ok.pii-q", "x-dead-letter-exchange", "ok.other-x", "apps", 2,
         "ACCESS_REFUSED - read access to queue 'ok.pii-q' in vhost '/' refused for user 'svc' "
         "(busgate mask 'pii': this build cannot mask message bodies)"},
        {AMQP_EXCHANGE_DECLARE_METHOD, "ok.x", "alternate-exchange", "ok.pii-x", "apps fraud", 0,
         NULL},
        {AMQP_QUEUE_DECLARE_METHOD, "ok.pii-q", "x-dead-letter-exchange", "ok.pii-x",
         "apps fraud", 0, NULL},
        {AMQP_EXCHANGE_DECLARE_METHOD, "ok.x", "alternate-exchange", "ok.other-x", "apps", 0, NULL},
        {AMQP_QUEUE_DECLARE_METHOD, "ok.q", "x-dead-letter-exchange", "ok.other-x", "apps", 0,
         NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        amqp_bytes_t target = amqp_cstring_bytes(cases[i].target);
        amqp_table_entry_t arg = {amqp_cstring_bytes(cases[i].key),
                                  {AMQP_FIELD_KIND_UTF8, {.bytes = target}}};
        amqp_exchange_declare_t x;
        amqp_queue_declare_t q;
        memset(&x, 0, sizeof x);
        memset(&q, 0, sizeof q);
        bg_amqp_method_t m = {cases[i].id, bg_amqp_method_info(cases[i].id), NULL};
        if (cases[i].id == AMQP_EXCHANGE_DECLARE_METHOD) {
            x.exchange = amqp_cstring_bytes(cases[i].name);
            x.arguments = (amqp_table_t){1, &arg};
            m.decoded = &x;
        } else {
            q.queue = amqp_cstring_bytes(cases[i].name);
            q.arguments = (amqp_table_t){1, &arg};
            m.decoded = &q;
        }
        size_t ng;
        const char *const *groups = pt_split(cases[i].groups, &ng);
        bg_policy_principal_t pr;
        assert_int_equal(bg_policy_principal_prepare(policy, "alice", groups, ng, &pr), 0);
        bg_amqp_verdict_t v;
        bg_amqp_authz_classify(&m, NULL, &v);
        bg_amqp_authz_decide(policy, &pr, NULL, &v);
        if (v.denied != cases[i].denied)
            fail_msg("case %zu (%s %s): denied %d, expected %d", i, cases[i].key,
                     cases[i].target, v.denied, cases[i].denied);
        char text[256];
        bg_amqp_authz_text(&v, "/", "svc", text, sizeof text);
        if (cases[i].denied) {
            const bg_amqp_check_t *c = &v.checks[cases[i].denied - 1];
            assert_int_equal(c->unmasked, 1);
            /* The rule that allowed the verb, as for other mask refusals. */
            assert_string_equal(bg_policy_rule_name(c->decision.rule), "apps-all");
            assert_string_equal(text, cases[i].text);
        } else {
            assert_string_equal(text, "ok");
        }
        bg_policy_principal_clear(&pr);
    }
}

/* The declare arguments naming an exchange are found by their whole key:
 * a key they only start, or one that starts them, is any other argument,
 * and needs nothing (mutation review Q-A03). A passive declare checks
 * only that the name exists, as RabbitMQ does: its arguments are not
 * looked at, whatever their type (Q-A08). */
static void test_declare_argument_keys_and_passive(void **state)
{
    (void)state;
    static const char *const keys[] = {"alternate-exchangeX", "alternate-exchang",
                                       "x-dead-letter-exchangeX", "x-dead-letter-exchang"};
    bg_amqp_verdict_t v;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        amqp_table_entry_t e = {amqp_cstring_bytes(keys[i]),
                                {AMQP_FIELD_KIND_UTF8, {.bytes = {9, "ok.secret"}}}};
        amqp_exchange_declare_t x;
        amqp_queue_declare_t q;
        memset(&x, 0, sizeof x);
        memset(&q, 0, sizeof q);
        x.exchange = amqp_cstring_bytes("ok.x");
        x.arguments = (amqp_table_t){1, &e};
        q.queue = amqp_cstring_bytes("ok.q");
        q.arguments = (amqp_table_t){1, &e};
        bg_amqp_method_t m = {AMQP_EXCHANGE_DECLARE_METHOD,
                              bg_amqp_method_info(AMQP_EXCHANGE_DECLARE_METHOD), &x};
        if (keys[i][0] == 'x')
            m = (bg_amqp_method_t){AMQP_QUEUE_DECLARE_METHOD,
                                   bg_amqp_method_info(AMQP_QUEUE_DECLARE_METHOD), &q};
        bg_amqp_authz_classify(&m, NULL, &v);
        if (v.n != 1 || v.answer != BG_AMQP_ANSWER_NONE)
            fail_msg("%s: %zu checks, answer %d", keys[i], v.n, (int)v.answer);
        assert_int_equal(v.checks[0].verb, BG_VERB_CREATE);
    }
    /* Passive, with an alternate or dead-letter exchange of either type. */
    static const uint8_t kinds[] = {AMQP_FIELD_KIND_UTF8, AMQP_FIELD_KIND_BYTES};
    for (size_t i = 0; i < 2; i++) {
        amqp_table_entry_t ae = {amqp_cstring_bytes("alternate-exchange"),
                                 {kinds[i], {.bytes = {9, "ok.secret"}}}};
        amqp_table_entry_t dlx = {amqp_cstring_bytes("x-dead-letter-exchange"),
                                  {kinds[i], {.bytes = {9, "ok.secret"}}}};
        amqp_exchange_declare_t x;
        memset(&x, 0, sizeof x);
        x.exchange = amqp_cstring_bytes("ok.x");
        x.passive = 1;
        x.arguments = (amqp_table_t){1, &ae};
        bg_amqp_method_t m = {AMQP_EXCHANGE_DECLARE_METHOD,
                              bg_amqp_method_info(AMQP_EXCHANGE_DECLARE_METHOD), &x};
        bg_amqp_authz_classify(&m, NULL, &v);
        assert_int_equal(v.n, 1);
        assert_int_equal(v.checks[0].verb, BG_VERB_DESCRIBE);
        assert_int_equal(v.answer, BG_AMQP_ANSWER_NONE);
        amqp_queue_declare_t q;
        memset(&q, 0, sizeof q);
        q.queue = amqp_cstring_bytes("ok.q");
        q.passive = 1;
        q.arguments = (amqp_table_t){1, &dlx};
        m = (bg_amqp_method_t){AMQP_QUEUE_DECLARE_METHOD,
                               bg_amqp_method_info(AMQP_QUEUE_DECLARE_METHOD), &q};
        bg_amqp_authz_classify(&m, NULL, &v);
        assert_int_equal(v.n, 1);
        assert_int_equal(v.checks[0].verb, BG_VERB_DESCRIBE);
        assert_int_equal(v.answer, BG_AMQP_ANSWER_NONE);
    }
}

/* An argument naming an exchange that is no longstr is answered 406 as
 * RabbitMQ answers it, naming the type as RabbitMQ does: a byte array
 * ('x') too, though it could be read as a name (mutation review Q-A04). */
static void test_declare_argument_of_another_type(void **state)
{
    (void)state;
    static const struct {
        uint8_t kind;
        const char *name;
    } kinds[] = {{AMQP_FIELD_KIND_BYTES, "binary"}, {AMQP_FIELD_KIND_I32, "signedint"},
                 {AMQP_FIELD_KIND_VOID, "void"}};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        amqp_table_entry_t e = {amqp_cstring_bytes("alternate-exchange"), {kinds[i].kind, {0}}};
        if (kinds[i].kind == AMQP_FIELD_KIND_BYTES)
            e.value.value.bytes = (amqp_bytes_t){9, "ok.secret"};
        amqp_exchange_declare_t x;
        memset(&x, 0, sizeof x);
        x.exchange = amqp_cstring_bytes("ok.x");
        x.arguments = (amqp_table_t){1, &e};
        bg_amqp_method_t m = {AMQP_EXCHANGE_DECLARE_METHOD,
                              bg_amqp_method_info(AMQP_EXCHANGE_DECLARE_METHOD), &x};
        bg_amqp_verdict_t v;
        bg_amqp_authz_classify(&m, NULL, &v);
        assert_int_equal(v.answer, BG_AMQP_ANSWER_ARG_TYPE);
        assert_int_equal(v.n, 1); /* create on ok.x, decided before the answer */
        char text[256], want[256];
        assert_int_equal(bg_amqp_authz_answer(&v, "/", text, sizeof text), 406);
        snprintf(want, sizeof want,
                 "PRECONDITION_FAILED - invalid type '%s' for arg 'alternate-exchange' in "
                 "exchange 'ok.x' in vhost '/'",
                 kinds[i].name);
        assert_string_equal(text, want);
    }
}

/* RabbitMQ's reply texts lose busgate's upstream user's name where they
 * name it whole ("user 'NAME'" or 'NAME'), and only there: a longer name
 * or a queue whose name ends in it is another name, left as it is
 * (mutation review Q-A21, Q-A22). */
static void test_reply_text_unnamed(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
        int named;
    } cases[] = {
        {"ACCESS_REFUSED - access to queue 'q' in vhost '/' refused for user 'svc-bg'",
         "ACCESS_REFUSED - access to queue 'q' in vhost '/' refused for busgate's upstream "
         "user",
         1},
        {"PRECONDITION_FAILED - user 'x' is not 'svc-bg'",
         "PRECONDITION_FAILED - user 'x' is not 'busgate's upstream user'", 1},
        {"ACCESS_REFUSED - refused for user 'svc-bg2'",
         "ACCESS_REFUSED - refused for user 'svc-bg2'", 0},
        {"NOT_FOUND - no queue 'q.svc-bg' in vhost '/'",
         "NOT_FOUND - no queue 'q.svc-bg' in vhost '/'", 0},
        {"NOT_FOUND - no queue 'svc-bg.q' in vhost '/'",
         "NOT_FOUND - no queue 'svc-bg.q' in vhost '/'", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[256];
        int named = bg_amqp_reply_text_unnamed((const uint8_t *)cases[i].in, strlen(cases[i].in),
                                               "svc-bg", out, sizeof out);
        if (named != cases[i].named || strcmp(out, cases[i].out) != 0)
            fail_msg("case %zu: %d '%s'", i, named, out);
    }
    /* A small buffer is cut, never overrun. */
    char small[8];
    memset(small, 'Z', sizeof small);
    assert_int_equal(bg_amqp_reply_text_unnamed((const uint8_t *)"user 'svc-bg'", 13, "svc-bg",
                                                small, 6),
                     1);
    assert_string_equal(small, "busga");
    assert_int_equal(small[6], 'Z');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify_table),
        cmocka_unit_test(test_classify_borrows_length),
        cmocka_unit_test(test_decide_table),
        cmocka_unit_test(test_text_bounds),
        cmocka_unit_test(test_text_utf8_and_rule_name),
        cmocka_unit_test(test_unknown_last_queue_refused),
        cmocka_unit_test(test_answered_before_permissions),
        cmocka_unit_test(test_declare_argument_exchanges),
        cmocka_unit_test(test_declare_argument_exchanges_masked),
        cmocka_unit_test(test_declare_argument_keys_and_passive),
        cmocka_unit_test(test_declare_argument_of_another_type),
        cmocka_unit_test(test_reply_text_unnamed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
