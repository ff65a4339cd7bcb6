/* Which resources and verbs an AMQP method needs, decided by the policy
 * (design.md's verb table):
 *
 *   basic.publish               write  exchange (""  = amq.default)
 *   basic.consume, basic.get    read   queue
 *   queue.declare               create queue   (passive: describe)
 *   exchange.declare            create exchange (passive: describe)
 *   queue.bind / queue.unbind   write  queue + read exchange
 *   exchange.bind / unbind      write  destination + read source
 *   queue.purge                 delete queue
 *   queue.delete                delete queue
 *   exchange.delete             delete exchange
 *
 * A queue name left empty names the channel's last declared queue, as in
 * RabbitMQ: busgate tracks it from the declares it forwards (RabbitMQ updates
 * it when it handles the declare, even with nowait); while it is unknown (a
 * server-named queue before its declare-ok) an empty name is refused.
 * Declare arguments that make the broker move messages into another
 * exchange (exchange.declare "alternate-exchange", queue.declare
 * "x-dead-letter-exchange") also need write on that exchange and read on the
 * declared exchange or queue (the messages leaving it are read out of it),
 * as RabbitMQ itself requires — busgate's upstream credential would not
 * check it. A server-named queue (queue.declare with an empty name) is
 * decided as the queue "amq.gen-" (create), the prefix RabbitMQ gives such
 * names: a rule on amqp:queue:amq.gen-* allows declaring them and, since the
 * broker names them amq.gen-..., consuming from them afterwards.
 * A name with a control byte is refused whatever the policy says: RabbitMQ
 * strips CR and LF from some names, which would let a name escape the rule
 * meant for it.
 * A check that moves message bodies is refused when a mask applies to its
 * resource: this build has no masking engine, and bodies a mask covers never
 * pass unmasked. Such checks are publish, consume and get, and every check
 * that makes the broker itself move bodies out of or into the resource,
 * where busgate never sees them again: the exchange a queue.bind or
 * exchange.bind reads from (a queue bound to a masked exchange is consumed
 * like any other), the queue or exchange an "x-dead-letter-exchange" or
 * "alternate-exchange" reads out of (its bodies go on to that exchange),
 * and the exchange an exchange.bind, "alternate-exchange" or
 * "x-dead-letter-exchange" writes to (bodies a publish could not bring
 * in). Unbinds and deletes end routes; they move nothing.
 * Everything else (channel.*, basic.qos/ack/nack/reject/recover/cancel,
 * confirm.*, tx.*) names no resource. Pure: no I/O, no globals. */
#include <stdio.h>
#include <string.h>

#include "adapters/amqp/amqp_session-internal.h"

#define BG_AMQP_SERVER_NAMED "amq.gen-"

static bg_amqp_check_t *bg_amqp_authz__add(bg_amqp_verdict_t *v, bg_res_type_t type,
                                           amqp_bytes_t name, bg_verb_t verb)
{
    bg_amqp_check_t *c = &v->checks[v->n++];
    memset(c, 0, sizeof *c);
    c->type = type;
    c->name = name.len ? (const char *)name.bytes : "";
    c->name_len = name.len;
    c->verb = verb;
    if (type == BG_RES_AMQP_EXCHANGE && name.len == 0) {
        c->name = "amq.default";
        c->name_len = strlen(c->name);
    }
    return c;
}

/* A queue argument: empty = the channel's last declared queue. On a
 * channel that declared no queue RabbitMQ answers "" with 404 before it
 * looks at any permission (v->answer); "" also while a server-named
 * queue's name is not known yet, which bg_amqp_authz_decide refuses. */
static amqp_bytes_t bg_amqp_authz__queue(amqp_bytes_t q, const bg_amqp_channel_t *ch,
                                         bg_amqp_verdict_t *v)
{
    if (q.len == 0 && ch) {
        q.bytes = (void *)ch->last_queue;
        q.len = strlen(ch->last_queue);
        if (!ch->declared)
            v->answer = BG_AMQP_ANSWER_NO_LAST_QUEUE;
    }
    return q;
}

/* RabbitMQ's name of a field type (rabbit_binary_parser), for its 406. */
static const char *bg_amqp_authz__type_name(uint8_t kind)
{
    switch (kind) {
    case AMQP_FIELD_KIND_BOOLEAN: return "bool";
    case AMQP_FIELD_KIND_I8: return "byte";
    case AMQP_FIELD_KIND_U8: return "unsignedbyte";
    case AMQP_FIELD_KIND_I16: return "short";
    case AMQP_FIELD_KIND_U16: return "unsignedshort";
    case AMQP_FIELD_KIND_I32: return "signedint";
    case AMQP_FIELD_KIND_U32: return "unsignedint";
    case AMQP_FIELD_KIND_I64: return "long";
    case AMQP_FIELD_KIND_F32: return "float";
    case AMQP_FIELD_KIND_F64: return "double";
    case AMQP_FIELD_KIND_DECIMAL: return "decimal";
    case AMQP_FIELD_KIND_ARRAY: return "array";
    case AMQP_FIELD_KIND_TIMESTAMP: return "timestamp";
    case AMQP_FIELD_KIND_TABLE: return "table";
    case AMQP_FIELD_KIND_VOID: return "void";
    case AMQP_FIELD_KIND_BYTES: return "binary";
    default: return "unknown";
    }
}

/* The exchange a declare argument names: 1 with *out for a longstr, 0 when
 * the key is absent. Any other type: RabbitMQ refuses the declare with 406
 * "invalid type" once create on it is allowed, whatever the exchange, and
 * so does busgate itself (v->answer; nothing forwarded), never passing on
 * an argument it could not decide. */
static int bg_amqp_authz__arg_exchange(const amqp_table_t *args, const char *key,
                                       amqp_bytes_t *out, bg_amqp_verdict_t *v)
{
    size_t klen = strlen(key);
    for (int i = 0; args && i < args->num_entries; i++) {
        const amqp_table_entry_t *e = &args->entries[i];
        if (e->key.len != klen || memcmp(e->key.bytes, key, klen) != 0)
            continue;
        if (e->value.kind != AMQP_FIELD_KIND_UTF8) {
            v->answer = BG_AMQP_ANSWER_ARG_TYPE;
            v->arg_key = key;
            v->arg_type = bg_amqp_authz__type_name(e->value.kind);
            return 0;
        }
        *out = e->value.value.bytes;
        return 1;
    }
    return 0;
}

static amqp_bytes_t bg_amqp_authz__cstr(const char *s)
{
    amqp_bytes_t b = {strlen(s), (void *)s};
    return b;
}

static void bg_amqp_authz__queue_declare(const amqp_queue_declare_t *d,
                                         const bg_amqp_channel_t *ch, bg_amqp_verdict_t *v)
{
    if (d->passive) {
        /* RabbitMQ takes a passive declare's name as it is, "" too (never
         * the last declared queue), and no queue is named "": it answers
         * 404 whatever the permissions, and so does busgate. */
        bg_amqp_authz__add(v, BG_RES_AMQP_QUEUE, d->queue, BG_VERB_DESCRIBE);
        if (d->queue.len == 0)
            v->answer = BG_AMQP_ANSWER_PASSIVE_EMPTY;
        return;
    }
    amqp_bytes_t q = d->queue.len ? d->queue : bg_amqp_authz__cstr(BG_AMQP_SERVER_NAMED), dlx;
    bg_amqp_authz__add(v, BG_RES_AMQP_QUEUE, q, BG_VERB_CREATE);
    if (bg_amqp_authz__arg_exchange(&d->arguments, "x-dead-letter-exchange", &dlx, v)) {
        bg_amqp_authz__add(v, BG_RES_AMQP_QUEUE, q, BG_VERB_READ)->bodies = 1;
        bg_amqp_authz__add(v, BG_RES_AMQP_EXCHANGE, dlx, BG_VERB_WRITE)->bodies = 1;
    }
}

void bg_amqp_authz_classify(const bg_amqp_method_t *m, const bg_amqp_channel_t *ch,
                            bg_amqp_verdict_t *v)
{
    memset(v, 0, sizeof *v);
    const void *d = m->decoded;
    switch (m->id) {
    case AMQP_BASIC_PUBLISH_METHOD:
        bg_amqp_authz__add(v, BG_RES_AMQP_EXCHANGE, ((const amqp_basic_publish_t *)d)->exchange,
                           BG_VERB_WRITE)
            ->bodies = 1;
        /* RabbitMQ implements no immediate delivery: 540, before it looks
         * at the exchange or any permission. */
        if (((const amqp_basic_publish_t *)d)->immediate)
            v->answer = BG_AMQP_ANSWER_IMMEDIATE;
        break;
    case AMQP_BASIC_CONSUME_METHOD:
        bg_amqp_authz__add(v, BG_RES_AMQP_QUEUE,
                           bg_amqp_authz__queue(((const amqp_basic_consume_t *)d)->queue, ch, v),
                           BG_VERB_READ)
            ->bodies = 1;
        break;
    case AMQP_BASIC_GET_METHOD:
        bg_amqp_authz__add(v, BG_RES_AMQP_QUEUE,
                           bg_amqp_authz__queue(((const amqp_basic_get_t *)d)->queue, ch, v),
                           BG_VERB_READ)
            ->bodies = 1;
        break;
    case AMQP_QUEUE_DECLARE_METHOD: bg_amqp_authz__queue_declare(d, ch, v); break;
    case AMQP_EXCHANGE_DECLARE_METHOD: {
        const amqp_exchange_declare_t *x = d;
        amqp_bytes_t ae;
        bg_amqp_authz__add(v, BG_RES_AMQP_EXCHANGE, x->exchange,
                           x->passive ? BG_VERB_DESCRIBE : BG_VERB_CREATE);
        if (!x->passive && bg_amqp_authz__arg_exchange(&x->arguments, "alternate-exchange", &ae, v)) {
            bg_amqp_authz__add(v, BG_RES_AMQP_EXCHANGE, x->exchange, BG_VERB_READ)->bodies = 1;
            bg_amqp_authz__add(v, BG_RES_AMQP_EXCHANGE, ae, BG_VERB_WRITE)->bodies = 1;
        }
        break;
    }
    case AMQP_QUEUE_BIND_METHOD: {
        const amqp_queue_bind_t *b = d;
        bg_amqp_authz__add(v, BG_RES_AMQP_QUEUE, bg_amqp_authz__queue(b->queue, ch, v),
                           BG_VERB_WRITE);
        bg_amqp_authz__add(v, BG_RES_AMQP_EXCHANGE, b->exchange, BG_VERB_READ)->bodies = 1;
        break;
    }
    case AMQP_QUEUE_UNBIND_METHOD: {
        const amqp_queue_unbind_t *b = d;
        bg_amqp_authz__add(v, BG_RES_AMQP_QUEUE, bg_amqp_authz__queue(b->queue, ch, v),
                           BG_VERB_WRITE);
        bg_amqp_authz__add(v, BG_RES_AMQP_EXCHANGE, b->exchange, BG_VERB_READ);
        break;
    }
    case AMQP_EXCHANGE_BIND_METHOD: {
        const amqp_exchange_bind_t *b = d;
        bg_amqp_authz__add(v, BG_RES_AMQP_EXCHANGE, b->destination, BG_VERB_WRITE)->bodies = 1;
        bg_amqp_authz__add(v, BG_RES_AMQP_EXCHANGE, b->source, BG_VERB_READ)->bodies = 1;
        break;
    }
    case AMQP_EXCHANGE_UNBIND_METHOD: {
        const amqp_exchange_unbind_t *b = d;
        bg_amqp_authz__add(v, BG_RES_AMQP_EXCHANGE, b->destination, BG_VERB_WRITE);
        bg_amqp_authz__add(v, BG_RES_AMQP_EXCHANGE, b->source, BG_VERB_READ);
        break;
    }
    case AMQP_QUEUE_PURGE_METHOD:
        bg_amqp_authz__add(v, BG_RES_AMQP_QUEUE,
                           bg_amqp_authz__queue(((const amqp_queue_purge_t *)d)->queue, ch, v),
                           BG_VERB_DELETE);
        break;
    case AMQP_QUEUE_DELETE_METHOD:
        bg_amqp_authz__add(v, BG_RES_AMQP_QUEUE,
                           bg_amqp_authz__queue(((const amqp_queue_delete_t *)d)->queue, ch, v),
                           BG_VERB_DELETE);
        break;
    case AMQP_EXCHANGE_DELETE_METHOD:
        bg_amqp_authz__add(v, BG_RES_AMQP_EXCHANGE, ((const amqp_exchange_delete_t *)d)->exchange,
                           BG_VERB_DELETE);
        break;
    default: break;
    }
}

/* 1 when name has a control byte. RabbitMQ strips CR and LF from the names
 * of declares, deletes and binds before using them, so "pr\nod.x" would be
 * decided as itself here but act on "prod.x" there. */
static int bg_amqp_authz__has_control(const char *name, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)name[i] < 0x20 || (unsigned char)name[i] == 0x7f)
            return 1;
    return 0;
}

/* Fails closed where this build cannot carry the decision out: a hold (no
 * approvals) or an allow a mask applies to for a check that moves bodies
 * (no masking engine: bodies a mask covers never pass unmasked). */
static void bg_amqp_authz__unbuilt(bg_amqp_check_t *c)
{
    switch (bg_policy_unbuilt(&c->decision, c->bodies)) {
    case BG_POLICY_UNBUILT_HOLD:
        c->decision.effect = BG_EFFECT_DENY;
        c->refusal = "requires an approval, which busgate's AMQP adapter cannot hold";
        break;
    case BG_POLICY_UNBUILT_MASK:
        c->decision.effect = BG_EFFECT_DENY;
        c->unmasked = 1;
        c->refusal = "a mask applies, and this build cannot mask message bodies";
        break;
    case BG_POLICY_UNBUILT_NONE: break;
    }
}

/* One check of a principal still vouched for: the policy, then what busgate
 * refuses whatever the policy says. */
static void bg_amqp_authz__decide_one(const bg_policy_t *p, const bg_policy_principal_t *pr,
                                      bg_amqp_check_t *c)
{
    bg_policy_resource_t r = {c->type, NULL, 0, c->name, c->name_len};
    bg_policy_decide(p, pr, &r, c->verb, &c->decision);
    if (bg_amqp_authz__has_control(c->name, c->name_len)) {
        c->decision.effect = BG_EFFECT_DENY;
        c->decision.would = BG_EFFECT_DENY;
        c->decision.rule = c->decision.enforced = NULL;
        c->refusal = "names with control characters are refused";
    } else if (c->type == BG_RES_AMQP_QUEUE && c->name_len == 0) {
        /* "" names the last declared queue, not known yet: fail closed. */
        c->decision.effect = BG_EFFECT_DENY;
        c->decision.would = BG_EFFECT_DENY;
        c->decision.rule = c->decision.enforced = NULL;
        c->refusal = "\"\" names the channel's last declared queue, which is not known yet";
    } else {
        bg_amqp_authz__unbuilt(c);
    }
}

void bg_amqp_authz_decide(const bg_policy_t *p, const bg_policy_principal_t *pr,
                          const char *unvouched, bg_amqp_verdict_t *v)
{
    v->denied = 0;
    for (size_t i = 0; i < v->n; i++) {
        bg_amqp_check_t *c = &v->checks[i];
        if (unvouched) { /* no rule is asked: busgate refuses */
            memset(&c->decision, 0, sizeof c->decision);
            c->decision.effect = c->decision.would = BG_EFFECT_DENY;
            c->decision.mode = BG_MODE_ENFORCE;
            c->refusal = unvouched;
        } else {
            bg_amqp_authz__decide_one(p, pr, c);
        }
        if (c->decision.effect != BG_EFFECT_ALLOW && !v->denied)
            v->denied = (int)i + 1;
    }
}

/* Copies at most max bytes of s (len bytes) into dst (max + 1 bytes):
 * never half a UTF-8 character, control bytes shown as '?'. The length. */
static size_t bg_amqp_authz__cut(char *dst, const char *s, size_t len, size_t max)
{
    size_t n = len > max ? max : len;
    if (n < len)
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    for (size_t i = 0; i < n; i++)
        dst[i] = bg_amqp_authz__has_control(s + i, 1) ? '?' : s[i];
    dst[n] = '\0';
    return n;
}

void bg_amqp_authz_text(const bg_amqp_verdict_t *v, const char *vhost, const char *user, char *buf,
                        size_t cap)
{
    if (!v->denied) {
        snprintf(buf, cap, "ok");
        return;
    }
    const bg_amqp_check_t *c = &v->checks[v->denied - 1];
    const char *kind = c->type == BG_RES_AMQP_QUEUE ? "queue" : "exchange";
    char why[256], rule[101];
    if (c->unmasked) {
        const char *m = bg_policy_mask_name(c->decision.masks[0]);
        bg_amqp_authz__cut(rule, m, strlen(m), 60);
        snprintf(why, sizeof why, "busgate mask '%s': this build cannot mask message bodies", rule);
    } else if (c->decision.enforced) {
        /* The rule whose effect is applied (not an audit-mode rule that only
         * says what it would do). Its name (up to 100 bytes) gets what the
         * text's fixed parts leave, before the names below get any. */
        const char *r = bg_policy_rule_name(c->decision.enforced);
        int fixed = snprintf(NULL, 0,
                             "ACCESS_REFUSED - %s access to %s '' in vhost '' refused for user "
                             "'' (busgate rule ''%s%s)",
                             bg_verb_name(c->verb), kind, c->refusal ? " " : "",
                             c->refusal ? c->refusal : "");
        size_t room = fixed < 255 ? 255 - (size_t)fixed : 0;
        bg_amqp_authz__cut(rule, r, strlen(r), room < 100 ? room : 100);
        snprintf(why, sizeof why, "busgate rule '%s'%s%s", rule, c->refusal ? " " : "",
                 c->refusal ? c->refusal : "");
    } else if (c->refusal) {
        snprintf(why, sizeof why, "busgate: %s", c->refusal);
    } else {
        snprintf(why, sizeof why, "busgate default policy");
    }
    /* The reply text is a shortstr (255 bytes) and must name the rule: the
     * queue or exchange name, vhost and user are cut (longest first, on
     * character boundaries) to leave room for it. */
    const char *src[3] = {c->name, vhost, user};
    size_t srclen[3] = {c->name_len, strlen(vhost), strlen(user)};
    size_t limit[3] = {60, 40, 40}, len[3];
    char field[3][61];
    int fixed = snprintf(NULL, 0,
                         "ACCESS_REFUSED - %s access to %s '' in vhost '' refused for user '' (%s)",
                         bg_verb_name(c->verb), kind, why);
    size_t budget = fixed < 255 ? 255 - (size_t)fixed : 0;
    for (;;) {
        size_t sum = 0, longest = 0;
        for (int i = 0; i < 3; i++) {
            len[i] = bg_amqp_authz__cut(field[i], src[i], srclen[i], limit[i]);
            sum += len[i];
            if (len[i] > len[longest])
                longest = (size_t)i;
        }
        if (sum <= budget || len[longest] == 0)
            break;
        limit[longest] = len[longest] - 1;
    }
    snprintf(buf, cap, "ACCESS_REFUSED - %s access to %s '%s' in vhost '%s' refused for user '%s' (%s)",
             bg_verb_name(c->verb), kind, field[0], field[1], field[2], why);
}

/* Appends n bytes of p to out (cap bytes, o used), as many as fit. */
static void bg_amqp_authz__put(char *out, size_t cap, size_t *o, const void *p, size_t n)
{
    size_t room = *o + 1 < cap ? cap - 1 - *o : 0;
    n = n < room ? n : room;
    memcpy(out + *o, p, n);
    *o += n;
}

int bg_amqp_reply_text_unnamed(const uint8_t *text, size_t len, const char *user, char *out,
                               size_t cap)
{
    static const char by_name[] = "user '", quote[] = "'", instead[] = "busgate's upstream user";
    size_t ulen = strlen(user), o = 0, i = 0;
    int named = 0;
    if (cap == 0)
        return 0;
    while (i < len) {
        size_t left = len - i;
        if (ulen && left >= 6 + ulen + 1 && memcmp(text + i, by_name, 6) == 0 &&
            memcmp(text + i + 6, user, ulen) == 0 && text[i + 6 + ulen] == '\'') {
            bg_amqp_authz__put(out, cap, &o, instead, sizeof instead - 1); /* "user 'NAME'" */
            i += 6 + ulen + 1;
            named = 1;
        } else if (ulen && left >= ulen + 2 && text[i] == '\'' &&
                   memcmp(text + i + 1, user, ulen) == 0 && text[i + 1 + ulen] == '\'') {
            bg_amqp_authz__put(out, cap, &o, quote, 1); /* 'NAME' alone */
            bg_amqp_authz__put(out, cap, &o, instead, sizeof instead - 1);
            bg_amqp_authz__put(out, cap, &o, quote, 1);
            i += ulen + 2;
            named = 1;
        } else {
            bg_amqp_authz__put(out, cap, &o, text + i, 1);
            i++;
        }
    }
    out[o] = '\0';
    return named;
}

uint16_t bg_amqp_authz_answer(const bg_amqp_verdict_t *v, const char *vhost, char *buf,
                              size_t cap)
{
    char vh[201];
    switch (v->answer) {
    case BG_AMQP_ANSWER_NO_LAST_QUEUE:
        snprintf(buf, cap, "NOT_FOUND - no previously declared queue");
        return BG_AMQP_NOT_FOUND;
    case BG_AMQP_ANSWER_PASSIVE_EMPTY:
        bg_amqp_authz__cut(vh, vhost, strlen(vhost), 200);
        snprintf(buf, cap, "NOT_FOUND - no queue '' in vhost '%s'", vh);
        return BG_AMQP_NOT_FOUND;
    case BG_AMQP_ANSWER_IMMEDIATE:
        snprintf(buf, cap, "NOT_IMPLEMENTED - immediate=true");
        return BG_AMQP_NOT_IMPLEMENTED;
    case BG_AMQP_ANSWER_ARG_TYPE: {
        char name[101];
        const bg_amqp_check_t *c = &v->checks[0];
        bg_amqp_authz__cut(name, c->name, c->name_len, 100);
        bg_amqp_authz__cut(vh, vhost, strlen(vhost), 60);
        snprintf(buf, cap, "PRECONDITION_FAILED - invalid type '%s' for arg '%s' in %s '%s' in vhost '%s'",
                 v->arg_type, v->arg_key, c->type == BG_RES_AMQP_QUEUE ? "queue" : "exchange",
                 name, vh);
        return BG_AMQP_PRECONDITION_FAILED;
    }
    default: snprintf(buf, cap, "ok"); return 0;
    }
}
